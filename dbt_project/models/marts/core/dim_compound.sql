-- One row per compound: its current attributes (the open version of the registry's SCD2 history).
select
    compound_code,
    compound_name,
    community_code,
    street_code,
    district_code,
    households,
    building_area_m2,
    buildings,
    property_mode,
    nullif(property_company, '') as property_company,
    subsidy_start_month,
    has_property_service,
    without_property_before_programme,
    programme_measure,
    party_org_type,
    party_org_since,
    owners_committee,
    building_heads,
    unit_heads,
    service_station,
    dbt_valid_from::date as valid_from
from {{ ref('snap_compound_registry') }}
where dbt_valid_to is null
