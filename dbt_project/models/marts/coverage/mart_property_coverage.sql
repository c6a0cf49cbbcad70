{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- District and street x service day: property-service coverage, from the registry's SCD2 history
-- as it stood that day. Nightly: the range's days only.
with scopes as (
    {{ registry_scopes() }}
)

select
    s.service_date,
    s.scope_level,
    s.scope_code,
    min(s.district_code) as district_code,
    count(*) as compounds,
    count(distinct s.community_code) as communities,
    count(*) filter (where s.has_property_service) as compounds_with_property_service,
    count(*) filter (where s.property_mode = 'market') as compounds_market,
    count(*) filter (where s.property_mode = 'red_property') as compounds_red_property,
    count(*) filter (where s.property_mode = 'unit_assisted') as compounds_unit_assisted,
    count(*) filter (where s.property_mode = 'subsidy_transition') as compounds_subsidy_transition,
    count(*) filter (where s.property_mode = 'community_fallback') as compounds_community_fallback,
    count(*) filter (where s.property_mode = 'self_managed') as compounds_self_managed,
    count(*) filter (where s.property_mode = 'none') as compounds_without_property_service,
    {{ safe_ratio('count(*) filter (where s.has_property_service)', 'count(*)') }} as property_coverage_rate,
    count(*) filter (where s.without_property_before_programme) as compounds_without_property_before_programme,
    count(*) filter (where s.programme_measure = 'red_property') as measure_red_property,
    count(*) filter (where s.programme_measure = 'unit_assisted') as measure_unit_assisted,
    count(*) filter (where s.programme_measure = 'subsidy_transition') as measure_subsidy_transition,
    count(*) filter (where s.programme_measure = 'community_fallback') as measure_community_fallback,
    count(*) filter (where s.programme_measure = 'awaiting') as measure_awaiting
from scopes as s
group by s.service_date, s.scope_level, s.scope_code
