"""Reconciliation with the published figures (DESIGN.md section 9): `gov-warehouse reconcile`, `make reconcile`.

Generates a period of the built-in Taiyuan scenario (default: the programme period 2023-01-01..2023-10-31),
loads it with the project's loader (`loader.load_night`, what the DAG's load tasks run), builds the dbt
project once over the whole period (`dbt_run.run_dbt`, a full build: no `service_date` var) and prints
`intermediate.int_reconciliation__published_figures`: published figure vs the figure the marts give.
Any mismatch makes the command exit non-zero.

What is loaded, and why:
- canteens and assistance points: every night of the period, every reporter's file (empty ones too:
  an empty file is a point's "no events today", and the points in operation are counted from them);
- street registry: the period's last night only. The registry figures are read on the latest day built
  and hold on any single night (tests/dbt/test_dbt_warehouse.py); earlier nights would add days to the
  coverage marts and versions to the registry history (a full build computes it from every night loaded)
  without changing a figure.

It runs in a database of its own on the warehouse's server (default `gov_reconcile`), dropped and
created afresh by every run, so the demo's warehouse is never touched and every run is a clean full
build. That database is scratch: it commits without waiting for the WAL flush (see `prepare_database`).
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from ingest import loader
from scenario.generator import DEFAULT_SEED, PROGRAMME_END, PROGRAMME_START, Scenario
from warehouse import conninfo, settings

RECONCILE_DB = "gov_reconcile"
VIEW = "intermediate.int_reconciliation__published_figures"
NIGHTLY_FEEDS = ("canteens", "assistance")
# Published figures no source of the programme records, each with the one line that says why; any other
# figure the view leaves out fails the run (the data should express it).
EXPLAINED = {
    "resident_population": "the district's census population (villages too), not a count of the compounds' residents",
    "governance_fund_yuan_per_year": "a budget line (the district's yearly governance fund), not a spending recorded",
    "party_org_funding_yuan_per_year": "a funding standard (yuan per party organisation a year), not a spending recorded",
    "committee_communication_subsidy_yuan": "a subsidy standard (yuan per committee member), not a payment recorded",
}


@dataclass
class Figure:
    figure_key: str
    scope_level: str
    scope_code: str
    published: Decimal
    warehouse: Decimal | None
    approx: bool
    matches: bool
    needs_programme_period: bool
    compared: bool  # False: a cumulative programme figure, and the period does not cover the programme

    @property
    def status(self) -> str:
        if not self.compared:
            return "n/a"
        return "ok" if self.matches else "MISMATCH"


@dataclass
class Report:
    start: date
    end: date
    figures: list[Figure]
    not_expressed: list[str] = field(default_factory=list)  # "key (scope)", neither in the view nor EXPLAINED
    registry_as_of: date | None = None
    explained: list[tuple[str, str]] = field(default_factory=list)  # ("key (scope)", why not expressed)

    @property
    def mismatches(self) -> list[Figure]:
        return [f for f in self.figures if f.compared and not f.matches]

    @property
    def ok(self) -> bool:
        return bool(self.figures) and not self.mismatches and not self.not_expressed

    def table(self) -> str:
        head = ("figure", "scope", "published", "warehouse", "")
        rows = [(f.figure_key + (" (approx)" if f.approx else ""), f"{f.scope_level} {f.scope_code}",
                 _num(f.published), _num(f.warehouse), f.status) for f in self.figures]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        aligns = "<<>><"  # names left, numbers right
        line = "  ".join(f"{{:{a}{w}}}" for a, w in zip(aligns, widths, strict=True))
        out = [f"published figures vs warehouse, period {self.start}..{self.end}"
               f" (registry as of {self.registry_as_of})",
               line.format(*head), "  ".join("-" * w for w in widths)]
        out += [line.format(*r) for r in rows]
        skipped = [f for f in self.figures if not f.compared]
        if skipped:
            out.append(f"n/a: cumulative programme figures, compared only when the period covers "
                       f"{PROGRAMME_START}..{PROGRAMME_END} (the warehouse column shows the period loaded)")
        for figure, why in self.explained:
            out.append(f"explained, not expressed by the data: {figure}: {why}")
        if self.not_expressed:
            out.append("RECONCILIATION FAILED: published, neither expressed by the data nor explained: "
                       + ", ".join(self.not_expressed))
        if not self.figures:
            out.append("RECONCILIATION FAILED: the reconciliation view returned no figures")
        elif self.mismatches:
            out.append(f"RECONCILIATION FAILED: {len(self.mismatches)} mismatched: "
                       + ", ".join(f"{f.figure_key} ({f.scope_code})" for f in self.mismatches))
        elif not self.not_expressed:
            out.append(f"reconciled: {sum(f.compared for f in self.figures)} figures match, "
                       f"{len(self.explained)} explained")
        return "\n".join(out)


def _num(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value.normalize():,f}" if value != value.to_integral_value() else f"{int(value):,}"


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# ---------- the database ----------

def prepare_database(server: conninfo.ConnInfo, dbname: str = RECONCILE_DB) -> conninfo.ConnInfo:
    """Drop and create `dbname` on the warehouse's server and bootstrap it (roles, schemas, raw/audit)."""
    from warehouse.bootstrap import bootstrap

    if dbname in (server.dbname, settings.WAREHOUSE_DB):
        raise ValueError(f"refusing to drop the warehouse database {dbname!r}: reconcile needs a database of its own")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{dbname}" with (force)')
        conn.execute(f'create database "{dbname}"')
        # Scratch, regenerated by every run: a crash can only lose commits the next run redoes anyway, and not
        # waiting for the WAL flush of each file's transaction makes the ~514,000 one-file loads 2-3x faster.
        conn.execute(f'alter database "{dbname}" set synchronous_commit = off')
    target = server.with_db(dbname)
    bootstrap(target)
    return target


# ---------- generate and load ----------

@dataclass
class LoadTotals:
    files: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    problems: list[str] = field(default_factory=list)  # quarantined or failed files

    def add(self, other: LoadTotals) -> None:
        self.files += other.files
        self.rows_loaded += other.rows_loaded
        self.rows_rejected += other.rows_rejected
        self.problems += other.problems


_scenarios: dict[int, Scenario] = {}


def load_night(wh: conninfo.ConnInfo, landing: Path, day: date, feeds: tuple[str, ...], seed: int = DEFAULT_SEED,
               keep_files: bool = True) -> LoadTotals:
    """Generate one night's files of `feeds` and load them with the project's loader (one task of the pool)."""
    scenario = _scenarios.setdefault(seed, Scenario(seed))  # its registry and reporters are built once per process
    scenario.write_night(day, landing, feeds)
    totals = LoadTotals()
    for source in feeds:
        for r in loader.load_night(wh, landing, source, day):
            totals.files += 1
            totals.rows_loaded += r.rows_loaded
            totals.rows_rejected += r.rows_rejected
            if r.status in ("quarantined", "failed"):
                totals.problems.append(f"{source}/{day}/{r.path.name}: {r.status}: {r.error}")
        if not keep_files:
            shutil.rmtree(landing / source / day.isoformat())
    return totals


def load_period(wh: conninfo.ConnInfo, start: date, end: date, landing: Path | None = None, workers: int = 2,
                seed: int = DEFAULT_SEED, progress: bool = True) -> LoadTotals:
    """Generate and load the period: every night's canteen and assistance files, the last night's registry.

    Nights are independent (one loader transaction per file, keyed by source, reporter and day), so they
    load in `workers` processes side by side. Without `landing`, files go to a temporary folder and each
    night's files are deleted once loaded (the period's files would take ~0.5 GB)."""
    keep = landing is not None
    if landing is None:
        settings.local_dir().mkdir(parents=True, exist_ok=True)
        landing = Path(tempfile.mkdtemp(prefix="reconcile-landing-", dir=settings.local_dir()))
    tasks = [(end, ("streets",))] + [(day, NIGHTLY_FEEDS) for day in days_between(start, end)]
    totals = LoadTotals()
    started = time.monotonic()
    try:
        # spawn: a fresh interpreter per worker, nothing inherited (open connections, logging handlers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {pool.submit(load_night, wh, landing, day, feeds, seed, keep) for day, feeds in tasks}
            done_count = 0
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    totals.add(future.result())  # re-raises a worker's error: the run stops
                    done_count += 1
                    if progress and (done_count % 20 == 0 or not pending):
                            print(f"  {done_count}/{len(tasks)} loads done, {totals.files:,} files, "
                              f"{totals.rows_loaded:,} rows, {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if not keep:
            shutil.rmtree(landing, ignore_errors=True)
    return totals


# ---------- build ----------

def build(wh: conninfo.ConnInfo) -> None:
    """One full dbt build over everything loaded: seeds, models (the registry history too), tests (no
    service_date var, so the incremental models build every day; the nightly build is the same models one
    night, or one range of nights, at a time)."""
    from orchestration.dbt_run import run_dbt

    # Fresh planner statistics first: autoanalyze lags behind a bulk load of millions of rows, and on stale
    # estimates mart_city_daily_summary's full build picked a nested loop that re-ran its per-day diners
    # subquery for every pair of days (still running after 7 minutes; about 20 s once analysed).
    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        conn.execute("analyze raw.streets_compounds, raw.canteens_meals, raw.assistance_case_events, audit.load_ledger")
    run_dbt(wh, ["build", "--quiet"])


# ---------- compare ----------

def compare(wh: conninfo.ConnInfo, start: date, end: date) -> Report:
    """Read the reconciliation view; programme totals count only when [start, end] covers the programme."""
    covers_programme = start <= PROGRAMME_START and end >= PROGRAMME_END
    with psycopg.connect(wh.conninfo()) as conn:
        rows = conn.execute(
            f"""select figure_key, scope_level, scope_code, published, warehouse, approx, matches,
                       needs_programme_period, registry_as_of
                from {VIEW}
                order by case scope_level when 'city' then 0 when 'district' then 1 else 2 end, scope_code,
                         figure_key""").fetchall()
        missing = conn.execute(
            f"""select figure_key, figure_key || ' (' || scope_code || ')' from seeds.published_figures p
                where not exists (select from {VIEW} v where (v.figure_key, v.scope_code) = (p.figure_key, p.scope_code))
                order by scope_level, scope_code, figure_key""").fetchall()
    figures = [Figure(key, level, code, published, warehouse, approx, matches, needs,
                      compared=covers_programme or not needs)
               for key, level, code, published, warehouse, approx, matches, needs, _ in rows]
    return Report(start, end, figures, [shown for key, shown in missing if key not in EXPLAINED],
                  rows[0][8] if rows else None, [(shown, EXPLAINED[key]) for key, shown in missing if key in EXPLAINED])


def reconcile(wh: conninfo.ConnInfo, start: date = PROGRAMME_START, end: date = PROGRAMME_END,
              landing: Path | None = None, workers: int = 2, seed: int = DEFAULT_SEED) -> Report:
    """Generate, load, build and compare on `wh` (an empty, bootstrapped database); print timings."""
    if end < start:
        raise ValueError(f"empty period {start}..{end}")
    t0 = time.monotonic()
    print(f"reconcile: generating and loading {start}..{end} into {wh.dbname} ({workers} workers)", flush=True)
    totals = load_period(wh, start, end, landing, workers, seed)
    t1 = time.monotonic()
    print(f"loaded {totals.files:,} files, {totals.rows_loaded:,} rows ({totals.rows_rejected:,} rejected) "
          f"in {t1 - t0:.0f} s", flush=True)
    if totals.problems:
        raise RuntimeError(f"{len(totals.problems)} files were not loaded: " + "; ".join(totals.problems[:5]))
    print("dbt build over the period (full build)", flush=True)
    build(wh)
    t2 = time.monotonic()
    print(f"built in {t2 - t1:.0f} s", flush=True)
    report = compare(wh, start, end)
    print(f"total {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return report
