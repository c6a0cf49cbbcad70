{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month_start',
          on_schema_change='fail') }}
-- City, district and street x calendar month: the beneficiaries (惠及人数) of the community canteens, counted
-- as distinct diner cards (keyed hashes: the card numbers never reach the warehouse) among the month's
-- meals that count (macros/row_flags.sql). Nightly: the month of each night of the range is rebuilt from every
-- day of it loaded (a re-run of an earlier night keeps the month's later days), so a night costs at most a
-- month of meals, never the history. A period longer than a month is counted from
-- the meals themselves (distinct cards do not add up over months): the reconciliation's programme figure.
with meals as (
    select
        date_trunc('month', m.service_date)::date as month_start,
        m.service_date,
        m.street_code,
        m.district_code,
        m.diner_card_hash
    from {{ ref('stg_canteens__meals') }} as m
    where {{ canteen_meal_counts('m') }}
    {% if nightly() -%}
    and m.service_date >= date_trunc('month', {{ service_date_from_literal() }})::date
    and m.service_date < (date_trunc('month', {{ service_date_literal() }}) + interval '1 month')::date
    {%- endif %}
)

select
    m.month_start,
    sc.scope_level,
    sc.scope_code,
    min(m.district_code) filter (where sc.scope_level <> 'city') as district_code,
    count(distinct m.service_date) as days_with_meals,
    count(*) as person_times,
    count(distinct m.diner_card_hash) as beneficiaries
from meals as m
cross join lateral (values
    ('city', {{ city_of('m.district_code') }}), ('district', m.district_code), ('street', m.street_code)
) as sc (scope_level, scope_code)
group by m.month_start, sc.scope_level, sc.scope_code
