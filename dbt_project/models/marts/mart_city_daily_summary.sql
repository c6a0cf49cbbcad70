-- One row per service day: the figures the morning email leads with.
-- Overnight resolution is reported for the cohort received the day before: its window
-- (until 09:00 of the service day) has closed by the time the nightly run builds this row.
with registry as (
    select
        service_date,
        count(*) as compounds,
        count(*) filter (where property_mode <> 'none') as compounds_with_property_service,
        count(*) filter (where party_org_type <> 'none') as compounds_with_party_org,
        count(*) filter (where owners_committee <> 'none') as compounds_with_owners_committee
    from {{ ref('stg_streets__compounds') }}
    group by service_date
),

canteens as (
    select
        service_date,
        count(*) as canteen_person_times,
        count(distinct diner_card_hash) as canteen_distinct_diners,
        count(distinct canteen_code) as canteens_reporting,
        sum(subsidy_yuan) as canteen_subsidy_yuan
    from {{ ref('stg_canteens__meals') }}
    group by service_date
),

cases as (
    select * from {{ ref('int_assistance__cases') }}
),

received as (
    select
        received_date as service_date,
        count(*) as cases_received,
        sum(people_served) as people_served,
        count(*) filter (where escalated) as cases_escalated
    from cases
    where received_date is not null
    group by received_date
),

resolved as (
    select resolved_date as service_date, count(*) as cases_resolved
    from cases
    where resolved_date is not null
    group by resolved_date
),

overnight as (
    select
        received_date + 1 as service_date,
        count(*) as overnight_cohort,
        count(*) filter (where resolved_overnight) as overnight_resolved
    from cases
    where received_date is not null
    group by received_date
),

days as (
    select service_date from registry
    union select service_date from canteens
    union select service_date from {{ ref('stg_assistance__case_events') }}
)

select
    d.service_date,
    coalesce(r.compounds, 0) as compounds,
    coalesce(r.compounds_with_property_service, 0) as compounds_with_property_service,
    {{ safe_ratio('r.compounds_with_property_service', 'r.compounds') }} as property_coverage_rate,
    {{ safe_ratio('r.compounds_with_party_org', 'r.compounds') }} as party_org_coverage_rate,
    {{ safe_ratio('r.compounds_with_owners_committee', 'r.compounds') }} as owners_committee_coverage_rate,
    coalesce(c.canteen_person_times, 0) as canteen_person_times,
    coalesce(c.canteen_distinct_diners, 0) as canteen_distinct_diners,
    coalesce(c.canteens_reporting, 0) as canteens_reporting,
    coalesce(c.canteen_subsidy_yuan, 0)::numeric(14, 2) as canteen_subsidy_yuan,
    coalesce(rc.cases_received, 0) as cases_received,
    coalesce(rs.cases_resolved, 0) as cases_resolved,
    coalesce(rc.cases_escalated, 0) as cases_escalated,
    coalesce(rc.people_served, 0) as people_served,
    coalesce(o.overnight_cohort, 0) as overnight_cohort,
    {{ safe_ratio('o.overnight_resolved', 'o.overnight_cohort') }} as overnight_resolution_rate
from days as d
left join registry as r using (service_date)
left join canteens as c using (service_date)
left join received as rc using (service_date)
left join resolved as rs using (service_date)
left join overnight as o using (service_date)
