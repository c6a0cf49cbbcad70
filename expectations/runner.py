"""Run the suites against the warehouse, store every result in audit.dq_results, build Data Docs."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from expectations.suites import Suite, severity_of
from warehouse.connections import CHECKER, connect_as, role_conninfo
from warehouse.conninfo import ConnInfo
from warehouse.settings import local_dir

log = logging.getLogger(__name__)
# GX reads the checker's URL from this variable when it connects ("${...}" substitution): the URL,
# password included, is never written into great_expectations.yml nor into GX's log lines
GX_URL_VAR = "GOV_GX_WAREHOUSE_URL"


@dataclass
class CheckResult:
    suite: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed_value: str | None
    unexpected_count: int | None
    sample: list
    details: dict = field(default_factory=dict)  # GX's row counts and the check's note, for audit.dq_results


@dataclass
class SuiteRun:
    run_id: str
    results: list[CheckResult]
    data_docs: Path | None

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warn"]


def gx_dir() -> Path:
    return local_dir() / "gx"


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    # one file-backed GX project is shared by every task on a machine: two nights validating at once
    # (Celery worker slots, backfills) would rewrite each other's definitions mid-run
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_suites(wh: ConnInfo, suites: list[Suite], run_id: str, service_date: str) -> SuiteRun:
    with _exclusive(gx_dir()), _checker_url_in_environment(wh):
        results, docs = _validate(wh, suites)
    _store(wh, run_id, service_date, results)
    return SuiteRun(run_id, results, docs)


@contextmanager
def _checker_url_in_environment(wh: ConnInfo) -> Iterator[None]:
    """GX_URL_VAR set to gov_checker's URL for the validation only (so no later subprocess inherits it)."""
    before = os.environ.get(GX_URL_VAR)
    os.environ[GX_URL_VAR] = role_conninfo(CHECKER, wh).sqlalchemy_url()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(GX_URL_VAR, None)
        else:
            os.environ[GX_URL_VAR] = before


def _validate(wh: ConnInfo, suites: list[Suite]) -> tuple[list[CheckResult], Path | None]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    warnings.filterwarnings("ignore", module="great_expectations")
    import great_expectations as gx

    root = gx_dir()
    context = gx.get_context(mode="file", project_root_dir=str(root))
    source_name = "warehouse"
    # definitions are rebuilt from code each run: drop the previous run's before their datasource
    for stale in list(context.validation_definitions.all()):
        context.validation_definitions.delete(stale.name)
    if source_name in [ds.name for ds in context.data_sources.all().values()]:
        context.data_sources.delete(source_name)
    datasource = context.data_sources.add_sql(name=source_name, connection_string="${" + GX_URL_VAR + "}")
    results: list[CheckResult] = []
    for suite in suites:
        asset = datasource.add_query_asset(name=suite.name, query=suite.query)
        batch = asset.add_batch_definition_whole_table("night")
        if suite.name in [s.name for s in context.suites.all()]:
            context.suites.delete(suite.name)
        gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.name))
        declared = {}
        for check in suite.checks:
            if check.note:
                check.expectation.notes = check.note  # shown beside the expectation in Data Docs
            expectation = gx_suite.add_expectation(check.expectation)
            declared[expectation.id] = check
        gx_suite.save()
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
        outcome = vd.run(result_format="SUMMARY")
        for r in outcome.results:
            cfg = r.expectation_config
            res = r.result or {}
            check = declared.get(cfg.id)
            # rows seen and rows left out (nulls: e.g. reporters the row-count band did not compare)
            details = {k: res[k] for k in ("element_count", "missing_count") if res.get(k) is not None}
            if check is not None and check.note:
                details["note"] = check.note
            if check is not None:
                details["zh"] = check.zh
            # GX's own severity, as the suite declared it (see expectations/suites.py)
            severity = severity_of(getattr(cfg, "severity", None))
            if error := _exception_message(r.exception_info):
                # the check could not run (a missing table or column: a broken contract): it counts as
                # failed, and blocks whatever it was declared, as nothing is known about the night
                details["exception"] = error
                severity = "fail"
            results.append(CheckResult(
                suite=suite.name,
                expectation=cfg.type,
                column=cfg.kwargs.get("column"),
                severity=severity,
                success=bool(r.success),
                observed_value=None if res.get("observed_value") is None else str(res.get("observed_value")),
                unexpected_count=res.get("unexpected_count"),
                sample=[str(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
                details=details,
            ))
    return results, _build_docs(context)


def _exception_message(info: object) -> str | None:
    """GX's exception_info is either one {raised_exception, exception_message, ...} or such dicts by metric."""
    if not isinstance(info, dict):
        return None
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message")) for i in found if i.get("raised_exception")]
    return "; ".join(messages)[:500] if messages else None


def _build_docs(context) -> Path | None:
    try:
        context.build_data_docs()
        index = gx_dir() / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
        return index if index.exists() else None
    except Exception as err:  # docs are a convenience: never fail a night for them
        log.warning("Data Docs not built: %s", err)
        return None


def _store(wh: ConnInfo, run_id: str, service_date: str, results: list[CheckResult]) -> None:
    with connect_as(CHECKER, wh) as conn:
        # a retried task replaces its own results, and only those
        conn.execute("delete from audit.dq_results where run_id = %s and suite = any(%s)",
                     (run_id, sorted({r.suite for r in results})))
        with conn.cursor().copy(
            "copy audit.dq_results (run_id, service_date, suite, expectation, column_name, severity, success, "
            "observed_value, unexpected_count, details) from stdin"
        ) as copy:
            for r in results:
                details = json.dumps({"sample": r.sample, **r.details}, ensure_ascii=False)
                copy.write_row((run_id, service_date, r.suite, r.expectation, r.column, r.severity, r.success,
                                r.observed_value, r.unexpected_count, details))
