-- One row per district or county of the division-code seed, with its current registry counts.
with registry as (
    select
        district_code,
        count(distinct community_code) as communities,
        count(*) as compounds,
        coalesce(sum(households), 0) as households
    from {{ ref('dim_compound') }}
    group by district_code
),

streets as (
    -- the alias: a province deployment's reference() is a subquery
    select district_code, count(*) as streets
    from {{ reference('streets') }} as s  -- noqa: AL05
    group by district_code
)

select
    d.district_code,
    d.district_key,
    d.district_name,
    coalesce(s.streets, 0) as streets,
    coalesce(r.communities, 0) as communities,
    coalesce(r.compounds, 0) as compounds,
    coalesce(r.households, 0) as households
from {{ reference('districts') }} as d
left join streets as s on s.district_code = d.district_code
left join registry as r on r.district_code = d.district_code
