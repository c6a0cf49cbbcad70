{#-
  Publish O(night) (orchestration/publish.py). dbt's delete+insert deletes exactly the keys of the rows it
  inserts (those of its temporary relation), so those keys are what a night changed in an incremental
  mart. Each such merge into a candidate mart also records them in audit.mart_changes, in the model's own
  transaction (committed with its rows, or not at all), and makes sure the mart has an index on its key
  (dbt's own delete and the publish look the keys up: without it both scan the whole history).
  dbt finds this macro before its own (the root project comes first in the `dbt` namespace's dispatch).
-#}
{% macro postgres__get_incremental_delete_insert_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set unique_key = arg_dict["unique_key"] -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set merge = get_delete_insert_merge_sql(
        target, arg_dict["temp_relation"], unique_key, arg_dict["dest_columns"], arg_dict["incremental_predicates"]
    ) -%}
    {%- if target.schema != 'marts_candidate' -%}
        {% do return(merge) %}
    {%- endif -%}
    {% do return(merge ~ ";\n" ~ publish_key_index(target, keys) ~ ";\n"
        ~ record_mart_changes(target, arg_dict["temp_relation"], keys)) %}
{% endmacro %}

{% macro publish_key_index(target, keys) -%}
    create index if not exists {{ target.identifier }}__key on {{ target }} ({{ keys | join(', ') }})
{%- endmacro %}

{% macro record_mart_changes(target, source, keys) -%}
    insert into audit.mart_changes (model, key_columns, keys)
    select
        '{{ target.identifier }}',
        array[{% for k in keys %}'{{ k }}'{{ ', ' if not loop.last }}{% endfor %}]::text [],
        coalesce(jsonb_agg(distinct jsonb_build_object(
            {%- for k in keys %}'{{ k }}', {{ k }}{{ ', ' if not loop.last }}{% endfor -%}
        )), '[]'::jsonb)
    from {{ source }}
{%- endmacro %}
