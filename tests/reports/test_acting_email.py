"""The street and district emails list what an official acts on (real PostgreSQL, dbt, GX, publish,
a real SMTP sink, headless Chromium), checked against the generator's own events, never against the
mart the email reads.

Two published nights, the 30th and the 31st of October (a month's last night: the city email then
compares with the published figures); on the 31st one canteen of 庙前街道 sends nothing, another sends
its file twice over (held as a doubled file), and one meal of a 坞城街道 canteen has a meal type that is
not one of the choices (a rejected row). The reporters' notices of the 31st are sent before the emails.
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

DAY1, DAY = date(2023, 10, 30), date(2023, 10, 31)
CUTOFF = datetime.combine(DAY + timedelta(days=1), time(0), TZ)
MIAOQIAN = "140106003"
WUCHENG_CANTEEN = "CT140105001001"


@pytest.fixture(scope="module")
def published(server_url, local_dir, tmp_path_factory):
    from orchestration import steps
    from reports.notices import send_notices
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
                rejected = _spoil_one_meal(landing / "canteens" / day.isoformat() / f"{WUCHENG_CANTEEN}.csv")
            d = day.isoformat()
            for feed in settings.FEEDS:
                steps.load_feed(connections.warehouse(), feed, d)
            steps.validate_raw(connections.warehouse(), d, run_id=f"raw-{d}")
            steps.build_marts(connections.warehouse(), d)
            steps.validate_marts(connections.warehouse(), [d], run_id=f"marts-{d}")
            steps.publish(connections.warehouse(), [d], run_id=f"pub-{d}")
        notified = send_notices(connections.warehouse(), DAY)  # as gov_ingest does, before the summaries
        yield {"wh": wh, "outbox": outbox, "nights": nights, "scenario": scenario, "withheld": withheld,
               "doubled": doubled, "rejected": rejected, "landing": landing, "notified": notified}
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


def _spoil_one_meal(path) -> str:
    """The first record's meal type becomes one the readers do not accept; returns its record id."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[3] = "夜宵"
    lines[1] = ",".join(cells)
    path.write_text("".join(lines), encoding="utf-8")
    return cells[0]


def counted_meals(published) -> list[dict]:
    """The meals of the service day that reached the marts: not the withheld or held canteens', not the rejected one."""
    spoilt = {published["withheld"], published["doubled"]}  # no data of theirs reached raw
    return [m for m in published["nights"][DAY].meals
            if m["canteen_code"] not in spoilt and m["record_id"] != published["rejected"]]


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
    meals = sum(1 for m in counted_meals(published) if m["canteen_code"][2:11] == street)
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
    # the grids and party organisations (reports.party_grid), wired in after the ranking and worst compounds:
    # each street's grids, micro-grids and assistants as the generator's registry rows of the night count them
    rows = [r for r in published["nights"][DAY].compounds if r["street_code"] == MIAOQIAN]
    grid = listed(text_of(msg), "网格力量（分街道）")
    assert (f"  {street_names()[MIAOQIAN]}：网格 {len({r['grid_code'] for r in rows}):,}，"
            f"微网格 {sum(r['micro_grids'] for r in rows):,}，网格助理 {sum(r['grid_assistants'] for r in rows):,}，"
            "入格率 100.0%") in grid, grid


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
    body = re.sub(r"<[^>]+>", " ", html.split("<body", 1)[1].split(">", 1)[1])  # not the body tag's own style
    return set(re.findall(NUMBER, body))


@pytest.mark.parametrize("level", ["street", "district", "city"])
def test_text_part_carries_every_figure_and_html_fits_a_phone(published, level, tmp_path):
    from reports.render_check import render_eml, scroll_width

    street = busiest_overdue_street(published)
    code, name = {"street": (street, street_names()[street]), "district": (street[:6], "本区"),
                  "city": ("140100", "太原市")}[level]
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


# --- community names and canteens per community (the street email) --------------------------------

def seed(name: str) -> list[dict]:
    with (settings.DBT_PROJECT_DIR / "seeds" / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_street_email_names_its_communities_and_their_canteen_person_times(published):
    """Each community row carries the community's name (community_names seed) and the person-times of the
    canteens the canteens seed places in it, counted from the generator's meals."""
    street = WUCHENG_CANTEEN[2:11]  # its canteen lost a rejected meal: the count must leave it out
    names = {r["community_code"]: r["community_name"] for r in seed("community_names")}
    community_of = {r["canteen_code"]: r["community_code"] for r in seed("canteens")}
    meals: dict[str, int] = {}
    for m in counted_meals(published):
        if m["canteen_code"][2:11] == street:
            meals[community_of[m["canteen_code"]]] = meals.get(community_of[m["canteen_code"]], 0) + 1
    assert len(meals) >= 2
    msg, _ = send(published, "street", street, street_names()[street])
    rows = {line.strip().split("：", 1)[0]: line for line in listed(text_of(msg), "分社区情况") if "：受理" in line}
    for community, n in meals.items():
        assert rows[names[community]].endswith(f"食堂人次 {n:,}"), (names[community], n)
    assert not [label for label in rows if re.fullmatch(r"社区\d{3}", label)]  # names, not code numbers
    assert rows["街道合计"].endswith(f"食堂人次 {sum(meals.values()):,}")
    html = html_of(msg)
    assert all(names[c] in html for c in meals)


def test_a_canteens_community_without_compounds_keeps_its_person_times(published):
    """A community the canteens seed places a canteen in but the registry has no compound of (here: one
    made so by deleting its compounds and dim_community row, rolled back) still has its row and its
    canteens' person-times, and no canteen is called unplaced (the street total less the placed ones)."""
    from psycopg.rows import dict_row

    from reports import casework
    from reports.figures import Scope, ScopeReport
    from reports.sections import street_blocks

    street = WUCHENG_CANTEEN[2:11]
    community_of = {r["canteen_code"]: r["community_code"] for r in seed("canteens")}
    meals: dict[str, int] = {}
    for m in counted_meals(published):
        if m["canteen_code"][2:11] == street:
            meals[community_of[m["canteen_code"]]] = meals.get(community_of[m["canteen_code"]], 0) + 1
    community = community_of[WUCHENG_CANTEEN]
    conn = psycopg.connect(published["wh"].conninfo(), row_factory=dict_row)
    try:
        conn.execute("delete from marts.dim_compound where community_code = %s", (community,))
        conn.execute("delete from marts.dim_community where community_code = %s", (community,))
        rows = casework.communities(conn, street, DAY)
        report = ScopeReport(Scope("street", street, "坞城街道"), DAY, communities=rows,
                             canteen_unplaced=casework.unplaced_person_times(conn, street, DAY))
        report.days[DAY] = {"canteen_person_times": sum(meals.values())}
        [table, *_] = street_blocks(report)
    finally:
        conn.rollback()
        conn.close()
    assert {r["community_code"]: r["canteen_person_times"] for r in rows}[community] == meals[community]
    assert report.canteen_unplaced == 0
    assert "各食堂均已登记所在社区。" in table.note and "未登记所在社区的食堂" not in table.note
    assert [r for r in table.rows if r[0] == f"社区{community[-3:]}"][0][-1] == f"{meals[community]:,}"


# --- the city email -------------------------------------------------------------------------------

def district_of(code: str) -> str:
    return code[:6] if code.isdigit() else code[2:8]


def expected_districts(published) -> dict[str, dict]:
    """Per district, from the generator: received on the day, open at the cut-off, the overnight rate of
    the day before's cases, and the counted meals."""
    nine = datetime.combine(DAY, time(9), TZ)
    out = {r["district_name"]: {"code": r["district_code"], "received": 0, "backlog": 0, "cohort": 0, "fast": 0,
                                "meals": 0} for r in seed("districts")}
    by_code = {v["code"]: v for v in out.values()}
    for (point, _), c in cases(published).items():
        if not c.get("received"):
            continue
        d, day = by_code[district_of(point)], at(c["received"]).astimezone(TZ).date()
        d["received"] += day == DAY
        d["backlog"] += open_at_cutoff(c)
        if day == DAY1:
            d["cohort"] += 1
            d["fast"] += not open_at_nine(c, nine)
    for m in counted_meals(published):
        by_code[district_of(m["canteen_code"])]["meals"] += 1
    return out


def rate_text(part: int, whole: int) -> str:
    return "—" if not whole else f"{part / whole * 100:.1f}%"


def test_city_email_sets_the_districts_side_by_side_as_the_generator_counts_them(published):
    expected = expected_districts(published)
    assert sum(d["received"] for d in expected.values()) > 50 and sum(d["meals"] > 0 for d in expected.values()) >= 5
    msg, _ = send(published, "city", "140100", "太原市")
    text = text_of(msg)
    work = {line.strip().split("：", 1)[0]: line for line in listed(text, "各区县办事情况") if "：受理" in line}
    service = {line.strip().split("：", 1)[0]: line for line in listed(text, "各区县服务情况") if "：吹哨" in line}
    assert list(work)[:-1] == list(expected) and list(work)[-1] == "全市合计"  # every district, in code order
    for name, e in expected.items():
        assert f"受理 {e['received']:,}，" in work[name], name
        assert f"不隔夜率 {rate_text(e['fast'], e['cohort'])}，" in work[name], name
        assert work[name].endswith(f"积压 {e['backlog']:,}"), name
        assert service[name].endswith(f"食堂人次 {e['meals']:,}"), name
    assert service["全市合计"].endswith(f"食堂人次 {sum(e['meals'] for e in expected.values()):,}")
    coverage = [line for line in listed(text, "各区县覆盖情况") if "：小区" in line]
    compounds = {}
    for k in published["scenario"].compounds:
        compounds[k.district_code] = compounds.get(k.district_code, 0) + 1
    for line, (name, e) in zip(coverage, expected.items(), strict=False):
        assert line.startswith(f"  {name}：小区 {compounds.get(e['code'], 0):,}，")
    assert "各区县办事情况" in html_of(msg) and "分区情况" not in text


def test_city_email_compares_with_the_published_figures_on_a_months_last_night(published):
    from reports import city_figures

    assert city_figures.reconciliation_night(DAY) and not city_figures.reconciliation_night(DAY1)
    published_values = {(r["figure_key"], r["scope_code"]): r["value"] for r in seed("published_figures")}
    compounds = {}
    for k in published["scenario"].compounds:
        compounds[k.district_code] = compounds.get(k.district_code, 0) + 1
    msg, _ = send(published, "city", "140100", "太原市")
    lines = listed(text_of(msg), "公布数据核对（每月一次）")
    cards = {lines[i].strip(): lines[i + 1].strip() for i in range(0, len(lines) - 1, 2) if lines[i + 1].startswith("    ")}
    for code, name in (("140105", "小店区"), ("140106", "迎泽区")):
        assert int(published_values[("compounds", code)]) == compounds[code]  # the scenario's calibration
        assert cards[f"小区数 · {name}"] == f"公布 {compounds[code]:,} · 平台 {compounds[code]:,} · 一致"
    # a cumulative programme figure is not compared on two nights of data
    assert cards["帮代办受理群众事项（累计） · 全市"].startswith(
        f"公布 {int(published_values[('assistance_matters_handled', '140100')]):,} · 平台 ")
    assert cards["帮代办受理群众事项（累计） · 全市"].endswith(" · 暂不比对")
    # every figure by its Chinese name, the published streets by theirs (dim_street), none by its key
    assert not [c for c in cards if re.match(r"[a-z_.]+ ·", c)] and not [c for c in cards if c.endswith(" · miaoqian")]
    assert cards["整合前院落 · 庙前街道"].startswith("公布 275 · 平台 ")
    assert "累计指标（帮代办受理群众事项（累计）、" in "".join(lines)
    # rebuilt on the month's last night (mart_published_figures is incremental): the registry of the 31st
    assert f"台账截至 {DAY.isoformat()}；" in "".join(lines)
    # DAY1's email only says when the next comparison is
    from reports.figures import Scope
    from reports.render import render_text
    from reports.send import compose, ledger_files

    wh = connections.warehouse()
    text = render_text(compose(wh, Scope("city", "140100", "太原市"), DAY1, {"status": "published"},
                               ledger_files(wh, DAY1)), "全部通过", {})
    assert f"下次：{DAY.isoformat()}。" in text and "公布数据核对（每月一次）" not in text


def test_city_email_counts_missing_and_held_reporters_by_district(published, monkeypatch):
    codes = {"streets": [r["street_code"] for r in seed("streets")],
             "canteens": [r["canteen_code"] for r in seed("canteens")],
             "assistance": [r["point_code"] for r in seed("assistance_points")]}
    missing: dict[str, int] = {}
    for source, expected in codes.items():
        sent = {p.stem for p in (published["landing"] / source / DAY.isoformat()).iterdir()}
        for code in set(expected) - sent:
            missing[district_of(code)] = missing.get(district_of(code), 0) + 1
    assert missing.get("140106", 0) >= 1  # the withheld canteen
    monkeypatch.setenv("GOV_DOCS_BASE_URL", "http://docs.example:8081")
    msg, _ = send(published, "city", "140100", "太原市")
    title = "未报送或暂缓采用的报送单位（按区县）"
    lines = {line.strip().split("：", 1)[0]: line.strip() for line in listed(text_of(msg), title) if "：未报" in line}
    for d in seed("districts"):
        held = 1 if d["district_code"] == "140106" else 0  # the doubled file
        assert lines[d["district_name"]] == (f"{d['district_name']}：未报 {missing.get(d['district_code'], 0):,}，"
                                             f"暂缓采用 {held}")
    assert lines["全市合计"] == f"全市合计：未报 {sum(missing.values()):,}，暂缓采用 1"
    link = "http://docs.example:8081/dbt-docs/#!/model/model.gov_warehouse.mart_source_freshness"
    assert link in text_of(msg) and f'href="{link}"' in html_of(msg)


def test_city_email_says_how_many_reporters_were_notified_and_why(published):
    wh = published["wh"]
    with psycopg.connect(wh.conninfo()) as conn:
        rejected = conn.execute(
            """select r.reason_code, count(distinct l.reporter_code) from audit.rejected_rows r
               join audit.load_ledger l using (load_id) where l.service_date = %s group by 1""", (DAY,)).fetchall()
        held = conn.execute(
            """select 'held:' || split_part(error, ':', 1), count(distinct reporter_code) from audit.load_ledger
               where service_date = %s and status = 'held' group by 1""", (DAY,)).fetchall()
        sent = conn.execute(
            """select r.reason, count(distinct n.reporter_code) from audit.notice_sends n
               cross join lateral jsonb_object_keys(n.reasons) r(reason)
               where n.noticed_on = %s and n.status = 'sent' group by 1""", (DAY,)).fetchall()
    expected = dict(rejected) | dict(held)
    assert expected == {"bad_enum": 1, "held:doubled_file": 1}  # the night's two spoilt files, as spoilt
    assert dict(sent) == expected and published["notified"]["reporters"] == 2
    msg, _ = send(published, "city", "140100", "太原市")
    got = {}
    for line in listed(text_of(msg), "数据报送问题通知"):
        found = re.fullmatch(r"  .+（(\S+)）：(\d+) 个单位", line)
        if found:
            got[found.group(1)] = int(found.group(2))
    assert got == expected
    assert "有数据行未能入库：填写的不是规定的选项之一（bad_enum）：1 个单位" in html_of(msg)


# --- pure logic (no database) ----------------------------------------------------------------------

def test_trend_starts_at_the_first_night_with_data_and_says_so():
    from reports.figures import Scope, ScopeReport
    from reports.render import render_text, trend_days, trend_title

    report = ScopeReport(Scope("street", MIAOQIAN, "庙前街道"), DAY)
    report.days = {DAY1: {"cases_received": 3, "cases_resolved": 2, "overnight_resolution_rate": None},
                   DAY: {"cases_received": 5, "cases_resolved": 4, "overnight_resolution_rate": 0.5}}
    assert trend_days(report) == [DAY1, DAY]
    assert trend_title(report) == f"近2日趋势（数据自{DAY1.month}月{DAY1.day}日起，不足30日）"
    assert f"  {DAY.month}月{DAY.day}日：受理 5，办结 4，不隔夜率 50.0%" in render_text(report, "全部通过", {})
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


def test_every_community_of_the_scenario_has_one_name_and_every_canteen_a_community_of_its_street():
    from scenario.generator import Scenario

    communities = {k.community_code: k.street_code for k in Scenario().compounds}
    rows = seed("community_names")
    assert sorted(r["community_code"] for r in rows) == sorted(communities)
    assert all(r["community_name"].endswith("社区") and r["street_code"] == communities[r["community_code"]] for r in rows)
    per_street: dict[str, list[str]] = {}
    for r in rows:
        per_street.setdefault(r["street_code"], []).append(r["community_name"])
    assert all(len(set(v)) == len(v) for v in per_street.values())  # unique within a street
    assert all(communities[r["community_code"]] == r["street_code"] for r in seed("canteens"))


def test_notice_reasons_read_in_chinese_with_their_code():
    from reports.city import notices_block, reason_label

    assert reason_label("held:doubled_file").startswith("文件暂缓采用：")
    assert reason_label("quarantined:bad_encoding").startswith("文件未能导入：")
    assert reason_label("missing") == "连续未报送，已发提醒"
    block = notices_block({"bad_enum": 2, "missing": 3})
    assert block.lines == ["连续未报送，已发提醒（missing）：3 个单位",
                           "有数据行未能入库：填写的不是规定的选项之一（bad_enum）：2 个单位"]
    assert notices_block({}).empty and not notices_block({}).lines


def test_the_next_comparison_is_the_months_last_day():
    from reports.city_figures import next_reconciliation, reconciliation_night

    assert next_reconciliation(date(2023, 2, 3)) == date(2023, 2, 28)
    assert next_reconciliation(date(2023, 12, 31)) == date(2023, 12, 31)
    assert reconciliation_night(date(2024, 2, 29)) and not reconciliation_night(date(2024, 2, 28))


MODEL_CHANGES = "select keys from audit.mart_changes where model = 'mart_published_figures'"


def test_published_figures_are_kept_and_not_recomputed_on_a_night_not_a_months_last(published):
    """mart_published_figures costs a scan of the programme period: a nightly run on any other day than a
    month's last selects nothing and keeps the rows (a sentinel put in the candidate mart survives a run of
    the 30th) and gives the publish no changed keys; a run of the 31st computes them again."""
    from orchestration import dbt_run

    def sentinels() -> tuple[int, int]:
        with psycopg.connect(published["wh"].conninfo()) as conn:
            return conn.execute("select count(*) filter (where published = -1), count(*) "
                                "from marts_candidate.mart_published_figures").fetchone()

    def run_night(day: date) -> list:
        with psycopg.connect(published["wh"].conninfo()) as conn:
            seen = conn.execute(MODEL_CHANGES.replace("keys", "count(*)"), ()).fetchone()[0]
        dbt_run.run_dbt(connections.warehouse(), ["run", "--select", "mart_published_figures"], day.isoformat())
        with psycopg.connect(published["wh"].conninfo()) as conn:
            return [k for (k,) in conn.execute(MODEL_CHANGES + " order by recorded_at offset %s", (seen,))]

    with psycopg.connect(published["wh"].conninfo(), autocommit=True) as conn:
        marked = conn.execute("update marts_candidate.mart_published_figures set published = -1 "
                              "where figure_key = 'compounds'").rowcount
    rows = sentinels()[1]
    assert marked == 2 and rows > 30  # 小店区 and 迎泽区
    assert run_night(DAY1) == [[]] and sentinels() == (marked, rows)
    changed = run_night(DAY)
    assert sentinels() == (0, rows) and len(changed) == 1 and len(changed[0]) == rows
