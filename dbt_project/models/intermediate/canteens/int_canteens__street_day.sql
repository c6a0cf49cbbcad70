{{ config(materialized='view') }}
-- Street x service day: the canteen figures of the street's canteens (fct_canteen_day, which already
-- leaves out the meals that do not count). The street scorecard joins this; the city summary adds the
-- streets up. A view: it is as current as the fact it reads, and costs one pass over it.
select
    service_date,
    street_code,
    min(district_code) as district_code,
    count(*) as canteens_reporting,
    sum(person_times) as person_times,
    sum(subsidy_yuan) as subsidy_yuan
from {{ ref('fct_canteen_day') }}
group by service_date, street_code
