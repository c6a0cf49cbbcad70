"""Run a night's suites as one GX Checkpoint, store every result in audit.dq_results; the checkpoint's
UpdateDataDocsAction updates the shared Data Docs site (expectations/gx_context.py)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expectations.gx_context import SITE, add_warehouse, data_docs_index, ephemeral_context, remove_results
from expectations.suites import Check, Suite, severity_of
from warehouse.connections import CHECKER, connect_as, role_conninfo
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    suite: str
    service_date: str
    expectation: str
    column: str | None
    severity: str  # as audit.dq_results stores it: GX's severity of the check as it ran, 'fail' or 'warn'
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


@dataclass(frozen=True)
class _Definition:
    """What one validation definition of the checkpoint validates, to read its result back."""

    suite: Suite
    day: str
    checks: dict[str, Check]  # the declared check of each GX expectation id


def run_suites(wh: ConnInfo, suites: list[Suite], run_id: str, service_date: str) -> SuiteRun:
    """One day's suites (see run_checkpoint)."""
    return run_checkpoint(wh, "checks", {service_date: suites}, run_id)


def run_checkpoint(wh: ConnInfo, name: str, suites_by_day: dict[str, list[Suite]], run_id: str) -> SuiteRun:
    """Every suite of every day as one GX Checkpoint named `name`, run under the run name `run_id` (the
    Airflow run id): its results are stored in audit.dq_results and listed in Data Docs under that name."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    context = ephemeral_context()
    source = add_warehouse(context, role_conninfo(CHECKER, wh))
    definitions = _add_definitions(context, source, suites_by_day)
    if not definitions:
        return SuiteRun(run_id, [], data_docs_index())
    _forget_earlier_attempts(context, run_id, {vd.suite.name for vd, _ in definitions})
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=name,
        validation_definitions=[vd for vd, _ in definitions],
        actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE])],
        result_format="SUMMARY",
    ))
    outcome = checkpoint.run(run_id=RunIdentifier(run_name=run_id, run_time=dt.datetime.now(dt.UTC)))
    by_id = {vd.id: definition for vd, definition in definitions}
    results = [r for suite_result in outcome.run_results.values()
               for r in _read(by_id[suite_result.meta["validation_id"]], suite_result)]
    _store(wh, run_id, results)
    return SuiteRun(run_id, results, data_docs_index())


def _add_definitions(context: Any, source: Any, suites_by_day: dict[str, list[Suite]]) -> list[tuple[Any, _Definition]]:
    """A query asset, GX suite and validation definition per suite and day: each validation definition with
    what it validates."""
    import great_expectations as gx

    definitions = []
    gx_suites: dict[str, tuple[str, Any, dict[str, Check]]] = {}  # by GX suite name: (declaration, suite, checks)
    for day, suites in suites_by_day.items():
        for suite in suites:
            declared = json.dumps([c.expectation.configuration.to_json_dict() for c in suite.checks], sort_keys=True)
            gx_name = suite.name
            if gx_name in gx_suites and gx_suites[gx_name][0] != declared:
                gx_name = f"{suite.name}__{day}"  # the same suite declared otherwise that day: its own GX suite
            if gx_name not in gx_suites:
                gx_suite = context.suites.add(gx.ExpectationSuite(name=gx_name))
                checks = {}
                for check in suite.checks:
                    if check.note:
                        check.expectation.notes = check.note  # shown beside the expectation in Data Docs
                    checks[gx_suite.add_expectation(check.expectation).id] = check
                gx_suites[gx_name] = (declared, gx_suite, checks)
            _, gx_suite, checks = gx_suites[gx_name]
            # the day in the asset's name makes each day's batch (and so its Data Docs page) its own
            asset = source.add_query_asset(name=f"{suite.name}__{day}", query=suite.query)
            batch = asset.add_batch_definition_whole_table("night")
            vd = context.validation_definitions.add(gx.ValidationDefinition(
                name=f"{suite.name}__{day}", data=batch, suite=gx_suite))
            definitions.append((vd, _Definition(suite, day, checks)))
    return definitions


def _forget_earlier_attempts(context: Any, run_id: str, gx_suites: set[str]) -> None:
    """A retried task replaces its own earlier results of these GX suites in the shared store (and so, at the
    index build, in Data Docs), as it does in audit.dq_results: one Data Docs run per night and suite."""
    remove_results(context, [key for key in context.validation_results_store.list_keys()
                             if key.run_id.run_name == run_id and key.expectation_suite_identifier.name in gx_suites])


def _read(definition: _Definition, suite_result: Any) -> list[CheckResult]:
    out = []
    for r in suite_result.results:
        cfg = r.expectation_config
        res = r.result or {}
        check = definition.checks.get(cfg.id)
        # rows seen and rows left out (nulls: e.g. reporters the row-count band did not compare)
        details = {k: res[k] for k in ("element_count", "missing_count") if res.get(k) is not None}
        if check is not None and check.note:
            details["note"] = check.note
        if check is not None:
            details["zh"] = check.zh
        severity = severity_of(cfg.severity)  # GX's own, as the suite declared it (expectations/suites.py)
        if error := _exception_message(r.exception_info):
            # the check could not run (a missing table or column: a broken contract): it counts as
            # failed, and blocks whatever it was declared, as nothing is known about the night
            details["exception"] = error
            severity = "fail"
        out.append(CheckResult(
            suite=definition.suite.name,
            service_date=definition.day,
            expectation=cfg.type,
            column=cfg.kwargs.get("column"),
            severity=severity,
            success=bool(r.success),
            observed_value=None if res.get("observed_value") is None else str(res.get("observed_value")),
            unexpected_count=res.get("unexpected_count"),
            sample=[str(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
            details=details,
        ))
    return out


def _exception_message(info: object) -> str | None:
    """GX's exception_info is either one {raised_exception, exception_message, ...} or such dicts by metric."""
    if not isinstance(info, dict):
        return None
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message")) for i in found if i.get("raised_exception")]
    return "; ".join(messages)[:500] if messages else None


def _store(wh: ConnInfo, run_id: str, results: list[CheckResult]) -> None:
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
                copy.write_row((run_id, r.service_date, r.suite, r.expectation, r.column, r.severity, r.success,
                                r.observed_value, r.unexpected_count, details))
