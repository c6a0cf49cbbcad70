{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- Street x service day: the assistance, canteen and coverage figures a street office is measured by.
-- Every street of the division-code seed has a row for every day built (zeros when quiet).
-- Nightly: the same days as mart_city_daily_summary (the night and the days its events change).
with days as (
    {{ days_to_build(ref('fct_assistance_case')) }}
),

grid as (
    select d.service_date, s.street_code, s.district_code
    from days as d
    cross join {{ ref('streets') }} as s
),

cases as (
    -- a case whose stages are out of order (or of an unknown point) is not counted (macros/row_flags.sql)
    select * from {{ ref('fct_assistance_case') }} as c where {{ case_counts('c') }}
),

received as (
    select
        received_date as service_date, street_code,
        count(*) as cases_received,
        coalesce(sum(people_served), 0) as people_served
    from cases
    where received_date in (select service_date from days)
    group by 1, 2
),

resolved as (
    select
        resolved_date as service_date, street_code,
        count(*) as cases_resolved,
        count(*) filter (where resolved_in_grid) as cases_resolved_in_grid
    from cases
    where resolved_date in (select service_date from days)
    group by 1, 2
),

escalations as (
    select
        {{ local_date('escalated_at') }} as service_date, street_code,
        count(*) as cases_escalated,
        avg(dept_response_hours) as dept_response_hours_avg
    from cases
    where {{ local_date('escalated_at') }} in (select service_date from days)
    group by 1, 2
),

closed as (
    select
        {{ local_date('closed_at') }} as service_date, street_code,
        avg(satisfaction) as satisfaction_avg
    from cases
    where {{ local_date('closed_at') }} in (select service_date from days)
    group by 1, 2
),

overnight as (
    select
        received_date + 1 as service_date, street_code,
        count(*) as overnight_cohort,
        count(*) filter (where resolved_overnight) as overnight_resolved
    from cases
    where received_date + 1 in (select service_date from days)
    group by 1, 2
),

backlog as (
    select d.service_date, c.street_code, count(*) as backlog
    from days as d
    inner join cases as c
        on c.received_date <= d.service_date
        and (c.resolved_date is null or c.resolved_date > d.service_date)
    group by 1, 2
),

canteens as (
    select service_date, street_code, sum(person_times) as canteen_person_times
    from {{ ref('fct_canteen_day') }}
    where service_date in (select service_date from days)
    group by 1, 2
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
    coalesce(rc.cases_received, 0)::bigint as cases_received,
    coalesce(rs.cases_resolved, 0)::bigint as cases_resolved,
    coalesce(b.backlog, 0)::bigint as cases_backlog,
    coalesce(o.overnight_cohort, 0)::bigint as overnight_cohort,
    coalesce(o.overnight_resolved, 0)::bigint as overnight_resolved,
    {{ safe_ratio('o.overnight_resolved', 'o.overnight_cohort') }} as overnight_resolution_rate,
    coalesce(rs.cases_resolved_in_grid, 0)::bigint as cases_resolved_in_grid,
    {{ safe_ratio('rs.cases_resolved_in_grid', 'rs.cases_resolved') }} as in_grid_resolution_rate,
    coalesce(e.cases_escalated, 0)::bigint as cases_escalated,
    round(e.dept_response_hours_avg, 2)::numeric(10, 2) as dept_response_hours_avg,
    round(cl.satisfaction_avg, 2)::numeric(4, 2) as satisfaction_avg,
    coalesce(rc.people_served, 0)::bigint as people_served,
    coalesce(ct.canteen_person_times, 0)::bigint as canteen_person_times,
    p.property_coverage_rate,
    q.party_org_coverage_rate,
    q.owners_committee_coverage_rate
from grid as g
left join received as rc using (service_date, street_code)
left join resolved as rs using (service_date, street_code)
left join backlog as b using (service_date, street_code)
left join overnight as o using (service_date, street_code)
left join escalations as e using (service_date, street_code)
left join closed as cl using (service_date, street_code)
left join canteens as ct using (service_date, street_code)
left join property as p using (service_date, street_code)
left join party as q using (service_date, street_code)
