"""One run of `gov-warehouse run` over two service days through Airflow, shared by the tests that read what a
local run leaves behind (tests/conftest.py's session fixture `airflow_night`):

- tests/end_to_end/test_end_to_end.py: the marts, ledger, checks and emails against the generator;
- tests/warehouse/test_secrets.py: no secret in any file or column, each step logged in as its own role;
- tests/orchestration/test_airflow_ui.py: what `make airflow` shows of the run's DAG runs and task logs.

Each used to run a night of its own (a full night costs minutes here). The one run has what each needed: a
marker password in the administrator's URL and in every role's password variable (trust authentication
accepts any password, so each is a string to look for, set on real roles by the run's bootstrap), a marker
PII key, a watch of every session on the database and a trigger log of who wrote each audit table, the
nightly dbt docs, and two nights (the second has an overnight cohort and a trend to chart).

The run sets PostgreSQL roles' passwords, which belong to the whole server: the tests using it are one
group in tests/conftest.py (NODE_GROUPS), with the other test that sets a role's password.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from subprocess import CompletedProcess

import psycopg

from scenario.generator import Night, Scenario
from tests.support.airflow_home import seed_home
from tests.support.processes import run_command
from warehouse import connections, conninfo, settings

DAYS = (date(2023, 11, 6), date(2023, 11, 7))

WRITE_LOG = """
create table public.write_log (table_name text, login_role text, acting_role text);
create function public.log_write() returns trigger language plpgsql security definer as $$
begin
  -- current_user is this function's owner here; the `role` setting is what a SET ROLE chose ('none')
  insert into public.write_log values (tg_table_name, session_user, current_setting('role'));
  return null;
end $$;
"""
# the audit tables whose writers the trigger records (who may write which: tests/warehouse/test_secrets.py)
AUDIT_TABLES = ("load_ledger", "rejected_rows", "dq_results", "publish_log", "summary_sends")


class ConnectionWatch(threading.Thread):
    """Samples pg_stat_activity of one database: (login role, application name) of every session seen."""

    def __init__(self, admin: conninfo.ConnInfo):
        super().__init__(daemon=True)
        self.admin, self.seen, self.stop = admin, set(), threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.admin.conninfo(), autocommit=True, application_name="test:watch") as conn:
            while not self.stop.is_set():
                self.seen |= set(conn.execute(
                    "select usename, application_name from pg_stat_activity where datname = current_database() "
                    "and pid <> pg_backend_pid()").fetchall())
                time.sleep(0.01)


@dataclass
class AirflowNight:
    wh: conninfo.ConnInfo  # the run's warehouse, as its administrator (no password: trust authentication)
    local: Path  # the run's GOV_LOCAL_DIR (landing zone, outbox, GX, dbt target, logs, Airflow home)
    env: dict[str, str]  # the run's environment
    markers: dict[str, str]  # "admin", "pii_key" and each role: the secrets the run was given
    nights: dict[date, Night]  # what the generator wrote, per service day
    proc: CompletedProcess  # `gov-warehouse run`'s exit status and output
    started: float  # time.time() just before the run
    window: tuple[datetime, datetime]  # UTC clock readings just before and just after the run
    connections: set[tuple[str, str]]  # (login role, application name) of every session during the run
    writes: list[tuple[str, str, str]]  # (audit table, login role, acting role) of every write of the run

    @property
    def airflow_home(self) -> Path:
        return self.local / "airflow"

    def test_env(self) -> dict[str, str]:
        """What a test reading the run in-process sets (settings.*_dir(), connections.warehouse(), the PII key)."""
        return {"GOV_LOCAL_DIR": str(self.local), "LANDING_DIR": str(self.local / "landing"),
                "OUTBOX_DIR": str(self.local / "outbox"), "WAREHOUSE_URL": self.wh.sqlalchemy_url(),
                "PII_HASH_KEY": self.markers["pii_key"]}


@contextmanager
def airflow_night(server_url: str, local: Path, template_db: Path) -> Iterator[AirflowNight]:
    """Generate DAYS into a fresh landing zone, run `gov-warehouse run --day DAYS[0] --to DAYS[-1]` on a fresh
    database; yields the run (it must have succeeded); drops the database and clears the roles' passwords."""
    from tests.conftest import create_database, drop_database
    from warehouse.bootstrap import bootstrap

    markers = {"admin": f"AdminPw-{uuid.uuid4().hex}", "pii_key": f"PiiKey-{uuid.uuid4().hex}"}
    markers |= {role: f"Pw-{role}-{uuid.uuid4().hex[:12]}" for role in connections.ROLE_PASSWORD_ENV}
    info = create_database(server_url, "gov_night")
    wh = conninfo.ConnInfo(info.host, info.port, info.user, markers["admin"], info.dbname)
    env = {**os.environ, "WAREHOUSE_URL": wh.sqlalchemy_url(), "PII_HASH_KEY": markers["pii_key"],
           "GOV_LOCAL_DIR": str(local), "LANDING_DIR": str(local / "landing"), "OUTBOX_DIR": str(local / "outbox"),
           "AIRFLOW_HOME": str(local / "airflow"),
           # a broken step should fail the tests at once, not wait out production retry back-offs
           "GOV_TASK_RETRIES": "0",
           **{var: markers[role] for role, var in connections.ROLE_PASSWORD_ENV.items()}}
    env.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)  # the run's own SMTP sink writes the outbox
    scenario = Scenario()
    nights = {day: scenario.write_night(day, local / "landing") for day in DAYS}
    # Airflow's metadata schema from the session's template; the run makes everything else it writes
    seed_home(template_db, local / "airflow")
    bootstrap(info)
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute(WRITE_LOG)
        for table in AUDIT_TABLES:
            conn.execute(f"create trigger log_write after insert or update or delete on audit.{table} "
                         "for each statement execute function public.log_write()")
    watch = ConnectionWatch(info)
    watch.start()
    try:
        started, before = time.time(), datetime.now(UTC)
        proc = run_command([sys.executable, "-m", "commands", "run", "--day", DAYS[0].isoformat(),
                            "--to", DAYS[-1].isoformat()], cwd=settings.REPO_ROOT, env=env, timeout=2400)
        after = datetime.now(UTC)
        watch.stop.set()
        watch.join()
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with psycopg.connect(info.conninfo()) as conn:
            writes = conn.execute("select table_name, login_role, acting_role from public.write_log").fetchall()
        yield AirflowNight(info, local, env, markers, nights, proc, started, (before, after), watch.seen, writes)
    finally:
        watch.stop.set()
        drop_database(info)
        # roles are shared by every database of the server: leave them without the markers
        with psycopg.connect(info.with_db("postgres").conninfo(), autocommit=True) as conn:
            for role in connections.ROLE_PASSWORD_ENV:
                conn.execute(f"alter role {role} password null")
