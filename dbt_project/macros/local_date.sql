{#- The Asia/Shanghai calendar day of a timestamptz: every business date in the project. -#}
{% macro local_date(ts) -%}
    (({{ ts }}) at time zone 'Asia/Shanghai')::date
{%- endmacro %}

{#- A rate rounded to 4 places, null when the denominator is 0. Typed numeric(6, 4) as a whole (a bare
    case loses the type modifier), so incremental models compare equal to their contract. -#}
{% macro safe_ratio(numerator, denominator) -%}
    (case when ({{ denominator }}) > 0 then round(({{ numerator }})::numeric / ({{ denominator }}), 4) end)::numeric(6, 4)
{%- endmacro %}
