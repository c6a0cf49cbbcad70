"""gov_ingest's loading by batches (issue 21): per feed a planning task, a mapped load task expanded over its
batches (Airflow's dynamic task mapping) and one task producing the feed's asset; the house rules hold for the
mapped tasks too (test_dag_integrity.py checks them for every other task)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from orchestration.assets import RAW_FEED_ASSETS
from warehouse import settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingest(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    saved = {k: os.environ.pop(k) for k in ("GOV_TASK_RETRIES", "GOV_RETRY_DELAY_SECONDS", "AIRFLOW_HOME")
             if k in os.environ}
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_DIR / "gov_ingest.py"))
    assert bag.import_errors == {}
    yield bag.dags["gov_ingest"]
    os.environ.pop("AIRFLOW_HOME", None)
    os.environ.pop("AIRFLOW__CORE__LOAD_EXAMPLES", None)
    os.environ.update(saved)


def test_each_feed_is_planned_then_loaded_by_a_mapped_task_then_its_asset_produced_once(ingest):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for feed in settings.FEEDS:
        plan, load, loaded = (ingest.get_task(f"{step}_{feed}") for step in ("plan", "load", "loaded"))
        assert isinstance(load, MappedOperator) and not isinstance(plan, MappedOperator)
        assert not isinstance(loaded, MappedOperator)
        # expanded over the planning task's batches; the batches wait for the warehouse's bootstrap
        assert load.upstream_task_ids == {plan.task_id, "bootstrap"}
        [(name, arg)] = load.op_kwargs_expand_input.value.items()
        assert name == "batch" and arg.operator is plan
        assert load.pool == "warehouse" and not load.outlets
        # the feed's asset: from the one task that sums the batches up, not from each batch
        assert [o.uri for o in loaded.outlets] == [RAW_FEED_ASSETS[feed]]
        assert loaded.upstream_task_ids == {load.task_id, "service_day"}
        assert not any(o.uri == RAW_FEED_ASSETS[feed] for t in ingest.tasks if t is not loaded for o in t.outlets)
    assert ingest.get_task("validate_raw").upstream_task_ids == {f"loaded_{f}" for f in settings.FEEDS} | {
        "service_day"}
    notify = ingest.get_task("notify_reporters")
    assert notify.trigger_rule == "all_done"
    assert notify.upstream_task_ids == {f"load_{f}" for f in settings.FEEDS} | {"service_day"}


def test_the_mapped_loads_follow_the_house_rules(ingest):
    for feed in settings.FEEDS:
        load = ingest.get_task(f"load_{feed}")
        assert load.owner == "gov-data" and load.on_failure_callback
        assert (load.retries, load.retry_delay, load.max_retry_delay, load.execution_timeout) == (
            2, timedelta(seconds=120), timedelta(minutes=30), timedelta(minutes=45))
        # Airflow 3.3's mapped operator reports the back-off `True` of default_args as its multiplier, 2.0
        assert load.retry_exponential_backoff == 2.0
