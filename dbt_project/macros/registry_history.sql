{#-
  The pre-hook of snap_compound_registry (run in the model's transaction, before its query): on an
  incremental run, the versions starting on or after the range's first day are deleted, so the query
  recomputes them from the version open on that day (a version a revised night no longer has goes with
  them); on an incremental run without service_date, every version (the query computes them all).
  A first build or --full-refresh creates the table and deletes nothing.
-#}
{% macro reopen_registry_history() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    {%- if nightly() %} where dbt_valid_from >= {{ service_date_from_literal() }}::timestamp{% endif %}
    {%- endif -%}
{%- endmacro %}
