"""Part of gov_publish run for real through Airflow (`dag.test`), in a process of its own (Airflow reads its home at
import), for test_dbt_watcher.py: the night's dbt build (Cosmos' watcher producer) of two staging models, their
sources' freshness tasks and the models' own tasks. Prints each task instance's state and try number as JSON."""

from __future__ import annotations

import json
import sys

MODELS = ["stg_audit__load_ledger", "stg_streets__compounds"]
SOURCES = ["source:audit.load_ledger", "source:streets.compounds"]
TASKS = ["service_days", "dbt.dbt_producer_watcher", "dbt.audit_load_ledger_source", "dbt.streets_compounds_source",
         *(f"dbt.{m}_model_build" for m in MODELS)]


def main(day: str) -> None:
    import os

    from airflow.dag_processing.dagbag import DagBag

    from orchestration.deadlines import NO_DEADLINES_VAR
    from warehouse import settings

    os.environ[NO_DEADLINES_VAR] = "1"  # as airflow_local's `airflow dags test` runs (see deadlines.py)

    dag = DagBag(dag_folder=str(settings.DAGS_DIR / "gov_publish.py")).dags["gov_publish"]
    part = dag.partial_subset(task_ids=TASKS, include_upstream=False, include_downstream=False)
    # the producer checks and builds what the part shows, not the whole project (its `--select`, as
    # RenderConfig.select would set it)
    part.get_task("dbt.dbt_producer_watcher").select = " ".join([*SOURCES, *MODELS])
    run = part.test(run_conf={"service_date": day})
    states = {ti.task_id: [str(ti.state), ti.try_number] for ti in run.get_task_instances()}
    print("STATES " + json.dumps(states), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
