"""Ingest benchmark: the project's loader against PostgreSQL's own COPY and pandas.to_sql, in one run.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--server-url postgresql://postgres@127.0.0.1:5432/postgres]

1. writes one canteen CSV of --rows meal records (the scenario's records of one canteen over
   consecutive days, unique record ids) into a temporary landing zone;
2. creates a scratch database on the server and bootstraps it (dropped at the end);
3. times `ingest.loader.load_file` on the file: reading, the file's SHA-256 (in a second thread), header
   mapping, NFKC, typing, code checks,
   keyed hashing of card numbers, duplicate detection, COPY into the day's partition of
   raw.canteens_meals (no index) and the ledger, in one transaction, with the CPU time of this process
   and of its server backend; alternately with psql's `\\copy` of the same file into a plain table of ten
   text columns (psycopg's COPY if psql is not on PATH), --rounds times each (the loader into another
   day each round), and compares the medians;
4. times psql's `\\copy` of the loader's own typed output (exported from raw.canteens_meals) into an
   identical plain table: the part of the loader's time that the server needs whatever the client does;
5. times pandas.DataFrame.to_sql (SQLAlchemy + psycopg, pandas' defaults) on the first
   --pandas-rows rows and extrapolates its rate (to_sql of a million rows takes minutes);
6. prints rows/s, the ratios, and the loader's peak memory: the process's peak RSS
   (getrusage ru_maxrss, which includes the interpreter and libraries) before pandas is imported,
   and the Python heap's peak during the load (tracemalloc, on a second, shorter load, because
   tracing slows the code down).

Figures are machine-dependent; compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import date, timedelta
from pathlib import Path
from statistics import median

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import loader  # noqa: E402
from ingest.feeds import SPECS  # noqa: E402
from scenario.generator import Scenario  # noqa: E402
from scenario.messy import write_volume_csv  # noqa: E402
from warehouse import conninfo
from warehouse.bootstrap import bootstrap  # noqa: E402

DAY = date(2023, 11, 6)
RAW_COLUMNS = ("record_id", "canteen_code", "served_at", "meal", "diner_category", "diner_card", "age",
               "price_yuan", "subsidy_yuan", "payment_method")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def create_scratch(server_url: str) -> conninfo.ConnInfo:
    admin = conninfo.parse_url(server_url)
    name = f"gov_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    info = admin.with_db(name)
    bootstrap(info)
    return info


def drop_scratch(info: conninfo.ConnInfo) -> None:
    with psycopg.connect(info.with_db("postgres").conninfo(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{info.dbname}" with (force)')


def backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a server process, when the server runs on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_loader(info: conninfo.ConnInfo, path: Path, day: date) -> tuple[float, loader.FileResult, float, float | None]:
    """Wall time of the load, and the CPU time of this process and of its server backend during it: on
    a busy machine the two processes share the CPUs, so their sum is what the wall time follows."""
    with loader.connect(info) as conn:
        pid = conn.info.backend_pid
        server_before = backend_cpu(pid)
        cpu_before = time.process_time()
        start = time.perf_counter()
        result = loader.load_file(conn, "canteens", day, path)
        elapsed = time.perf_counter() - start
        client = time.process_time() - cpu_before
        server_after = backend_cpu(pid)
    server = server_after - server_before if server_before is not None and server_after is not None else None
    return elapsed, result, client, server


def time_raw_copy(info: conninfo.ConnInfo, path: Path, table: str = "bench_raw_copy") -> tuple[float, str]:
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute(f"create table public.{table} ({', '.join(c + ' text' for c in RAW_COLUMNS)})")
    psql = shutil.which("psql")
    if psql:
        env = {**os.environ, "PGPASSWORD": info.password} if info.password else dict(os.environ)
        cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", info.host, "-p", str(info.port), "-U", info.user,
               "-d", info.dbname, "-c",
               f"\\copy public.{table} from '{path}' with (format csv, header true, encoding 'UTF8')"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        how = "psql \\copy"
    else:
        start = time.perf_counter()
        with psycopg.connect(info.conninfo(), autocommit=True) as conn, \
                conn.cursor().copy(f"copy public.{table} from stdin (format csv, header true)") as copy, \
                path.open("rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        how = "psycopg COPY"
    elapsed = time.perf_counter() - start
    with psycopg.connect(info.conninfo()) as conn:
        copied = conn.execute(f"select count(*) from public.{table}").fetchone()[0]
    return elapsed, f"{how} ({copied} rows)"


def time_typed_copy(info: conninfo.ConnInfo, work: Path) -> float | None:
    """PostgreSQL's COPY of the loader's own output (typed, hashed) into a plain table with the columns of
    raw.canteens_meals: the server-side share of the loader's time, which no client can go below."""
    psql = shutil.which("psql")
    if not psql:
        return None
    dump = work / "typed.copy"
    env = {**os.environ, "PGTZ": "Asia/Shanghai", **({"PGPASSWORD": info.password} if info.password else {})}
    base = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", info.host, "-p", str(info.port), "-U", info.user,
            "-d", info.dbname, "-c"]
    # the columns the loader's COPY sends: a day partition's `_service_date` comes from its default
    columns = ", ".join([c for c in loader.META_COLUMNS if c != "_service_date"] + SPECS["canteens"].raw_columns)
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute("create table public.bench_typed (like raw.canteens_meals including all)")
        conn.execute(f"alter table public.bench_typed alter _service_date set default '{DAY}'")
    subprocess.run(base + [f"\\copy (select {columns} from raw.canteens_meals where _service_date = '{DAY}') "
                           f"to '{dump}'"], check=True, env=env)
    start = time.perf_counter()
    subprocess.run(base + [f"\\copy public.bench_typed ({columns}) from '{dump}'"], check=True, env=env)
    return time.perf_counter() - start


def time_pandas(info: conninfo.ConnInfo, path: Path, rows: int) -> tuple[float, int]:
    import pandas as pd
    from sqlalchemy import create_engine

    df = pd.read_csv(path, nrows=rows, dtype=str)
    df.columns = list(RAW_COLUMNS)
    engine = create_engine(info.sqlalchemy_url())
    try:
        start = time.perf_counter()
        df.to_sql("bench_pandas", engine, schema="public", if_exists="replace", index=False)
        elapsed = time.perf_counter() - start
    finally:
        engine.dispose()
    return elapsed, len(df)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pandas-rows", type=int, default=100_000)
    parser.add_argument("--trace-rows", type=int, default=200_000, help="rows of the tracemalloc load")
    parser.add_argument("--rounds", type=int, default=5, help="loader and raw COPY timings, alternating")
    parser.add_argument("--server-url", default=os.environ.get("TEST_DATABASE_URL",
                                                               "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    os.environ.setdefault("PII_HASH_KEY", "bench-key-" + "x" * 22)

    work = Path(tempfile.mkdtemp(prefix="gov_bench_"))
    info = None
    try:
        scenario = Scenario()
        canteen = scenario.canteens[0]
        path = work / "canteens" / DAY.isoformat() / f"{canteen.code}.csv"
        start = time.perf_counter()
        rows = write_volume_csv(scenario, path, args.rows, canteen=canteen)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {rows:,} canteen rows ({size_mb:.0f} MB) in {time.perf_counter() - start:.1f}s: {path}")
        info = create_scratch(args.server_url)
        print(f"scratch database {info.dbname} on {info.host}:{info.port}")

        # loader and raw COPY alternate, `--rounds` times each (the loader into a different day each round):
        # on a shared machine one pair of timings swings by a third; the medians are what to compare
        rss_before = peak_rss_mb()
        rounds = []
        for k in range(args.rounds):
            t_loader, result, cpu_client, cpu_server = time_loader(info, path, DAY - timedelta(days=k))
            assert result.status == "loaded" and result.rows_read == result.rows_loaded == rows, result
            t_raw, how = time_raw_copy(info, path, f"bench_raw_copy_{k}")
            rounds.append((t_loader, t_raw, cpu_client, cpu_server))
            print(f"round {k + 1}: loader {t_loader:.2f}s (CPU {cpu_client:.2f}s here"
                  + (f", {cpu_server:.2f}s in the server" if cpu_server is not None else "")
                  + f"), raw COPY {t_raw:.2f}s: {t_raw / t_loader:.2f}x", flush=True)
        rss_loader = peak_rss_mb()
        t_loader, t_copy = median(r[0] for r in rounds), median(r[1] for r in rounds)
        cpu_client = median(r[2] for r in rounds)
        cpu_server = None if rounds[0][3] is None else median(r[3] for r in rounds)

        trace_path = work / "canteens" / (DAY.replace(day=7)).isoformat() / f"{canteen.code}.csv"
        trace_rows = write_volume_csv(scenario, trace_path, min(args.trace_rows, rows), canteen=canteen)
        tracemalloc.start()
        with loader.connect(info) as conn:
            tracemalloc.reset_peak()
            traced = loader.load_file(conn, "canteens", DAY.replace(day=7), trace_path)
            _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert traced.status == "loaded" and traced.rows_loaded == trace_rows

        t_typed = time_typed_copy(info, work)
        t_pandas, pandas_rows = time_pandas(info, path, min(args.pandas_rows, rows))

        r_loader, r_copy, r_pandas = rows / t_loader, rows / t_copy, pandas_rows / t_pandas
        print()
        print(f"{'method (median of ' + str(len(rounds)) + ' rounds where timed in rounds)':44} {'rows':>10} "
              f"{'seconds':>9} {'rows/s':>10}")
        print(f"{'project loader (ingest.loader.load_file)':44} {rows:>10,} {t_loader:>9.2f} {r_loader:>10,.0f}")
        print(f"{'PostgreSQL COPY, ' + how:44} {rows:>10,} {t_copy:>9.2f} {r_copy:>10,.0f}")
        if t_typed:
            print(f"{'COPY of the loader output into raw table':44} {rows:>10,} {t_typed:>9.2f} {rows / t_typed:>10,.0f}")
        print(f"{'pandas.to_sql (sample, rate extrapolated)':44} {pandas_rows:>10,} {t_pandas:>9.2f} {r_pandas:>10,.0f}")
        print()
        print(f"loader / raw COPY      = {r_loader / r_copy:.2f}x   (target >= 0.5x; medians; rounds: "
              + ", ".join(f"{r[1] / r[0]:.2f}x" for r in rounds) + ")")
        print(f"raw COPY / pandas      = {r_copy / r_pandas:.1f}x")
        print(f"loader / pandas        = {r_loader / r_pandas:.1f}x")
        if t_typed:
            print(f"loader / COPY of its own typed output into raw.canteens_meals = {t_typed / t_loader:.2f}x "
                  f"(the server-side share: typed columns, metadata, hashes)")
        print(f"loader CPU (median)    = {cpu_client:.2f}s in this process"
              + (f", {cpu_server:.2f}s in its server backend" if cpu_server is not None else "")
              + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"loader peak RSS        = {rss_loader:.0f} MB for the whole process "
              f"(was {rss_before:.0f} MB before the load; target < 500 MB)")
        print(f"loader Python heap peak = {heap_peak / 1e6:.0f} MB while loading {trace_rows:,} rows under tracemalloc")
    finally:
        if info is not None:
            drop_scratch(info)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
