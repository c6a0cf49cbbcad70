{#- Layers live in fixed schemas (staging, intermediate, marts): the contract BI tools rely on. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
