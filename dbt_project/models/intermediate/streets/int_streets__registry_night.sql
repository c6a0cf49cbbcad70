{{ config(materialized='view') }}
-- The compound registry of the night being built (the service_date variable, else the latest
-- night loaded): the source of the SCD2 snapshot snap_compound_registry. registry_as_of is the
-- service day as a timestamp: the snapshot's valid_from comes from it, never from the wall clock,
-- so re-running a night gives byte-identical history.
select
    c.compound_code,
    c.compound_name,
    c.community_code,
    c.street_code,
    c.district_code,
    c.households,
    c.building_area_m2,
    c.buildings,
    c.property_mode,
    c.property_company,
    c.subsidy_start_month,
    c.party_org_type,
    c.party_org_since,
    c.owners_committee,
    c.building_heads,
    c.unit_heads,
    c.service_station,
    c.grid_code,
    c.micro_grids,
    c.grid_assistants,
    c.party_org_on_grid,
    c.party_positions,
    c.secretary_type,
    c.part_time_members,
    c.party_members,
    c.property_party_branch,
    c.party_instructors,
    c.dual_model,
    c.self_funding,
    c.courtyards_merged,
    c.micro_positions,
    c.in_service_members,
    c.has_property_service,
    c.without_property_before_programme,
    c.programme_measure,
    c.service_date::timestamp as registry_as_of
from {{ ref('stg_streets__compounds') }} as c
-- a restriction on service_date (not a join) reaches the raw table's index through the staging view
{% if var('service_date', none) is not none -%}
where c.service_date = {{ service_date_literal() }}
{%- else -%}
where c.service_date = (select max(service_date) from {{ ref('stg_streets__compound_loads') }})
{%- endif %}
