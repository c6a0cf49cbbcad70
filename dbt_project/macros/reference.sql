{#- A reference seed in force: the committed seed (Taiyuan's), and in a province deployment (GOV_SCOPE=shanxi,
    warehouse/settings.py scope) the ten other cities' rows beside it (seeds/province/province_<name>.csv), the
    same union the loader, the checks and the emails read (warehouse.reference.seed_rows). A subquery in the
    province: give it an alias where it is used. -#}
{% macro reference(name) -%}
{#- a unit test's hand-worked inputs stand for the reference data: the committed seed's ref alone there -#}
{%- if env_var('GOV_SCOPE', 'taiyuan') | trim | lower == 'shanxi' and model.resource_type != 'unit_test' -%}
(select * from {{ ref(name) }} union all select * from {{ ref('province_' ~ name) }})
{%- else -%}
{{ ref(name) }}
{%- endif -%}
{%- endmacro %}

{#- The prefecture-level city of a district code (GB/T 2260: its first four digits and 00; warehouse.reference
    city_of): the city grain of mart_city_daily_summary and of the city-wide figures. -#}
{% macro city_of(district_code) -%}
(left({{ district_code }}, 4) || '00')
{%- endmacro %}
