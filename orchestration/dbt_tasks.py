"""gov_publish's dbt step as Airflow tasks: one `dbt build` for the night, one task per dbt node to show and
retry it (astronomer-cosmos, `ExecutionMode.WATCHER`).

The task graph is rendered from a manifest made by `dbt parse` ahead of time
(orchestration/dbt_manifest.py), so parsing the DAG file runs no dbt command and opens no connection.

`dbt.dbt_producer_watcher` runs dbt twice in one task: `dbt source freshness`, then one `dbt build` of the whole
project into `marts_candidate` for the run's days (dbt orders the nodes, runs each node's tests right after it
and a test on two models after both, and skips what depends on a failure). It publishes each node's result as
it finishes (XCom). Every model, seed and snapshot is a task of its own (`<name>_<type>_build`, a watcher
sensor), wired like dbt's graph and started when the build has ended: it succeeds when its node and the node's
own tests passed, and fails when either failed, so a failing model or test is a red task of its own while what
does not depend on it is built. Its retry (or *Clear*) runs `dbt build --select <node>` alone, the node and its
tests, as the task did when each node was its own build. A test on two models (relationships, the published
figures' reconciliation) is a task after both (`<test>_test`; its retry runs `dbt test --select <test>`).

Each source with a `freshness` block is a task too (`<source>.<table>_source`), upstream of the models that read
it, showing what the producer's `dbt source freshness` found (PASS, WARN, ERROR STALE). A stale feed does not stop
the night (a missing reporter or feed never blocks publish): stale sources warn and the task succeeds, and the
build skips nothing for them; a freshness query that cannot run (runtime error) fails the task. Its retry runs
`dbt source freshness --select source:<name>` alone, with the same rule. `dbt source freshness` run by hand or
in CI exits non-zero on ERROR STALE, as dbt's users expect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

from orchestration.dbt_manifest import manifest_path
from orchestration.dbt_run import DOCS_SWITCH, docs_dir, generate_docs  # noqa: F401 - gov_publish's dbt_docs task
from warehouse import connections, settings

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import TaskGroup, XComArg

log = logging.getLogger(__name__)

# dbt source freshness result statuses: stale past warn_after / error_after; anything else is a real failure
STALE_STATUSES = {"warn", "error"}

GROUP_ID = "dbt"
# Without a manifest, the marts are still built, in one `dbt build` task of this name (see marts_build)
FALLBACK_TASK_ID = "dbt_build_all_without_manifest"
PROFILE_NAME, TARGET_NAME = "gov_warehouse", "warehouse"  # dbt_project/profiles.yml
# the newest service day of the run (as `steps.build_marts(wh, max(days))` did), rendered per task
SERVICE_DAY = "{{ ti.xcom_pull(task_ids='service_days') | max }}"
# the oldest: a run of several days (catch-up, backfill) builds the range in one build (the dbt project's var)
SERVICE_DAY_FROM = "{{ ti.xcom_pull(task_ids='service_days') | min }}"
# the watcher sensors start once the build has ended (see _dbt_task_group), so their first poke finds the
# node's result; a short interval only matters when a producer still running is polled (a retried sensor)
POKE_SECONDS = 5
# orchestration.publish.CANDIDATE; not imported from there, as that would load psycopg on every DAG parse
CANDIDATE_SCHEMA = "marts_candidate"


def dbt_vars() -> dict[str, str]:
    """`--vars` of every dbt task (templated by Airflow, so the values show in each task's rendered fields)."""
    return {"service_date": SERVICE_DAY, "service_date_from": SERVICE_DAY_FROM, "marts_schema": CANDIDATE_SCHEMA}


def warehouse_env(context: Any, operator: Any) -> None:
    """Cosmos interceptor, run in the task before the dbt command is built: the WH_* variables that
    dbt_project/profiles.yml reads, from warehouse.connections (the one connection helper), resolved at run
    time rather than at DAG parse time; the password is registered with Airflow's log masker."""
    from airflow.sdk.log import mask_secret

    from orchestration.dbt_run import dbt_env

    env = dbt_env(connections.warehouse())
    if env["WH_PASSWORD"]:
        mask_secret(env["WH_PASSWORD"], "WH_PASSWORD")
    operator.env = {**(operator.env or {}), **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    ti = context.get("ti")
    if getattr(ti, "_cosmos_xcom_persist_incrementally", False):
        # the producer (retries 0, see _dbt_task_group) would rewrite its whole XCom backup into an Airflow
        # Variable on every node event, under the lock dbt's threads share; the backup only serves a producer
        # retry, and a failing producer still writes it once (Cosmos' failure callback)
        ti._cosmos_xcom_persist_incrementally = False


def producer_env(context: Any) -> None:
    """The producer's pre_execute: its `dbt source freshness` runs before Cosmos calls the interceptors (they
    run for its build), so the connection is set up first here too."""
    warehouse_env(context, context["task"])


def stale_sources(results: list[Any]) -> list[str] | None:
    """The stale sources of a `dbt source freshness` result ("canteens.meals: error"), or None when a result
    is a failure of another kind (a runtime error: the freshness query itself did not run)."""
    stale = []
    for result in results:
        status = str(getattr(result.status, "value", result.status))
        if status == "pass":
            continue
        if status not in STALE_STATUSES:
            return None
        stale.append(f"{result.node.source_name}.{result.node.name}: {status}")
    return stale


def no_skips(context: Any, dag: Any, task_group: Any, nodes: Any, sources_json: Any) -> list[tuple[str, str]]:
    """The producer's freshness callback: nothing is skipped for a stale source (Cosmos' default skips the models
    that read only stale sources; here a missing feed never blocks the night). The source tasks report it."""
    return []


def _watcher_classes() -> dict[str, type]:
    from airflow.exceptions import AirflowException, AirflowFailException
    from cosmos.operators._watcher.state import (
        DBT_FAILED_STATUSES,
        get_dbt_event_xcom_key,
        get_xcom_val,
        is_producer_task_terminated,
    )
    from cosmos.operators.watcher import (
        DbtConsumerWatcherSensor,
        DbtSourceWatcherOperator,
        DbtTestWatcherOperator,
    )

    class _NoResultFails:
        """A producer that ended without this node's result never sends one: say so instead of poking until the
        task's timeout (Cosmos waits on), and do not run dbt when the producer never ran (its upstream failed)."""

        def _handle_no_dbt_node_status(self, producer_task_state: str | None, try_number: int, context: Any) -> bool:
            state = str(getattr(producer_task_state, "value", producer_task_state))
            if state == "success":
                raise AirflowException(f"dbt build in {self.producer_task_id} ended without a result for "
                                       f"{self.model_unique_id}; Clear this task to run the node alone")
            if state in ("upstream_failed", "removed"):
                raise AirflowFailException(f"{self.producer_task_id} did not run ({state})")
            return super()._handle_no_dbt_node_status(producer_task_state, try_number, context)

    def _event_status(sensor: Any, context: Any, unique_id: str) -> str | None:
        # the producer's last dbt event for a node (NodeFinished once it is done): the watcher's per-node key
        # for tests that Cosmos only aggregates per model
        event = get_xcom_val(context["ti"], sensor.producer_task_id, get_dbt_event_xcom_key(unique_id)) or {}
        return event.get("status")

    class NodeBuildWatcher(_NoResultFails, DbtConsumerWatcherSensor):
        """A model, seed or snapshot of the producer's `dbt build`: succeeds when the node and its own tests
        passed (a test warning is logged), fails when either failed. Retried or cleared, it runs
        `dbt build --select <node>` alone (Cosmos' fallback, with this task's `--exclude` of the tests that span
        two nodes), i.e. the node and its own tests."""

        base_cmd = ["build"]

        def __init__(self, *args: Any, node_tests: list[str] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.node_tests = list(node_tests or [])

        def poke(self, context: Any) -> bool:
            if context["ti"].try_number > 1:
                return super().poke(context)  # Cosmos' fallback once the producer has ended: a build of this node
            return super().poke(context) and self._own_tests_passed(context)

        def _own_tests_passed(self, context: Any) -> bool:
            waiting, failed = [], []
            for test in self.node_tests:
                status = _event_status(self, context, test)
                name = test.split(".")[2]
                if status in ("pass", "success"):
                    continue
                if status == "warn":
                    self.log.warning("test %s warned", name)
                elif status in DBT_FAILED_STATUSES or status == "skipped":
                    failed.append(f"{name}: {status}")
                else:
                    waiting.append(name)
            if failed:
                raise AirflowException(f"{self.model_unique_id} was built but its tests failed: {'; '.join(failed)}")
            if waiting:
                if is_producer_task_terminated(self._get_producer_task_status(context)):
                    raise AirflowException(f"no result for the tests {waiting} of {self.model_unique_id}")
                return False
            return True

    class SpanningTestWatcher(_NoResultFails, DbtTestWatcherOperator):
        """A test on two nodes, after both: its own result in the producer's build (Cosmos' test sensor waits
        for a per-model aggregate that a test's own id never gets). Retried, `dbt test --select <test>`."""

        @property
        def is_test_sensor(self) -> bool:
            return False

        @property
        def _resource_label(self) -> str:
            return "Test"

        def _get_node_status(self, ti: Any, context: Any) -> Any:
            status = _event_status(self, context, self.model_unique_id)
            return status if status in ("pass", "warn", "fail", "error", "skipped", "success") else None

    class SourceFreshnessWatcher(_NoResultFails, DbtSourceWatcherOperator):
        """A source's freshness as the producer's `dbt source freshness` found it: stale (`warn`, `error`) warns and
        succeeds, a runtime error fails. Retried, it runs `dbt source freshness --select source:<name>` alone, whose
        staleness warns too (SourceFreshnessOperator's rule)."""

        def _get_node_status(self, ti: Any, context: Any) -> Any:
            status = super()._get_node_status(ti, context)
            if status == "error":
                # ERROR STALE: past error_after. The feed is late, the night goes on without it
                self.log.warning("source %s is stale (ERROR STALE); the night goes on (a missing feed never blocks "
                                 "publish)", self.model_unique_id)
                return "warn"
            return status

        handle_exception_dbt_runner = _source_freshness_operator().handle_exception_dbt_runner

    classes = {cls.__name__: cls for cls in (NodeBuildWatcher, SpanningTestWatcher, SourceFreshnessWatcher)}
    for cls in classes.values():
        cls.__module__ = __name__
    return classes


def _source_freshness_operator() -> type:
    from cosmos.operators.local import DbtSourceLocalOperator

    class SourceFreshnessOperator(DbtSourceLocalOperator):
        """`dbt source freshness` for one source, whose staleness warns instead of failing the night."""

        def handle_exception_dbt_runner(self, result: Any) -> None:
            freshness = getattr(result, "result", None)
            stale = None if result.exception or freshness is None else stale_sources(freshness.results)
            if result.success or stale is None:
                return DbtSourceLocalOperator.handle_exception_dbt_runner(self, result)
            # a feed without a recent load: dbt said so above (ERROR STALE); the night goes on without it
            self.log.warning("stale source(s), the night goes on (a missing feed never blocks publish): %s",
                             "; ".join(stale))
            return None

    SourceFreshnessOperator.__module__ = __name__
    return SourceFreshnessOperator


_WATCHERS = ("NodeBuildWatcher", "SpanningTestWatcher", "SourceFreshnessWatcher")


def __getattr__(name: str) -> Any:
    # the operator classes are made on first use: importing Cosmos's operators at module import would cost every
    # DAG file that imports this module; Cosmos instantiates them by their dotted path
    if name == "SourceFreshnessOperator":
        globals()[name] = _source_freshness_operator()
        return globals()[name]
    if name in _WATCHERS:
        globals().update(_watcher_classes())
        return globals()[name]
    raise AttributeError(name)


def _own_tests(manifest: dict) -> dict[str, list[str]]:
    """Each node's own tests (those on it alone), which its task waits for: a test on several nodes has a task."""
    tests: dict[str, list[str]] = {}
    for uid, node in manifest["nodes"].items():
        parents = node["depends_on"].get("nodes", [])
        if node["resource_type"] == "test" and len(parents) == 1:
            tests.setdefault(parents[0], []).append(uid)
    return tests


def _node_task(dag: Any, task_group: Any, node: Any, task_args: dict, execution_mode: Any, *,
               node_tests: dict[str, list[str]], **kwargs: Any) -> Any:
    """Cosmos node converter: the task Cosmos renders for a node in watcher mode, run by this module's sensors."""
    from cosmos import RenderConfig
    from cosmos.airflow.graph import calculate_detached_node_name, create_task_metadata, create_test_task_metadata
    from cosmos.constants import DbtResourceType
    from cosmos.core.airflow import get_airflow_task

    render = RenderConfig(source_rendering_behavior=kwargs["source_rendering_behavior"],
                          test_behavior=kwargs["test_behavior"], should_detach_multiple_parents_tests=True)
    detached = kwargs.get("detached_from_parent") or {}
    if kwargs["task_id"].endswith("_test"):
        # a test on several nodes: Cosmos passes another node along with it, so find it by its task id
        tests = {calculate_detached_node_name(t): t for ts in detached.values() for t in ts}
        meta = create_test_task_metadata(kwargs["task_id"], execution_mode, kwargs["test_indirect_selection"],
                                         task_args=task_args, node=tests[kwargs["task_id"]], render_config=render,
                                         enable_owner_inheritance=False)
        meta.operator_class = f"{__name__}.SpanningTestWatcher"
        return get_airflow_task(meta, dag, task_group)
    meta = create_task_metadata(
        node=node, execution_mode=execution_mode, args=task_args, dbt_dag_task_group_identifier=GROUP_ID,
        render_config=render, use_task_group=False, on_warning_callback=kwargs.get("on_warning_callback"),
        detached_from_parent=detached)
    if meta is None:
        return None
    if node.resource_type == DbtResourceType.SOURCE:
        meta.operator_class = f"{__name__}.SourceFreshnessWatcher"
    else:
        meta.operator_class = f"{__name__}.NodeBuildWatcher"
        meta.arguments["node_tests"] = node_tests.get(node.unique_id, [])
    return get_airflow_task(meta, dag, task_group)


def marts_build(days: XComArg, pool: str) -> TaskGroup | XComArg:
    """The dbt step of gov_publish, downstream of `days` (the service_days task's output).

    From the manifest: a Cosmos DbtTaskGroup. Without one (an install that skipped
    `gov-warehouse dbt-manifest`), one clearly named `dbt build` task, so the DAG still loads and
    the night still publishes; its name says what to fix.
    """
    manifest = manifest_path()
    if manifest.is_file():
        group = _dbt_task_group(manifest, pool)
        days >> group
        return group
    log.warning("no dbt manifest at %s: gov_publish builds the marts in one task (%s); run "
                "`gov-warehouse dbt-manifest` for per-model tasks", manifest, FALLBACK_TASK_ID)

    @task(task_id=FALLBACK_TASK_ID, pool=pool)
    def build_all(service_days: list[str]) -> None:
        from orchestration import steps
        from warehouse.connections import warehouse

        steps.build_marts(warehouse(), max(service_days), min(service_days))

    return build_all(days)


def _dbt_task_group(manifest: Path, pool: str) -> TaskGroup:
    import json

    from cosmos import (
        DbtTaskGroup,
        ExecutionConfig,
        ExecutionMode,
        InvocationMode,
        LoadMode,
        ProfileConfig,
        ProjectConfig,
        RenderConfig,
        SourceRenderingBehavior,
        TestBehavior,
    )
    from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID, DbtResourceType

    project = ProjectConfig(
        dbt_project_path=settings.DBT_PROJECT_DIR,
        manifest_path=manifest,
        install_dbt_deps=False,  # the project has no packages
        partial_parse=True,  # a retried node's build reuses the producer's parse (Cosmos caches partial_parse.msgpack)
    )
    # ProjectConfig wraps the path in an ObjectStoragePath, whose first read makes Airflow load every
    # plugin for hook lineage (Cosmos's own imports FastAPI): about 1 s on each parse of this file.
    # The manifest is a local file; the attribute is typed `Path | ObjectStoragePath`.
    project.manifest_path = manifest
    node_tests = _own_tests(json.loads(manifest.read_text()))

    def converter(**kwargs: Any) -> Any:
        return _node_task(node_tests=node_tests, **kwargs)

    group = DbtTaskGroup(
        group_id=GROUP_ID,
        project_config=project,
        profile_config=ProfileConfig(profile_name=PROFILE_NAME, target_name=TARGET_NAME,
                                     profiles_yml_filepath=settings.DBT_PROJECT_DIR / "profiles.yml"),
        execution_config=ExecutionConfig(
            # one `dbt build` for the night in the producer task; a task per node shows and retries it (the
            # module's docstring). Measured in bench/README.md: one dbt start per night instead of one per node
            execution_mode=ExecutionMode.WATCHER,
            # dbt runs inside the task's own process (no interpreter start and dbt import)
            invocation_mode=InvocationMode.DBT_RUNNER,
            setup_operator_args={
                # a producer's retry never builds again (Cosmos skips it): the node tasks retry, each its own node
                "retries": 0,
                # a stale source skips nothing: a missing feed never blocks the night
                "freshness_callback": no_skips,
                "pre_execute": producer_env,
            },
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # BUILD: the producer's `dbt build` runs each node's tests right after it; a node's task shows both,
            # and its retry runs `dbt build --select <node>`
            test_behavior=TestBehavior.BUILD,
            # a test on two models (relationships, the published-figures reconciliation) gets its own task
            # after both; a retried node's build leaves it out (it would read the other's previous build)
            should_detach_multiple_parents_tests=True,
            # the `marts` asset is produced by `publish`; candidate tables are not for consumers
            emit_datasets=False,
            # every task keeps the DAG's owner (default_args), not dbt's per-model `meta.owner`
            enable_owner_inheritance=False,
            # a task per source with a freshness block, upstream of its models; stale warns, never fails
            source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
            node_converters={kind: converter for kind in (DbtResourceType.MODEL, DbtResourceType.SEED,
                                                           DbtResourceType.SNAPSHOT, DbtResourceType.SOURCE,
                                                           DbtResourceType.TEST)},
        ),
        operator_args={
            "pool": pool,
            "vars": dbt_vars(),
            "interceptors": [warehouse_env],
            "install_deps": False,
            # the sensors poke (no triggerer needed, `airflow dags test` runs them in turn) and only once the
            # build has ended, so none holds a worker slot while the producer waits for one
            "deferrable": False,
            "mode": "poke",
            "poke_interval": POKE_SECONDS,
        },
    )
    producer = group.children[f"{GROUP_ID}.{PRODUCER_WATCHER_TASK_ID}"]
    done = f"{GROUP_ID}.{PRODUCER_WATCHER_DONE_TASK_ID}"
    for child in group.children.values():
        # Cosmos starts the first sensors of a task group with the producer (it links them only in a DbtDag):
        # in `airflow dags test`, which runs one task at a time, a sensor run first would wait for ever, and on
        # Celery they would hold worker slots. Each starts when the producer has ended, whatever its outcome
        # (a failed build still reports its nodes)
        if child is not producer and child.task_id != done and not child.upstream_task_ids:
            producer >> child
            child.trigger_rule = "all_done"
    return group
