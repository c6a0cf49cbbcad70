"""Least privilege, tried for real (docs/security.md): on a warehouse made by the bootstrap, each step's
role logs in with its own credentials (connections.connect_as, no SET ROLE from an administrator) and
tries every forbidden action; each is denied, and each role can still do its own job."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import errors

from tests.conftest import create_database, drop_database
from warehouse import connections, conninfo
from warehouse.bootstrap import bootstrap

pytestmark = pytest.mark.integration

L, T, C, P, R, B = (connections.LOADER, connections.TRANSFORMER, connections.CHECKER, connections.PUBLISHER,
                    connections.REPORTER,
                    connections.BI_READER)
ROLES = (L, T, C, P, R, B)
DAY = "2023-11-07"


@pytest.fixture(scope="module")
def warehouse(server_url):
    """A bootstrapped warehouse with one candidate mart (made by the transformer, as dbt does) and one
    published mart (made by the publisher, as a publish does)."""
    wh = create_database(server_url, "gov_roles")
    try:
        bootstrap(wh)
        with connections.connect_as(T, wh, autocommit=True) as conn:
            conn.execute("create table marts_candidate.m (x int)")
            conn.execute("insert into marts_candidate.m values (1)")
        with connections.connect_as(P, wh, autocommit=True) as conn:
            conn.execute("create table marts.m (like marts_candidate.m)")
            conn.execute("insert into marts.m select * from marts_candidate.m")
        yield wh
    finally:
        drop_database(wh)


def attempt(wh: conninfo.ConnInfo, role: str, statement: str) -> None:
    with connections.connect_as(role, wh, autocommit=True) as conn:
        assert (conn.info.user, conn.execute("select session_user").fetchone()[0]) == (role, role)
        conn.execute(statement)


def admin_fetch(wh: conninfo.ConnInfo, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(wh.conninfo()) as conn:
        return conn.execute(sql, params).fetchall()


FORGED_PUBLISH = f"insert into audit.publish_log (service_date, run_id, status) values ('{DAY}', 'forged', 'published')"
FORBIDDEN_TO_ALL = [
    "drop table audit.dq_results",
    "drop table audit.load_ledger",
    "drop schema audit cascade",
    "alter table audit.load_ledger add column x int",
    "truncate audit.load_ledger",
    "delete from audit.load_ledger",
    "delete from audit.publish_log",
    "update audit.publish_log set status = 'published'",
    "drop table raw.streets_compounds",
    "truncate raw.canteens_meals",
    "alter table raw.assistance_case_events add column x int",
    "create table raw.x (x int)",
    "create table audit.x (x int)",
    "create table public.x (x int)",
    "create function public.f() returns int language sql as 'select 1'",
    "create function raw.f() returns int language plpgsql security definer as 'begin return 1; end'",
    "create function audit.f() returns int language sql security definer as 'select 1'",
    "create function staging.f() returns int language sql as 'select 1'",
    "create function marts.f() returns int language sql as 'select 1'",
    "create procedure marts_candidate.p() language sql as 'select 1'",
    "do $$ begin perform 1; end $$",
    "set role gov_owner",
    "set session authorization postgres",
    "create role gov_intruder",
    "grant gov_publisher to gov_bi_reader",
    "copy audit.load_ledger to program 'id'",
    "copy audit.dq_results from '/etc/passwd'",
]


@pytest.mark.parametrize("statement", FORBIDDEN_TO_ALL)
@pytest.mark.parametrize("role", ROLES)
def test_forbidden_to_every_role(warehouse, role, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        attempt(warehouse, role, statement)


@pytest.mark.parametrize("role", ROLES)
def test_no_role_raises_its_own_powers(warehouse, role):
    for statement in (f"alter role {role} superuser", f"alter role {role} createrole", f"alter role {role} bypassrls",
                      f"grant {connections.PUBLISHER if role != P else L} to {role}"):
        with pytest.raises(errors.InsufficientPrivilege):
            attempt(warehouse, role, statement)


# (statement, the roles allowed to run it: every other role is denied)
ROLE_BOUND = [
    (FORGED_PUBLISH, {P}),
    ("insert into audit.load_ledger (source, file_path, status) values ('streets', 'x', 'loading')", {L}),
    ("update audit.load_ledger set error = error", {L}),
    ("insert into audit.rejected_rows (load_id, reason_code, message) select load_id, 'x', 'x' "
     "from audit.load_ledger limit 0", {L}),
    ("insert into raw.streets_compounds (_load_id, _source_file, _row_number, _service_date) "
     f"values (0, 'x', 1, '{DAY}')", {L}),
    (f"select raw.ensure_day_partition('raw.canteens_meals', '{DAY}')", {L}),
    ("insert into audit.dq_results (run_id, suite, expectation, severity, success) "
     "values ('r', 's', 'e', 'warn', true)", {C}),
    (f"insert into audit.summary_sends (service_date, recipient_key, scope_level, scope_code, message_id, subject) "
     f"values ('{DAY}', 'k', 'city', '140100', 'm', 's') on conflict do nothing", {R}),
    ("insert into audit.notice_sends (reporter_code, source, service_date, kind, version, recipient, message_id, "
     f"subject, noticed_on) values ('CT1', 'canteens', '{DAY}', 'problems', 'v', 'e', 'm', 's', '{DAY}') "
     "on conflict do nothing", {R}),
    ("update audit.notice_sends set status = status", {R}),
    ("select count(*) from raw.canteens_meals", {L, T, C}),
    ("select count(*) from audit.load_ledger", {L, T, C, P, R}),
    ("select count(*) from marts_candidate.m", {T, C, P}),
    ("select count(*) from marts.m", {C, P, R, B}),
    ("insert into marts.m values (2)", {P}),
    ("create table marts_candidate.made_by_dbt (x int)", {T}),
    ("create table staging.made_by_dbt (x int)", {T}),
    ("create temporary table scratch (x int)", {T}),
]


@pytest.mark.parametrize(("statement", "allowed"), ROLE_BOUND, ids=[s[:60] for s, _ in ROLE_BOUND])
@pytest.mark.parametrize("role", ROLES)
def test_each_role_does_its_job_and_nothing_else(warehouse, role, statement, allowed):
    statement = statement.replace("made_by_dbt", f"made_by_dbt_{role}")
    if role in allowed:
        attempt(warehouse, role, statement)
    else:
        with pytest.raises(errors.InsufficientPrivilege):
            attempt(warehouse, role, statement)


@pytest.mark.parametrize("role", ROLES)
def test_no_role_can_grant_raw_or_audit_data(warehouse, role):
    """GRANT on an object one does not own is an error or, with no grant option, grants nothing."""
    for statement in ("grant select on raw.canteens_meals to public", "grant select on audit.load_ledger to public",
                      "grant insert on audit.publish_log to public", f"grant select on raw.streets_compounds to {B}",
                      "grant select on all tables in schema raw to public"):
        try:
            attempt(warehouse, role, statement)
        except errors.InsufficientPrivilege:
            pass
    granted = admin_fetch(warehouse, """
        select c.oid::regclass::text, a.grantee, a.privilege_type
        from pg_class c cross join aclexplode(c.relacl) a
        where c.relnamespace in ('raw'::regnamespace, 'audit'::regnamespace)
          and (a.grantee = 0 or a.grantee = 'gov_bi_reader'::regrole or a.grantor <> 'gov_owner'::regrole)""")
    assert granted == []
    for privilege in ("select", "insert"):
        assert admin_fetch(warehouse, "select has_table_privilege(%s, 'raw.canteens_meals', %s)", (B, privilege)) == [
            (False,)]


def test_raw_and_audit_belong_to_a_role_nobody_logs_in_as(warehouse):
    owners = admin_fetch(warehouse, """
        select distinct pg_get_userbyid(relowner) from pg_class where relnamespace in ('raw'::regnamespace,
        'audit'::regnamespace)
        union select distinct pg_get_userbyid(proowner) from pg_proc where pronamespace = 'raw'::regnamespace
        union select pg_get_userbyid(nspowner) from pg_namespace where nspname in ('raw', 'audit')""")
    assert owners == [("gov_owner",)]
    assert admin_fetch(warehouse, "select rolcanlogin from pg_roles where rolname = 'gov_owner'") == [(False,)]
    for role in ROLES:
        assert admin_fetch(warehouse, "select pg_has_role(%s, 'gov_owner', 'member')", (role,)) == [(False,)]
        assert admin_fetch(warehouse, """select rolsuper or rolcreaterole or rolcreatedb or rolreplication
                                         or rolbypassrls, rolcanlogin from pg_roles where rolname = %s""",
                           (role,)) == [(False, True)]
    # the one membership: the reporter reads marts as BI does
    assert admin_fetch(warehouse, "select pg_has_role(%s, %s, 'member')", (R, B)) == [(True,)]


def test_a_day_partition_made_by_the_loader_belongs_to_the_owner(warehouse):
    with connections.connect_as(L, warehouse) as conn:
        child = conn.execute("select raw.ensure_day_partition('raw.canteens_meals', '2023-11-09')::text").fetchone()[0]
        conn.commit()
        conn.execute(f"insert into {child} (_load_id, _source_file, _row_number) values (0, 'x', 1)")
        conn.rollback()
    assert admin_fetch(warehouse, "select pg_get_userbyid(relowner) from pg_class where oid = %s::regclass",
                       (child,)) == [("gov_owner",)]
    for statement in (f"drop table {child}", f"alter table raw.canteens_meals detach partition {child}"):
        with pytest.raises(errors.InsufficientPrivilege):
            attempt(warehouse, L, statement)


def test_bootstrap_takes_the_loader_s_old_objects_back(server_url):
    """Warehouses from before: raw and audit were gov_loader's. The next bootstrap gives them to gov_owner."""
    wh = create_database(server_url, "gov_roles_legacy")
    try:
        bootstrap(wh)
        with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
            conn.execute("alter schema audit owner to gov_loader")
            conn.execute("alter table audit.dq_results owner to gov_loader")
            conn.execute("alter table raw.streets_compounds owner to gov_loader")
        attempt(wh, L, "comment on table audit.dq_results is 'the owner may'")  # the old hole
        bootstrap(wh)
        assert admin_fetch(wh, "select pg_get_userbyid(relowner) from pg_class where oid in "
                               "('audit.dq_results'::regclass, 'raw.streets_compounds'::regclass)") == [
            ("gov_owner",), ("gov_owner",)]
        with pytest.raises(errors.InsufficientPrivilege):
            attempt(wh, L, "drop table audit.dq_results")
    finally:
        drop_database(wh)


def test_concurrent_bootstraps_of_several_databases(server_url):
    """Roles are cluster-wide and tests bootstrap many databases at once: all succeed, none is left out."""
    databases = [create_database(server_url, "gov_roles_conc") for _ in range(3)]
    errors_seen: list[BaseException] = []

    def run(wh):
        try:
            bootstrap(wh)
        except BaseException as err:  # reported below, with the database
            errors_seen.append(err)

    try:
        threads = [threading.Thread(target=run, args=(wh,)) for wh in databases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors_seen == []
        for wh in databases:
            with pytest.raises(errors.InsufficientPrivilege):
                attempt(wh, B, "create temporary table t (x int)")
            attempt(wh, L, "select count(*) from audit.load_ledger")
    finally:
        for wh in databases:
            drop_database(wh)
