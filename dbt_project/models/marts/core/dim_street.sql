-- One row per street (街道) or town of the division-code seed, with its current registry counts.
with registry as (
    select
        street_code,
        count(distinct community_code) as communities,
        count(*) as compounds,
        coalesce(sum(households), 0) as households
    from {{ ref('dim_compound') }}
    group by street_code
)

select
    s.street_code,
    s.street_name,
    s.district_code,
    d.district_name,
    coalesce(r.communities, 0) as communities,
    coalesce(r.compounds, 0) as compounds,
    coalesce(r.households, 0) as households
from {{ reference('streets') }} as s
inner join {{ reference('districts') }} as d on d.district_code = s.district_code
left join registry as r on r.street_code = s.street_code
