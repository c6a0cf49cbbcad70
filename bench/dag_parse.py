"""DAG parse time per file, side by side with a minimal reference DAG parsed the same way.

    .venv/bin/python bench/dag_parse.py

Each file is parsed in a fresh interpreter (as Airflow's dag-processor does, modules not cached)
`REPEATS` times; the table shows the median and the ratio to the reference DAG. Absolute times on
these shared machines are noisy; the ratio is the figure to watch.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPEATS = 5
REFERENCE = textwrap.dedent('''
    import pendulum
    from airflow.sdk import dag, task

    @dag(schedule="0 2 * * *", start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"), catchup=False)
    def reference():
        @task
        def noop():
            return None
        noop()

    reference()
''')
PROBE = textwrap.dedent('''
    import sys, time, warnings
    warnings.simplefilter("ignore")
    import airflow.sdk  # the SDK import is paid once by the dag-processor, not per file
    from airflow.dag_processing.dagbag import DagBag
    t = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    elapsed = time.perf_counter() - t
    assert not bag.import_errors, bag.import_errors
    print(elapsed)
''')


def parse_seconds(path: Path, home: str) -> float:
    env = {"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(REPO))
    from orchestration.dbt_manifest import ensure_manifest

    # gov_publish renders its dbt tasks from the manifest: measure that DAG, not its no-manifest fallback
    ensure_manifest()
    with tempfile.TemporaryDirectory() as home:
        ref_file = Path(home) / "reference_dag.py"
        ref_file.write_text(REFERENCE)
        files = [ref_file, *sorted((REPO / "dags").glob("gov_*.py"))]
        medians = {f: statistics.median(parse_seconds(f, home) for _ in range(REPEATS)) for f in files}
    ref = medians[ref_file]
    print(f"{'DAG file':32} {'median parse (ms)':>18} {'x reference':>12}")
    for f, seconds in medians.items():
        name = "reference (1 task)" if f == ref_file else f.name
        print(f"{name:32} {seconds * 1000:18.1f} {seconds / ref:12.2f}")


if __name__ == "__main__":
    main()
