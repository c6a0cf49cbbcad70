-- One row per meal record (a person-time), latest version of each record id within its service day.
-- The service day is part of the window's partition so that a filter on service_date reaches the
-- raw table's index (incremental models read one night, not the whole history).
with source as (
    select * from {{ source('canteens', 'meals') }}
),

ranked as (
    select
        *,
        row_number() over (partition by _service_date, record_id order by _load_id desc, _row_number desc) as _version
    from source
)

select
    record_id,
    canteen_code,
    left(substr(canteen_code, 3), 9) as street_code,
    left(substr(canteen_code, 3), 6) as district_code,
    _service_date as service_date,
    served_at,
    meal,
    diner_category,
    diner_card_hash,
    age,
    price_yuan,
    subsidy_yuan,
    payment_method,
    _load_id as load_id
from ranked
where _version = 1
