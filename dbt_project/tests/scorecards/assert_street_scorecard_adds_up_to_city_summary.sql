{#-
  The streets add up to the city (issue 22): for every day and city built (a province deployment has eleven),
  each count of mart_city_daily_summary equals the sum of its own street rows in mart_street_daily_scorecard, cases_escalated included (one
  definition: escalated that day). The city adds up int_assistance__street_day and
  int_canteens__street_day, the scorecard joins them to its street grid: a case or canteen of a street
  missing from the streets seed would show here. One row per day, city and measure that differs.
  (GX checks the same on the published night: expectations/suites.py CITY_TOTALS.)
-#}
with streets as (
    select
        service_date,
        {{ city_of('street_code') }} as city_code,
        sum(cases_received) as cases_received,
        sum(cases_resolved) as cases_resolved,
        sum(cases_escalated) as cases_escalated,
        sum(people_served) as people_served,
        sum(overnight_cohort) as overnight_cohort,
        sum(canteen_person_times) as canteen_person_times
    from {{ ref('mart_street_daily_scorecard') }}
    group by service_date, {{ city_of('street_code') }}
),

compared as (
    select c.service_date, c.city_code, m.measure, m.city, m.streets
    from {{ ref('mart_city_daily_summary') }} as c
    left join streets as s using (service_date, city_code)
    cross join lateral (values
        ('cases_received', c.cases_received, s.cases_received),
        ('cases_resolved', c.cases_resolved, s.cases_resolved),
        ('cases_escalated', c.cases_escalated, s.cases_escalated),
        ('people_served', c.people_served, s.people_served),
        ('overnight_cohort', c.overnight_cohort, s.overnight_cohort),
        ('canteen_person_times', c.canteen_person_times, s.canteen_person_times)
    ) as m (measure, city, streets)
)

select service_date, city_code, measure, city, streets
from compared
where city is distinct from coalesce(streets, 0)
