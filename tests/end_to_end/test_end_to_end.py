"""End to end: generate two consecutive nights of the Taiyuan scenario, run the nightly DAGs
through Airflow (`gov-warehouse run` -> `airflow dags test gov_ingest`, then `gov_publish`, every night
in one Airflow process) against a real PostgreSQL, check the published marts, the officials' emails and
Airflow's own record of the runs against what was generated and asked for, and re-run the last night's
steps to show nothing changes.

The run is the session's `airflow_night` (tests/support/airflow_night.py), which the secrets and Airflow
UI tests read as well.
"""

from __future__ import annotations

import email
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email import policy
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import pii
from orchestration import airflow_local, steps
from scenario.generator import Night
from tests.support.airflow_night import DAYS
from warehouse import connections, conninfo, settings

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("Asia/Shanghai")
# two nights: the second has an overnight cohort (the first night's cases) and a trend to chart
DAY1, DAY2 = DAYS


@pytest.fixture(scope="module")
def nights(airflow_night) -> Iterator[dict[date, Night]]:
    # the run's local directory, warehouse and PII key for the module's tests: they read every file and email
    # under it as the nights' (whatever else ran before in this process wrote elsewhere)
    mp = pytest.MonkeyPatch()
    for name, value in airflow_night.test_env().items():
        mp.setenv(name, value)
    mp.delenv("AIRFLOW_HOME", raising=False)
    try:
        yield airflow_night.nights
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def pipeline_warehouse(airflow_night) -> conninfo.ConnInfo:
    return airflow_night.wh


def query(wh: conninfo.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def rate(numerator: int, denominator: int) -> Decimal | None:
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def local_day(ts: datetime) -> date:
    return ts.astimezone(TZ).date()


def expected_summary(day: date, nights: dict[date, Night]) -> dict:
    """The city summary computed straight from what the generator wrote, by the KPI definitions."""
    night = nights[day]
    compounds = night.compounds
    events = [e for n in nights.values() for e in n.events]
    received = {e["service_request_id"]: e for e in events if e["event"] == "received"}
    first_resolution: dict[str, datetime] = {}
    for e in events:
        if e["event"] in ("resolved", "dept_resolved"):
            sid = e["service_request_id"]
            first_resolution[sid] = min(first_resolution.get(sid, e["event_at"]), e["event_at"])
    first_escalation: dict[str, datetime] = {}
    for e in events:
        if e["event"] == "escalated":
            sid = e["service_request_id"]
            first_escalation[sid] = min(first_escalation.get(sid, e["event_at"]), e["event_at"])
    received_today = [r for r in received.values() if local_day(r["event_at"]) == day]
    cohort = [r for r in received.values() if local_day(r["event_at"]) == day - timedelta(days=1)]
    deadline = datetime.combine(day, time(9, 0), TZ)
    overnight = [r for r in cohort if first_resolution.get(r["service_request_id"], deadline) < deadline]
    n = len(compounds)
    return {
        "compounds": n,
        "compounds_with_property_service": sum(c["property_mode"] != "none" for c in compounds),
        "property_coverage_rate": rate(sum(c["property_mode"] != "none" for c in compounds), n),
        "party_org_coverage_rate": rate(sum(c["party_org_type"] != "none" for c in compounds), n),
        "owners_committee_coverage_rate": rate(sum(c["owners_committee"] != "none" for c in compounds), n),
        "canteen_person_times": len(night.meals),
        "canteen_distinct_diners": len({m["diner_card"] for m in night.meals}),
        "canteens_reporting": len({m["canteen_code"] for m in night.meals}),
        "canteen_subsidy_yuan": sum(Decimal(str(m["subsidy_yuan"])) for m in night.meals),
        "cases_received": len(received_today),
        "people_served": sum(r["people_served"] for r in received_today),
        # escalated to a department that day (the case's first escalation), whatever the day of receipt
        "cases_escalated": sum(local_day(t) == day for t in first_escalation.values()),
        "cases_resolved": sum(local_day(t) == day for t in first_resolution.values()),
        "overnight_cohort": len(cohort),
        "overnight_resolution_rate": rate(len(overnight), len(cohort)),
    }


def test_city_summary_matches_generated_files(nights, pipeline_warehouse):
    rows = {r["service_date"]: r for r in query(pipeline_warehouse, "select * from marts.mart_city_daily_summary")}
    assert set(rows) == set(DAYS)
    for day in DAYS:
        expected = expected_summary(day, nights)
        actual = {k: rows[day][k] for k in expected}
        assert actual == expected, day
    # the scenario is calibrated: about 13,000 canteen person-times and the programme's daily case rate
    assert 12000 <= rows[DAY2]["canteen_person_times"] <= 14000
    assert rows[DAY2]["cases_received"] in (174, 175)
    assert rows[DAY2]["overnight_cohort"] > 0 and rows[DAY2]["overnight_resolution_rate"] is not None


def test_every_file_and_row_is_accounted_for(nights, pipeline_warehouse):
    ledger = query(pipeline_warehouse, "select * from audit.load_ledger where status = 'loaded'")
    generated = {str(p) for n in nights.values() for p in n.files}
    assert {r["file_path"] for r in ledger} == generated
    assert all(r["rows_read"] == r["rows_loaded"] + r["rows_rejected"] for r in ledger)
    by_source = {}
    for r in ledger:
        by_source[r["source"]] = by_source.get(r["source"], 0) + r["rows_loaded"]
    assert by_source["streets"] == sum(len(n.compounds) for n in nights.values())
    assert by_source["canteens"] == sum(len(n.meals) for n in nights.values())
    assert by_source["assistance"] == sum(len(n.events) for n in nights.values())


def test_each_night_is_one_run_of_each_dag_shaped_like_its_scheduled_run(nights, airflow_night):
    """Every night of the run in one Airflow process (airflow_local.dags_test_nights), each DAG run as `airflow
    dags test` of that day makes it (dags_test): named after its service day, at its 02:00 slot, started when
    it ran, its tasks' logs where the UI reads them, and each night's output in a log file of its own."""
    before, after = airflow_night.window
    with sqlite3.connect(airflow_night.airflow_home / "airflow.db") as db:
        runs = db.execute("select dag_id, run_id, state, logical_date, run_after, start_date, end_date, "
                          "(select content from dag_run_note n where n.dag_run_id = r.id) from dag_run r").fetchall()
        tis = db.execute("select dag_id, run_id, task_id, map_index, try_number, state from task_instance").fetchall()
    assert sorted(r[:3] for r in runs) == sorted(
        (dag, f"local__{day}", "success") for dag in (airflow_local.INGEST_DAG, airflow_local.PUBLISH_DAG) for day in DAYS)
    for dag_id, run_id, _, logical_date, run_after, start, end, note in runs:
        day = date.fromisoformat(run_id.removeprefix("local__"))
        slot = datetime.combine(day, time(18, 0)).isoformat(sep=" ")  # 02:00 next morning in Shanghai, in UTC
        assert logical_date.startswith(slot) and run_after.startswith(slot), (dag_id, run_id)
        assert before.isoformat(sep=" ")[:19] <= start[:19] <= end[:19] <= after.isoformat(sep=" ")[:19]
        assert note.startswith(f"Service day {day}"), note
    logs = airflow_night.airflow_home / "logs"
    ran = [t for t in tis if t[5] in ("success", "failed")]
    assert {(t[0], t[1]) for t in ran} == {(r[0], r[1]) for r in runs}
    for dag_id, run_id, task_id, map_index, tries, _ in ran:
        folder = logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        assert (folder / f"attempt={tries}.log").stat().st_size > 0, (dag_id, run_id, task_id, map_index)
    for day in DAYS:
        text = airflow_local.nightly_log_path(airflow_night.local / "logs", day).read_text()
        assert re.findall(r"^=== (\S+) for service day (\S+) ", text, re.M) == [
            (airflow_local.INGEST_DAG, str(day)), (airflow_local.PUBLISH_DAG, str(day))]
        assert f"Returned value was: {day}" in text  # service_day's log, copied into the night's file
        for dag_id in (airflow_local.INGEST_DAG, airflow_local.PUBLISH_DAG):
            assert f"running {dag_id} for service day {day} through Airflow" in airflow_night.proc.stdout
    assert re.findall(r"^day (\d)/2 (\S+)", airflow_night.proc.stdout, re.M) == [("1", str(DAY1)), ("2", str(DAY2))]


def test_quality_checks_recorded(nights, pipeline_warehouse):
    rows = query(pipeline_warehouse, "select suite, service_date, success from audit.dq_results")
    suites = {r["suite"] for r in rows}
    assert {"raw_streets_compounds", "raw_canteens_meals", "raw_assistance_case_events"} <= suites
    assert {"marts_street_totals_equal_city", "marts_street_totals_equal_district",
            "marts_no_personal_data_columns"} <= suites
    assert {r["service_date"] for r in rows} == set(DAYS)
    assert all(r["success"] for r in rows), [r for r in rows if not r["success"]]
    published = query(pipeline_warehouse, "select service_date, status from audit.publish_log")
    assert {(r["service_date"], r["status"]) for r in published} == {(d, "published") for d in DAYS}


def _messages() -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(settings.outbox_dir().glob("*.eml"))]


def _officials() -> list[dict]:
    import csv

    with (settings.DBT_PROJECT_DIR / "seeds" / "officials.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def test_one_summary_per_official_per_day(nights, pipeline_warehouse):
    subjects = sorted(m["Subject"] for m in _messages())
    expected = sorted(f"【社区治理日报】{day.isoformat()} {o['scope_name']}" for day in DAYS for o in _officials())
    assert subjects == expected
    assert {m["To"] for m in _messages()} == {o["email"] for o in _officials()}


def test_summary_email_shows_the_nights_figures_in_chinese(nights, pipeline_warehouse):
    messages = {m["Subject"]: m for m in _messages()}
    subject = f"【社区治理日报】{DAY2.isoformat()} 太原市"
    assert subject in messages
    msg = messages[subject]
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    expected = expected_summary(DAY2, nights)
    assert f"受理事项（件）：{expected['cases_received']:,}" in text
    assert f"社区食堂服务人次：{expected['canteen_person_times']:,}" in text
    overnight = f"{float(expected['overnight_resolution_rate']) * 100:.1f}%"
    assert f"解决不隔夜率（前一日受理）：{overnight}" in text
    assert f"{expected['canteen_person_times']:,}" in html and "<script" not in html
    for message in _messages():
        for part in message.walk():
            if part.get_content_maintype() == "text":
                body = part.get_content()
                assert not pii.PHONE_RE.search(body) and not pii.ID_NUMBER_RE.search(body)


def _personal_data(nights: dict[date, Night]) -> set[str]:
    """Every requester name, phone and ID number and every diner card the generator wrote."""
    values = {e[k] for n in nights.values() for e in n.events
              for k in ("requester_name", "requester_phone", "requester_id_number") if e.get(k)}
    return values | {m["diner_card"] for n in nights.values() for m in n.meals}


def _leaks(text: str, secrets: set[str], lengths: set[int]) -> set[str]:
    """The secrets found in `text`, whole or as a substring (every window of a secret's length)."""
    return {w for n in lengths for i in range(len(text) - n + 1) if (w := text[i:i + n]) in secrets}


def test_no_plain_personal_data_in_the_warehouse(nights, pipeline_warehouse):
    secrets = _personal_data(nights)
    lengths = {len(v) for v in secrets}
    assert {len(v) for v in secrets if not v.isascii()} >= {2, 3}  # the requester names are among them
    # every schema of the warehouse: raw, audit, staging, intermediate, snapshots, seeds, both marts schemas
    columns = query(pipeline_warehouse, """
        select table_schema, table_name, column_name from information_schema.columns
        where table_schema not in ('pg_catalog', 'information_schema')
          and data_type in ('text', 'character varying', 'character', 'jsonb', 'json')""")
    assert {"raw", "audit", "staging", "intermediate", "snapshots", "seeds", "marts", "marts_candidate"} <= {
        c["table_schema"] for c in columns}
    found = []
    with psycopg.connect(pipeline_warehouse.conninfo()) as conn:
        for c in columns:
            values = conn.execute(
                f'select distinct "{c["column_name"]}"::text from "{c["table_schema"]}"."{c["table_name"]}"'
            ).fetchall()
            for (value,) in values:
                if value is None:
                    continue
                assert not pii.PHONE_RE.search(value), (c, "phone pattern")
                assert not pii.ID_NUMBER_RE.search(value), (c, "ID number pattern")
                if hits := _leaks(value, secrets, lengths):
                    found.append((c["table_schema"], c["table_name"], c["column_name"], len(hits)))
    assert found == []


def test_no_plain_personal_data_in_the_files_the_nights_wrote(nights, pipeline_warehouse):
    """Task logs, dbt logs, GX's Data Docs, the emails (decoded): everything but the landing zone itself."""
    import tempfile

    landing = settings.landing_dir()
    written = [p for p in settings.local_dir().rglob("*") if p.is_file() and landing not in p.parents]
    assert {p.relative_to(settings.local_dir()).parts[0] for p in written} >= {"logs", "gx", "outbox", "airflow"}
    secrets = _personal_data(nights)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as patterns:
        patterns.write("\n".join(sorted(secrets)) + "\n")
        patterns.flush()
        # grep -F matches many fixed strings at once, in every file, whatever its size
        proc = subprocess.run(["grep", "-rlF", "-f", patterns.name, "--exclude-dir", landing.name,
                               str(settings.local_dir())], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout[:2000]  # 1: no line matched
    lengths = {len(v) for v in secrets}
    for message in _messages():
        for part in message.walk():
            if part.get_content_maintype() == "text":
                assert not _leaks(part.get_content(), secrets, lengths), message["Subject"]


def _scorecard_sums(wh: conninfo.ConnInfo, column: str, code: str, day: date) -> dict:
    return query(wh, f"""select sum(cases_received) as received, sum(cases_backlog) as backlog,
                                sum(canteen_person_times) as canteen
                         from marts.mart_street_daily_scorecard where {column} = %s and service_date = %s""",
                 (code, day))[0]


def expected_casework(day: date, nights: dict[date, Night], district: str) -> dict:
    """A district's casework figures of `day` from the generator's events, by the scorecard's column
    definitions (dbt_project/models/marts/scorecards): a case belongs to the street of its point."""
    cases: dict[str, list[dict]] = {}
    for e in (e for n in nights.values() for e in n.events if e["point_code"][2:8] == district):
        cases.setdefault(e["service_request_id"], []).append(e)

    def first(events: list[dict], kinds: tuple[str, ...]) -> date | None:
        times = [e["event_at"] for e in events if e["event"] in kinds]
        return local_day(min(times)) if times else None

    received = {k: first(v, ("received",)) for k, v in cases.items()}
    resolved = {k: first(v, ("resolved", "dept_resolved")) for k, v in cases.items()}
    escalated = {k: first(v, ("escalated",)) for k, v in cases.items()}
    resolved_today = [k for k, d in resolved.items() if d == day]
    in_grid = [k for k in resolved_today if escalated[k] is None]
    return {
        "received": sum(d == day for d in received.values()),
        # received by that day and not resolved by its end
        "backlog": sum(d is not None and d <= day and (resolved[k] is None or resolved[k] > day)
                       for k, d in received.items()),
        "in_grid_rate": rate(len(in_grid), len(resolved_today)),
        # escalated to a department that day: the day of the case's first escalation
        "escalated": sum(d == day for d in escalated.values()),
    }


def test_district_summary_matches_the_generator_and_stays_in_its_district(nights, pipeline_warehouse):
    official = next(o for o in _officials() if o["scope_level"] == "district")
    msg = next(m for m in _messages() if m["Subject"] == f"【社区治理日报】{DAY2.isoformat()} {official['scope_name']}")
    text = _text(msg)
    expected = expected_casework(DAY2, nights, official["scope_code"])
    assert expected["received"] > 0 and expected["backlog"] > 0 and expected["in_grid_rate"] is not None
    assert f"受理事项（件）：{expected['received']:,}" in text
    assert f"积压事项（件）：{expected['backlog']:,}" in text
    assert f"网格内解决率：{float(expected['in_grid_rate']) * 100:.1f}%" in text
    assert f"吹哨上报部门（件）：{expected['escalated']:,}" in text
    district_meals = sum(m["canteen_code"][2:8] == official["scope_code"] for m in nights[DAY2].meals)
    assert f"社区食堂服务人次：{district_meals:,}" in text
    sums = _scorecard_sums(pipeline_warehouse, "district_code", official["scope_code"], DAY2)
    assert (sums["received"], sums["backlog"], sums["canteen"]) == (
        expected["received"], expected["backlog"], district_meals)
    streets = query(pipeline_warehouse, "select street_code, street_name, district_code from marts.dim_street")
    mine = {s["street_name"] for s in streets if s["district_code"] == official["scope_code"]}
    others = {s["street_name"] for s in streets if s["district_code"] != official["scope_code"]} - mine
    assert all(f"  {name}：受理" in text for name in mine)  # its per-street table
    assert not [name for name in others if name in text]
    districts = query(pipeline_warehouse, "select district_code, district_name from marts.dim_district")
    assert not [d["district_name"] for d in districts
                if d["district_code"] != official["scope_code"] and d["district_name"] in text]


def test_street_summary_shows_only_its_street(nights, pipeline_warehouse):
    official = next(o for o in _officials() if o["scope_level"] == "street")
    msg = next(m for m in _messages() if m["Subject"] == f"【社区治理日报】{DAY2.isoformat()} {official['scope_name']}")
    text = _text(msg)
    sums = _scorecard_sums(pipeline_warehouse, "street_code", official["scope_code"], DAY2)
    assert f"受理事项（件）：{sums['received']:,}" in text
    assert "分区情况" not in text and "需关注的街道" not in text


def test_chart_is_an_inline_png_that_decodes_and_is_not_blank(nights, pipeline_warehouse):
    from io import BytesIO

    from PIL import Image

    msg = next(m for m in _messages() if m["Subject"] == f"【社区治理日报】{DAY2.isoformat()} 太原市")
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0]["Content-ID"] == "<trend-chart>"
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert 'src="cid:trend-chart"' in html
    # nothing the mail client would fetch (links to the docs are fine: they are followed only when clicked)
    assert not re.search(r"""(src|srcset|background)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|<link\b""",
                         html, re.IGNORECASE)
    image = Image.open(BytesIO(images[0].get_content())).convert("RGB")
    assert image.width >= 500 and image.height >= 250
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # bars, lines, anti-aliased CJK labels: not an empty canvas
    white = max(colours)[0] / (image.width * image.height)
    assert white < 0.97


def test_summary_renders_in_headless_chromium(nights, pipeline_warehouse, tmp_path):
    """Render the HTML (with its inline chart) in Debian's Chromium; the PNG is kept for a person to look at."""
    from PIL import Image

    from reports.render_check import render_eml

    eml = next(p for p in sorted(settings.outbox_dir().glob("*.eml"))
               if "city-duty" in p.name)
    png = render_eml(eml, settings.outbox_dir() / "city-summary-rendered.png")
    image = Image.open(png).convert("RGB")
    assert image.width == 680
    top = image.crop((0, 0, image.width, 60)).getcolors(maxcolors=1 << 16)
    assert max(top)[1][0] > 150 and max(top)[1][1] < 60  # the red banner is drawn
    assert len(image.getcolors(maxcolors=1 << 20)) > 100  # text, tables and the chart rendered


def marts_digest(wh: conninfo.ConnInfo) -> dict[str, str]:
    tables = [r["table_name"] for r in query(
        wh, "select table_name from information_schema.tables where table_schema = 'marts' order by 1")]
    digests = {}
    for t in tables:
        digests[t] = query(wh, f'select md5(coalesce(string_agg(t::text, \'|\' order by t::text), \'\')) as d '
                               f'from marts."{t}" t')[0]["d"]
    return digests


def test_second_run_of_the_same_night_changes_nothing(nights, pipeline_warehouse):
    before_marts = marts_digest(pipeline_warehouse)
    raw_counts = "select (select count(*) from raw.streets_compounds) s, (select count(*) from raw.canteens_meals) c, " \
                 "(select count(*) from raw.assistance_case_events) a"
    before_raw = query(pipeline_warehouse, raw_counts)
    before_ledger = query(pipeline_warehouse, "select max(load_id) as m from audit.load_ledger")[0]["m"]
    before_mail = len(_messages())
    before_sends = query(pipeline_warehouse, "select * from audit.summary_sends order by 1, 2, 3")

    # the night's steps again, each as its DAG task calls it (re-running through Airflow itself is
    # tests/orchestration/test_airflow_distributed.py's reprocessed backfill); one `dbt build` of the
    # whole project this time, which must give the marts the per-node tasks built, byte for byte
    day = DAY2.isoformat()
    wh = connections.warehouse()
    loads = [steps.load_feed(wh, feed, day) for feed in settings.FEEDS]
    assert sum(r["files"] for r in loads) == len(nights[DAY2].files)
    steps.validate_raw(wh, day, run_id="rerun-raw")
    steps.build_marts(wh, day)
    steps.validate_marts(wh, [day], run_id="rerun-marts")
    assert steps.publish(wh, [day], run_id="rerun")["status"] == "published"
    assert steps.send_summary(wh, day) == []  # every official already has the night's summary

    assert marts_digest(pipeline_warehouse) == before_marts
    assert query(pipeline_warehouse, raw_counts) == before_raw
    new = query(pipeline_warehouse, "select status, count(*) as n from audit.load_ledger where load_id > %s "
                                    "group by status", (before_ledger,))
    assert new == [{"status": "skipped_duplicate", "n": len(nights[DAY2].files)}]
    assert len(_messages()) == before_mail  # the send ledger keeps officials from getting it twice
    assert query(pipeline_warehouse, "select * from audit.summary_sends order by 1, 2, 3") == before_sends
