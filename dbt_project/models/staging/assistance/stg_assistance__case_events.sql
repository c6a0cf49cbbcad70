-- One row per case event; a point resending the same event (same case, kind and time) counts once.
-- A case is a point's service_request_id: points number their cases independently, so the same id sent
-- by two points is two cases (never merged), and the point is part of every key below.
with source as (
    select * from {{ source('assistance', 'case_events') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by point_code, service_request_id, event, event_at order by _load_id desc, _row_number desc
        ) as _version
    from source
)

select
    md5(point_code || '|' || service_request_id || '|' || event || '|' || event_at::text) as event_key,
    service_request_id,
    point_code,
    left(substr(point_code, 3), 9) as street_code,
    left(substr(point_code, 3), 6) as district_code,
    event,
    event_at,
    {{ local_date('event_at') }} as event_date,
    _service_date as service_date,
    service_code,
    channel,
    compound_code,
    handler,
    agency_responsible,
    people_served,
    satisfaction,
    issue_flag,  -- optional (issue 23): hot / urgent
    party_org_code,  -- optional (issue 23): the compound whose party organisation handled the case
    requester_phone_masked,
    requester_id_valid,
    _load_id as load_id
from ranked
where _version = 1
