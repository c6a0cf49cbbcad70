-- One row per case: the lifecycle assembled from its events.
-- resolved_at is the first resolution, by the grid (resolved) or by a department (dept_resolved).
-- A case whose 'received' event predates the warehouse's history still has a row (received_at null),
-- so that its resolution counts on the day it happens.
with events as (
    select * from {{ ref('stg_assistance__case_events') }}
),

received as (
    select distinct on (service_request_id)
        service_request_id, point_code, street_code, district_code, compound_code, service_code, channel,
        people_served, case when event = 'received' then event_at end as received_at
    from events
    order by service_request_id, (event = 'received') desc, event_at
),

stages as (
    select
        service_request_id,
        min(event_at) filter (where event = 'dispatched') as dispatched_at,
        min(event_at) filter (where event = 'escalated') as escalated_at,
        min(event_at) filter (where event = 'dept_resolved') as dept_resolved_at,
        min(event_at) filter (where event in ('resolved', 'dept_resolved')) as resolved_at,
        max(event_at) filter (where event = 'closed') as closed_at,
        (array_agg(satisfaction order by event_at desc) filter (where event = 'closed'))[1] as satisfaction,
        (array_agg(agency_responsible order by event_at) filter (where event = 'escalated'))[1] as agency_responsible
    from events
    group by service_request_id
)

select
    r.service_request_id,
    r.point_code,
    r.street_code,
    r.district_code,
    r.compound_code,
    r.service_code,
    r.channel,
    r.people_served,
    r.received_at,
    {{ local_date('r.received_at') }} as received_date,
    s.dispatched_at,
    s.escalated_at,
    s.dept_resolved_at,
    s.resolved_at,
    {{ local_date('s.resolved_at') }} as resolved_date,
    s.closed_at,
    s.satisfaction,
    s.agency_responsible,
    s.escalated_at is not null as escalated,
    round((extract(epoch from s.resolved_at - r.received_at) / 3600.0)::numeric, 2) as hours_to_resolve,
    -- 解决不隔夜: resolved before 09:00 (Asia/Shanghai) of the day after receipt
    case when r.received_at is not null then coalesce(
        s.resolved_at < ((({{ local_date('r.received_at') }}) + 1) + time '09:00') at time zone 'Asia/Shanghai',
        false
    ) end as resolved_overnight
from received as r
left join stages as s using (service_request_id)
