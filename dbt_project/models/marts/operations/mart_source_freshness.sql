{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- Source x reporter x service day: was the reporter's submission expected, received, late, missing?
-- Expected reporters come from the reference seeds (streets, canteens, assistance points).
-- Late: the reporter's first accepted file was loaded more than an hour after that source's
-- first file of the same service day (i.e. not by the nightly run, but by a later reload).
-- the aliases: a province deployment's reference() is a subquery
with expected as (
    select 'streets' as source, street_code as reporter_code, street_code, district_code
    from {{ reference('streets') }} as s  -- noqa: AL05
    union all
    select 'canteens', canteen_code, street_code, district_code
    from {{ reference('canteens') }} as c  -- noqa: AL05
    union all
    select 'assistance', point_code, street_code, district_code
    from {{ reference('assistance_points') }} as p  -- noqa: AL05
),

ledger as (
    select source, reporter_code, service_date, started_at
    from {{ ref('stg_audit__load_ledger') }}
    where status in ('loaded', 'replaced', 'skipped_duplicate')
),

{%- if nightly() %}

range_days as (
    {{ service_range_days() }}
),
{%- endif %}

days as (
    {%- if nightly() %}
    select s.source, r.service_date
    from (values ('streets'), ('canteens'), ('assistance')) as s (source)
    cross join range_days as r
    {%- else %}
    select distinct source, service_date from ledger
    {%- endif %}
),

night_start as (
    select source, service_date, min(started_at) as first_load_at from ledger group by 1, 2
),

first_load as (
    select source, reporter_code, service_date, min(started_at) as first_load_at from ledger group by 1, 2, 3
)

select
    d.service_date,
    e.source,
    e.reporter_code,
    e.street_code,
    e.district_code,
    true as expected,
    f.first_load_at is not null as received,
    coalesce(f.first_load_at > n.first_load_at + interval '1 hour', false) as late,
    f.first_load_at is null as missing,
    f.first_load_at as first_loaded_at
from days as d
inner join expected as e on e.source = d.source
left join first_load as f
    on f.source = e.source and f.reporter_code = e.reporter_code and f.service_date = d.service_date
left join night_start as n on n.source = d.source and n.service_date = d.service_date
