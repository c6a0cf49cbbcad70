-- One row per compound and service day: the registry as the street reported it that night.
with source as (
    select * from {{ source('raw', 'streets_compounds') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by _service_date, compound_code order by _load_id desc, _row_number desc
        ) as _version
    from source
)

select
    _service_date as service_date,
    compound_code,
    name as compound_name,
    community_code,
    left(compound_code, 9) as street_code,
    left(compound_code, 6) as district_code,
    households,
    building_area_m2,
    buildings,
    property_mode,
    property_company,
    subsidy_start_month,
    party_org_type,
    party_org_since,
    owners_committee,
    building_heads,
    unit_heads,
    service_station,
    _load_id as load_id
from ranked
where _version = 1
