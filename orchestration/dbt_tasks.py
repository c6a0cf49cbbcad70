"""gov_publish's dbt step as Airflow tasks: one task per dbt model, seed and snapshot (astronomer-cosmos).

The task graph is rendered from a manifest made by `dbt parse` ahead of time
(orchestration/dbt_manifest.py), so parsing the DAG file runs no dbt command and opens no connection.
Each task builds its node into `marts_candidate` for the run's service day and runs that node's tests
right after it (`dbt build --select <node>`): a failing model or test fails, retries and alerts as its
own task, and what does not depend on it goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

from orchestration.dbt_manifest import manifest_path
from warehouse import connections, settings

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import TaskGroup, XComArg

log = logging.getLogger(__name__)

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
        TestBehavior,
    )

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
        ),
        operator_args={
            "pool": pool,
            "vars": dbt_vars(),
            "interceptors": [warehouse_env],
            "install_deps": False,
        },
    )
