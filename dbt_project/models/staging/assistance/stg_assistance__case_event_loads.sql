-- One row per case event as loaded (every version of every file, no deduplication): which cases a
-- night's load touched. A plain projection of the raw table, so a filter on service_date reaches its
-- service-day index (stg_assistance__case_events cannot: its window runs over every version of an
-- event, whatever its night). Read by the nightly macros (macros/nightly.sql: cases_touched_in_range).
select
    _load_id as load_id,
    _row_number as row_number,
    _service_date as service_date,
    point_code,
    service_request_id,
    event
from {{ source('assistance', 'case_events') }}
