{#-
  Nightly incremental builds. A nightly run passes --vars '{service_date: YYYY-MM-DD}'; an incremental
  model then rebuilds only what that night's data can change, so a run's cost grows with the night,
  not with the history. A run covering several pending nights (a backfill, a week of late files) passes
  the range's first day too, --vars '{service_date_from: D1, service_date: DN}': one build then rebuilds
  exactly what the nights D1..DN can change, and ends as N nightly builds of D1..DN in order would
  (tests/dbt/test_dbt_day_range.py). Without service_date (or on --full-refresh) every model rebuilds
  everything.
-#}

{% macro nightly() -%}
    {%- if var('service_date', none) is none and var('service_date_from', none) is not none -%}
        {{ exceptions.raise_compiler_error("service_date_from needs service_date, the range's last day") }}
    {%- endif -%}
    {{ return(is_incremental() and var('service_date', none) is not none) }}
{%- endmacro %}

{#- The range's first day as text: service_date_from, else service_date (one night). -#}
{% macro first_service_date() -%}
    {%- set first = var('service_date_from', none) -%}
    {%- set last = var('service_date') -%}
    {%- if first is none or first == '' -%}
        {{ return(last | string) }}
    {%- endif -%}
    {%- if (first | string) > (last | string) -%}
        {{ exceptions.raise_compiler_error("service_date_from " ~ first ~ " is after service_date " ~ last) }}
    {%- endif -%}
    {{ return(first | string) }}
{%- endmacro %}

{#- The range's last day (the night itself on a one-night run). -#}
{% macro service_date_literal() -%}
    '{{ var("service_date") }}'::date
{%- endmacro %}

{#- The range's first day (= service_date_literal on a one-night run). -#}
{% macro service_date_from_literal() -%}
    '{{ first_service_date() }}'::date
{%- endmacro %}

{#- A SQL condition: `column` is a day of the range (on one night: `column = the night`, as before). -#}
{% macro in_service_range(column) -%}
    {%- if first_service_date() == (var('service_date') | string) -%}
    {{ column }} = {{ service_date_literal() }}
    {%- else -%}
    {{ column }} between {{ service_date_from_literal() }} and {{ service_date_literal() }}
    {%- endif -%}
{%- endmacro %}

{#- The range's days, one row each (column service_date). -#}
{% macro service_range_days() -%}
    select {{ service_date_from_literal() }} + i as service_date
    from generate_series(0, {{ service_date_literal() }} - {{ service_date_from_literal() }}) as i
{%- endmacro %}

{#- The cases with an event in the load of a night of the range: every version loaded for those nights,
    through the raw table's service-day index (stg_assistance__case_event_loads is a plain projection of
    it). A model calling this only on nightly runs declares the ref up front (`-- depends_on:`), as dbt
    parses the full branch. -#}
{% macro cases_touched_in_range() -%}
    {%- set loads = ref('stg_assistance__case_event_loads') -%}
    select distinct service_request_id from {{ loads }} where {{ in_service_range('service_date') }}
{%- endmacro %}

{#-
  The days whose case figures the range's loads can change: the range's days, and the receipt day,
  the day after receipt (overnight cohort), the resolution, escalation and closing days of every
  case touched by a load of the range; never a day after the range (no row before its night has run).
  `cases` is the case fact (a relation the model refs); full builds take every day with data.
-#}
{% macro days_to_build(cases) -%}
    {%- set registry = ref('stg_streets__compounds') -%}
    {%- set meals = ref('stg_canteens__meals') -%}
    {%- set events = ref('stg_assistance__case_events') -%}
    {%- set loads = ref('stg_assistance__case_event_loads') -%}  {#- read on nightly runs (cases_touched_in_range) -#}
    {%- if nightly() -%}
    select distinct day as service_date
    from (
        select service_date as day from ({{ service_range_days() }}) as r
        union all
        select unnest(array[
            c.received_date, c.received_date + 1, c.resolved_date,
            {{ local_date('c.escalated_at') }}, {{ local_date('c.closed_at') }}
        ])
        from {{ cases }} as c
        where c.service_request_id = any (array({{ cases_touched_in_range() }}))
    ) as touched
    where day is not null and day <= {{ service_date_literal() }}
    {%- else -%}
    select service_date from {{ registry }}
    union select service_date from {{ meals }}
    union select service_date from {{ events }}
    {%- endif -%}
{%- endmacro %}

{#- Registry days: the range's days (a night without a registry file keeps the registry it had), or
    every night loaded. -#}
{% macro registry_days_to_build() -%}
    {%- set registry = ref('stg_streets__compounds') -%}
    {%- if nightly() -%}
    {{ service_range_days() }}
    {%- else -%}
    select distinct service_date from {{ registry }}
    {%- endif -%}
{%- endmacro %}

{#- The compound registry as it stood on each day of `days` (a subquery with service_date), from its SCD2 history. -#}
{% macro registry_as_of(days) -%}
    select d.service_date, s.*
    from ({{ days }}) as d
    inner join {{ ref('snap_compound_registry') }} as s
        on s.dbt_valid_from <= d.service_date::timestamp
        and (s.dbt_valid_to is null or s.dbt_valid_to > d.service_date::timestamp)
{%- endmacro %}


{#- The registry of the days to build, each compound twice: once under its district, once under its street. -#}
{% macro registry_scopes() -%}
    select sc.scope_level, sc.scope_code, r.*
    from ({{ registry_as_of(registry_days_to_build()) }}) as r
    cross join lateral (values ('district', r.district_code), ('street', r.street_code)) as sc (scope_level, scope_code)
{%- endmacro %}
