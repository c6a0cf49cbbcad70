{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date',
          on_schema_change='fail') }}
-- District and street x service day: grid coverage (网格化管理) — the grids the compounds belong to, their
-- micro-grids and grid assistants — from the registry's SCD2 history as it stood that day (the registry's
-- optional columns 所属网格 / 微网格数 / 网格助理数, issue 23; a compound without a grid counts as outside one).
with scopes as (
    {{ registry_scopes() }}
)

select
    s.service_date,
    s.scope_level,
    s.scope_code,
    min(s.district_code) as district_code,
    count(*) as compounds,
    count(distinct s.grid_code) as grids,
    count(*) filter (where s.grid_code is not null) as compounds_in_grid,
    {{ safe_ratio('count(*) filter (where s.grid_code is not null)', 'count(*)') }} as grid_coverage_rate,
    coalesce(sum(s.micro_grids), 0) as micro_grids,
    coalesce(sum(s.grid_assistants), 0) as grid_assistants
from scopes as s
group by s.service_date, s.scope_level, s.scope_code
