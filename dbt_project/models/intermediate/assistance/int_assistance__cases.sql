{{ config(materialized='view') }}
-- One row per case: the lifecycle assembled from its events, and the case KPIs, defined here once.
-- A case is (point_code, service_request_id): the same id from two points is two cases.
-- A view: fct_assistance_case reads it for the cases touched by a night (the filter on
-- service_request_id reaches the events), so a night costs what its cases cost.
--
-- resolved_at         the first resolution, by the grid (resolved) or by a department (dept_resolved)
-- resolved_overnight  解决不隔夜: resolved before 09:00 Asia/Shanghai of the day after receipt
--                     (null when the receipt predates the warehouse's history)
-- escalated           小区吹哨、部门报到: escalated to a government department
-- resolved_in_grid    小事不出格: resolved, and never escalated
-- dept_response_hours hours from escalation to the department's resolution
-- handler             who handles the case now: the handler (a role: 党员, 网格员, 物业, 社工, 部门) of its latest
--                     event that names one
-- issue_flag          热点问题 hot / 急难愁盼 urgent, as its latest event flagging it says (null: neither)
-- party_org_code      the compound whose party organisation handled it, as its latest event naming one says
-- A case whose 'received' event predates the warehouse's history still has a row (received_at null),
-- so that its resolution counts on the day it happens.
-- One pass (a single GROUP BY over the events view) so that a filter on service_request_id reaches
-- the raw table. Case attributes come from the 'received' event, else from the earliest event.
with cases as (
    select
        point_code,
        service_request_id,
        min(street_code) as street_code,  -- the point's street and district: one value per point
        min(district_code) as district_code,
        (array_agg(compound_code order by (event = 'received') desc, event_at))[1] as compound_code,
        (array_agg(service_code order by (event = 'received') desc, event_at))[1] as service_code,
        (array_agg(channel order by (event = 'received') desc, event_at))[1] as channel,
        (array_agg(people_served order by (event = 'received') desc, event_at))[1] as people_served,
        min(event_at) filter (where event = 'received') as received_at,
        min(event_at) filter (where event = 'dispatched') as dispatched_at,
        min(event_at) filter (where event = 'escalated') as escalated_at,
        min(event_at) filter (where event = 'dept_resolved') as dept_resolved_at,
        min(event_at) filter (where event in ('resolved', 'dept_resolved')) as resolved_at,
        max(event_at) filter (where event = 'closed') as closed_at,
        (array_agg(satisfaction order by event_at desc) filter (where event = 'closed'))[1] as satisfaction,
        (array_agg(agency_responsible order by event_at) filter (where event = 'escalated'))[1] as agency_responsible,
        (array_agg(handler order by event_at desc) filter (where handler is not null))[1] as handler,
        (array_agg(issue_flag order by event_at desc) filter (where issue_flag is not null))[1] as issue_flag,
        (array_agg(party_org_code order by event_at desc) filter (where party_org_code is not null))[1] as party_org_code
    from {{ ref('stg_assistance__case_events') }}
    group by point_code, service_request_id
)

select
    c.service_request_id,
    c.point_code,
    c.street_code,
    c.district_code,
    c.compound_code,
    c.service_code,
    c.channel,
    c.people_served,
    c.received_at,
    {{ local_date('c.received_at') }} as received_date,
    c.dispatched_at,
    c.escalated_at,
    c.dept_resolved_at,
    c.resolved_at,
    {{ local_date('c.resolved_at') }} as resolved_date,
    c.closed_at,
    c.satisfaction,
    c.agency_responsible,
    c.handler,
    c.issue_flag,
    c.party_org_code,
    c.escalated_at is not null as escalated,
    c.resolved_at is not null and c.escalated_at is null as resolved_in_grid,
    round((extract(epoch from c.resolved_at - c.received_at) / 3600.0)::numeric, 2) as hours_to_resolve,
    round((extract(epoch from c.dept_resolved_at - c.escalated_at) / 3600.0)::numeric, 2) as dept_response_hours,
    case when c.received_at is not null then coalesce(
        c.resolved_at < ((({{ local_date('c.received_at') }}) + 1) + time '09:00') at time zone 'Asia/Shanghai',
        false
    ) end as resolved_overnight
from cases as c
