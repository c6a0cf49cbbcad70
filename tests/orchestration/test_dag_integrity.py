"""DAG policy: every DAG file imports without errors and without touching a database or dbt, and
every DAG follows the house rules (owner, tags, retries with back-off, timeouts, Shanghai time);
gov_publish's dbt step is one `dbt build` (Cosmos' watcher producer) and one task per dbt node that shows and
retries it, rendered from the `dbt parse` manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from orchestration import dbt_manifest
from tests.support.dbt_cli import declared_marts
from warehouse import settings

pytestmark = pytest.mark.integration

EXPECTED_DAGS = {"gov_ingest", "gov_publish", "gov_publish_watchdog"}
DBT_GROUP = "dbt"
PRODUCER = f"{DBT_GROUP}.dbt_producer_watcher"  # Cosmos' PRODUCER_WATCHER_TASK_ID in the group
PRODUCER_DONE = f"{PRODUCER}_done"
# README, "Retries, pools, timeouts, alerts": the defaults when GOV_TASK_RETRIES / GOV_RETRY_DELAY_SECONDS
# are not set; the watchdog alerts at once (no retries) within five minutes
DOCUMENTED = {"retries": 2, "retry_delay": timedelta(seconds=120), "retry_exponential_backoff": 2.0,
              "max_retry_delay": timedelta(minutes=30), "execution_timeout": timedelta(minutes=45)}
WATCHDOG = {**DOCUMENTED, "retries": 0, "execution_timeout": timedelta(minutes=5)}


@pytest.fixture(scope="module")
def manifest() -> dict:
    """The manifest the DAG renders from, made the way the entry points make it (`dbt parse`, before any DAG parse)."""
    path = dbt_manifest.ensure_manifest()
    assert dbt_manifest.is_current(path)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, manifest):
    home = tmp_path_factory.mktemp("airflow_home")
    # the documented defaults: no test setting of the retry variables may leak into the policy check
    overrides = {k: os.environ.pop(k) for k in ("GOV_TASK_RETRIES", "GOV_RETRY_DELAY_SECONDS") if k in os.environ}
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(settings.DAGS_DIR)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_DIR))
    yield bag
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES"):
        os.environ.pop(key, None)
    os.environ.update(overrides)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_policy(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "governance" in dag.tags
    assert str(dag.timezone).endswith("Asia/Shanghai")
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.tasks
    for task in dag.tasks:
        assert task.owner == "gov-data", task.task_id
        assert task.on_failure_callback, task.task_id
        expected = WATCHDOG if dag_id == "gov_publish_watchdog" else DOCUMENTED
        if task.task_id in ("publish", "night_failed", PRODUCER):
            # a blocked publish is a verdict, not a glitch, and the watcher only reports: neither is retried; a
            # retried dbt producer would not build again (Cosmos skips it): the node tasks retry, each its node
            expected = {**expected, "retries": 0}
        assert {k: getattr(task, k) for k in expected} == expected, task.task_id
    if dag_id == "gov_publish":
        # the summary goes out whatever publish decided (it reports a block as such)
        assert dag.get_task("send_summary").trigger_rule == "all_done"
        assert dag.get_task("publish").retries == 0
        # the run fails when any step of the night failed, though send_summary always succeeds last
        watcher = dag.get_task("night_failed")
        assert watcher.trigger_rule == "one_failed"
        assert set(watcher.upstream_task_ids) >= {"send_summary", "publish", "validate_marts"}
        assert set(watcher.upstream_task_ids) & {t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")}
        # dbt docs for the docs site, each night after publish, whatever publish decided
        docs = dag.get_task("dbt_docs")
        assert docs.upstream_task_ids == {"publish"} and docs.trigger_rule == "all_done"
        # 07:00 is Airflow's own Deadline Alert, on-call alerted by its callback (test_publish_deadline.py)
        [alert] = dag.deadline
        assert type(alert.reference).__name__ == "PublishedByMorning"
        assert alert.callback.path == "orchestration.deadlines.deadline_missed"
    if dag_id == "gov_ingest":
        # reporters hear of their files' problems whatever happened to the other feeds
        notify = dag.get_task("notify_reporters")
        assert notify.trigger_rule == "all_done"
        loads = {t.task_id for t in dag.tasks if t.task_id.startswith("load_")}
        assert set(notify.upstream_task_ids) == loads | {"service_day"}


def test_ingest_produces_feed_assets_that_schedule_publish(dagbag):
    ingest, publish = dagbag.dags["gov_ingest"], dagbag.dags["gov_publish"]
    outlets = {o.uri for t in ingest.tasks for o in t.outlets}
    assert {"gov://warehouse/raw/streets_compounds", "gov://warehouse/raw/canteens_meals",
            "gov://warehouse/raw/assistance_case_events", "gov://warehouse/raw/night"} <= outlets
    # data-aware scheduling: publish runs when the night's raw data is in
    assert "gov://warehouse/raw/night" in str(publish.timetable.asset_condition)
    assert "send_summary" in publish.task_ids and "publish" in publish.get_task("send_summary").upstream_task_ids
    # database work shares one bounded pool
    assert {t.pool for t in ingest.tasks if t.task_id.startswith("load_")} == {"warehouse"}


# Runs a DAG file in a fresh interpreter, then reports whether dbt itself was loaded: Cosmos could run
# dbt in-process (dbtRunner), which no PATH would stop.
PARSE_PROBE = textwrap.dedent("""
    import json, pathlib, runpy, sys
    reports = []
    for path in sys.argv[1:]:
        runpy.run_path(path, run_name="__main__")
        reports.append({"file": pathlib.Path(path).name, "dbt_loaded": sorted(
            m for m in sys.modules if m == "dbt.cli.main" or m.startswith(("dbt.parser", "dbt.task")))})
    print(json.dumps(reports))
""")


def _parse_in_fresh_interpreter(*paths, **env_overrides: str) -> list[dict]:
    env = {**os.environ, "WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": "", **env_overrides}
    proc = subprocess.run([sys.executable, "-c", PARSE_PROBE, *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dag_files_parse_without_database_or_dbt(manifest):
    """Importing a DAG file must not connect anywhere or run dbt: an unreachable warehouse, no PATH (no dbt
    executable), and dbt's parser and runner modules must not even be imported. One interpreter runs the
    files one after the other and reports after each (what a file loads stays loaded for the next)."""
    paths = sorted(settings.DAGS_DIR.glob("gov_*.py"))
    assert {p.stem for p in paths} == EXPECTED_DAGS
    reports = _parse_in_fresh_interpreter(*paths)
    assert reports == [{"file": p.name, "dbt_loaded": []} for p in paths]


def _dbt_nodes(manifest: dict) -> dict[str, dict]:
    """The project's models, seeds and snapshots: what gov_publish must run, one task each."""
    return {uid: node for uid, node in manifest["nodes"].items()
            if node["resource_type"] in ("model", "seed", "snapshot") and node["package_name"] == "gov_warehouse"}


def _task_for(node: dict) -> str:
    return f"{DBT_GROUP}.{node['name']}_{node['resource_type']}_build"


def _own_tests(manifest: dict, uid: str) -> set[str]:
    return {t for t, n in manifest["nodes"].items()
            if n["resource_type"] == "test" and n["depends_on"].get("nodes", []) == [uid]}


def test_publish_builds_once_and_has_a_task_per_node_with_its_tests(dagbag, manifest):
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    from orchestration.dbt_tasks import NodeBuildWatcher

    publish = dagbag.dags["gov_publish"]
    nodes = _dbt_nodes(manifest)
    marts = {n["name"] for n in nodes.values() if n["resource_type"] == "model" and n["path"].startswith("marts/")}
    assert marts == declared_marts()  # every mart the project declares, one file each
    dbt_tasks = {t.task_id: t for t in publish.tasks if t.task_id.startswith(f"{DBT_GROUP}.")}
    # one `dbt build` of the whole project for the night, after the service days are known
    producer = dbt_tasks[PRODUCER]
    assert isinstance(producer, DbtProducerWatcherOperator) and producer.base_cmd == ["build"]
    assert not producer.select and not producer.exclude and producer.upstream_task_ids == {"service_days"}
    for uid, node in nodes.items():
        task = dbt_tasks[_task_for(node)]
        # the node's task shows the node and its own tests; retried, `dbt build --select <node>` runs both
        assert isinstance(task, NodeBuildWatcher) and task.base_cmd == ["build"], uid
        assert task.select == "fqn:" + ".".join(node["fqn"]), uid
        assert task.model_unique_id == uid and set(task.node_tests) == _own_tests(manifest, uid), uid
        # a sensor that pokes (no triggerer) and does not take the worker while the producer runs
        assert task.mode == "poke" and not task.deferrable, uid
        # dbt's dependencies are the tasks' dependencies
        for parent in node["depends_on"].get("nodes", []):
            if parent in nodes:
                assert _task_for(nodes[parent]) in task.upstream_task_ids, (uid, parent)
    # nothing else than the producer, the nodes, the tests that span several of them and the sources' freshness
    node_tasks = {_task_for(n) for n in nodes.values()}
    assert set(dbt_tasks) - node_tasks - {PRODUCER, PRODUCER_DONE} == {
        t for t in dbt_tasks if t.endswith(("_test", "_source"))}
    # the tasks without a dbt parent start when the build has ended, whatever its outcome (a failed build
    # still reports its nodes); the others follow their dbt parents
    for task in dbt_tasks.values():
        if task.task_id in (PRODUCER, PRODUCER_DONE):
            continue
        if PRODUCER in task.upstream_task_ids:
            assert task.upstream_task_ids == {PRODUCER} and task.trigger_rule == "all_done", task.task_id
        else:
            assert task.upstream_task_ids and task.trigger_rule == "all_success", task.task_id
            assert PRODUCER in task.get_flat_relative_ids(upstream=True), task.task_id
    # the mart checks after every dbt task
    validate = publish.get_task("validate_marts")
    assert all(validate.task_id in t.get_flat_relative_ids(upstream=False) for t in dbt_tasks.values())


def test_each_source_with_freshness_is_a_task_before_the_models_that_read_it(dagbag, manifest):
    """dbt source freshness as Cosmos renders it: the producer runs `dbt source freshness` before its build and
    skips nothing for a stale source; one task per source with a freshness block shows the result and warns on a
    stale feed instead of failing the night (tests/dbt/test_dbt_source_freshness.py)."""
    from orchestration import dbt_tasks

    publish = dagbag.dags["gov_publish"]
    producer = publish.get_task(PRODUCER)
    assert producer._check_source_freshness and producer._freshness_callback is dbt_tasks.no_skips
    sources = {uid: s for uid, s in manifest["sources"].items() if (s.get("config") or {}).get("freshness")}
    assert len(sources) == 4  # the three feeds and the load ledger
    for uid, source in sources.items():
        task = publish.get_task(f"{DBT_GROUP}.{source['source_name']}_{source['name']}_source")
        assert type(task).__name__ == "SourceFreshnessWatcher" and task.base_cmd == ["source", "freshness"]
        assert task.select == f"source:{source['source_name']}.{source['name']}" and task.model_unique_id == uid
        # retried alone, its staleness warns as SourceFreshnessOperator's does
        assert (type(task).handle_exception_dbt_runner.__code__
                is dbt_tasks.SourceFreshnessOperator.handle_exception_dbt_runner.__code__)
        readers = [n for n in _dbt_nodes(manifest).values() if uid in n["depends_on"].get("nodes", [])]
        assert readers, uid
        for node in readers:
            assert task.task_id in publish.get_task(_task_for(node)).upstream_task_ids, (uid, node["name"])


def test_tests_spanning_two_nodes_run_after_both(dagbag, manifest):
    """A relationships test read with one parent freshly built and the other not would check a mix of
    nights: it has its own task after both parents, and is left out of each parent's build when that is
    retried alone (the producer's one build runs it after both, dbt's own order)."""
    publish = dagbag.dags["gov_publish"]
    nodes = _dbt_nodes(manifest)
    spanning = [(uid, t) for uid, t in manifest["nodes"].items()
                if t["resource_type"] == "test" and len(t["depends_on"].get("nodes", [])) > 1]
    assert spanning
    for uid, test in spanning:
        task = publish.get_task(f"{DBT_GROUP}.{test['name']}_test")
        assert type(task).__name__ == "SpanningTestWatcher" and task.model_unique_id == uid
        assert task.base_cmd == ["test"] and task.select == test["name"]
        for parent in test["depends_on"]["nodes"]:
            if parent in nodes:
                assert _task_for(nodes[parent]) in task.upstream_task_ids, (test["name"], parent)
                assert test["name"] in (publish.get_task(_task_for(nodes[parent])).exclude or ""), parent
                assert uid not in publish.get_task(_task_for(nodes[parent])).node_tests, parent


def test_dbt_tasks_share_the_warehouse_pool_the_connection_and_the_nights_vars(dagbag, monkeypatch):
    from cosmos.constants import InvocationMode

    from orchestration.dbt_tasks import warehouse_env

    publish = dagbag.dags["gov_publish"]
    dbt_tasks = [t for t in publish.tasks if t.task_id.startswith(f"{DBT_GROUP}.") and t.task_id != PRODUCER_DONE]
    assert PRODUCER in {t.task_id for t in dbt_tasks}
    for task in dbt_tasks:
        assert task.pool == "warehouse", task.task_id
        # dbt in the task's own process (the producer's build, a retried node's), reusing the last parse
        assert task.invocation_mode == InvocationMode.DBT_RUNNER and task.partial_parse, task.task_id
        assert str(task.profile_config.profiles_yml_filepath) == str(settings.DBT_PROJECT_DIR / "profiles.yml")
        # vars is a templated field: the service day comes from the service_days task of the same run
        assert "vars" in task.template_fields
        assert task.vars == {"service_date": "{{ ti.xcom_pull(task_ids='service_days') | max }}",
                             "service_date_from": "{{ ti.xcom_pull(task_ids='service_days') | min }}",
                             "marts_schema": "marts_candidate"}, task.task_id
        assert task.interceptors == [warehouse_env], task.task_id
        # the `marts` asset is publish's: no dbt task emits one for the candidate tables
        assert not task.outlets and not task.emit_datasets, task.task_id
    # the interceptor gives dbt the one connection (warehouse.connections), resolved when the task runs
    task = dbt_tasks[0]
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://gov:s3cret@wh.example:6432/gov_warehouse")
    monkeypatch.setenv("GOV_TRANSFORMER_PASSWORD", "transformer-pw")
    env_before = dict(task.env or {})
    try:
        warehouse_env({}, task)
        assert task.env["WH_HOST"] == "wh.example" and task.env["WH_PORT"] == "6432"
        # dbt logs in as gov_transformer with its own password, never as the administrator
        assert task.env["WH_USER"] == "gov_transformer" and task.env["WH_DBNAME"] == "gov_warehouse"
        assert task.env["WH_PASSWORD"] == "transformer-pw"
    finally:
        task.env = env_before


def test_publish_without_a_manifest_still_loads_with_one_build_task(tmp_path):
    """An install that skipped `gov-warehouse dbt-manifest` still has a working gov_publish: one dbt build
    task whose name says what is missing (and still no dbt at import)."""
    from orchestration.dbt_tasks import FALLBACK_TASK_ID

    probe = textwrap.dedent(f"""
        import json, os, sys
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=sys.argv[1])
        assert not bag.import_errors, bag.import_errors
        dag = bag.dags["gov_publish"]
        task = dag.get_task("{FALLBACK_TASK_ID}")
        print(json.dumps({{"tasks": sorted(dag.task_ids), "pool": task.pool,
                           "downstream": sorted(task.downstream_task_ids), "upstream": sorted(task.upstream_task_ids),
                           "dbt_loaded": [m for m in sys.modules if m == "dbt.cli.main"]}}))
    """)
    env = {**os.environ, "GOV_DBT_MANIFEST": str(tmp_path / "missing" / "manifest.json"), "PATH": "",
           "AIRFLOW_HOME": str(tmp_path / "airflow"), "WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    proc = subprocess.run([sys.executable, "-c", probe, str(settings.DAGS_DIR / "gov_publish.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [t for t in out["tasks"] if t.startswith(f"{DBT_GROUP}.")]
    assert out["pool"] == "warehouse" and out["upstream"] == ["service_days"]
    assert out["downstream"] == ["night_failed", "validate_marts"]
    assert out["dbt_loaded"] == []
