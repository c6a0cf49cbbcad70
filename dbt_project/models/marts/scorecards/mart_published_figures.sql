-- The reconciliation with the programme's published figures (int_reconciliation__published_figures),
-- published with the night like every mart, so that BI and the city email (reports/city.py) read it
-- from `marts` as gov_bi_reader: published figure vs the warehouse's, on the latest day built. Named
-- columns, not *: the reconciliation may grow figures (rows) without changing this contract.
select
    r.figure_key::text as figure_key,
    r.scope_level::text as scope_level,
    r.scope_code::text as scope_code,
    r.published::numeric as published,
    r.warehouse::numeric as warehouse,
    coalesce(r.approx, false) as approx,
    coalesce(r.matches, false) as matches,
    coalesce(r.needs_programme_period, false) as needs_programme_period,
    r.registry_as_of::date as registry_as_of
from {{ ref('int_reconciliation__published_figures') }} as r
