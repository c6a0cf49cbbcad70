{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- Street x service day: the assistance, canteen and coverage figures a street office is measured by.
-- Every street of the division-code seed has a row for every day built (zeros when quiet): the street
-- grid, joined to one piece per topic, each already at street x day (int_assistance__street_day,
-- int_canteens__street_day, the coverage marts' street rows). Rates are computed here from their counts.
-- Nightly: the same days as mart_city_daily_summary (the range's days and the days its events change).
with days as (
    {{ days_to_build(ref('fct_assistance_case')) }}
),

grid as (
    select d.service_date, s.street_code, s.district_code
    from days as d
    cross join {{ reference('streets') }} as s
),

assistance as (
    select * from {{ ref('int_assistance__street_day') }}
    where service_date in (select service_date from days)
),

canteens as (
    select service_date, street_code, person_times as canteen_person_times
    from {{ ref('int_canteens__street_day') }}
    where service_date in (select service_date from days)
),

property as (
    select service_date, scope_code as street_code, property_coverage_rate
    from {{ ref('mart_property_coverage') }}
    where scope_level = 'street' and service_date in (select service_date from days)
),

party as (
    select service_date, scope_code as street_code, party_org_coverage_rate, owners_committee_coverage_rate
    from {{ ref('mart_party_coverage') }}
    where scope_level = 'street' and service_date in (select service_date from days)
)

select
    g.service_date,
    g.street_code,
    g.district_code,
    coalesce(a.cases_received, 0)::bigint as cases_received,
    coalesce(a.cases_resolved, 0)::bigint as cases_resolved,
    coalesce(a.cases_backlog, 0)::bigint as cases_backlog,
    coalesce(a.overnight_cohort, 0)::bigint as overnight_cohort,
    coalesce(a.overnight_resolved, 0)::bigint as overnight_resolved,
    {{ safe_ratio('a.overnight_resolved', 'a.overnight_cohort') }} as overnight_resolution_rate,
    coalesce(a.cases_resolved_in_grid, 0)::bigint as cases_resolved_in_grid,
    {{ safe_ratio('a.cases_resolved_in_grid', 'a.cases_resolved') }} as in_grid_resolution_rate,
    coalesce(a.cases_escalated, 0)::bigint as cases_escalated,
    round(a.dept_response_hours_avg, 2)::numeric(10, 2) as dept_response_hours_avg,
    round(a.satisfaction_avg, 2)::numeric(4, 2) as satisfaction_avg,
    coalesce(a.people_served, 0)::bigint as people_served,
    coalesce(ct.canteen_person_times, 0)::bigint as canteen_person_times,
    p.property_coverage_rate,
    q.party_org_coverage_rate,
    q.owners_committee_coverage_rate
from grid as g
left join assistance as a using (service_date, street_code)
left join canteens as ct using (service_date, street_code)
left join property as p using (service_date, street_code)
left join party as q using (service_date, street_code)
