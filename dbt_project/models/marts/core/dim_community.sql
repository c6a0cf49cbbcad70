-- One row per community (社区) in the current registry, with its compounds; its name from the
-- community_names seed (reference data: the registry files carry only the community's code).
select
    c.community_code,
    min(n.community_name) as community_name,
    min(c.street_code) as street_code,
    min(c.district_code) as district_code,
    count(*) as compounds,
    coalesce(sum(c.households), 0) as households
from {{ ref('dim_compound') }} as c
left join {{ reference('community_names') }} as n using (community_code)
group by c.community_code
