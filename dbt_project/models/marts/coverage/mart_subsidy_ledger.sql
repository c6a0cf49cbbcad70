-- Compound x subsidy month, for every compound with a subsidy transition (财政补贴过渡): the
-- transition is paid 0.5 yuan per m2 of building area per month for its first 6 months, from
-- subsidy_start_month. As of the night being built: which months are due, how many are left,
-- which transitions end within 30 days, and which have ended with the compound on market service.
with as_of as (
    {% if var('service_date', none) is not none -%}
    select {{ service_date_literal() }} as as_of_date
    {%- else -%}
    select max(service_date) as as_of_date from {{ ref('stg_streets__compounds') }}
    {%- endif %}
),

transitions as (
    select
        compound_code, street_code, district_code, building_area_m2, subsidy_start_month, property_mode,
        (subsidy_start_month + make_interval(months => {{ var('subsidy_months') }}))::date - 1 as transition_end_date
    from {{ ref('dim_compound') }}
    where subsidy_start_month is not null
)

select
    t.compound_code,
    m.month_number,
    (t.subsidy_start_month + make_interval(months => m.month_number - 1))::date as subsidy_month,
    t.street_code,
    t.district_code,
    t.subsidy_start_month,
    t.transition_end_date,
    t.building_area_m2,
    {{ var('subsidy_yuan_per_m2_month') }}::numeric(6, 2) as subsidy_yuan_per_m2,
    round(t.building_area_m2 * {{ var('subsidy_yuan_per_m2_month') }}, 2)::numeric(14, 2) as subsidy_yuan,
    ({{ var('subsidy_months') }} - m.month_number)::integer as months_left,
    (t.subsidy_start_month + make_interval(months => m.month_number - 1))::date <= a.as_of_date as is_due,
    (t.transition_end_date >= a.as_of_date and t.transition_end_date < a.as_of_date + 30) as ends_within_30_days,
    t.transition_end_date < a.as_of_date as transition_ended,
    -- 过渡期满转市场化: the six months are over and the compound is on market property service now
    coalesce(t.transition_end_date < a.as_of_date and t.property_mode = 'market', false) as ended_to_market,
    a.as_of_date
from transitions as t
cross join generate_series(1, {{ var('subsidy_months') }}) as m (month_number)
cross join as_of as a
