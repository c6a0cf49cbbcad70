{{ config(
    materialized='incremental', incremental_strategy='delete+insert', schema='snapshots',
    unique_key=['compound_code', 'dbt_valid_from'], on_schema_change='fail',
    pre_hook="{{ reopen_registry_history() }}"
) }}
{#-
  小区台账历史: the SCD2 history of the compound registry, computed from the registry nights loaded
  (stg_streets__compounds), so that any order of builds gives the same history: a version starts on a
  night whose attributes (`attributes` below) differ from the compound's previous night with a row, and
  holds until the next version starts (dbt_valid_to = its dbt_valid_from; null: current). A night
  without a compound keeps its version (as dbt's snapshot did). Valid-from/to are service days (Asia/Shanghai
  midnight as timestamp without time zone), never the wall clock: re-running a night is byte-identical.

  Incremental on the range of the build (service_date_from..service_date, macros/nightly.sql): the
  pre-hook (macros/registry_history.sql) deletes the versions starting on or after the range's first day
  F, in the model's transaction; this query recomputes them from each compound's version open at F and
  the registry rows of every night from F on (the nights after the range too, so rebuilding an older
  night after newer ones keeps theirs), and re-inserts the open version with its new valid-to. A nightly
  run reads one night and one version per compound. A full build computes it from every night.

  Until issue 20 this was a dbt snapshot (check strategy on the same columns, updated_at = the night):
  its table has these columns in this order, so a warehouse built with it continues from it; rebuilding an
  earlier night after a later one made it insert a duplicate version per changed compound.
-#}
{%- set attributes = [
    'compound_name', 'community_code', 'households', 'building_area_m2', 'buildings', 'property_mode',
    'property_company', 'subsidy_start_month', 'party_org_type', 'party_org_since', 'owners_committee',
    'building_heads', 'unit_heads', 'service_station', 'grid_code', 'micro_grids', 'grid_assistants',
    'party_org_on_grid', 'party_positions', 'secretary_type', 'part_time_members', 'party_members',
    'property_party_branch', 'party_instructors', 'dual_model', 'self_funding', 'courtyards_merged',
    'micro_positions', 'in_service_members'
] -%}
{%- set columns = [
    'compound_code', 'compound_name', 'community_code', 'street_code', 'district_code', 'households',
    'building_area_m2', 'buildings', 'property_mode', 'property_company', 'subsidy_start_month',
    'party_org_type', 'party_org_since', 'owners_committee', 'building_heads', 'unit_heads', 'service_station',
    'grid_code', 'micro_grids', 'grid_assistants', 'party_org_on_grid', 'party_positions', 'secretary_type',
    'part_time_members', 'party_members', 'property_party_branch', 'party_instructors', 'dual_model',
    'self_funding', 'courtyards_merged', 'micro_positions', 'in_service_members', 'has_property_service',
    'without_property_before_programme', 'programme_measure'
] -%}
with nights as (
    -- the registry of every night from the range's first day on (a filter on service_date reaches the raw
    -- table's service-day index through the staging view), or of every night loaded
    select
        {% for c in columns %}r.{{ c }},{% if loop.index % 6 == 0 %}
        {% endif %}{% endfor %}
        r.service_date::timestamp as registry_as_of
    from {{ ref('stg_streets__compounds') }} as r
    {% if nightly() -%}
    where r.service_date >= {{ service_date_from_literal() }}
    {%- endif %}
),

candidates as (
    select * from nights
    {% if nightly() -%}
    union all
    -- each compound's version open on the range's first day (the pre-hook deleted the later ones): the
    -- nights from F on are compared with it, and its valid-to is recomputed
    select
        {% for c in columns %}h.{{ c }},{% if loop.index % 6 == 0 %}
        {% endif %}{% endfor %}
        h.registry_as_of
    from {{ this }} as h
    where h.dbt_valid_to is null or h.dbt_valid_to >= {{ service_date_from_literal() }}::timestamp
    {%- endif %}
),

compared as (
    select
        *,
        -- the record's text form tells null from an empty string, so a change to or from null is a change
        md5(row({{ attributes | join(', ') }})::text) as attribute_hash
    from candidates
),

changes as (
    select
        *,
        lag(attribute_hash) over (partition by compound_code order by registry_as_of) as previous_hash
    from compared
)

-- window functions run after the where clause: lead() sees the versions only
select
    {% for c in columns %}{{ c }},{% if loop.index % 6 == 0 %}
    {% endif %}{% endfor %}
    registry_as_of,
    -- as dbt's snapshots made it (snapshot_hash_arguments of the unique key and updated_at)
    md5(coalesce(compound_code::varchar, '') || '|' || coalesce(registry_as_of::varchar, '')) as dbt_scd_id,
    registry_as_of as dbt_updated_at,
    registry_as_of as dbt_valid_from,
    lead(registry_as_of) over (partition by compound_code order by registry_as_of) as dbt_valid_to
from changes
where previous_hash is distinct from attribute_hash
