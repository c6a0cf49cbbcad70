-- Idempotent bootstrap of the warehouse: roles, schemas, raw and audit tables, grants.
-- Run by an administrator (the WAREHOUSE_URL user, a superuser); no nightly step logs in as it. Each
-- step logs in as its own role (docs/security.md has the table of who may do what):
--   gov_loader       writes raw and audit.load_ledger / audit.rejected_rows
--   gov_transformer  reads raw and audit, builds the dbt schemas (staging ... marts_candidate, seeds)
--   gov_checker      reads raw, audit and the candidate marts, writes audit.dq_results (GX)
--   gov_publisher    reads the candidate marts, writes marts and audit.publish_log
--   gov_reporter     reads marts (as a member of gov_bi_reader), seeds and audit, writes audit.summary_sends, audit.notice_sends
--   gov_bi_reader    reads marts, nothing else (BI tools)
-- raw and audit belong to gov_owner, a role nobody logs in as: no step can drop, alter or grant them.

do $$
declare
  r text;
begin
  if not exists (select from pg_roles where rolname = 'gov_owner') then
    create role gov_owner nologin;
  end if;
  foreach r in array array['gov_loader', 'gov_transformer', 'gov_checker', 'gov_publisher', 'gov_reporter',
                           'gov_bi_reader'] loop
    if not exists (select from pg_roles where rolname = r) then
      execute format('create role %I login', r);
    end if;
  end loop;
  -- roles made elsewhere or by hand keep no power beyond their grants (altered only when they differ:
  -- roles are cluster-wide, and an ALTER ROLE each night would rewrite the shared catalog for nothing)
  foreach r in array array['gov_owner', 'gov_loader', 'gov_transformer', 'gov_checker', 'gov_publisher',
                           'gov_reporter', 'gov_bi_reader'] loop
    if exists (select from pg_roles where rolname = r and (rolsuper or rolcreatedb or rolcreaterole
               or rolreplication or rolbypassrls or rolcanlogin <> (r <> 'gov_owner'))) then
      execute format('alter role %I %s nosuperuser nocreatedb nocreaterole noreplication nobypassrls',
                     r, case when r = 'gov_owner' then 'nologin' else 'login' end);
    end if;
  end loop;
  -- no role is a member of another (so none inherits the owner's rights), but for the one membership
  -- wanted: the reporter reads marts as gov_bi_reader does, whatever schema a publish swaps in
  for r in select format('revoke %I from %I', g.rolname, m.rolname)
           from pg_auth_members a join pg_roles g on g.oid = a.roleid join pg_roles m on m.oid = a.member
           where m.rolname like 'gov\_%' and g.rolname like 'gov\_%'
             and (g.rolname, m.rolname) <> ('gov_bi_reader', 'gov_reporter') loop
    execute r;
  end loop;
  if not pg_has_role('gov_reporter', 'gov_bi_reader', 'member') then
    grant gov_bi_reader to gov_reporter;
  end if;
end $$;

create schema if not exists raw authorization gov_owner;
create schema if not exists audit authorization gov_owner;
create schema if not exists staging authorization gov_transformer;
create schema if not exists intermediate authorization gov_transformer;
create schema if not exists snapshots authorization gov_transformer;
-- the publisher swaps in each night's marts (orchestration/publish.py)
create schema if not exists marts authorization gov_publisher;
-- dbt builds here; `marts` receives a night only after its checks pass (write-audit-publish)
create schema if not exists marts_candidate authorization gov_transformer;
create schema if not exists seeds authorization gov_transformer;

-- Warehouses bootstrapped before 2026-12-01: raw and audit (schemas, tables, sequences, the partition
-- function) were gov_loader's and marts gov_transformer's. Moved once; a night's bootstrap takes no lock.
do $$
declare
  t regclass;
begin
  if exists (select from pg_namespace where nspname in ('raw', 'audit') and nspowner <> 'gov_owner'::regrole)
     or exists (select from pg_class where relowner = 'gov_loader'::regrole)
     or exists (select from pg_proc where proowner = 'gov_loader'::regrole) then
    alter schema raw owner to gov_owner;
    alter schema audit owner to gov_owner;
    reassign owned by gov_loader to gov_owner;
  end if;
  if (select nspowner from pg_namespace where nspname = 'marts') <> 'gov_publisher'::regrole then
    alter schema marts owner to gov_publisher;
  end if;
  for t in select c.oid::regclass from pg_class c where c.relnamespace = 'marts'::regnamespace
           and c.relkind in ('r', 'p', 'v') and c.relowner <> 'gov_publisher'::regrole loop
    execute format('alter table %s owner to gov_publisher', t);
  end loop;
end $$;

-- Nobody but these roles connects; only dbt (incremental merges stage rows in temporary tables) may
-- make temporary objects; only dbt and the publisher (who swaps schemas) may make schemas.
revoke all on database current_database_placeholder from public;
grant connect on database current_database_placeholder
  to gov_loader, gov_transformer, gov_checker, gov_publisher, gov_reporter, gov_bi_reader;
grant temporary on database current_database_placeholder to gov_transformer;
grant create on database current_database_placeholder to gov_transformer, gov_publisher;
-- No function of any step's making: the trusted languages are the administrator's only (the partition
-- function below is made by the bootstrap), so no role can plant a security-definer function.
revoke usage on language sql, plpgsql from public;
grant usage on language plpgsql to gov_owner;  -- the bootstrap's own DO blocks and partition function
revoke all on schema public from public;
grant usage on schema public to gov_loader, gov_transformer;
-- No JIT compilation: a night's queries reach the canteen table's day partitions through correlated
-- subqueries (pruned at run time, a few milliseconds each), but the planner costs them as scans of every
-- partition, so JIT would compile one scan per partition first: 15-20 s per query on a year of history.
alter database current_database_placeholder set jit = off;
grant usage on schema raw to gov_loader, gov_transformer, gov_checker;
grant usage on schema audit to gov_loader, gov_transformer, gov_checker, gov_publisher, gov_reporter;
grant usage on schema marts_candidate to gov_checker, gov_publisher;
grant usage on schema marts to gov_bi_reader, gov_checker;
grant usage on schema seeds to gov_reporter;

set role gov_owner;

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
  status          text not null constraint load_ledger_status_check check (status in ('loading', 'loaded',
                    'skipped_duplicate', 'replaced', 'held', 'released', 'rejected', 'quarantined', 'failed')),
  error           text,
  replaced_by     bigint references audit.load_ledger (load_id),
  started_at      timestamptz not null default now(),
  finished_at     timestamptz,
  decided_by      text,         -- a held file's release or rejection (gov-warehouse release / reject):
  decided_at      timestamptz,  -- who, when
  decision_note   text,         -- and why
  notes           text,         -- what a loaded file held that is not data: sheets without the header, 合计 rows
  check (status not in ('loaded', 'replaced') or rows_read = rows_loaded + rows_rejected)
);
-- Ledgers made before held files existed: the decision columns and the wider status list, once (a night's
-- bootstrap takes no lock on the ledger after that).
do $$
begin
  if not exists (select from information_schema.columns
                 where table_schema = 'audit' and table_name = 'load_ledger' and column_name = 'decided_by') then
    alter table audit.load_ledger add column if not exists decided_by text,
      add column if not exists decided_at timestamptz, add column if not exists decision_note text;
    alter table audit.load_ledger drop constraint if exists load_ledger_status_check;
    alter table audit.load_ledger add constraint load_ledger_status_check check (status in ('loading', 'loaded',
      'skipped_duplicate', 'replaced', 'held', 'released', 'rejected', 'quarantined', 'failed'));
  end if;
  if not exists (select from information_schema.columns
                 where table_schema = 'audit' and table_name = 'load_ledger' and column_name = 'notes') then
    alter table audit.load_ledger add column if not exists notes text;
  end if;
end $$;
create index if not exists load_ledger_key on audit.load_ledger (source, reporter_code, service_date);
-- the publish side reads the loads finished since a day's last publish attempt (orchestration/steps.pending_days)
create index if not exists load_ledger_finished on audit.load_ledger (finished_at);
comment on table audit.load_ledger is 'One row per landed file and load attempt: hash, row accounting, status (loaded/skipped_duplicate/replaced/held/released/rejected/quarantined/failed); error: why a file was quarantined, held or failed; decided_by/decided_at/decision_note: the release or rejection of a held file; notes: what a loaded file held that is not data (sheets without the header, total rows).';

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

-- The send ledger (reports/send.py): a row is the claim, inserted before the message goes to the relay;
-- status claimed -> sent, or unconfirmed when a run died between the two (never re-sent automatically).
create table if not exists audit.summary_sends (
  service_date   date not null,
  recipient_key  text not null,
  scope_level    text not null,
  scope_code     text not null,
  message_id     text not null,
  subject        text not null,
  status         text not null default 'sent' check (status in ('claimed', 'sent', 'unconfirmed')),
  claimed_at     timestamptz not null default now(),
  sent_at        timestamptz,
  primary key (service_date, recipient_key)
);
-- Warehouses bootstrapped before the claim (2026-12-01) recorded only sent messages: their rows are
-- 'sent'. Changed once, checked in the catalog first so that a night's bootstrap takes no lock.
do $$
begin
  if not exists (select from pg_attribute where attrelid = 'audit.summary_sends'::regclass and attname = 'status'
                 and not attisdropped) then
    alter table audit.summary_sends
      add column status text not null default 'sent' check (status in ('claimed', 'sent', 'unconfirmed')),
      add column claimed_at timestamptz not null default now(),
      alter column sent_at drop not null,
      alter column sent_at drop default;
    update audit.summary_sends set claimed_at = sent_at;
  end if;
end $$;
comment on table audit.summary_sends is 'Send ledger of the morning summary: one message per recipient per service day, claimed before it is sent.';
comment on column audit.summary_sends.status is 'claimed: about to be / being sent; sent: the relay accepted it; unconfirmed: claimed, never confirmed (a run died): not re-sent automatically.';
-- the reporter confirms its claims (update) and withdraws one the relay refused outright (delete)
grant update (status, sent_at), delete on audit.summary_sends to gov_reporter;

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
-- the registry's optional columns (issue 23: grids, party organisation, property party work, local
-- arrangements; ingest/feeds.py STREETS), added in place to a table made before them
alter table raw.streets_compounds
  add column if not exists grid_code text, add column if not exists micro_grids integer,
  add column if not exists grid_assistants integer, add column if not exists party_org_on_grid boolean,
  add column if not exists party_positions integer, add column if not exists secretary_type text,
  add column if not exists part_time_members integer, add column if not exists party_members integer,
  add column if not exists property_party_branch boolean, add column if not exists party_instructors integer,
  add column if not exists dual_model boolean, add column if not exists self_funding boolean,
  add column if not exists courtyards_merged integer, add column if not exists micro_positions integer,
  add column if not exists in_service_members integer;
drop index if exists raw.streets_compounds_day, raw.streets_compounds_load;  -- one index per raw table: cheaper COPY
create index if not exists streets_compounds_day_load on raw.streets_compounds (_service_date, _load_id);

-- A raw table partitioned by service day (the canteen feed: tens of thousands of rows a night, millions
-- a year) gets one partition per day and no index at all: a night's queries and a revised file's delete
-- read the day's partition only, and a COPY pays for no index entry per row. Partitions are made by
-- raw.ensure_day_partition before a file's load, in their own short transaction.
-- It runs with its owner's rights (gov_owner, who owns the raw tables: ATTACH needs that), so the loader
-- can add a day without owning, and so being able to drop or grant, the feed's table.
create or replace function raw.ensure_day_partition(parent regclass, day date) returns regclass
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
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
-- optional (issue 23): a hot or urgent issue, and the compound whose party organisation handled it
alter table raw.assistance_case_events
  add column if not exists issue_flag text, add column if not exists party_org_code text;
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

reset role;

set role gov_owner;
create table if not exists audit.publish_log (
  service_date  date not null,
  run_id        text not null,
  status        text not null check (status in ('published', 'blocked', 'failed')),
  checks        integer not null default 0,
  failed        integer not null default 0,
  warnings      integer not null default 0,
  detail        jsonb,
  logged_at     timestamptz not null default now()
);
-- 'failed' (the publish could not take its locks in time) is newer than the table: widened once
do $$
begin
  if exists (select from pg_constraint where conrelid = 'audit.publish_log'::regclass
             and conname = 'publish_log_status_check' and pg_get_constraintdef(oid) not like '%failed%') then
    alter table audit.publish_log drop constraint publish_log_status_check,
      add constraint publish_log_status_check check (status in ('published', 'blocked', 'failed'));
  end if;
end $$;
create index if not exists publish_log_day on audit.publish_log (service_date);
comment on table audit.publish_log is 'Write-audit-publish outcome of each build: published, blocked by failing checks, or failed (could not take its locks in time).';
grant select on audit.publish_log to gov_transformer;
reset role;

-- Publish O(night) (orchestration/publish.py): the keys each dbt delete+insert rewrote in a candidate mart
-- (dbt_project/macros/publish_delta.sql, in the model's own transaction), and what each published mart
-- was last copied from (the candidate table's oid and the publish's snapshot): a publish moves the rows
-- of the keys recorded since, not whole tables.
set role gov_owner;
create table if not exists audit.mart_changes (
  model        text not null,
  key_columns  text[] not null,
  keys         jsonb not null,
  xact         xid8 not null default pg_current_xact_id(),
  recorded_at  timestamptz not null default now()
);
create index if not exists mart_changes_model_xact on audit.mart_changes (model, xact);
comment on table audit.mart_changes is 'Keys (unique_key values) each incremental dbt build of a candidate mart deleted and inserted, with its transaction: what the next publish moves.';
create table if not exists audit.publish_state (
  table_name     text primary key,
  candidate_oid  oid not null,
  snapshot       pg_snapshot not null,
  published_at   timestamptz not null default now()
);
comment on table audit.publish_state is 'Per published mart: the candidate table (oid) and the snapshot it was last published from.';
reset role;
grant insert on audit.mart_changes to gov_transformer;
grant delete on audit.mart_changes to gov_publisher;  -- delete: a publish prunes the changes it has covered
grant insert, update, delete on audit.publish_state to gov_publisher;

-- dbt assembles each case from its events: keep that lookup independent of history length
create index if not exists assistance_events_case on raw.assistance_case_events (service_request_id);

-- Grants: each step's role gets what its job needs (docs/security.md), on the tables there are now
-- and, by default privileges, on the ones made later (the day partitions, dbt's and the publisher's).
revoke execute on function raw.ensure_day_partition(regclass, date) from public;
grant execute on function raw.ensure_day_partition(regclass, date) to gov_loader;
-- delete: a revised file replaces its earlier version's rows
grant select, insert, delete on all tables in schema raw to gov_loader;
grant select on all tables in schema raw to gov_transformer, gov_checker;
alter default privileges for role gov_owner in schema raw grant select, insert, delete on tables to gov_loader;
alter default privileges for role gov_owner in schema raw grant select on tables to gov_transformer, gov_checker;

grant select on all tables in schema audit to gov_loader, gov_transformer, gov_checker, gov_publisher, gov_reporter;
alter default privileges for role gov_owner in schema audit
  grant select on tables to gov_loader, gov_transformer, gov_checker, gov_publisher, gov_reporter;
grant usage on all sequences in schema audit to gov_loader;
grant insert, update on audit.load_ledger to gov_loader;
grant insert on audit.rejected_rows to gov_loader;
grant insert, delete on audit.dq_results to gov_checker;  -- delete: a retried check replaces its own results
grant insert on audit.publish_log to gov_publisher;
grant insert on audit.summary_sends to gov_reporter;

-- the checks and the publish read dbt's candidate marts; the email reads the officials seed
grant select on all tables in schema marts_candidate to gov_checker, gov_publisher;
alter default privileges for role gov_transformer in schema marts_candidate
  grant select on tables to gov_checker, gov_publisher;
grant select on all tables in schema seeds to gov_reporter;
alter default privileges for role gov_transformer in schema seeds grant select on tables to gov_reporter;
-- what the publisher makes is published: BI (and the reporter through it) and the checks read it,
-- including in the fresh schema a publish swaps in for `marts`
grant select on all tables in schema marts to gov_bi_reader, gov_checker;
alter default privileges for role gov_publisher grant select on tables to gov_bi_reader, gov_checker;
alter default privileges for role gov_publisher grant usage on schemas to gov_bi_reader, gov_checker;

-- reporters' notices
-- The send ledger of the reporters' notices (reports/notices.py): one row per reporter, service day, kind
-- and file version, inserted (the claim) before the message goes to the relay, as audit.summary_sends.
-- kind: problems (a file quarantined, held, or with rejected rows), received (a corrected version loaded
-- cleanly: 已收到，已入库), missing (no file for GOV_NOTICE_MISSING_NIGHTS nights: service_date is the first
-- missing night, so one reminder per missing streak). version: the file's content_sha256 (missing: the
-- streak's first night). reasons: reason code -> rows (a whole file's reason counts 1).
set role gov_owner;
create table if not exists audit.notice_sends (
  reporter_code  text not null,
  source         text not null,
  service_date   date not null,
  kind           text not null check (kind in ('problems', 'received', 'missing')),
  version        text not null,
  load_id        bigint references audit.load_ledger (load_id),
  file_name      text,
  reasons        jsonb not null default '{}',
  recipient      text not null,
  message_id     text not null,
  subject        text not null,
  noticed_on     date not null,
  status         text not null default 'claimed' check (status in ('claimed', 'sent', 'unconfirmed')),
  claimed_at     timestamptz not null default now(),
  sent_at        timestamptz,
  primary key (reporter_code, service_date, kind, version)
);
create index if not exists notice_sends_noticed_on on audit.notice_sends (noticed_on);
comment on table audit.notice_sends is 'Send ledger of the reporters'' notices: one message per reporter, day, kind (problems/received/missing) and file version, claimed before it is sent.';
reset role;
grant select on audit.notice_sends to gov_loader, gov_transformer, gov_checker, gov_publisher, gov_reporter;
-- the reporter claims (insert), confirms (update) and withdraws a claim the relay refused outright (delete)
grant insert, update (status, sent_at), delete on audit.notice_sends to gov_reporter;
