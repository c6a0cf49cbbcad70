{#-
  Nightly incremental builds. A nightly run passes --vars '{service_date: YYYY-MM-DD}'; an incremental
  model then rebuilds only what that night's data can change, so a run's cost grows with the night,
  not with the history. Without the variable (or on --full-refresh) every model rebuilds everything.
-#}

{% macro nightly() -%}
    {{ return(is_incremental() and var('service_date', none) is not none) }}
{%- endmacro %}

{% macro service_date_literal() -%}
    '{{ var("service_date") }}'::date
{%- endmacro %}

{#- The cases with an event in tonight's load: every version loaded tonight, through the raw table's
    service-day index (stg_assistance__case_event_loads is a plain projection of it). A model calling
    this only on nightly runs declares the ref up front (`-- depends_on:`), as dbt parses the full branch. -#}
{% macro cases_touched_tonight() -%}
    {%- set loads = ref('stg_assistance__case_event_loads') -%}
    select distinct service_request_id from {{ loads }} where service_date = {{ service_date_literal() }}
{%- endmacro %}

{#-
  The days whose case figures tonight's load can change: the night itself, and the receipt day,
  the day after receipt (overnight cohort), the resolution, escalation and closing days of every
  case touched tonight; never a day after the night (no row before its night has run).
  `cases` is the case fact (a relation the model refs); full builds take every day with data.
-#}
{% macro days_to_build(cases) -%}
    {%- set registry = ref('stg_streets__compounds') -%}
    {%- set meals = ref('stg_canteens__meals') -%}
    {%- set events = ref('stg_assistance__case_events') -%}
    {%- set loads = ref('stg_assistance__case_event_loads') -%}  {#- read on nightly runs (cases_touched_tonight) -#}
    {%- if nightly() -%}
    select distinct day as service_date
    from (
        select {{ service_date_literal() }} as day
        union all
        select unnest(array[
            c.received_date, c.received_date + 1, c.resolved_date,
            {{ local_date('c.escalated_at') }}, {{ local_date('c.closed_at') }}
        ])
        from {{ cases }} as c
        where c.service_request_id = any (array({{ cases_touched_tonight() }}))
    ) as touched
    where day is not null and day <= {{ service_date_literal() }}
    {%- else -%}
    select service_date from {{ registry }}
    union select service_date from {{ meals }}
    union select service_date from {{ events }}
    {%- endif -%}
{%- endmacro %}

{#- Registry days: tonight only, or every night loaded. -#}
{% macro registry_days_to_build() -%}
    {%- set registry = ref('stg_streets__compounds') -%}
    {%- if nightly() -%}
    select {{ service_date_literal() }} as service_date
    {%- else -%}
    select distinct service_date from {{ registry }}
    {%- endif -%}
{%- endmacro %}

{#- The compound registry as it stood on each day of `days` (a subquery with service_date), from the SCD2 snapshot. -#}
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
