"""The morning email always goes out, exactly once per official and day (real PostgreSQL, a real
aiosmtpd relay, real dbt and GX for the blocked night, the sender in real separate processes for the
crash and the race).

- A first night ever, before anything was built or published: every official is mailed.
- A first night that is blocked: every official is mailed, the block and the night's missing and
  quarantined reporters named in Chinese, by name, within each official's scope.
- The relay accepts a message and the sending process dies before recording it: a re-run sends
  nothing new (the claim stays; a stale one becomes `unconfirmed`).
- Two runs sending at once: one message per official.
- A relay that refuses outright: the claim is withdrawn, and the retry sends.
"""

from __future__ import annotations

import csv
import email
import json
import os
import signal
import subprocess
import sys
from datetime import date
from email import policy
from pathlib import Path

import psycopg
import pytest

from reports import night, smtp_sink
from reports.send import message_id
from tests.conftest import create_database, drop_database
from warehouse import connections, settings

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)
SEND = ("import json, sys; from reports.send import send_summaries; from warehouse import connections; "
        "print('SENT ' + json.dumps(send_summaries(connections.warehouse(), sys.argv[1], {'status': 'blocked'})), "
        "flush=True)")


def officials() -> list[dict]:
    with (settings.DBT_PROJECT_DIR / "seeds" / "officials.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def smtp_env(port: int) -> dict[str, str]:
    return {"AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "gov-data@taiyuan.example",
                  "timeout": 10, "retry_limit": 1}})}


def messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def ledger(wh) -> dict[str, str]:
    with psycopg.connect(wh.conninfo()) as conn:
        return dict(conn.execute("select recipient_key, status from audit.summary_sends where service_date = %s",
                                 (DAY,)).fetchall())


class KillingHandler(smtp_sink.OutboxHandler):
    """Accepts (writes the .eml) and, at the `kill_at`-th message, kills the sending process before it
    can record the send: the relay has the message, the ledger does not know."""

    def __init__(self, outbox: Path, kill_at: int):
        super().__init__(outbox)
        self.kill_at, self.received, self.victim = kill_at, 0, None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        reply = await super().handle_DATA(server, session, envelope)
        self.received += 1
        if self.received == self.kill_at and self.victim is not None:
            os.kill(self.victim.pid, signal.SIGKILL)
        return reply


@pytest.fixture
def relay(tmp_path):
    from aiosmtpd.controller import Controller

    handler = KillingHandler(tmp_path / "outbox", kill_at=0)
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_sink._free_port("127.0.0.1"))
    controller.start()
    yield controller, handler, tmp_path / "outbox"
    controller.stop()


@pytest.fixture
def empty_night(fresh_warehouse, local_dir, monkeypatch, relay):
    """A warehouse bootstrapped and nothing else: no seeds loaded, no marts, no publish log."""
    controller, _, _ = relay
    monkeypatch.setenv("WAREHOUSE_URL", fresh_warehouse.sqlalchemy_url())
    for k, v in smtp_env(controller.port).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AIRFLOW_HOME", str(local_dir / "airflow-email"))
    return fresh_warehouse


def sender(day: date = DAY) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SEND, day.isoformat()], cwd=settings.REPO_ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_first_night_ever_mails_every_official(empty_night, relay):
    from orchestration import steps

    _, _, outbox = relay
    sent = steps.send_summary(connections.warehouse(), DAY.isoformat())
    assert sorted(sent) == sorted(o["official_key"] for o in officials())
    got = messages(outbox)
    assert sorted(m["To"] for m in got) == sorted(o["email"] for o in officials())
    for msg in got:
        text = text_of(msg)
        assert "尚无已发布的数据" in text
        assert "本服务日数据未发布（被阻断），原因：本次数据构建未完成，未进行发布检查" in text
        assert "expect_" not in text and "build_failed" not in text
        # nothing was loaded: every reporter of the scope is missing, named from the reference data
        assert "未报" in text
    city = next(m for m in got if m["To"] == "city-duty@taiyuan.example")
    assert "坞城街道社区食堂1号（CT140105001001）" in text_of(city)
    assert ledger(empty_night) == {o["official_key"]: "sent" for o in officials()}
    assert {m["Message-ID"] for m in got} == {message_id(DAY, o["official_key"]) for o in officials()}
    # a re-run the same morning sends nothing
    assert steps.send_summary(connections.warehouse(), DAY.isoformat()) == []
    assert len(messages(outbox)) == len(officials())


def test_relay_accepts_then_the_task_dies_rerun_sends_nothing_new(empty_night, relay):
    _, handler, outbox = relay
    n = len(officials())
    handler.kill_at = n  # the relay accepts the last official's message, and the sender dies right then
    handler.victim = proc = sender()
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert len(messages(outbox)) == n
    states = ledger(empty_night)
    assert sorted(states.values()) == ["claimed"] + ["sent"] * (n - 1)
    [claimed] = [k for k, s in states.items() if s == "claimed"]

    handler.victim = None
    rerun = sender()
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert "SENT []" in out  # nothing new: the claimed message is not sent a second time
    assert len(messages(outbox)) == n
    assert sorted(m["To"] for m in messages(outbox)) == sorted(o["email"] for o in officials())

    # later, the claim is stale: it is listed as unconfirmed, and still not re-sent
    os.environ["GOV_SUMMARY_CLAIM_STALE_MINUTES"] = "0"
    try:
        again = sender()
        out, err = again.communicate(timeout=300)
    finally:
        os.environ.pop("GOV_SUMMARY_CLAIM_STALE_MINUTES")
    assert "SENT []" in out and "unconfirmed" in err
    assert ledger(empty_night)[claimed] == "unconfirmed"
    assert len(messages(outbox)) == n


def test_two_runs_sending_at_once_send_one_message_each(empty_night, relay):
    _, _, outbox = relay
    runs = [sender(), sender()]
    outputs = [p.communicate(timeout=300) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], [e[-2000:] for _, e in outputs]
    sent = [json.loads(out.split("SENT ", 1)[1]) for out, _ in outputs]
    keys = sorted(o["official_key"] for o in officials())
    assert sorted(sent[0] + sent[1]) == keys  # between them, every official once
    assert sorted(m["To"] for m in messages(outbox)) == sorted(o["email"] for o in officials())
    assert ledger(empty_night) == dict.fromkeys(keys, "sent")


def test_a_refusing_relay_withdraws_the_claim_and_the_retry_sends(empty_night, relay, monkeypatch):
    from orchestration import steps

    controller, _, outbox = relay
    closed = smtp_sink._free_port("127.0.0.1")  # nothing listens there: connection refused
    for k, v in smtp_env(closed).items():
        monkeypatch.setenv(k, v)
    with pytest.raises(RuntimeError, match="refused"):
        steps.send_summary(connections.warehouse(), DAY.isoformat())
    assert ledger(empty_night) == {}  # nothing claimed stays behind: the relay took nothing
    for k, v in smtp_env(controller.port).items():
        monkeypatch.setenv(k, v)
    assert len(steps.send_summary(connections.warehouse(), DAY.isoformat())) == len(officials())
    assert len(messages(outbox)) == len(officials())


# --- a first night that is blocked, built by the real pipeline (dbt, GX) ---------------------------

@pytest.fixture(scope="module")
def blocked_first_night(server_url, local_dir, tmp_path_factory):
    from orchestration import steps
    from scenario.generator import Scenario
    from warehouse.bootstrap import bootstrap

    wh = create_database(server_url, "gov_email")
    bootstrap(wh)
    landing = tmp_path_factory.mktemp("email_landing")
    outbox = tmp_path_factory.mktemp("email_outbox")
    sink = smtp_sink.start(outbox)
    mp = pytest.MonkeyPatch()
    mp.setenv("WAREHOUSE_URL", wh.sqlalchemy_url())
    mp.setenv("LANDING_DIR", str(landing))
    mp.setenv("AIRFLOW_HOME", str(local_dir / "airflow-email"))
    for k, v in smtp_env(sink.port).items():
        mp.setenv(k, v)
    try:
        Scenario().write_night(DAY, landing)
        folder = landing / "canteens" / DAY.isoformat()
        withheld = sorted(folder.glob("CT140105*.csv"))[0]  # a 小店区 canteen sends nothing
        withheld.unlink()
        broken = sorted(folder.glob("CT140106*.csv"))[0]  # a 迎泽区 canteen sends an HTML error page
        broken.write_text("<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n", encoding="utf-8")
        d = DAY.isoformat()
        for feed in settings.FEEDS:
            steps.load_feed(connections.warehouse(), feed, d)
        steps.validate_raw(connections.warehouse(), d, run_id="first-raw")
        steps.build_marts(connections.warehouse(), d)
        # the night is wrong as a whole: a street total that does not add up to the city's
        with psycopg.connect(wh.conninfo()) as conn:
            conn.execute("update marts_candidate.mart_street_daily_scorecard set cases_received = cases_received + 1 "
                         "where service_date = %s and street_code = '140105001'", (DAY,))
        steps.validate_marts(connections.warehouse(), [d], run_id="first-marts")
        with pytest.raises(RuntimeError, match="publish blocked"):
            steps.publish(connections.warehouse(), [d], run_id="first")
        sent = steps.send_summary(connections.warehouse(), d)
        yield {"wh": wh, "outbox": outbox, "sent": sent, "withheld": withheld.stem, "broken": broken.stem}
    finally:
        sink.stop()
        mp.undo()
        drop_database(wh)


def test_blocked_first_night_mails_every_official_and_says_why(blocked_first_night):
    got = messages(blocked_first_night["outbox"])
    assert sorted(blocked_first_night["sent"]) == sorted(o["official_key"] for o in officials())
    assert sorted(m["To"] for m in got) == sorted(o["email"] for o in officials())
    names = night.reporters()["canteens"]
    withheld, broken = blocked_first_night["withheld"], blocked_first_night["broken"]
    for msg in got:
        text = text_of(msg)
        html = msg.get_body(preferencelist=("html",)).get_content()
        assert "尚无已发布的数据" in text  # nothing was ever published: no figures, and no crash
        assert "本服务日数据未发布（被阻断），原因：各街道合计与全市合计不一致" in text
        assert "各街道合计与全市合计不一致" in html
        assert "expect_" not in text and "marts_street_totals" not in text
    city = text_of(next(m for m in got if m["To"] == "city-duty@taiyuan.example"))
    assert f"{names[withheld]}（{withheld}）" in city  # missing, by name
    assert f"已隔离：社区食堂 {names[broken]}（{broken}）的文件（{broken}.csv）无法读取" in city
    assert "社区食堂：应报 312，已报 310，未报 2" in city  # a quarantined file brings no data: not received
    # each official hears about the reporters of their own scope only
    xiaodian = text_of(next(m for m in got if m["To"] == "xiaodian@taiyuan.example"))
    yingze = text_of(next(m for m in got if m["To"] == "yingze@taiyuan.example"))
    assert names[withheld] in xiaodian and names[broken] not in xiaodian
    assert names[broken] in yingze and names[withheld] not in yingze


# --- pure logic (no database) ----------------------------------------------------------------------

def test_message_id_is_stable_per_official_and_day_and_has_no_long_digit_runs():
    import re

    a = message_id(DAY, "city-duty")
    assert a == message_id(DAY, "city-duty") != message_id(DAY, "xiaodian-district") != message_id(date(2023, 11, 7),
                                                                                                    "city-duty")
    assert not re.search(r"\d{5,}", a) and a.startswith("<summary.2023-11-06.")


def test_night_lines_name_reporters_and_respect_scope():
    files = [night.LedgerFile("canteens", "CT140105001001", "CT140105001001.csv", "held"),
             night.LedgerFile("assistance", "AP140106003002", "AP140106003002.jsonl", "quarantined",
                              "not_json_lines: line 1 is not JSON")]
    city = night.file_lines(files, "city", "140100")
    assert city == [
        "暂缓采用：社区食堂 坞城街道社区食堂1号（CT140105001001）的文件待数据管理员核实，核实前沿用其上一次的数据。",
        "已隔离：帮代办点 庙前街道帮代办点2号（AP140106003002）的文件（AP140106003002.jsonl）无法读取"
        "（原因代码 not_json_lines），请重新报送。"]
    assert night.file_lines(files, "district", "140105") == city[:1]
    assert night.file_lines(files, "street", "140106003") == city[1:]
    outcome = {"status": "published", "issues": [
        {"label": "raw_canteens_meals.expect_column_values_to_be_in_set(served_day)", "severity": "warn",
         "unexpected_count": 1, "zh": "就餐时间不在本服务日内"}]}
    assert night.publication_lines(outcome) == [
        "本服务日数据已通过检查并发布。", "数据提示（不影响发布，相关记录未计入指标）：就餐时间不在本服务日内（1 条）。"]
    subs = {s["source"]: s for s in night.submissions(files, "street", "140106003")}
    # 庙前街道: one street, its canteens and points; the quarantined point's file counts as not received
    assert subs["streets"]["missing"] == ["庙前街道（140106003）"]
    assert "庙前街道帮代办点2号（AP140106003002）" in subs["assistance"]["missing"]
