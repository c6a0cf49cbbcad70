{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key=['figure_key', 'scope_code'],
          on_schema_change='fail') }}
-- The reconciliation with the programme's published figures (int_reconciliation__published_figures),
-- published with the night like every mart, so that BI and the city email (reports/city.py) read it
-- from `marts` as gov_bi_reader: published figure vs the warehouse's, on the latest day built. Named
-- columns, not *: the reconciliation may grow figures (rows) without changing this contract.
-- The reconciliation counts distinct diner cards over the programme period and reads every case, so its
-- cost grows with the history: a nightly run (service_date set) recomputes it only on a month's last day,
-- the one night the city email shows it (reports/city_figures.reconciliation_night), or, covering several
-- nights (service_date_from), when its range holds a month's last day (then as of the range's last day);
-- on every other run the condition is a constant false, which the planner folds before running the view
-- (no scan), and the last month's rows stay. A run without the variable (`gov-warehouse reconcile`, a full
-- build) or a first build always computes it.
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
{% if nightly() -%}
    -- the range holds a month's last day: the day after its last day is in another month than its first day
    where extract(year from {{ service_date_from_literal() }}) * 12 + extract(month from {{ service_date_from_literal() }})
        <> extract(year from {{ service_date_literal() }} + 1) * 12 + extract(month from {{ service_date_literal() }} + 1)
{%- endif %}
