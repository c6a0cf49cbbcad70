"""gov_publish's dbt step as Airflow tasks: one task per dbt model, seed and snapshot (astronomer-cosmos).

The task graph is rendered from a manifest made by `dbt parse` ahead of time
(orchestration/dbt_manifest.py), so parsing the DAG file runs no dbt command and opens no connection.
Each task builds its node into `marts_candidate` for the run's service day and runs that node's tests
right after it (`dbt build --select <node>`): a failing model or test fails, retries and alerts as its
own task, and what does not depend on it goes on.

Each source with a `freshness` block is a task of its own too (`<source>.<table>_source`, Cosmos's source
rendering), upstream of the models that read it: it runs `dbt source freshness --select source:<name>` and
its log shows what dbt users see (PASS, WARN, ERROR STALE). A stale feed does not stop the night (a missing
reporter or feed never blocks publish): SourceFreshnessOperator reports stale sources as a warning and
succeeds; a freshness query that cannot run (runtime error) still fails the task. `dbt source freshness`
run by hand or in CI exits non-zero on ERROR STALE, as dbt's users expect.
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
# orchestration.publish.CANDIDATE; not imported from there, as that would load psycopg on every DAG parse
CANDIDATE_SCHEMA = "marts_candidate"


def dbt_vars() -> dict[str, str]:
    """`--vars` of every dbt task (templated by Airflow, so the values show in each task's rendered fields)."""
    return {"service_date": SERVICE_DAY, "marts_schema": CANDIDATE_SCHEMA}


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


def _source_freshness_operator() -> type:
    from cosmos.operators.local import DbtSourceLocalOperator

    class SourceFreshnessOperator(DbtSourceLocalOperator):
        """`dbt source freshness` for one source, whose staleness warns instead of failing the night."""

        def handle_exception_dbt_runner(self, result: Any) -> None:
            freshness = getattr(result, "result", None)
            stale = None if result.exception or freshness is None else stale_sources(freshness.results)
            if result.success or stale is None:
                return super().handle_exception_dbt_runner(result)
            # a feed without a recent load: dbt said so above (ERROR STALE); the night goes on without it
            self.log.warning("stale source(s), the night goes on (a missing feed never blocks publish): %s",
                             "; ".join(stale))
            return None

    SourceFreshnessOperator.__module__ = __name__
    return SourceFreshnessOperator


def __getattr__(name: str) -> Any:
    # the operator class is made on first use: importing Cosmos's operators at module import would cost every
    # DAG file that imports this module; Cosmos instantiates it by its dotted path
    if name == "SourceFreshnessOperator":
        cls = _source_freshness_operator()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _source_task(dag: Any, task_group: Any, node: Any, task_args: dict, execution_mode: Any, **kwargs: Any) -> Any:
    """Cosmos node converter for sources: the task Cosmos would render, run by SourceFreshnessOperator."""
    from cosmos import RenderConfig
    from cosmos.airflow.graph import create_task_metadata
    from cosmos.core.airflow import get_airflow_task

    meta = create_task_metadata(
        node=node, execution_mode=execution_mode, args=task_args, dbt_dag_task_group_identifier=GROUP_ID,
        render_config=RenderConfig(source_rendering_behavior=kwargs["source_rendering_behavior"],
                                   test_behavior=kwargs["test_behavior"]),
        use_task_group=False, on_warning_callback=kwargs.get("on_warning_callback"))
    if meta is None:
        return None
    if meta.operator_class.endswith("DbtSourceLocalOperator"):
        meta.operator_class = f"{__name__}.SourceFreshnessOperator"
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

        steps.build_marts(warehouse(), max(service_days))

    return build_all(days)


def _dbt_task_group(manifest: Path, pool: str) -> TaskGroup:
    from cosmos import (
        DbtTaskGroup,
        ExecutionConfig,
        InvocationMode,
        LoadMode,
        ProfileConfig,
        ProjectConfig,
        RenderConfig,
        SourceRenderingBehavior,
        TestBehavior,
    )
    from cosmos.constants import DbtResourceType

    project = ProjectConfig(
        dbt_project_path=settings.DBT_PROJECT_DIR,
        manifest_path=manifest,
        install_dbt_deps=False,  # the project has no packages
        partial_parse=True,  # each task reuses the previous task's parse (Cosmos caches partial_parse.msgpack)
    )
    # ProjectConfig wraps the path in an ObjectStoragePath, whose first read makes Airflow load every
    # plugin for hook lineage (Cosmos's own imports FastAPI): about 1 s on each parse of this file.
    # The manifest is a local file; the attribute is typed `Path | ObjectStoragePath`.
    project.manifest_path = manifest
    return DbtTaskGroup(
        group_id=GROUP_ID,
        project_config=project,
        profile_config=ProfileConfig(profile_name=PROFILE_NAME, target_name=TARGET_NAME,
                                     profiles_yml_filepath=settings.DBT_PROJECT_DIR / "profiles.yml"),
        # dbt runs inside the task's own process (no interpreter start and dbt import per task)
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # BUILD: one task per node runs `dbt build --select <node>`, i.e. the node, then its tests
            # (and unit tests), so tests still run right after each model but a night pays one dbt
            # invocation per node instead of two (AFTER_EACH adds a `dbt test` task per node)
            test_behavior=TestBehavior.BUILD,
            # a test on two models (relationships, the published-figures reconciliation) gets its own task
            # after both: run with either parent alone, it would read the other's previous build
            should_detach_multiple_parents_tests=True,
            # the `marts` asset is produced by `publish`; candidate tables are not for consumers
            emit_datasets=False,
            # every task keeps the DAG's owner (default_args), not dbt's per-model `meta.owner`
            enable_owner_inheritance=False,
            # a task per source with a freshness block (dbt source freshness), upstream of its models; stale
            # warns, never fails (SourceFreshnessOperator)
            source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
            node_converters={DbtResourceType.SOURCE: _source_task},
        ),
        operator_args={
            "pool": pool,
            "vars": dbt_vars(),
            "interceptors": [warehouse_env],
            "install_deps": False,
        },
    )
