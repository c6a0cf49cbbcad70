-- One row per compound and service day: the registry as the street reported it that night.
-- The programme's property-service definitions are written here, once:
--   has_property_service               property_mode <> 'none'
--   without_property_before_programme  the compound is one of the "四个一批" compounds: its mode is
--                                      none or one of the four measures, or it has (had) a subsidy
--                                      transition (a finished transition becomes 'market' but keeps
--                                      its subsidy_start_month)
--   programme_measure                  which of the four measures, or 'awaiting' (no service yet)
with source as (
    select * from {{ source('streets', 'compounds') }}
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
    -- optional columns (issue 23): null where the street's workbook does not carry them
    grid_code,
    micro_grids,
    grid_assistants,
    party_org_on_grid,
    party_positions,
    secretary_type,
    part_time_members,
    party_members,
    property_party_branch,
    party_instructors,
    dual_model,
    self_funding,
    courtyards_merged,
    micro_positions,
    in_service_members,
    property_mode <> 'none' as has_property_service,
    (
        property_mode in ('none', 'red_property', 'unit_assisted', 'community_fallback', 'subsidy_transition')
        or subsidy_start_month is not null
    ) as without_property_before_programme,
    case
        when property_mode = 'subsidy_transition' or subsidy_start_month is not null then 'subsidy_transition'
        when property_mode in ('red_property', 'unit_assisted', 'community_fallback') then property_mode
        when property_mode = 'none' then 'awaiting'
    end as programme_measure,
    _load_id as load_id
from ranked
where _version = 1
