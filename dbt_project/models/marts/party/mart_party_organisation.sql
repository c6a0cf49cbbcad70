{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- District and street x service day: the compound party organisations' strength (positions, secretaries,
-- part-time committee members, members), their alignment with the grids, the property companies' party
-- work, and the programme's local arrangements (双组双建双监督, self-funding, courtyards regrouped,
-- micro-positions, in-service members), from the registry's SCD2 history as it stood that day. These come
-- from the registry's optional columns (issue 23): a street whose workbook lacks them counts 0 there, and
-- compounds_reporting_party_detail says how many compounds carried them.
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
    count(*) filter (
        where s.secretary_type is not null or s.party_positions is not null
        or s.part_time_members is not null or s.party_org_on_grid is not null
    ) as compounds_reporting_party_detail,
    count(*) filter (where s.party_org_type <> 'none' and s.party_org_on_grid) as party_orgs_on_grid,
    {{ safe_ratio("count(*) filter (where s.party_org_type <> 'none' and s.party_org_on_grid)",
                  "count(*) filter (where s.party_org_type <> 'none')") }} as party_org_grid_alignment_rate,
    coalesce(sum(s.party_positions), 0) as party_positions,
    count(*) filter (where s.secretary_type = 'resident_member') as secretaries_resident_members,
    count(*) filter (where s.secretary_type = 'community_cadre') as secretaries_community_cadres,
    count(*) filter (where s.secretary_type = 'other') as secretaries_other,
    coalesce(sum(s.part_time_members), 0) as part_time_committee_members,
    coalesce(sum(s.party_members), 0) as party_members_registered,
    count(*) filter (where s.property_party_branch) as property_company_party_branches,
    coalesce(sum(s.party_instructors), 0) as property_party_instructors,
    count(*) filter (where s.dual_model) as dual_model_compounds,
    count(*) filter (where s.self_funding) as self_funding_compounds,
    coalesce(sum(s.courtyards_merged), 0) as courtyards_merged,
    count(*) filter (where s.courtyards_merged > 0) as compounds_from_courtyards,
    coalesce(sum(s.micro_positions), 0) as micro_positions,
    coalesce(sum(s.in_service_members), 0) as in_service_members
from scopes as s
group by s.service_date, s.scope_level, s.scope_code
