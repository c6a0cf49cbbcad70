"""`gov-warehouse reconcile` on three nights of the built-in scenario, in a database of its own.

The command generates, loads (the project's loader), builds (one full dbt build) and prints published vs
warehouse figures. Expected warehouse figures are computed here from the generator's own records (and
the published figures from the project's seed file), never read back from the warehouse.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from contextlib import redirect_stdout
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from commands import cli
from orchestration import reconcile
from scenario.generator import PROGRAMME_END, PROGRAMME_START, Scenario
from warehouse import conninfo, settings

pytestmark = pytest.mark.integration

START, END = date(2023, 3, 1), date(2023, 3, 3)  # inside the programme period, before its last transitions
DAYS = [START + timedelta(days=i) for i in range((END - START).days + 1)]


def _published() -> dict[tuple[str, str], Decimal]:
    with (settings.DBT_PROJECT_DIR / "seeds" / "published_figures.csv").open(encoding="utf-8") as f:
        return {(r["figure_key"], r["scope_code"]): Decimal(r["value"]) for r in csv.DictReader(f)}


def _expected_warehouse(scenario: Scenario) -> dict[tuple[str, str], Decimal]:
    """The figures of the three nights as the generator made them."""
    registry = scenario.registry_rows(END)  # registry figures are read on the period's last night
    by_district: dict[str, Counter] = {}
    for r in registry:
        c = by_district.setdefault(r["district_code"], Counter())
        c["compounds"] += 1
        c["with_party_org"] += r["party_org_type"] != "none"
        c["branches"] += r["party_org_type"] == "branch"
        c["groups"] += r["party_org_type"] == "group"
        c["building_heads"] += r["building_heads"]
        c["unit_heads"] += r["unit_heads"]
        c["stations"] += r["service_station"]
        c["committee"] += r["owners_committee"] != "none"
    xd, yz = by_district["140105"], by_district["140106"]
    xd_compounds = [c for c in scenario.compounds if c.district_code == "140105"]
    measures = Counter(c.measure for c in xd_compounds)  # a transition not started yet still counts (awaiting)
    yz_communities = len({r["community_code"] for r in registry if r["district_code"] == "140106"})
    cases = [Scenario.cases_on(day) for day in DAYS]
    meals_per_day = [len(scenario.meals(day)) for day in DAYS]
    # 0.5 yuan/m2/month, rounded to the fen per month, six months, for the transitions started by END
    started = [c for c in xd_compounds if c.subsidy_start and c.subsidy_start <= END]
    subsidy = sum((Decimal(str(c.building_area_m2)) / 2).quantize(Decimal("0.01"), ROUND_HALF_UP) * 6 for c in started)
    return {
        ("compounds", "140105"): Decimal(xd["compounds"]),
        ("compounds", "140106"): Decimal(yz["compounds"]),
        ("communities", "140106"): Decimal(yz_communities),
        ("compounds_per_community_avg", "140106"): (Decimal(yz["compounds"]) / yz_communities).quantize(
            Decimal(1), ROUND_HALF_UP),
        ("compounds_without_property_service_before", "140105"): Decimal(sum(measures[m] for m in (
            "red_property", "unit_assisted", "subsidy_transition", "community_fallback"))),
        **{(f"four_measures.{m}", "140105"): Decimal(measures[m])
           for m in ("red_property", "unit_assisted", "subsidy_transition", "community_fallback")},
        ("compounds_with_party_org", "140106"): Decimal(yz["with_party_org"]),
        ("party_branches_compound_or_grid", "140105"): Decimal(xd["branches"]),
        ("party_groups", "140105"): Decimal(xd["groups"]),
        ("building_heads", "140105"): Decimal(xd["building_heads"]),
        ("unit_heads", "140105"): Decimal(xd["unit_heads"]),
        ("party_service_stations", "140105"): Decimal(xd["stations"]),
        ("owners_committee_coverage_rate", "140100"): (
            Decimal(sum(c["committee"] for c in by_district.values())) / len(registry)).quantize(
            Decimal("0.01"), ROUND_HALF_UP),
        ("canteens_with_assistance_desk", "140100"): Decimal(len(scenario.canteens)),
        ("canteen_person_times_per_day", "140100"): (Decimal(sum(meals_per_day)) / len(DAYS)).quantize(
            Decimal(1), ROUND_HALF_UP),
        ("assistance_points", "140100"): Decimal(len(scenario.points)),  # every point submits every night
        ("assistance_matters_handled", "140100"): Decimal(sum(n for _, n in cases)),
        ("assistance_person_times", "140100"): Decimal(sum(
            Scenario.people_served(k) for first, n in cases for k in range(first, first + n))),
        ("subsidy_spent_yuan", "140105"): subsidy,
        ("subsidy_yuan_per_m2_month", "140105"): Decimal("0.5"),
        ("subsidy_months", "140105"): Decimal(6),
        **_expected_issue_23(scenario, registry),
    }


def _expected_issue_23(scenario: Scenario, registry: list[dict]) -> dict[tuple[str, str], Decimal]:
    """Issue 23's figures as the generator made them: the registry's optional columns on the last night,
    the hot and urgent cases received and solved within the nights, the diner cards seen in them."""
    xd = [r for r in registry if r["district_code"] == "140105"]
    yz = [r for r in registry if r["district_code"] == "140106"]

    def total(rows: list[dict], key: str) -> Decimal:
        return Decimal(sum(r.get(key) or 0 for r in rows))

    def street(code: str) -> list[dict]:
        return [r for r in registry if r["street_code"] == code]

    with_org = [r for r in yz if r["party_org_type"] != "none"]
    solved: Counter = Counter()
    orgs = set()
    for day in DAYS:
        first, n = Scenario.cases_on(day)
        for j in range(n):
            if Scenario.issue_of(first + j) is None:
                continue
            events = scenario.case_lifecycle(day, j)
            done = [e for e in events if e["event"] in ("resolved", "dept_resolved")]
            if done and done[0]["event_at"].date() <= END:  # its resolution was loaded
                solved[events[0]["issue_flag"]] += 1
                orgs.add(events[0]["party_org_code"])
    return {
        ("micro_grids", "140105"): total(xd, "micro_grids"),
        ("grid_assistants", "140105"): total(xd, "grid_assistants"),
        ("xinyuan_model_replicated_to", "140105"): total(xd, "dual_model"),
        ("party_org_grid_alignment_rate", "140106"): (
            Decimal(sum(r["party_org_on_grid"] for r in with_org)) / len(with_org)).quantize(
            Decimal("0.01"), ROUND_HALF_UP),
        ("party_positions", "140106"): total(yz, "party_positions"),
        ("party_members_registered", "140106"): total(yz, "party_members"),
        ("secretaries_resident_members", "140106"): Decimal(sum(r["secretary_type"] == "resident_member" for r in yz)),
        ("secretaries_community_cadres", "140106"): Decimal(sum(r["secretary_type"] == "community_cadre" for r in yz)),
        ("part_time_committee_members", "140106"): total(yz, "part_time_members"),
        ("property_party_instructors", "140106"): total(yz, "party_instructors"),
        ("property_company_party_branches", "140106"): total(yz, "property_party_branch"),
        ("self_funding_no_property_compounds", "140106"): total(yz, "self_funding"),
        ("streets.miaoqian.courtyards_before", "miaoqian"): total(street("140106003"), "courtyards_merged"),
        ("streets.miaoqian.compounds_after", "miaoqian"): Decimal(
            sum(bool(r.get("courtyards_merged")) for r in street("140106003"))),
        ("streets.liuxiang.micro_positions", "liuxiang"): total(street("140106001"), "micro_positions"),
        ("streets.wenmiao.in_service_members", "wenmiao"): total(street("140106002"), "in_service_members"),
        ("hot_issues_solved", "140106"): Decimal(solved["热点问题"]),
        ("urgent_issues_solved", "140106"): Decimal(solved["急难愁盼"]),
        ("compound_party_orgs_solving_issues", "140106"): Decimal(len(orgs)),
        # no transition is over by 2023-03-03 (the first ones end on 2023-06-30)
        ("subsidy_transitions_ending_soon_all_marketised", "140105"): Decimal(0),
        ("canteen_beneficiaries", "140100"): Decimal(len({m["diner_card"] for day in DAYS
                                                          for m in scenario.meals(day)})),
    }


def _run(argv: list[str]) -> tuple[int, str]:
    """`gov-warehouse …` in this process: exit code and what it printed."""
    out = io.StringIO()
    code = 0
    with redirect_stdout(out):
        try:
            cli.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def reconciled(server_url, local_dir):
    """Run the command once, as `make reconcile FROM=… TO=…` does, into a database of its own."""
    dbname = f"gov_test_reconcile_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WAREHOUSE_URL", server_url)
            code, out = _run(["reconcile", "--from", START.isoformat(), "--to", END.isoformat(),
                              "--database", dbname])
        yield conninfo.parse_url(server_url).with_db(dbname), code, out
    finally:
        with psycopg.connect(conninfo.parse_url(server_url).conninfo(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')


def test_three_nights_reproduce_the_generator_and_the_published_figures(reconciled):
    wh, code, out = reconciled
    assert code == 0, out[-3000:]
    assert "reconciled:" in out and "RECONCILIATION FAILED" not in out

    report = reconcile.compare(wh, START, END)
    expected = _expected_warehouse(Scenario())
    got = {(f.figure_key, f.scope_code): f.warehouse for f in report.figures}
    assert got == expected
    # 小店区 1,157 compounds, 296 before the programme split 26/62/150/58; 迎泽区 1,297 all with a party org;
    # 312 canteens, 1,378 points: these hold on any night, so they are compared and equal the published ones
    published = _published()
    for f in report.figures:
        assert f.published == published[(f.figure_key, f.scope_code)]
        assert f.compared == (not f.needs_programme_period)
        if f.compared:
            assert f.matches, f
    assert {f.figure_key for f in report.figures if f.needs_programme_period} == {
        "assistance_matters_handled", "assistance_person_times", "subsidy_spent_yuan", "hot_issues_solved",
        "urgent_issues_solved", "compound_party_orgs_solving_issues", "canteen_beneficiaries",
        "subsidy_transitions_ending_soon_all_marketised"}
    # all 49 published figures: 45 expressed, the other 4 explained in one line each, none left unexplained
    assert len(report.figures) + len(report.explained) == len(published) == 49
    assert report.not_expressed == []
    # the printed table shows the three nights' totals beside the published programme totals
    matters = expected[("assistance_matters_handled", "140100")]
    assert any(line.startswith("assistance_matters_handled ") and "53,169" in line and f"{int(matters):,}" in line
               and line.rstrip().endswith("n/a") for line in out.splitlines()), out
    # published figures the data cannot express are named with the reason, not silently dropped
    assert any(line.startswith("explained, not expressed by the data: resident_population (140105): ")
               for line in out.splitlines()), out


def test_a_tampered_published_figure_fails_naming_it(reconciled, server_url, monkeypatch):
    wh, _, _ = reconciled
    monkeypatch.setenv("WAREHOUSE_URL", server_url)
    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        conn.execute("update seeds.published_figures set value = value + 1 "
                     "where figure_key = 'compounds' and scope_code = '140105'")
    try:
        code, out = _run(["reconcile", "--compare-only", "--from", START.isoformat(), "--to", END.isoformat(),
                          "--database", wh.dbname])
    finally:
        with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
            conn.execute("update seeds.published_figures set value = value - 1 "
                         "where figure_key = 'compounds' and scope_code = '140105'")
    assert code == 1
    assert "RECONCILIATION FAILED: 1 mismatched: compounds (140105)" in out
    row = next(line for line in out.splitlines() if line.startswith("compounds ") and "140105" in line)
    assert "1,158" in row and "1,157" in row and "MISMATCH" in row


def test_programme_totals_fail_unless_the_whole_programme_period_is_loaded(reconciled):
    """Claimed as the programme period, three loaded nights fall short of the cumulative totals."""
    wh, _, _ = reconciled
    report = reconcile.compare(wh, PROGRAMME_START, PROGRAMME_END)
    assert not report.ok
    assert {(f.figure_key, f.scope_code) for f in report.mismatches} == {
        ("assistance_matters_handled", "140100"), ("assistance_person_times", "140100"),
        ("subsidy_spent_yuan", "140105"), ("hot_issues_solved", "140106"), ("urgent_issues_solved", "140106"),
        ("compound_party_orgs_solving_issues", "140106"), ("canteen_beneficiaries", "140100"),
        ("subsidy_transitions_ending_soon_all_marketised", "140105")}
    assert "RECONCILIATION FAILED: 8 mismatched" in report.table()


def test_refuses_to_drop_the_warehouse_itself(server_url):
    server = conninfo.parse_url(server_url)
    with pytest.raises(ValueError, match="refusing to drop"):
        reconcile.prepare_database(server, server.dbname)


def test_a_figure_neither_expressed_nor_explained_fails_the_report():
    figure = reconcile.Figure("compounds", "district", "140105", Decimal(1157), Decimal(1157), False, True, False,
                              compared=True)
    explained = reconcile.Report(START, END, [figure], [], None, [("resident_population (140105)", "census")])
    assert explained.ok and "reconciled: 1 figures match, 1 explained" in explained.table()
    unexplained = reconcile.Report(START, END, [figure], ["new_figure (140106)"], None)
    assert not unexplained.ok
    assert ("RECONCILIATION FAILED: published, neither expressed by the data nor explained: new_figure (140106)"
            in unexplained.table())
