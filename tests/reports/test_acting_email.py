"""The street and district emails list what an official acts on (real PostgreSQL, dbt, GX, publish,
a real SMTP sink, headless Chromium), checked against the generator's own events, never against the
mart the email reads.

Two published nights (the 5th and the 6th); on the 6th one canteen of 庙前街道 sends nothing and
another sends its file twice over (held as a doubled file).
"""

from __future__ import annotations

import csv
import email
import re
from datetime import date, datetime, time, timedelta
from email import policy

import psycopg
import pytest

from reports import night, smtp_sink
from tests.conftest import create_database, drop_database
from tests.reports.test_morning_email import smtp_env
from warehouse import connections, settings
from warehouse.settings import TZ

pytestmark = pytest.mark.integration

DAY1, DAY = date(2023, 11, 5), date(2023, 11, 6)
CUTOFF = datetime.combine(DAY + timedelta(days=1), time(0), TZ)
MIAOQIAN = "140106003"


@pytest.fixture(scope="module")
def published(server_url, local_dir, tmp_path_factory):
    from orchestration import steps
    from scenario.generator import Scenario
    from warehouse.bootstrap import bootstrap

    wh = create_database(server_url, "gov_acting")
    bootstrap(wh)
    landing, outbox = tmp_path_factory.mktemp("acting_landing"), tmp_path_factory.mktemp("acting_outbox")
    sink = smtp_sink.start(outbox)
    mp = pytest.MonkeyPatch()
    mp.setenv("WAREHOUSE_URL", wh.sqlalchemy_url())
    mp.setenv("LANDING_DIR", str(landing))
    mp.setenv("AIRFLOW_HOME", str(local_dir / "airflow-acting"))
    for k, v in smtp_env(sink.port).items():
        mp.setenv(k, v)
    scenario = Scenario()
    try:
        nights = {}
        for day in (DAY1, DAY):
            nights[day] = scenario.write_night(day, landing)
            if day == DAY:
                withheld, doubled = _spoil_two_canteens(landing / "canteens" / day.isoformat())
            d = day.isoformat()
            for feed in settings.FEEDS:
                steps.load_feed(connections.warehouse(), feed, d)
            steps.validate_raw(connections.warehouse(), d, run_id=f"raw-{d}")
            steps.build_marts(connections.warehouse(), d)
            steps.validate_marts(connections.warehouse(), [d], run_id=f"marts-{d}")
            steps.publish(connections.warehouse(), [d], run_id=f"pub-{d}")
        yield {"wh": wh, "outbox": outbox, "nights": nights, "scenario": scenario, "withheld": withheld,
               "doubled": doubled}
    finally:
        sink.stop()
        mp.undo()
        drop_database(wh)


def _spoil_two_canteens(folder) -> tuple[str, str]:
    files = sorted(folder.glob(f"CT{MIAOQIAN}*.csv"))
    files[0].unlink()
    lines = files[1].read_text(encoding="utf-8").splitlines(keepends=True)
    files[1].write_text("".join(lines + lines[1:]), encoding="utf-8")  # every record twice
    return files[0].stem, files[1].stem


def send(published, level: str, code: str, name: str) -> email.message.EmailMessage:
    """One scope's summary through the real sender path and the relay, read back from the outbox."""
    from reports.figures import Scope
    from reports.send import build_message, compose, deliver, ledger_files

    wh = connections.warehouse()
    before = set(published["outbox"].glob("*.eml"))
    report = compose(wh, Scope(level, code, name), DAY, {"status": "published"}, ledger_files(wh, DAY))
    deliver(build_message(f"{code}@taiyuan.example", report, "全部通过", {}))
    [new] = set(published["outbox"].glob("*.eml")) - before
    return email.message_from_bytes(new.read_bytes(), policy=policy.default), new


# --- independent expectations, from the generator's events -----------------------------------------

def cases(published) -> dict[str, dict]:
    """Per case (point, id): its events of the loaded nights, in the files the loader was given."""
    withheld = published["withheld"]
    out: dict[tuple, dict] = {}
    for n in published["nights"].values():
        for e in n.events:
            assert e["point_code"] != withheld  # only a canteen was withheld
            out.setdefault((e["point_code"], e["service_request_id"]), {})[e["event"]] = e
    return out


def at(e: dict | None) -> datetime | None:
    return None if e is None else e["event_at"]


def open_at_cutoff(c: dict) -> bool:
    done = [at(c.get(k)) for k in ("resolved", "dept_resolved") if c.get(k)]
    return not [t for t in done if t < CUTOFF]


def handlers(published) -> dict[tuple, str]:
    """Per case: the handler (a role) of its latest loaded event that names one."""
    latest: dict[tuple, tuple] = {}
    for n in published["nights"].values():
        for e in n.events:
            key = (e["point_code"], e["service_request_id"])
            if e.get("handler") and (key not in latest or e["event_at"] > latest[key][0]):
                latest[key] = (e["event_at"], e["handler"])
    return {k: h for k, (_, h) in latest.items()}


def expected_overdue(published, street: str) -> list[tuple]:
    names = {k.code: k.name for k in published["scenario"].compounds}
    handler = handlers(published)
    out = []
    for (point, sr), c in cases(published).items():
        received = at(c.get("received"))
        if point[2:11] != street or received is None or received.astimezone(TZ).date() >= DAY or not open_at_cutoff(c):
            continue
        esc = c.get("escalated") if c.get("escalated") and at(c["escalated"]) < CUTOFF else None
        out.append((received, point, sr, int((CUTOFF - received).total_seconds() // 3600),
                    c["received"]["service_code"], names[c["received"]["compound_code"]],
                    handler.get((point, sr), "—"), esc["agency_responsible"] if esc else "未吹哨"))
    return [o[2:] for o in sorted(out)]


def expected_waiting(published, street: str) -> list[tuple]:
    out = []
    for (point, sr), c in cases(published).items():
        esc = c.get("escalated")
        if point[2:11] != street or esc is None or at(esc) >= CUTOFF or not open_at_cutoff(c):
            continue
        out.append((at(esc), point, sr, esc["agency_responsible"], int((CUTOFF - at(esc)).total_seconds() // 3600)))
    return [o[2:] for o in sorted(out)]


def busiest_overdue_street(published) -> str:
    streets = {p[2:11] for p, _ in cases(published)}
    return max(sorted(streets), key=lambda s: len(expected_overdue(published, s)))


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def html_of(msg) -> str:
    return msg.get_body(preferencelist=("html",)).get_content()


def listed(text: str, title: str) -> list[str]:
    """The indented lines of one section of the text part."""
    block = text.split(f"\n{title}：\n", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()


def street_names() -> dict[str, str]:
    with (settings.DBT_PROJECT_DIR / "seeds" / "streets.csv").open(encoding="utf-8") as f:
        return {r["street_code"]: r["street_name"] for r in csv.DictReader(f)}


# --- the street email -----------------------------------------------------------------------------

def test_street_email_lists_exactly_the_open_cases_past_the_overnight_mark(published):
    street = busiest_overdue_street(published)
    expected = expected_overdue(published, street)
    assert len(expected) >= 2, "the scenario's two nights should leave cases open overnight"
    msg, _ = send(published, "street", street, street_names()[street])
    lines = listed(text_of(msg), "隔夜未办结事项")
    cards = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2) if lines[i + 1].startswith("    ")]
    got = []
    for what, who in cards:
        hours, category, compound = re.fullmatch(r"  已 (\d+) 小时 · (.+) · (.+)", what).groups()
        sr, handler, dept = re.fullmatch(r"    编号 (\S+) · 受理 .+ · 承办 (.+) · 吹哨部门 (.+)", who).groups()
        got.append((sr, int(hours), category, compound, handler, dept))
    assert got == expected
    html = html_of(msg)
    for sr, hours, category, compound, _handler, _dept in expected:
        assert sr in html and f"已 {hours} 小时 · {category} · {compound}" in html


def test_street_email_lists_escalations_waiting_oldest_first(published):
    street = max(sorted({p[2:11] for p, _ in cases(published)}), key=lambda s: len(expected_waiting(published, s)))
    expected = expected_waiting(published, street)
    assert expected
    msg, _ = send(published, "street", street, street_names()[street])
    lines = [line for line in listed(text_of(msg), "吹哨待部门响应") if line.startswith("  ") and "编号" in line]
    got_ids = [re.search(r"编号 (\S+)", line).group(1) for line in lines]
    heads = [line for line in listed(text_of(msg), "吹哨待部门响应") if "已等待" in line]
    assert got_ids == [sr for sr, _, _ in expected]
    assert heads == [f"  {dept} · 已等待 {hours} 小时" for _, dept, hours in expected]


def test_street_email_community_table_adds_up_to_the_generated_cases(published):
    street = busiest_overdue_street(published)
    msg, _ = send(published, "street", street, street_names()[street])
    received = sum(1 for (p, _), c in cases(published).items()
                   if p[2:11] == street and c.get("received") and at(c["received"]).astimezone(TZ).date() == DAY)
    backlog = sum(1 for (p, _), c in cases(published).items()
                  if p[2:11] == street and c.get("received") and open_at_cutoff(c))
    [total] = [line for line in listed(text_of(msg), "分社区情况") if line.startswith("  街道合计：")]
    assert f"受理 {received:,}，" in total and f"未办结 {backlog:,}，" in total
    spoilt = {published["withheld"], published["doubled"]}  # no data of theirs reached raw
    meals = sum(1 for m in published["nights"][DAY].meals if m["canteen_code"][2:11] == street
                and m["canteen_code"] not in spoilt)
    assert total.endswith(f"食堂人次 {meals:,}")


def test_street_email_names_the_missing_and_held_canteens(published):
    msg, _ = send(published, "street", MIAOQIAN, "迎泽区庙前街道")
    names = night.reporters()["canteens"]
    withheld, doubled = published["withheld"], published["doubled"]
    [line] = listed(text_of(msg), "未报送或暂缓采用的报送单位")
    assert f"未报 社区食堂 {names[withheld]}（{withheld}）" in line
    assert f"暂缓采用 社区食堂 {names[doubled]}（{doubled}）" in line
    assert f"{names[withheld]}（{withheld}）" in html_of(msg) and f"{names[doubled]}（{doubled}）" in html_of(msg)


def test_no_personal_data_in_any_part(published):
    from ingest import pii

    street = busiest_overdue_street(published)
    msgs = [send(published, "street", s, street_names()[s])[0] for s in (street, MIAOQIAN)]
    msgs.append(send(published, "district", street[:6], "本区")[0])
    people = {e[k] for n in published["nights"].values() for e in n.events
              for k in ("requester_name", "requester_phone", "requester_id_number") if k in e}
    assert len(people) > 100
    for msg in msgs:
        for part in msg.walk():
            if part.get_content_maintype() != "text":
                continue
            body = part.get_content()
            assert not pii.PHONE_RE.search(body) and not pii.ID_NUMBER_RE.search(body)
            assert not [p for p in people if p in body]
            assert "requester" not in body


# --- the district email ---------------------------------------------------------------------------

def expected_ranking(published, district: str) -> list[str]:
    rows = []
    for street, name in street_names().items():
        if not street.startswith(district):
            continue
        mine = [c for (p, _), c in cases(published).items() if p[2:11] == street and c.get("received")]
        cohort = [c for c in mine if at(c["received"]).astimezone(TZ).date() == DAY1]
        nine = datetime.combine(DAY, time(9), TZ)
        fast = [c for c in cohort if not open_at_nine(c, nine)]
        rate = len(fast) / len(cohort) if cohort else None
        backlog = sum(1 for c in mine if open_at_cutoff(c))
        rows.append((rate is None, rate or 0, -backlog, street, name))
    return [r[-1] for r in sorted(rows)]


def open_at_nine(c: dict, nine: datetime) -> bool:
    return not [at(c[k]) for k in ("resolved", "dept_resolved") if c.get(k) and at(c[k]) < nine]


def test_district_email_ranks_streets_on_overnight_rate_then_backlog(published):
    msg, _ = send(published, "district", "140106", "迎泽区")
    lines = listed(text_of(msg), "街道排名（解决不隔夜率、积压）")
    lines = [line for line in lines if not line.startswith("  （")]  # the note under the table
    got = [line.strip().split("：", 1)[0] for line in lines]
    assert got == expected_ranking(published, "140106")
    # one night before: no 7-day rate to compare with, the backlog's change against the 5th
    assert all("较近7日 —" in line for line in lines if "不隔夜率" in line)


def test_district_email_names_the_worst_compounds_and_missing_reporters_by_street(published):
    names = {k.code: k.name for k in published["scenario"].compounds}
    counts: dict[str, int] = {}
    for (p, _), c in cases(published).items():
        if p.startswith("AP140106") and c.get("received") and open_at_cutoff(c):
            code = c["received"]["compound_code"]
            counts[code] = counts.get(code, 0) + 1
    top = sorted(counts, key=lambda k: (-counts[k], k))[:3]
    msg, _ = send(published, "district", "140106", "迎泽区")
    text = text_of(msg)
    got = [line.strip().split("：", 1)[0] for line in listed(text, "未办结事项最多的小区") if "：" in line]
    assert got == [names[k] for k in top]
    assert f"{names[top[0]]}：街道 " in text and f"未办结 {counts[top[0]]}，" in text
    problems = listed(text, "未报送或暂缓采用的报送单位")
    assert [line for line in problems if line.startswith("  庙前街道：")]
    assert published["withheld"] in "".join(problems) and published["doubled"] in "".join(problems)


# --- both widths, and the text part carries the figures --------------------------------------------

NUMBER = r"[+-]?\d[\d,]*(?:\.\d+)?%?"


def visible_numbers(html: str) -> set[str]:
    body = re.sub(r"<[^>]+>", " ", html.split("<body", 1)[1])
    return set(re.findall(NUMBER, body))


@pytest.mark.parametrize("level", ["street", "district"])
def test_text_part_carries_every_figure_and_html_fits_a_phone(published, level, tmp_path):
    from reports.render_check import render_eml, scroll_width

    street = busiest_overdue_street(published)
    code, name = (street, street_names()[street]) if level == "street" else (street[:6], "本区")
    msg, eml = send(published, level, code, name)
    text = text_of(msg)
    missing = visible_numbers(html_of(msg)) - set(re.findall(NUMBER, text))
    assert not missing
    assert scroll_width(eml, 375) <= 375
    assert scroll_width(eml, 800) <= 800
    shots = settings.outbox_dir()  # kept for a person to look at
    shots.mkdir(parents=True, exist_ok=True)
    for width in (375, 800):
        png = render_eml(eml, shots / f"acting-{level}-{width}.png", width=width, height=3000)
        assert png.stat().st_size > 10_000


def test_published_nights_are_in_the_marts(published):
    # the fixture's premise: both nights were published (the email reads `marts`)
    with psycopg.connect(published["wh"].conninfo()) as conn:
        days = [r[0] for r in conn.execute(
            "select distinct service_date from marts.mart_street_daily_scorecard order by 1").fetchall()]
    assert DAY1 in days and DAY in days


# --- pure logic (no database) ----------------------------------------------------------------------

def test_trend_starts_at_the_first_night_with_data_and_says_so():
    from reports.figures import Scope, ScopeReport
    from reports.render import render_text, trend_days, trend_title

    report = ScopeReport(Scope("street", MIAOQIAN, "庙前街道"), DAY)
    report.days = {DAY1: {"cases_received": 3, "cases_resolved": 2, "overnight_resolution_rate": None},
                   DAY: {"cases_received": 5, "cases_resolved": 4, "overnight_resolution_rate": 0.5}}
    assert trend_days(report) == [DAY1, DAY]
    assert trend_title(report) == "近2日趋势（数据自11月5日起，不足30日）"
    assert "  11月6日：受理 5，办结 4，不隔夜率 50.0%" in render_text(report, "全部通过", {})
    report.days = {DAY - timedelta(days=i): report.days[DAY] for i in range(40)}
    assert len(trend_days(report)) == 30 and trend_title(report) == "近30日趋势"


def test_problems_by_street_name_missing_unreadable_and_held_reporters():
    files = [night.LedgerFile("canteens", "CT140106003001", "CT140106003001.csv", "held"),
             night.LedgerFile("canteens", "CT140106003002", "CT140106003002.csv", "quarantined", "not_csv: x"),
             night.LedgerFile("canteens", "CT140106003003", "CT140106003003.csv", "loaded")]
    [street] = [s for s in night.problems_by_street(files, "district", "140106") if s["street_code"] == MIAOQIAN]
    names = night.reporters()["canteens"]
    assert street["held"] == [f"社区食堂 {names['CT140106003001']}（CT140106003001）"]
    assert f"社区食堂 {names['CT140106003002']}（CT140106003002）（文件无法读取）" in street["missing"]
    assert not [m for m in street["missing"] if "CT140106003003" in m]
    assert all(s["street_code"].startswith("140106") for s in night.problems_by_street(files, "district", "140106"))
