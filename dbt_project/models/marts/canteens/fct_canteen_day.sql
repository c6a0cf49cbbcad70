{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- One row per canteen and service day. Nightly: the range's days are deleted and rebuilt from their records.
-- Meals flagged by canteen_meal_counts (served on another day, negative money, unknown canteen) are kept
-- in staging and counted by the GX checks, not here (macros/row_flags.sql).
select
    m.service_date,
    m.canteen_code,
    min(m.street_code) as street_code,
    min(m.district_code) as district_code,
    count(*) filter (where m.meal = 'breakfast') as breakfasts,
    count(*) filter (where m.meal = 'lunch') as lunches,
    count(*) filter (where m.meal = 'dinner') as dinners,
    count(*) as person_times,
    count(distinct m.diner_card_hash) as distinct_diners,
    count(*) filter (where m.diner_category = 'elderly') as elderly_person_times,
    count(*) filter (where m.diner_category = 'child') as child_person_times,
    {{ safe_ratio("count(*) filter (where m.diner_category = 'elderly')", 'count(*)') }} as elderly_share,
    {{ safe_ratio("count(*) filter (where m.diner_category = 'child')", 'count(*)') }} as child_share,
    {{ safe_ratio("count(*) filter (where m.diner_category in ('elderly', 'child'))", 'count(*)') }} as elderly_child_share,
    coalesce(sum(m.subsidy_yuan), 0)::numeric(14, 2) as subsidy_yuan,
    coalesce(sum(m.price_yuan), 0)::numeric(14, 2) as paid_yuan
from {{ ref('stg_canteens__meals') }} as m
where {{ canteen_meal_counts('m') }}
{% if nightly() -%}
and {{ in_service_range('m.service_date') }}
{%- endif %}
group by m.service_date, m.canteen_code
