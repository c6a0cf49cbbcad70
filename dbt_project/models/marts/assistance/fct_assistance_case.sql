{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key=['point_code', 'service_request_id'],
          on_schema_change='fail') }}
-- One row per assistance case: (point_code, service_request_id), as points number their cases independently.
-- Nightly: only the cases with an event in the load of a night of the range are rebuilt
-- (from all their events), so the night's cost grows with the night, not with the history. The filter
-- is on the id alone (it reaches the raw events' index): a case of another point with the same id is
-- rebuilt too, unchanged.
-- depends_on: {{ ref('stg_assistance__case_event_loads') }}
select
    service_request_id,
    point_code,
    street_code,
    district_code,
    compound_code,
    service_code,
    channel,
    people_served,
    received_at,
    received_date,
    dispatched_at,
    escalated_at,
    dept_resolved_at,
    resolved_at,
    resolved_date,
    closed_at,
    hours_to_resolve,
    resolved_overnight,
    escalated,
    resolved_in_grid,
    agency_responsible,
    handler,
    issue_flag,
    party_org_code,
    dept_response_hours,
    satisfaction
from {{ ref('int_assistance__cases') }}
{% if nightly() -%}
where service_request_id = any(array({{ cases_touched_in_range() }}))
{%- endif %}
