{#- The Asia/Shanghai calendar day of a timestamptz: every business date in the project. -#}
{% macro local_date(ts) -%}
    (({{ ts }}) at time zone 'Asia/Shanghai')::date
{%- endmacro %}

{% macro safe_ratio(numerator, denominator) -%}
    case when ({{ denominator }}) > 0 then round(({{ numerator }})::numeric / ({{ denominator }}), 4)::numeric(6, 4) end
{%- endmacro %}
