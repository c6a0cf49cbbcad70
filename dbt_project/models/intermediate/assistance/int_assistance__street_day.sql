{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- Street x service day: the assistance figures of the street's points, counted here once. The street
-- scorecard joins this to its street grid; the city summary adds the streets up, so street rows sum to
-- the city's by construction. Sparse: a street-day without case activity has no row.
-- A case counts on the day of each of its stages (the KPI definitions, dbt_project/README.md):
--   cases_received / people_served   received that day, and the person-times those cases served
--   cases_resolved                   first resolved that day; cases_resolved_in_grid: of those, never escalated
--   cases_escalated                  escalated to a department that day (its first escalation), whatever the
--                                    day it was received; dept_response_hours_avg: over those cases
--   satisfaction_avg                 over the cases closed that day
--   overnight_cohort                 received the day before; overnight_resolved: of those, resolved before 09:00
--   cases_backlog                    received by that day and not resolved by its end
-- Nightly: the range's days and the days whose case figures its events change (days_to_build),
-- the same days the scorecard and the city summary rebuild.
with days as (
    {{ days_to_build(ref('fct_assistance_case')) }}
),

cases as (
    -- a case whose stages are out of order (or of an unknown point) is not counted (macros/row_flags.sql)
    select * from {{ ref('fct_assistance_case') }} as c where {{ case_counts('c') }}
),

stages as (
    -- each case once per stage, on the day of that stage
    select
        s.stage, s.service_date, c.street_code, c.people_served, c.resolved_in_grid, c.resolved_overnight,
        c.dept_response_hours, c.satisfaction
    from cases as c
    cross join lateral (values
        ('received', c.received_date),
        ('resolved', c.resolved_date),
        ('escalated', {{ local_date('c.escalated_at') }}),
        ('closed', {{ local_date('c.closed_at') }}),
        ('overnight_cohort', c.received_date + 1)
    ) as s (stage, service_date)
    where s.service_date in (select service_date from days)
),

flows as (
    select
        service_date,
        street_code,
        count(*) filter (where stage = 'received') as cases_received,
        sum(people_served) filter (where stage = 'received') as people_served,
        count(*) filter (where stage = 'resolved') as cases_resolved,
        count(*) filter (where stage = 'resolved' and resolved_in_grid) as cases_resolved_in_grid,
        count(*) filter (where stage = 'escalated') as cases_escalated,
        round(avg(dept_response_hours) filter (where stage = 'escalated'), 2) as dept_response_hours_avg,
        round(avg(satisfaction) filter (where stage = 'closed'), 2) as satisfaction_avg,
        count(*) filter (where stage = 'overnight_cohort') as overnight_cohort,
        count(*) filter (where stage = 'overnight_cohort' and resolved_overnight) as overnight_resolved
    from stages
    group by service_date, street_code
),

backlog as (
    select d.service_date, c.street_code, count(*) as cases_backlog
    from days as d
    inner join cases as c
        on c.received_date <= d.service_date
        and (c.resolved_date is null or c.resolved_date > d.service_date)
    group by d.service_date, c.street_code
)

select
    service_date,
    street_code,
    coalesce(f.cases_received, 0) as cases_received,
    coalesce(f.people_served, 0) as people_served,
    coalesce(f.cases_resolved, 0) as cases_resolved,
    coalesce(f.cases_resolved_in_grid, 0) as cases_resolved_in_grid,
    coalesce(f.cases_escalated, 0) as cases_escalated,
    f.dept_response_hours_avg,
    f.satisfaction_avg,
    coalesce(f.overnight_cohort, 0) as overnight_cohort,
    coalesce(f.overnight_resolved, 0) as overnight_resolved,
    coalesce(b.cases_backlog, 0) as cases_backlog
from flows as f
full join backlog as b using (service_date, street_code)
