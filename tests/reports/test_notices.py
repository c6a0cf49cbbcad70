"""Reporters' notices (issue 19), for real: a real PostgreSQL, the real loader on the generator's messy
nights, the real aiosmtpd sink behind Airflow's `smtp_default`. Who must be told, and of which rows, comes
from the generator's MessyManifest and from audit.rejected_rows; personal data is searched for with the
generator's own plain values of the night.
"""

from __future__ import annotations

import csv
import email
import io
import json
import os
import zipfile
from collections import Counter
from datetime import date, timedelta
from email import policy
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import loader
from reports import notices, smtp_sink
from scenario import messy
from scenario.generator import Scenario
from scenario.writers import canteen_csv_text, meal_values
from tests.conftest import create_database, drop_database
from warehouse import reference, settings
from warehouse.bootstrap import bootstrap

pytestmark = pytest.mark.integration

D = date(2023, 11, 6)
SOURCES = ("streets", "canteens", "assistance")
SHEET_ROWS = 10_000_000


def q(wh, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def load(wh, landing: Path, day: date, sources=SOURCES) -> None:
    for source in sources:
        loader.load_night(wh, landing, source, day)


def contacts() -> dict[str, dict]:
    with (settings.DBT_PROJECT_DIR / "seeds" / "reporter_contacts.csv").open(encoding="utf-8") as f:
        return {r["reporter_code"]: r for r in csv.DictReader(f)}


class Outbox:
    """The sink's .eml files, read in arrival order; `new()` gives those since the last call."""

    def __init__(self, path: Path):
        self.path, self.seen = path, 0

    def new(self) -> list[email.message.EmailMessage]:
        files = sorted(self.path.glob("*.eml"))
        out = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in files[self.seen:]]
        self.seen = len(files)
        return out


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def xlsx_of(msg) -> tuple[bytes, list[dict]] | None:
    from openpyxl import load_workbook

    parts = [a for a in msg.iter_attachments() if (a.get_filename() or "").endswith(".xlsx")]
    if not parts:
        return None
    data = parts[0].get_content()
    rows = list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))
    return data, [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def corrected_canteen_file(scenario: Scenario, landing: Path, code: str, day: date) -> int:
    """The clerk's corrected file: the canteen's genuine records of the day, as CSV UTF-8."""
    canteen = next(c for c in scenario.canteens if c.code == code)
    meals = scenario.canteen_meals(canteen, day)
    path = landing / "canteens" / day.isoformat() / f"{code}.csv"
    path.write_text(canteen_csv_text([meal_values(r) for r in meals]), encoding="utf-8")
    return len(meals)


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    """The real SMTP sink behind Airflow's `smtp_default`, as the deployment's relay."""
    outbox = Outbox(tmp_path_factory.mktemp("outbox"))
    sink = smtp_sink.start(outbox.path)
    saved = os.environ.get("AIRFLOW_CONN_SMTP_DEFAULT")
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "gov-data@taiyuan.example",
                  "timeout": 10, "retry_limit": 1}})
    yield outbox
    sink.stop()
    if saved is None:
        os.environ.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)
    else:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = saved


@pytest.fixture(scope="module")
def nights(server_url, local_dir, tmp_path_factory, relay):
    """Night D (messy), its notices twice; two canteens correct their files and D is re-run, notices twice;
    nights D+1 and D+2 (messy, other reporters), their notices (D+2 twice)."""
    wh = create_database(server_url, "gov_notices")
    landing = tmp_path_factory.mktemp("landing")
    outbox = relay
    outbox.seen = len(list(outbox.path.glob("*.eml")))
    scenario = Scenario()
    out: dict = {"wh": wh, "scenario": scenario, "landing": landing, "eml_dir": outbox.path}
    try:
        bootstrap(wh)
        out["manifest"] = messy.write_messy_night(scenario, D, landing, full=False)
        load(wh, landing, D)
        out["first"], out["first_mail"] = notices.send_notices(wh, D), outbox.new()
        out["again"], out["again_mail"] = notices.send_notices(wh, D.isoformat()), outbox.new()

        m = out["manifest"]
        fixed = {m.by_kind("gb18030").reporter: None, m.by_kind("utf16").reporter: None}
        for code in fixed:
            fixed[code] = corrected_canteen_file(scenario, landing, code, D)
        out["fixed"] = fixed
        load(wh, landing, D, ("canteens",))
        out["reply"], out["reply_mail"] = notices.send_notices(wh, D), outbox.new()
        out["reply_again"], out["reply_again_mail"] = notices.send_notices(wh, D), outbox.new()

        out["later"] = {}
        for k in (1, 2):
            day = D + timedelta(days=k)
            manifest = messy.write_messy_night(scenario, day, landing, full=False)
            load(wh, landing, day)
            out["later"][day] = (manifest, notices.send_notices(wh, day), outbox.new())
        out["last_again"], out["last_again_mail"] = notices.send_notices(wh, D + timedelta(days=2)), outbox.new()
        yield out
    finally:
        drop_database(wh)


def notified_cases(manifest: messy.MessyManifest) -> dict[str, messy.FileCase]:
    """reporter -> its file of the night that must be noticed: quarantined, or with rejected rows."""
    return {c.reporter: c for c in manifest.for_night() if c.status == "quarantined" or c.rows_rejected}


def by_recipient(msgs) -> dict[str, email.message.EmailMessage]:
    found = {m["To"]: m for m in msgs}
    assert len(found) == len(msgs), "one notice per reporter"
    return found


# ---------------------------------------------------------------- the night's problems


def test_every_reporter_with_a_problem_file_gets_one_notice_and_no_one_else(nights):
    book = contacts()
    cases = notified_cases(nights["manifest"])
    assert len(cases) == 6  # the generator's six messy files of a night: 2 quarantined, 4 with rejected rows
    mail = by_recipient(nights["first_mail"])
    assert set(mail) == {book[code]["email"] for code in cases}
    clean = nights["manifest"].by_kind("revised").reporter  # its first version loads without a fault
    assert book[clean]["email"] not in mail
    for code, case in cases.items():
        msg = mail[book[code]["email"]]
        assert msg["X-Gov-Notice-Kind"] == "problems" and msg["X-Gov-Reporter"] == code
        assert book[code]["reporter_name"] in msg["Subject"] and "数据报送问题通知" in msg["Subject"]
        assert case.path.name in text_of(msg)
    assert nights["first"]["sent"] == {"problems": 6} and nights["first"]["reporters"] == 6


def test_each_notice_lists_exactly_its_rejected_rows(nights):
    """Rows and reasons in the attachment, and in the text, are audit.rejected_rows' of that file, and
    their reasons are the manifest's; workbook rows by sheet name and the sheet's own row number."""
    wh, book = nights["wh"], contacts()
    mail = by_recipient(nights["first_mail"])
    for code, case in notified_cases(nights["manifest"]).items():
        msg = mail[book[code]["email"]]
        stored = q(wh, """select r.row_number, r.reason_code, r.raw_record from audit.rejected_rows r
                          join audit.load_ledger l using (load_id) where l.file_path = %s""", (str(case.path),))
        attached = xlsx_of(msg)
        if case.status == "quarantined":
            assert stored == [] and attached is None
            assert "整个文件未能导入" in text_of(msg)
            continue
        _, rows = attached
        assert Counter(r["原因代码"] for r in rows) == case.reasons, case.kind
        expected = Counter((s["raw_record"].get("_sheet"), s["row_number"] % SHEET_ROWS, s["reason_code"])
                           for s in stored)
        assert Counter((r["工作表"] or None, r["行号"], r["原因代码"]) for r in rows) == expected
        assert {r["文件"] for r in rows} == {case.path.name}
        text = text_of(msg)
        for s in stored:
            sheet = s["raw_record"].get("_sheet")
            assert (f"工作表“{sheet}”" if sheet else "") + f"第 {s['row_number'] % SHEET_ROWS} 行" in text
        assert f"{case.rows_rejected} 行有问题" in text and f"{case.rows_loaded} 行已入库" in text
    workbook = notified_cases(nights["manifest"])[nights["manifest"].by_kind("titles_merged_total").reporter]
    rows = xlsx_of(mail[book[workbook.reporter]["email"]])[1]
    assert {r["工作表"] for r in rows} == {"小区台账"}
    assert {r["列"] for r in rows} == {"户数", "物业服务方式", "小区编码"}  # the clerk's own column names


def test_what_to_do_follows_the_readers_documented_rules(nights):
    book, m = contacts(), nights["manifest"]
    mail = by_recipient(nights["first_mail"])
    utf16 = text_of(mail[book[m.by_kind("utf16").reporter]["email"]])
    assert "CSV UTF-8" in utf16  # docs/data-quality.md: 另存为 "CSV UTF-8 (逗号分隔)"
    workbook = text_of(mail[book[m.by_kind("unreadable_workbook").reporter]["email"]])
    assert "Excel 工作簿 (.xlsx)" in workbook and "密码" in workbook
    registry = text_of(mail[book[m.by_kind("titles_merged_total").reporter]["email"]])
    assert "市场化物业、红色物业帮建、驻地单位协建、财政补贴过渡、社区兜底、单位自管、无" in registry  # bad_enum
    assert "约300" in registry  # the clerk sees what was typed


def personal_values(scenario: Scenario, manifests: list[messy.MessyManifest]) -> set[str]:
    """The generator's plain names, phones, ID and card numbers of the notified reporters' nights."""
    values: set[str] = set()
    canteens = {c.code: c for c in scenario.canteens}
    for m in manifests:
        for e in scenario.events(m.day):
            values |= {e[k] for k in ("requester_name", "requester_phone", "requester_id_number") if e.get(k)}
        for case in m.for_night():
            if case.source == "canteens":
                values |= {r["diner_card"] for r in scenario.canteen_meals(canteens[case.reporter], m.day)}
    return values


def every_text(msg) -> str:
    """Headers, every text part, and every string inside each attachment (the .xlsx's XML unpacked)."""
    parts = [str(v) for _, v in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
        elif part.get_filename():
            with zipfile.ZipFile(io.BytesIO(part.get_content())) as z:
                parts += [z.read(n).decode("utf-8") for n in z.namelist()]
    return "\n".join(parts)


def test_no_personal_data_in_any_part_or_attachment(nights):
    wh = nights["wh"]
    msgs = nights["first_mail"] + nights["reply_mail"] + [m for _, _, ms in nights["later"].values() for m in ms]
    manifests = [nights["manifest"]] + [m for m, _, _ in nights["later"].values()]
    personal = personal_values(nights["scenario"], manifests)
    assert len(personal) > 1000
    hashes = {v[5:] for r in q(wh, "select raw_record from audit.rejected_rows") for v in r["raw_record"].values()
              if isinstance(v, str) and v.startswith("hmac:")}
    assert hashes  # the rejected rows do hold hashed card numbers, names, phones, ID numbers
    for msg in msgs:
        found = every_text(msg)
        assert "hmac:" not in found
        leaked = {v for v in personal | hashes if v in found}
        assert not leaked, (msg["To"], leaked)
    masked = [r for m in nights["first_mail"] if xlsx_of(m) for r in xlsx_of(m)[1] if r.get("就餐卡号")]
    assert masked and {r["就餐卡号"] for r in masked} == {"（个人信息，已隐去）"}


# ---------------------------------------------------------------- once per file version


def test_a_rerun_sends_nothing_new(nights):
    assert nights["again_mail"] == [] and nights["again"]["sent"] == {}
    assert nights["again"]["already_sent"] == 6
    assert nights["reply_again_mail"] == [] and nights["last_again_mail"] == []
    statuses = q(nights["wh"], "select status, count(*) as n from audit.notice_sends group by 1")
    assert [s["status"] for s in statuses] == ["sent"]


def test_a_corrected_file_gets_the_received_reply_once(nights):
    book, wh = contacts(), nights["wh"]
    mail = by_recipient(nights["reply_mail"])
    assert set(mail) == {book[code]["email"] for code in nights["fixed"]}
    for code, rows in nights["fixed"].items():
        msg = mail[book[code]["email"]]
        assert msg["X-Gov-Notice-Kind"] == "received" and "已收到，已入库" in msg["Subject"]
        assert f"{code}.csv：{rows} 行全部入库" in text_of(msg)
        loaded = q(wh, """select rows_loaded, rows_rejected from audit.load_ledger where reporter_code = %s
                          and service_date = %s and status = 'loaded'""", (code, D))
        assert loaded == [{"rows_loaded": rows, "rows_rejected": 0}]
    assert nights["reply"]["sent"] == {"received": 2}
    assert nights["reply_again"]["sent"] == {} and nights["reply_again_mail"] == []


def test_a_held_file_is_noticed_once_and_its_release_gets_the_reply(fresh_warehouse, tmp_path, relay, monkeypatch):
    """A shrunk re-delivery is held (ingest/holds.py); the canteen hears why, once; released, it loads."""
    from ingest import decisions

    wh, relay.seen = fresh_warehouse, len(list(relay.path.glob("*.eml")))
    code = Scenario().canteens[0].code
    path = tmp_path / "canteens" / D.isoformat() / f"{code}.csv"
    messy.write_volume_csv(Scenario(), path, 40)
    load(wh, tmp_path, D, ("canteens",))
    assert notices.send_notices(wh, D)["sent"] == {} and relay.new() == []  # a clean file: no notice
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:13]), encoding="utf-8")  # header and 12 records: "the till exported the morning"
    load(wh, tmp_path, D, ("canteens",))
    [held] = q(wh, "select load_id, error from audit.load_ledger where status = 'held'")
    assert held["error"].startswith("shrunk_redelivery:")
    first = notices.send_notices(wh, D)
    [msg] = relay.new()
    assert msg["To"] == contacts()[code]["email"] and first["reasons"] == {"held:shrunk_redelivery": 1}
    text = text_of(msg)
    assert "暂未入库" in text and "原来已入库的版本继续使用" in text and "少了一半以上的记录" in text
    load(wh, tmp_path, D, ("canteens",))  # the same held file again: a skipped duplicate, no second notice
    assert notices.send_notices(wh, D)["sent"] == {} and relay.new() == []

    monkeypatch.setenv("LANDING_DIR", str(tmp_path))
    with loader.connect(wh) as conn:
        decisions.release(conn, held["load_id"], "only breakfast was served", by="数据管理员")
    assert notices.send_notices(wh, D)["sent"] == {"received": 1}
    [reply] = relay.new()
    assert "已收到，已入库" in reply["Subject"] and f"{code}.csv：12 行全部入库" in text_of(reply)
    assert notices.send_notices(wh, D)["sent"] == {} and relay.new() == []


def test_a_refusing_relay_withdraws_the_claims_and_the_retry_sends(fresh_warehouse, tmp_path, relay, monkeypatch):
    wh, relay.seen = fresh_warehouse, len(list(relay.path.glob("*.eml")))
    code = Scenario().canteens[1].code
    path = tmp_path / "canteens" / D.isoformat() / f"{code}.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # a 0-byte .csv: quarantined (empty_file)
    load(wh, tmp_path, D, ("canteens",))
    working = os.environ["AIRFLOW_CONN_SMTP_DEFAULT"]
    closed = smtp_sink._free_port("127.0.0.1")  # nothing listens there: connection refused
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", working.replace(f'"port": {json.loads(working)["port"]}',
                                                                    f'"port": {closed}'))
    with pytest.raises(RuntimeError, match="refused 1 notices"):
        notices.send_notices(wh, D)
    assert q(wh, "select * from audit.notice_sends") == []  # nothing claimed stays behind
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", working)
    assert notices.send_notices(wh, D)["reasons"] == {"quarantined:empty_file": 1}
    [msg] = relay.new()
    assert msg["To"] == contacts()[code]["email"] and "文件是空的" in text_of(msg)


def test_a_refused_copy_is_told_to_the_reporter_whose_code_it_carries():
    book = contacts()
    code = Scenario().canteens[0].code
    for name in (f"{code} (1)", f"{code}_副本", f"{code} - 副本"):
        assert notices.contact_of(name, book)["reporter_code"] == code
    for name in ("C", f"{code}9", code[:-1]):
        assert notices.contact_of(name, book) is None


# ---------------------------------------------------------------- reporters that stopped sending


def delivered(manifest: messy.MessyManifest) -> set[str]:
    return {c.reporter for c in manifest.for_night()}


def test_a_reporter_missing_for_two_nights_gets_one_reminder(nights):
    assert notices.missing_nights() == 2
    book = contacts()
    (m1, s1, mail1), (m2, s2, mail2) = (nights["later"][D + timedelta(days=k)] for k in (1, 2))
    # night D+1: one night missing is not yet a reminder; its own messy files are noticed
    assert s1["sent"] == {"problems": len(notified_cases(m1))}
    assert {m["To"] for m in mail1} == {book[c]["email"] for c in notified_cases(m1)}
    # night D+2: whoever sent a file on D and none on D+1 and D+2
    gone = delivered(nights["manifest"]) - delivered(m1) - delivered(m2)
    assert len(gone) >= 5
    reminders = by_recipient([m for m in mail2 if m["X-Gov-Notice-Kind"] == "missing"])
    assert set(reminders) == {book[c]["email"] for c in gone}
    for code in gone:
        msg = reminders[book[code]["email"]]
        assert "连续 2 晚" in msg["Subject"] and "从 2023年11月7日 起" in text_of(msg)
    assert s2["sent"] == {"problems": len(notified_cases(m2)), "missing": len(gone)}
    assert nights["last_again"]["sent"] == {}


def test_notice_counts_say_how_many_reporters_and_why(nights):
    expected: Counter = Counter()
    for case in notified_cases(nights["manifest"]).values():
        keys = {f"quarantined:{case.quarantine_reason}"} if case.status == "quarantined" else set(case.reasons)
        expected.update(keys)
    expected["received"] = len(nights["fixed"])
    assert notices.notice_counts(nights["wh"], D) == dict(expected)
    assert notices.notice_counts(nights["wh"], D.isoformat()) == dict(expected)


def test_a_notice_reads_on_a_phone(nights):
    """Rendered in headless Chromium 375 px wide, the longest notice needs no sideways scrolling."""
    from reports.render_check import scroll_width

    book, m = contacts(), nights["manifest"]
    target = book[m.by_kind("titles_merged_total").reporter]["email"]
    eml = next(p for p in sorted(nights["eml_dir"].glob("*.eml"))
               if email.message_from_bytes(p.read_bytes(), policy=policy.default)["To"] == target)
    assert scroll_width(eml, 375) <= 375


# ---------------------------------------------------------------- the contacts seed


def test_contacts_seed_has_every_reporter_of_the_scenario_once():
    scenario = Scenario()
    book = contacts()
    expected = ({code: "street" for _, code, _ in reference.all_streets()}
                | {c.code: "canteen" for c in scenario.canteens} | {p.code: "point" for p in scenario.points})
    assert {c: r["reporter_kind"] for c, r in book.items()} == expected
    emails = [r["email"] for r in book.values()]
    assert len(set(emails)) == len(emails) and all(e.endswith("@reporters.taiyuan.example") for e in emails)
    assert book[scenario.canteens[0].code]["reporter_name"] == scenario.canteens[0].name
