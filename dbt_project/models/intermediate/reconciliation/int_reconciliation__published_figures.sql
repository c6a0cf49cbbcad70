{{ config(materialized='view') }}
-- Published figure vs warehouse figure, for every figure of seeds/published_figures.csv the data can
-- express (DESIGN.md section 9). Registry figures are read on the latest day built and hold on any
-- night; the programme totals (53,169 matters, 115,531 person-times) count the cases received in the
-- programme period 2023-01-01..2023-10-31 (fct_assistance_case), so they match only once that whole
-- period is loaded (needs_programme_period). Approx figures match within 5 %.
-- `gov-warehouse reconcile` (make reconcile) loads a period, builds, prints this view and fails
-- on any row with matches = false.
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
    select '140100', 'owners_committee_coverage_rate',
        round(sum(compounds_with_owners_committee)::numeric / nullif(sum(compounds), 0), 2)
    from district
    union all
    select '140100', 'canteens_with_assistance_desk', count(distinct canteen_code)
    from {{ ref('fct_canteen_day') }}
    union all
    select '140100', 'canteen_person_times_per_day', round(avg(person_times))
    from (select service_date, sum(person_times) as person_times from {{ ref('fct_canteen_day') }} group by 1) as d
    union all
    -- points in operation: those whose nightly file arrived (an empty file means "no events today"),
    -- so the figure holds for any night, not only once every point has had a case
    select '140100', 'assistance_points', count(distinct reporter_code)
    from {{ ref('mart_source_freshness') }}
    where source = 'assistance' and received
    union all
    select '140100', 'assistance_matters_handled', count(*)
    from {{ ref('fct_assistance_case') }}
    where received_date between date '2023-01-01' and date '2023-10-31'
    union all
    select '140100', 'assistance_person_times', coalesce(sum(people_served), 0)
    from {{ ref('fct_assistance_case') }}
    where received_date between date '2023-01-01' and date '2023-10-31'
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
        ('assistance_person_times'), ('subsidy_spent_yuan'), ('subsidy_yuan_per_m2_month'), ('subsidy_months')
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
    -- cumulative figures: the cases received over the programme period, and the subsidy of all 150
    -- transitions (the last of them start in October 2023)
    p.figure_key in ('assistance_matters_handled', 'assistance_person_times', 'subsidy_spent_yuan')
        as needs_programme_period,
    (select service_date from latest) as registry_as_of
from {{ ref('published_figures') }} as p
inner join expressed using (figure_key)  -- only the figures the data can express
left join warehouse as w using (figure_key, scope_code)
