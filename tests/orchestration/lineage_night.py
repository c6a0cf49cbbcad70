"""Part of gov_publish run for real through Airflow (`dag.test`), in a process of its own (Airflow reads its home at
import), for test_lineage.py: the service day, the night's dbt build (Cosmos' watcher producer), the load ledger's
source freshness and its staging model — Airflow tasks and the dbt models, each of which the OpenLineage listener
reports."""

from __future__ import annotations

import sys

# the node tasks show what the producer's one `dbt build` did: without it they would have nothing to show
TASKS = ["service_days", "dbt.dbt_producer_watcher", "dbt.audit_load_ledger_source",
         "dbt.stg_audit__load_ledger_model_build"]


def main(day: str) -> None:
    import os

    from airflow.dag_processing.dagbag import DagBag

    from orchestration.deadlines import NO_DEADLINES_VAR
    from warehouse import settings

    os.environ[NO_DEADLINES_VAR] = "1"  # as airflow_local's `airflow dags test` runs (see deadlines.py)

    dag = DagBag(dag_folder=str(settings.DAGS_DIR / "gov_publish.py")).dags["gov_publish"]
    part = dag.partial_subset(task_ids=TASKS, include_upstream=False, include_downstream=False)
    run = part.test(run_conf={"service_date": day})
    print(f"RUN STATE {run.state}", flush=True)
    if str(run.state) != "success":
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
