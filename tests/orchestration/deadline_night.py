"""Airflow's deadline machinery on gov_publish, step by step, in a process of its own (Airflow reads its home
at import): used by test_publish_deadline.py, which sets the environment (airflow_local.airflow_env).

1. the DAG processor's part: parse dags/gov_publish.py and store its serialized DAG (with its DeadlineAlert);
2. the scheduler's part when the `raw_night` asset triggers a run: `create_dagrun`, which evaluates the alert's
   reference (orchestration.deadlines.PublishedByMorning, found through the plugin) into a Deadline row;
3. once that time has passed, the scheduler loop's part: every deadline passed and not yet missed is handled
   (`Deadline.handle_miss`, the loop's own call), which queues the callback with its context;
4. the executor's part: the queued callback run as a worker runs it (`execute_callback` of Airflow's callback
   supervisor), i.e. orchestration.deadlines.deadline_missed mailing on-call through smtp_default.

Prints one JSON line: the deadline times created, and the callbacks run with their outcome.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from orchestration.deadlines import DEADLINE_VAR
from warehouse.settings import SERVICE_TZ


def main() -> None:
    import structlog
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.deadline import Deadline
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk.execution_time.callback_supervisor import execute_callback
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "gov_publish.py"))
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)

    # the deadline a few seconds ahead (GOV_PUBLISH_DEADLINE, read when the reference is evaluated), set only
    # now: parsing the DAG takes seconds of its own on a busy machine
    now = datetime.now(UTC)
    due = (now + timedelta(seconds=5)).astimezone(ZoneInfo(SERVICE_TZ)).replace(microsecond=0)
    os.environ[DEADLINE_VAR] = due.time().isoformat()
    with create_session() as session:
        dag = SerializedDagModel.get_dag("gov_publish", session=session)
        run = dag.create_dagrun(run_id=f"asset_triggered__{now.isoformat()}", run_after=now,
                                run_type=DagRunType.ASSET_TRIGGERED, triggered_by=DagRunTriggeredByType.ASSET,
                                state=DagRunState.QUEUED, session=session)
        session.flush()
        created = session.scalars(select(Deadline).where(Deadline.dagrun_id == run.id)).all()
        times = [d.deadline_time for d in created]

    for t in times:  # real time passes: the run is still queued (no scheduler runs its tasks here)
        wait = (t - datetime.now(UTC)).total_seconds()
        assert wait < 60, f"deadline {t} is not the one set ({due})"
        time.sleep(max(0.0, wait) + 0.5)

    with create_session() as session:
        missed = session.scalars(select(Deadline).where(Deadline.deadline_time < datetime.now(UTC))
                                 .where(~Deadline.missed)).all()
        for deadline in missed:
            deadline.handle_miss(session)
        session.flush()
        queued = [dict(d.callback.data) for d in missed]

    log = structlog.get_logger("deadline_night")
    outcomes = [execute_callback(data["path"], data["kwargs"], "gov_publish.py", None, log) for data in queued]
    print(json.dumps({"due": due.isoformat(), "deadline_times": [t.isoformat() for t in times], "run_id": run.run_id,
                      "callbacks": [d["path"] for d in queued], "outcomes": outcomes}), flush=True)


if __name__ == "__main__":
    main()
