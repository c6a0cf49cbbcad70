-- One row per compound row as loaded (every version of every file, no deduplication): which nights
-- the streets have sent. A plain projection of the raw table, so max(service_date) is read from its
-- service-day index (stg_streets__compounds would compute its window over the whole history first).
select
    _load_id as load_id,
    _row_number as row_number,
    _service_date as service_date,
    compound_code
from {{ source('streets', 'compounds') }}
