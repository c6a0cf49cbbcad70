{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- District and street x service day: party-organisation and owners'-committee coverage, service
-- stations, building and unit heads, from the registry's SCD2 history as it stood that day.
with scopes as (
    {{ registry_scopes() }}
)

select
    s.service_date,
    s.scope_level,
    s.scope_code,
    min(s.district_code) as district_code,
    count(*) as compounds,
    count(*) filter (where s.party_org_type <> 'none') as compounds_with_party_org,
    count(*) filter (where s.party_org_type = 'branch') as party_branches,
    count(*) filter (where s.party_org_type = 'group') as party_groups,
    count(*) filter (where s.party_org_type = 'joint_branch') as joint_party_branches,
    {{ safe_ratio("count(*) filter (where s.party_org_type <> 'none')", 'count(*)') }} as party_org_coverage_rate,
    count(*) filter (where s.owners_committee <> 'none') as compounds_with_owners_committee,
    count(*) filter (where s.owners_committee = 'owners_committee') as owners_committees,
    count(*) filter (where s.owners_committee = 'property_committee') as property_committees,
    {{ safe_ratio("count(*) filter (where s.owners_committee <> 'none')", 'count(*)') }} as owners_committee_coverage_rate,
    count(*) filter (where s.service_station) as service_stations,
    coalesce(sum(s.building_heads), 0) as building_heads,
    coalesce(sum(s.unit_heads), 0) as unit_heads
from scopes as s
group by s.service_date, s.scope_level, s.scope_code
