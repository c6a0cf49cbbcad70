-- One row per community (社区) in the current registry, with its compounds.
select
    c.community_code,
    min(c.street_code) as street_code,
    min(c.district_code) as district_code,
    count(*) as compounds,
    coalesce(sum(c.households), 0) as households
from {{ ref('dim_compound') }} as c
group by c.community_code
