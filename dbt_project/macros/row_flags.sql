{#-
  Row-level flags (the grain of the gate, docs/data-quality.md). A row that a GX check warns about
  (expectations/suites.py) stays in raw, staging and the facts, but is kept out of the KPIs it would
  distort: these conditions say which rows count. One bad row of one reporter never blocks the city's
  night, and never reaches its figures either. Street and city figures use the same conditions, so
  street totals still add up to the city's.
-#}

{#- A meal counts when it was served on its service day (not time travel), its amounts are not
    negative and its canteen is in the reference list (so its street is known). -#}
{% macro canteen_meal_counts(alias) -%}
    (coalesce({{ local_date(alias ~ '.served_at') }} = {{ alias }}.service_date, true)
     and coalesce({{ alias }}.price_yuan, 0) >= 0
     and coalesce({{ alias }}.subsidy_yuan, 0) >= 0
     and {{ alias }}.canteen_code in (select canteen_code from {{ reference('canteens') }} as ref_canteens))
{%- endmacro %}

{#- A case's stages are out of order: dispatched or resolved before it was received, resolved before
    it was dispatched, closed before it was resolved (expectations/suites.py CASE_OUT_OF_ORDER). -#}
{% macro case_out_of_order(alias) -%}
    coalesce({{ alias }}.dispatched_at < {{ alias }}.received_at
        or {{ alias }}.resolved_at < {{ alias }}.received_at
        or {{ alias }}.resolved_at < {{ alias }}.dispatched_at
        or {{ alias }}.closed_at < {{ alias }}.resolved_at, false)
{%- endmacro %}

{#- A case counts when its stages are in order and its point is in the reference list. -#}
{% macro case_counts(alias) -%}
    (not {{ case_out_of_order(alias) }}
     and {{ alias }}.point_code in (select point_code from {{ reference('assistance_points') }} as ref_points))
{%- endmacro %}
