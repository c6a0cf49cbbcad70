-- Idempotent bootstrap of the warehouse: roles, schemas, raw and audit tables, grants.
-- Run by an administrator (the WAREHOUSE_URL user); everything after runs under the three roles.

do $$
begin
  if not exists (select from pg_roles where rolname = 'gov_loader') then
    create role gov_loader login;
  end if;
  if not exists (select from pg_roles where rolname = 'gov_transformer') then
    create role gov_transformer login;
  end if;
  if not exists (select from pg_roles where rolname = 'gov_bi_reader') then
    create role gov_bi_reader login;
  end if;
end $$;

create schema if not exists raw authorization gov_loader;
create schema if not exists audit authorization gov_loader;
create schema if not exists staging authorization gov_transformer;
create schema if not exists intermediate authorization gov_transformer;
create schema if not exists snapshots authorization gov_transformer;
create schema if not exists marts authorization gov_transformer;
-- dbt builds here; `marts` receives a night only after its checks pass (write-audit-publish)
create schema if not exists marts_candidate authorization gov_transformer;
create schema if not exists seeds authorization gov_transformer;

-- BI sees marts and nothing else; the transformer reads what the loader wrote.
revoke all on schema public from public;
grant usage on schema public to gov_loader, gov_transformer;
grant create on database current_database_placeholder to gov_transformer;
-- No JIT compilation: a night's queries reach the canteen table's day partitions through correlated
-- subqueries (pruned at run time, a few milliseconds each), but the planner costs them as scans of every
-- partition, so JIT would compile one scan per partition first: 15-20 s per query on a year of history.
alter database current_database_placeholder set jit = off;
grant usage on schema raw, audit to gov_transformer;
grant usage on schema marts to gov_bi_reader;

set role gov_loader;

create table if not exists audit.load_ledger (
  load_id         bigserial primary key,
  source          text not null check (source in ('streets', 'canteens', 'assistance')),
  reporter_code   text,
  service_date    date,
  file_path       text not null,
  content_sha256  text,
  file_bytes      bigint,
  rows_read       integer not null default 0,
  rows_loaded     integer not null default 0,
  rows_rejected   integer not null default 0,
  status          text not null check (status in ('loading', 'loaded', 'skipped_duplicate', 'replaced', 'quarantined', 'failed')),
  error           text,
  replaced_by     bigint references audit.load_ledger (load_id),
  started_at      timestamptz not null default now(),
  finished_at     timestamptz,
  check (status not in ('loaded', 'replaced') or rows_read = rows_loaded + rows_rejected)
);
create index if not exists load_ledger_key on audit.load_ledger (source, reporter_code, service_date);
comment on table audit.load_ledger is 'One row per landed file and load attempt: hash, row accounting, status (loaded/skipped_duplicate/replaced/quarantined/failed).';

create table if not exists audit.rejected_rows (
  load_id      bigint not null references audit.load_ledger (load_id),
  row_number   integer,
  column_name  text,
  reason_code  text not null,
  message      text not null,
  raw_record   jsonb
);
create index if not exists rejected_rows_load on audit.rejected_rows (load_id);
comment on table audit.rejected_rows is 'Rows kept out of raw, with the reason; personal data already hashed.';

create table if not exists audit.dq_results (
  run_id            text not null,
  service_date      date,
  suite             text not null,
  expectation       text not null,
  column_name       text,
  severity          text not null check (severity in ('warn', 'fail')),
  success           boolean not null,
  observed_value    text,
  unexpected_count  bigint,
  details           jsonb,
  checked_at        timestamptz not null default now()
);
create index if not exists dq_results_day on audit.dq_results (service_date, suite);

create table if not exists audit.summary_sends (
  service_date   date not null,
  recipient_key  text not null,
  scope_level    text not null,
  scope_code     text not null,
  message_id     text not null,
  subject        text not null,
  sent_at        timestamptz not null default now(),
  primary key (service_date, recipient_key)
);
comment on table audit.summary_sends is 'Send ledger of the morning summary: one message per recipient per service day.';

-- Raw feeds: typed, append-only, PII already hashed by the reader.
create table if not exists raw.streets_compounds (
  _load_id             bigint not null,
  _source_file         text not null,
  _row_number          integer not null,
  _service_date        date not null,
  compound_code        text,
  name                 text,
  community_code       text,
  households           integer,
  building_area_m2     numeric(12, 2),
  buildings            integer,
  property_mode        text,
  property_company     text,
  subsidy_start_month  date,
  party_org_type       text,
  party_org_since      date,
  owners_committee     text,
  building_heads       integer,
  unit_heads           integer,
  service_station      boolean
);
drop index if exists raw.streets_compounds_day, raw.streets_compounds_load;  -- one index per raw table: cheaper COPY
create index if not exists streets_compounds_day_load on raw.streets_compounds (_service_date, _load_id);

-- A raw table partitioned by service day (the canteen feed: tens of thousands of rows a night, millions
-- a year) gets one partition per day and no index at all: a night's queries and a revised file's delete
-- read the day's partition only, and a COPY pays for no index entry per row. Partitions are made by
-- raw.ensure_day_partition before a file's load, in their own short transaction.
create or replace function raw.ensure_day_partition(parent regclass, day date) returns regclass
language plpgsql as $$
declare
  child text;
begin
  select format('%I.%I', n.nspname, c.relname || '_' || to_char(day, 'YYYYMMDD')) into child
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = parent;
  if to_regclass(child) is null then
    -- concurrent loads of a new day take turns (the lock conflicts with itself, not with COPY or
    -- readers); taking it reads the catalog afresh, so the second finds the first one's partition
    execute format('lock table %s in share update exclusive mode', parent);
  end if;
  if to_regclass(child) is null then
    -- created, then attached: ATTACH takes a SHARE UPDATE EXCLUSIVE lock on the parent, which neither
    -- a concurrent COPY nor a reader blocks (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE)
    execute format('create table %s (like %s including defaults including constraints)', child, parent);
    -- the only value the partition can hold: a load's COPY leaves the column out, and the server then
    -- parses no date per row
    execute format('alter table %s alter column _service_date set default %L', child, day);
    execute format('alter table %s attach partition %s for values from (%L) to (%L)', parent, child, day, day + 1);
  end if;
  return child::regclass;
end $$;

-- Warehouses bootstrapped before the canteen feed was partitioned: move its rows, day by day.
do $$
begin
  if (select c.relkind from pg_class c where c.oid = to_regclass('raw.canteens_meals')) = 'r' then
    alter table raw.canteens_meals rename to canteens_meals_unpartitioned;
    drop index if exists raw.canteens_meals_day_load;
  end if;
end $$;

create table if not exists raw.canteens_meals (
  _load_id           bigint not null,
  _source_file       text not null,
  _row_number        integer not null,
  _service_date      date not null,
  record_id          text,
  canteen_code       text,
  served_at          timestamptz,
  meal               text,
  diner_category     text,
  diner_card_hash    text,
  diner_card_masked  text,
  age                integer,
  price_yuan         numeric(10, 2),
  subsidy_yuan       numeric(10, 2),
  payment_method     text
) partition by range (_service_date);

do $$
declare
  day date;
begin
  if to_regclass('raw.canteens_meals_unpartitioned') is not null then
    for day in select distinct _service_date from raw.canteens_meals_unpartitioned loop
      perform raw.ensure_day_partition('raw.canteens_meals', day);
    end loop;
    alter table raw.canteens_meals_unpartitioned drop column if exists _reporter_code;  -- see below
    insert into raw.canteens_meals select * from raw.canteens_meals_unpartitioned;
    drop table raw.canteens_meals_unpartitioned;
  end if;
end $$;

create table if not exists raw.assistance_case_events (
  _load_id                bigint not null,
  _source_file            text not null,
  _row_number             integer not null,
  _service_date           date not null,
  service_request_id      text,
  point_code              text,
  event                   text,
  event_at                timestamptz,
  service_code            text,
  channel                 text,
  compound_code           text,
  handler                 text,
  agency_responsible      text,
  people_served           integer,
  satisfaction            integer,
  requester_name_hash     text,
  requester_phone_hash    text,
  requester_phone_masked  text,
  requester_id_hash       text,
  requester_id_valid      boolean,
  status_notes            text
);
drop index if exists raw.assistance_events_day, raw.assistance_events_load;  -- one index per raw table: cheaper COPY
create index if not exists assistance_events_day_load on raw.assistance_case_events (_service_date, _load_id);

-- Raw tables made before 2026-11-26 had a `_reporter_code` column: the ledger names each load's reporter
-- (`_load_id`), every row names its own (canteen_code, point_code, the compound code's street), and it
-- made each canteen row 15 bytes longer. Dropped once; a night's bootstrap takes no lock for it after that.
do $$
declare
  t regclass;
begin
  for t in select a.attrelid::regclass from pg_attribute a join pg_class c on c.oid = a.attrelid
           where a.attname = '_reporter_code' and not a.attisdropped and c.relispartition is false
             and a.attrelid in (to_regclass('raw.streets_compounds'), to_regclass('raw.canteens_meals'),
                                to_regclass('raw.assistance_case_events')) loop
    execute format('alter table %s drop column _reporter_code', t);
  end loop;
end $$;

grant select on all tables in schema raw to gov_transformer;
grant select on all tables in schema audit to gov_transformer;
alter default privileges for role gov_loader in schema raw grant select on tables to gov_transformer;
alter default privileges for role gov_loader in schema audit grant select on tables to gov_transformer;

reset role;
-- BI reads what the transformer publishes in marts, now and later.
alter default privileges for role gov_transformer in schema marts grant select on tables to gov_bi_reader;

set role gov_loader;
create table if not exists audit.publish_log (
  service_date  date not null,
  run_id        text not null,
  status        text not null check (status in ('published', 'blocked')),
  checks        integer not null default 0,
  failed        integer not null default 0,
  warnings      integer not null default 0,
  detail        jsonb,
  logged_at     timestamptz not null default now()
);
create index if not exists publish_log_day on audit.publish_log (service_date);
comment on table audit.publish_log is 'Write-audit-publish outcome of each build: published, or blocked by failing checks.';
grant select on audit.publish_log to gov_transformer;
reset role;

-- dbt assembles each case from its events: keep that lookup independent of history length
create index if not exists assistance_events_case on raw.assistance_case_events (service_request_id);
