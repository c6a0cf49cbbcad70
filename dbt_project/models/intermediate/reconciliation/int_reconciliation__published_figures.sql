{{ config(materialized='view') }}
-- Published figure vs warehouse figure, for every figure of seeds/published_figures.csv the data can
-- express (DESIGN.md section 9). Registry figures are read on the latest day built and hold on any
-- night; the programme totals (53,169 matters, 115,531 person-times) count the cases received in the
-- programme period 2023-01-01..2023-10-31 (fct_assistance_case), so they match only once that whole
-- period is loaded (needs_programme_period). Approx figures match within 5 %.
-- `gov-warehouse reconcile` (make reconcile) loads a period, builds, prints this view and fails
-- on any row with matches = false.
-- The published figures are Taiyuan's (140100): every city-wide figure counts Taiyuan's districts only, so a
-- province deployment (GOV_SCOPE=shanxi, the other cities' rows beside Taiyuan's) reconciles as Taiyuan's does.
{%- set taiyuan = "'140100'" %}
with latest as (
    select max(service_date) as service_date from {{ ref('mart_property_coverage') }}
),

district as (
    select p.scope_code, p.compounds, p.communities, p.compounds_without_property_before_programme,
        p.measure_red_property, p.measure_unit_assisted, p.measure_subsidy_transition, p.measure_awaiting,
        p.measure_community_fallback, q.compounds_with_party_org, q.party_branches, q.party_groups,
        q.building_heads, q.unit_heads, q.service_stations, q.compounds_with_owners_committee
    from {{ ref('mart_property_coverage') }} as p
    inner join {{ ref('mart_party_coverage') }} as q using (service_date, scope_level, scope_code)
    inner join latest as l on l.service_date = p.service_date
    where p.scope_level = 'district'
),

-- the registry's optional columns (issue 23): party organisation and grid measures, district and street rows
party as (
    select o.*, g.grids, g.micro_grids, g.grid_assistants
    from {{ ref('mart_party_organisation') }} as o
    inner join {{ ref('mart_grid_coverage') }} as g using (service_date, scope_level, scope_code)
    inner join latest as l on l.service_date = o.service_date
),

-- the published streets, by the key seed-facts.yaml gives them (warehouse/reference.py: 迎泽区' streets 1-3)
street_keys (street_key, street_code) as (
    values ('liuxiang', '140106001'), ('wenmiao', '140106002'), ('miaoqian', '140106003')
),

-- 迎泽区' hot and urgent issues solved over the programme period, and the party organisations solving them
issues as (
    select c.district_code,
        count(*) filter (where c.issue_flag = 'hot') as hot_solved,
        count(*) filter (where c.issue_flag = 'urgent') as urgent_solved,
        count(distinct c.party_org_code) as party_orgs
    from {{ ref('fct_assistance_case') }} as c
    where c.received_date between date '2023-01-01' and date '2023-10-31'
        and c.resolved_at is not null and c.issue_flag is not null
    group by c.district_code
),

warehouse as (
    select d.scope_code, f.figure_key, f.value
    from district as d
    cross join lateral (values
        ('compounds', d.compounds::numeric),
        ('communities', d.communities),
        ('compounds_per_community_avg', round(d.compounds::numeric / nullif(d.communities, 0))),
        ('compounds_without_property_service_before', d.compounds_without_property_before_programme),
        ('four_measures.red_property', d.measure_red_property),
        ('four_measures.unit_assisted', d.measure_unit_assisted),
        ('four_measures.subsidy_transition', d.measure_subsidy_transition + d.measure_awaiting),
        ('four_measures.community_fallback', d.measure_community_fallback),
        ('compounds_with_party_org', d.compounds_with_party_org),
        ('party_branches_compound_or_grid', d.party_branches),
        ('party_groups', d.party_groups),
        ('building_heads', d.building_heads),
        ('unit_heads', d.unit_heads),
        ('party_service_stations', d.service_stations)
    ) as f (figure_key, value)
    union all
    select d.scope_code, f.figure_key, f.value
    from party as d
    cross join lateral (values
        ('micro_grids', d.micro_grids::numeric),
        ('grid_assistants', d.grid_assistants),
        ('xinyuan_model_replicated_to', d.dual_model_compounds),
        ('party_org_grid_alignment_rate', round(d.party_org_grid_alignment_rate, 2)),
        ('party_positions', d.party_positions),
        ('party_members_registered', d.party_members_registered),
        ('secretaries_resident_members', d.secretaries_resident_members),
        ('secretaries_community_cadres', d.secretaries_community_cadres),
        ('part_time_committee_members', d.part_time_committee_members),
        ('property_party_instructors', d.property_party_instructors),
        ('property_company_party_branches', d.property_company_party_branches),
        ('self_funding_no_property_compounds', d.self_funding_compounds)
    ) as f (figure_key, value)
    where d.scope_level = 'district'
    union all
    select k.street_key, f.figure_key, f.value
    from party as d
    inner join street_keys as k on k.street_code = d.scope_code
    cross join lateral (values
        ('streets.miaoqian.courtyards_before', d.courtyards_merged::numeric),
        ('streets.miaoqian.compounds_after', d.compounds_from_courtyards),
        ('streets.liuxiang.micro_positions', d.micro_positions),
        ('streets.wenmiao.in_service_members', d.in_service_members)
    ) as f (figure_key, value)
    where d.scope_level = 'street'
    union all
    select i.district_code, f.figure_key, f.value
    from issues as i
    cross join lateral (values
        ('hot_issues_solved', i.hot_solved::numeric),
        ('urgent_issues_solved', i.urgent_solved),
        ('compound_party_orgs_solving_issues', i.party_orgs)
    ) as f (figure_key, value)
    union all
    -- a stock at the programme's end: the transitions over by 2023-10-31, every one now on market service
    select '140105', 'subsidy_transitions_ending_soon_all_marketised', count(distinct compound_code)
    from {{ ref('mart_subsidy_ledger') }}
    where district_code = '140105' and ended_to_market and transition_end_date < date '2023-10-31'
    union all
    -- beneficiaries over the programme period: distinct diner cards (keyed hashes) of the counted meals;
    -- distinct cards do not add up over mart_canteen_beneficiaries' months, so they are counted here
    select '140100', 'canteen_beneficiaries', count(distinct m.diner_card_hash)
    from {{ ref('stg_canteens__meals') }} as m
    where m.service_date between date '2023-01-01' and date '2023-10-31' and {{ canteen_meal_counts('m') }}
        and {{ city_of('m.district_code') }} = {{ taiyuan }}
    union all
    select '140100', 'owners_committee_coverage_rate',
        round(sum(compounds_with_owners_committee)::numeric / nullif(sum(compounds), 0), 2)
    from district
    where {{ city_of('scope_code') }} = {{ taiyuan }}
    union all
    select '140100', 'canteens_with_assistance_desk', count(distinct canteen_code)
    from {{ ref('fct_canteen_day') }}
    where {{ city_of('district_code') }} = {{ taiyuan }}
    union all
    select '140100', 'canteen_person_times_per_day', round(avg(person_times))
    from (
        select service_date, sum(person_times) as person_times from {{ ref('fct_canteen_day') }}
        where {{ city_of('district_code') }} = {{ taiyuan }} group by service_date
    ) as d
    union all
    -- points in operation: those whose nightly file arrived (an empty file means "no events today"),
    -- so the figure holds for any night, not only once every point has had a case
    select '140100', 'assistance_points', count(distinct reporter_code)
    from {{ ref('mart_source_freshness') }}
    where source = 'assistance' and received and {{ city_of('district_code') }} = {{ taiyuan }}
    union all
    select '140100', 'assistance_matters_handled', count(*)
    from {{ ref('fct_assistance_case') }}
    where received_date between date '2023-01-01' and date '2023-10-31' and {{ city_of('district_code') }} = {{ taiyuan }}
    union all
    select '140100', 'assistance_person_times', coalesce(sum(people_served), 0)
    from {{ ref('fct_assistance_case') }}
    where received_date between date '2023-01-01' and date '2023-10-31' and {{ city_of('district_code') }} = {{ taiyuan }}
    union all
    select '140105', 'subsidy_spent_yuan', coalesce(sum(subsidy_yuan), 0)
    from {{ ref('mart_subsidy_ledger') }}
    where district_code = '140105'
    union all
    select '140105', 'subsidy_yuan_per_m2_month', {{ var('subsidy_yuan_per_m2_month') }}
    union all
    select '140105', 'subsidy_months', {{ var('subsidy_months') }}
),

-- every figure computed above, listed once more so that a figure whose data is missing (a district
-- without registry rows, no canteen data) shows as warehouse null / matches false instead of vanishing
expressed (figure_key) as (
    values
        ('compounds'), ('communities'), ('compounds_per_community_avg'),
        ('compounds_without_property_service_before'), ('four_measures.red_property'),
        ('four_measures.unit_assisted'), ('four_measures.subsidy_transition'),
        ('four_measures.community_fallback'), ('compounds_with_party_org'),
        ('party_branches_compound_or_grid'), ('party_groups'), ('building_heads'), ('unit_heads'),
        ('party_service_stations'), ('owners_committee_coverage_rate'), ('canteens_with_assistance_desk'),
        ('canteen_person_times_per_day'), ('assistance_points'), ('assistance_matters_handled'),
        ('assistance_person_times'), ('subsidy_spent_yuan'), ('subsidy_yuan_per_m2_month'), ('subsidy_months'),
        ('micro_grids'), ('grid_assistants'), ('xinyuan_model_replicated_to'), ('party_org_grid_alignment_rate'),
        ('party_positions'), ('party_members_registered'), ('secretaries_resident_members'),
        ('secretaries_community_cadres'), ('part_time_committee_members'), ('property_party_instructors'),
        ('property_company_party_branches'), ('self_funding_no_property_compounds'),
        ('streets.miaoqian.courtyards_before'), ('streets.miaoqian.compounds_after'),
        ('streets.liuxiang.micro_positions'), ('streets.wenmiao.in_service_members'), ('hot_issues_solved'),
        ('urgent_issues_solved'), ('compound_party_orgs_solving_issues'),
        ('subsidy_transitions_ending_soon_all_marketised'), ('canteen_beneficiaries')
)

select
    p.figure_key,
    p.scope_level,
    p.scope_code,
    p.value as published,
    w.value as warehouse,
    p.approx,
    case
        when w.value is null then false
        when p.approx then abs(w.value - p.value) <= 0.05 * p.value
        else w.value = p.value
    end as matches,
    -- cumulative figures: the cases received over the programme period (matters, person-times, hot and
    -- urgent issues and the party organisations solving them), the diner cards seen over it, and the
    -- subsidy of all 150 transitions (the last of them start in October 2023), the transitions over by its end
    p.figure_key in ('assistance_matters_handled', 'assistance_person_times', 'subsidy_spent_yuan',
        'hot_issues_solved', 'urgent_issues_solved', 'compound_party_orgs_solving_issues', 'canteen_beneficiaries',
        'subsidy_transitions_ending_soon_all_marketised')
        as needs_programme_period,
    (select service_date from latest) as registry_as_of
from {{ ref('published_figures') }} as p
inner join expressed using (figure_key)  -- only the figures the data can express
left join warehouse as w using (figure_key, scope_code)
