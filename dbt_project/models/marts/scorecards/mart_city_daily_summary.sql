{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- One row per city x service day: the figures the city's morning email leads with. A city deployment has one
-- city (Taiyuan, 140100); a province deployment (GOV_SCOPE=shanxi) one per city of its districts seed, each
-- summing its own districts and streets (city_of: a district code's first four digits and 00).
-- Overnight resolution is reported for the cohort received the day before: its window
-- (until 09:00 of the service day) has closed by the time the nightly run builds this row.
-- Nightly: the range's days and the days whose case figures its events change (days_to_build).
-- One piece per topic: registry figures from the coverage marts (the registry as it stood that day),
-- canteen and case figures added up from the streets (int_canteens__street_day,
-- int_assistance__street_day: the scorecard's own pieces, so street rows sum to the city's), and
-- distinct diners, which do not add up, from the meal records.
with days as (
    {{ days_to_build(ref('fct_assistance_case')) }}
),

cities as (
    -- the alias: a province deployment's reference() is a subquery
    select distinct {{ city_of('district_code') }} as city_code
    from {{ reference('districts') }} as d  -- noqa: AL05
),

registry as (
    select
        p.service_date,
        {{ city_of('p.scope_code') }} as city_code,
        sum(p.compounds) as compounds,
        sum(p.compounds_with_property_service) as compounds_with_property_service,
        sum(q.compounds_with_party_org) as compounds_with_party_org,
        sum(q.compounds_with_owners_committee) as compounds_with_owners_committee
    from {{ ref('mart_property_coverage') }} as p
    inner join {{ ref('mart_party_coverage') }} as q using (service_date, scope_level, scope_code)
    where p.scope_level = 'district' and p.service_date in (select service_date from days)
    group by p.service_date, {{ city_of('p.scope_code') }}
),

canteens as (
    select
        service_date,
        {{ city_of('district_code') }} as city_code,
        sum(person_times) as canteen_person_times,
        sum(canteens_reporting) as canteens_reporting,
        sum(subsidy_yuan) as canteen_subsidy_yuan
    from {{ ref('int_canteens__street_day') }}
    where service_date in (select service_date from days)
    group by service_date, {{ city_of('district_code') }}
),

diners as materialized (
    -- distinct diners city-wide (a card may eat at several canteens, so streets do not add up): read per
    -- day from the records, one day's canteen partition each (pruned at run time); materialized, so that
    -- the join below cannot evaluate the per-day count once per pair of days
    select
        d.service_date,
        n.city_code,
        n.canteen_distinct_diners
    from days as d
    cross join lateral (
        select {{ city_of('m.district_code') }} as city_code, count(distinct m.diner_card_hash) as canteen_distinct_diners
        from {{ ref('stg_canteens__meals') }} as m
        where m.service_date = d.service_date and {{ canteen_meal_counts('m') }}
        group by {{ city_of('m.district_code') }}
    ) as n
),

assistance as (
    -- the streets' case figures added up (int_assistance__street_day: each case on the day of its stage)
    select
        service_date,
        {{ city_of('street_code') }} as city_code,
        sum(cases_received) as cases_received,
        sum(cases_resolved) as cases_resolved,
        sum(cases_escalated) as cases_escalated,
        sum(people_served) as people_served,
        sum(overnight_cohort) as overnight_cohort,
        sum(overnight_resolved) as overnight_resolved
    from {{ ref('int_assistance__street_day') }}
    where service_date in (select service_date from days)
    group by service_date, {{ city_of('street_code') }}
)

select
    d.service_date,
    ct.city_code,
    coalesce(r.compounds, 0)::bigint as compounds,
    coalesce(r.compounds_with_property_service, 0)::bigint as compounds_with_property_service,
    {{ safe_ratio('r.compounds_with_property_service', 'r.compounds') }} as property_coverage_rate,
    {{ safe_ratio('r.compounds_with_party_org', 'r.compounds') }} as party_org_coverage_rate,
    {{ safe_ratio('r.compounds_with_owners_committee', 'r.compounds') }} as owners_committee_coverage_rate,
    coalesce(c.canteen_person_times, 0)::bigint as canteen_person_times,
    coalesce(dn.canteen_distinct_diners, 0)::bigint as canteen_distinct_diners,
    coalesce(c.canteens_reporting, 0)::bigint as canteens_reporting,
    coalesce(c.canteen_subsidy_yuan, 0)::numeric(14, 2) as canteen_subsidy_yuan,
    coalesce(a.cases_received, 0)::bigint as cases_received,
    coalesce(a.cases_resolved, 0)::bigint as cases_resolved,
    coalesce(a.cases_escalated, 0)::bigint as cases_escalated,
    coalesce(a.people_served, 0)::bigint as people_served,
    coalesce(a.overnight_cohort, 0)::bigint as overnight_cohort,
    {{ safe_ratio('a.overnight_resolved', 'a.overnight_cohort') }} as overnight_resolution_rate,
    coalesce(r.compounds_with_party_org, 0)::bigint as compounds_with_party_org,
    coalesce(r.compounds_with_owners_committee, 0)::bigint as compounds_with_owners_committee
from days as d
cross join cities as ct
left join registry as r on r.service_date = d.service_date and r.city_code = ct.city_code
left join canteens as c on c.service_date = d.service_date and c.city_code = ct.city_code
left join diners as dn on dn.service_date = d.service_date and dn.city_code = ct.city_code
left join assistance as a on a.service_date = d.service_date and a.city_code = ct.city_code
