{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- Community x service day: the canteen figures of the community's canteens. Canteens report per canteen
-- and are registered per street; the canteens seed gives each canteen the community it serves
-- (community_code, reference data), so a street's person-times split over its communities. A canteen
-- without a community in the seed counts only in its street's figures (fct_canteen_day,
-- int_canteens__street_day), not here. Nightly: the range's days are deleted and rebuilt.
select
    f.service_date,
    s.community_code,
    min(f.street_code) as street_code,
    min(f.district_code) as district_code,
    count(*) as canteens_reporting,
    sum(f.person_times)::bigint as person_times,
    sum(f.elderly_person_times)::bigint as elderly_person_times,
    sum(f.child_person_times)::bigint as child_person_times,
    sum(f.subsidy_yuan)::numeric(14, 2) as subsidy_yuan
from {{ ref('fct_canteen_day') }} as f
inner join {{ reference('canteens') }} as s using (canteen_code)
where nullif(s.community_code, '') is not null
{% if nightly() -%}
    and {{ in_service_range('f.service_date') }}
{%- endif %}
group by f.service_date, s.community_code
