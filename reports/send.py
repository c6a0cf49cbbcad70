"""Send each official the morning summary for their scope, exactly once per service day, whatever
happened to the night (published, blocked, nothing published yet).

Messages go through Airflow's smtp provider (connection `smtp_default`). audit.summary_sends is the
send ledger, one row per official and day, written BEFORE the message is handed to the relay
(reports/claims.py, shared with the reporters' notices):

- `claimed`: a run inserted the row (committed) and is about to send, or is sending. The insert is
  the claim: of two runs sending at once, only the one whose insert went in sends; the other skips.
- `sent`: the relay accepted the message (recorded right after its 250 reply).
- `unconfirmed`: a claim older than GOV_SUMMARY_CLAIM_STALE_MINUTES (default 15) that never became
  `sent`: the run died between claiming and recording, so nobody knows whether the relay accepted it.
  Such a message is never re-sent automatically (an official getting the summary twice is what the
  ledger rules out; a missing one shows here and in the log). Its Message-ID is fixed by day and
  official (`message_id`), so the relay's log or the mailbox tells whether it arrived; to send it
  again, delete its ledger row and re-run the send task (docs/data-quality.md).

When the relay refuses a message outright (connection refused, a rejected sender, recipient or DATA),
nothing was delivered: the claim is withdrawn and the task fails, so that Airflow's retry sends it.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from datetime import date
from email.message import EmailMessage
from email.utils import formatdate

import psycopg
from psycopg.rows import dict_row

from reports import night
from reports.chart import trend_png
from reports.claims import SENT, UNCONFIRMED, Ledger
from reports.figures import Scope, ScopeReport, load_report
from reports.mail import REFUSED, deliver
from reports.notices import notice_counts
from reports.party_grid import party_grid_blocks
from reports.render import CHART_CID, render_html, render_text, subject, trend_days, trend_title
from warehouse import settings
from warehouse.connections import REPORTER, connect_as
from warehouse.conninfo import ConnInfo
from warehouse.reference import CITY_CODE, CITY_NAME
from warehouse.settings import DBT_PROJECT_DIR, local_dir

log = logging.getLogger(__name__)


def recipients(wh: ConnInfo) -> list[dict]:
    """Officials from the `officials` seed; SUMMARY_RECIPIENTS (comma-separated) adds city-scope ones.
    Before dbt has ever loaded the seed (a first night whose build failed), from the seed's file."""
    try:
        with connect_as(REPORTER, wh, row_factory=dict_row) as conn:
            rows = conn.execute(
                "select official_key, title, email, scope_level, scope_code::text as scope_code, scope_name "
                "from seeds.officials order by official_key"
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        with (DBT_PROJECT_DIR / "seeds" / "officials.csv").open(encoding="utf-8") as f:
            rows = sorted(csv.DictReader(f), key=lambda r: r["official_key"])
    for email in settings.summary_recipients():
        rows.append({"official_key": "env-" + hashlib.sha256(email.encode()).hexdigest()[:12], "title": "订阅人",
                     "email": email, "scope_level": "city", "scope_code": CITY_CODE, "scope_name": CITY_NAME})
    return rows


def dq_status_line(dq: dict) -> str:
    """One line on the checks, in Chinese; what they found is listed in the night's notes (reports.night)."""
    if not dq:
        return "未运行"
    failed, warned = dq.get("failed") or [], dq.get("warnings") or []
    if dq.get("status") == "blocked":
        return f"未通过，本服务日数据未发布（{len(failed) or 1} 项阻断性问题，见“数据情况”）"
    if dq.get("status") == "failed":
        return "发布步骤故障，本服务日数据未发布"
    if warned:
        return f"通过（{dq.get('checks', 0)} 项检查，{len(warned)} 项提示，见“数据情况”）"
    return f"全部通过（{dq.get('checks', 0)} 项检查）"


def doc_links(dq: dict) -> dict[str, str]:
    base = settings.docs_base_url()
    if base:
        return {"数据质量报告（Data Docs）": f"{base}/data-docs/", "指标口径（dbt docs）": f"{base}/dbt-docs/"}
    links = {}
    if dq.get("data_docs"):
        links["数据质量报告（Data Docs）"] = f"file://{dq['data_docs']}"
    dbt_docs = local_dir() / "dbt_target" / "index.html"
    links["指标口径（dbt docs）"] = f"file://{dbt_docs}"
    return links


def send_summaries(wh: ConnInfo, day: str, dq: dict) -> list[str]:
    """Send every official without a ledger row for `day` their summary; returns the keys sent now."""
    service_date = date.fromisoformat(day)
    dq_line, links = dq_status_line(dq), doc_links(dq)
    files = ledger_files(wh, service_date)
    ledger = _ledger(wh, service_date)
    sent = []
    for official in recipients(wh):
        key = official["official_key"]
        if key in ledger:
            _log_skipped(key, day, ledger[key])
            continue
        scope = Scope(official["scope_level"], official["scope_code"], official["scope_name"])
        report = compose(wh, scope, service_date, dq, files)
        msg = build_message(official["email"], report, dq_line, links, message_id(service_date, key))
        if not _claim(wh, service_date, official, msg):
            log.info("summary for %s on %s was claimed by another run meanwhile; not sending", key, day)
            continue
        _deliver_claimed(wh, service_date, key, msg)
        sent.append(key)
    log.info("summaries for %s sent to %d officials", day, len(sent))
    return sent


def compose(wh: ConnInfo, scope: Scope, service_date: date, dq: dict, files: list[night.LedgerFile]) -> ScopeReport:
    """One scope's summary: the marts' figures and lists, and the night's notes on its reporters."""
    report = load_report(wh, scope, service_date)
    found = night.notes(dq, files, scope.level, scope.code)
    report.notes, report.submissions = found.lines, found.submissions
    report.problems = night.problems_by_street(files, scope.level, scope.code)
    if scope.level == "city":  # the notices run for the night before the summary (gov_ingest, then gov_publish)
        report.notified = notice_counts(wh, service_date)
    elif scope.level == "district" and report.today is not None:
        report.party_grid = party_grid_blocks(wh, scope.code, service_date)
    return report


def message_id(service_date: date, key: str) -> str:
    """The same Message-ID for the same official and day in every run, so that the relay, the mailbox
    and a re-run recognise one summary. Letters only after the date (hex mapped to a-p): no long digit
    run that could look like an ID or phone number in audit."""
    digest = hashlib.sha256(f"{service_date.isoformat()}|{key}".encode()).hexdigest()[:20]
    letters = digest.translate(str.maketrans("0123456789abcdef", "abcdefghijklmnop"))
    return f"<summary.{service_date.isoformat()}.{letters}@taiyuan.example>"


def _log_skipped(key: str, day: str, status: str) -> None:
    if status == SENT:
        log.info("summary for %s on %s already sent; not sending again", key, day)
    elif status == UNCONFIRMED:
        log.warning("summary for %s on %s is unconfirmed (a run died after claiming it): not re-sent. Look for its "
                    "Message-ID at the relay; delete its audit.summary_sends row to send it again", key, day)
    else:
        log.info("summary for %s on %s is claimed by another run (sending now, or died); not sending", key, day)


def _deliver_claimed(wh: ConnInfo, service_date: date, key: str, msg: EmailMessage) -> None:
    try:
        deliver(msg)
    except REFUSED as err:
        # the relay holds nothing: withdraw the claim so that the task's retry sends it
        _withdraw(wh, service_date, key)
        raise RuntimeError(f"the SMTP relay refused the summary for {key}: {type(err).__name__}: {err}") from err
    _mark_sent(wh, service_date, key)


def chart_for(report: ScopeReport) -> bytes:
    days = trend_days(report)
    rows = [report.days.get(d) or {} for d in days]  # a day without data is a gap, not a zero
    title = trend_title(report).replace("趋势", "帮代办事项", 1)
    return trend_png(days, [r.get("cases_received") for r in rows], [r.get("cases_resolved") for r in rows],
                     [r.get("overnight_resolution_rate") for r in rows], f"{title} · {report.scope.name}")


def build_message(to: str, report: ScopeReport, dq_line: str, links: dict[str, str],
                  msg_id: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(report)
    msg["From"] = settings.summary_from()
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = msg_id or message_id(report.service_date, f"{report.scope.level}:{report.scope.code}:{to}")
    msg["X-Gov-Service-Date"] = report.service_date.isoformat()
    msg["X-Gov-Scope"] = f"{report.scope.level}:{report.scope.code}"
    msg.set_content(render_text(report, dq_line, links), charset="utf-8")
    msg.add_alternative(render_html(report, dq_line, links), subtype="html", charset="utf-8")
    html_part = msg.get_payload()[1]
    html_part.add_related(chart_for(report), maintype="image", subtype="png", cid=f"<{CHART_CID}>",
                          filename="trend.png", disposition="inline")
    return msg


def ledger_files(wh: ConnInfo, service_date: date) -> list[night.LedgerFile]:
    """The night's files from audit.load_ledger: each file's latest status, and whether its reporter's
    first accepted file came over an hour after its source's first (late, as in mart_source_freshness)."""
    with connect_as(REPORTER, wh) as conn:
        rows = conn.execute(
            """with l as (
                   select *, status = any(%(received)s) as accepted from audit.load_ledger where service_date = %(day)s
               ),
               night_start as (select source, min(started_at) as t0 from l where accepted group by source),
               first_load as (
                   select source, reporter_code, min(started_at) as t from l where accepted group by 1, 2
               ),
               latest as (
                   select distinct on (file_path) * from l order by file_path, load_id desc
               )
               select latest.source, latest.reporter_code, regexp_replace(latest.file_path, '^.*/', ''),
                      latest.status, latest.error, coalesce(f.t > n.t0 + interval '1 hour', false)
               from latest
               left join first_load f using (source, reporter_code)
               left join night_start n using (source)
               order by 1, 2, 3""",
            {"received": list(night.RECEIVED), "day": service_date}).fetchall()
    return [night.LedgerFile(*r) for r in rows]


CLAIM_STALE_VAR = "GOV_SUMMARY_CLAIM_STALE_MINUTES"  # minutes after which an unconfirmed claim is `unconfirmed`
LEDGER = Ledger("audit.summary_sends", ("service_date", "recipient_key"), CLAIM_STALE_VAR)


def _ledger(wh: ConnInfo, service_date: date) -> dict[str, str]:
    """recipient -> ledger status for the day, after turning stale claims into `unconfirmed`."""
    with connect_as(REPORTER, wh) as conn:
        stale = LEDGER.expire_stale(conn, ("recipient_key", "message_id"), "service_date = %s", (service_date,))
        for key, mid in stale:
            log.warning("summary for %s on %s: claimed, never confirmed as sent (Message-ID %s): now 'unconfirmed'",
                        key, service_date, mid)
        return dict(conn.execute("select recipient_key, status from audit.summary_sends where service_date = %s",
                                 (service_date,)).fetchall())


def _claim(wh: ConnInfo, service_date: date, official: dict, msg: EmailMessage) -> bool:
    """Insert the claim (committed before sending); False when another run's row is already there."""
    with connect_as(REPORTER, wh) as conn:
        return LEDGER.claim(conn, [{
            "service_date": service_date, "recipient_key": official["official_key"],
            "scope_level": official["scope_level"], "scope_code": official["scope_code"],
            "message_id": msg["Message-ID"], "subject": msg["Subject"]}])  # claimed_at: the server's now()


def _mark_sent(wh: ConnInfo, service_date: date, key: str) -> None:
    with connect_as(REPORTER, wh) as conn:
        LEDGER.confirm(conn, [{"service_date": service_date, "recipient_key": key}])


def _withdraw(wh: ConnInfo, service_date: date, key: str) -> None:
    with connect_as(REPORTER, wh) as conn:
        LEDGER.withdraw(conn, [{"service_date": service_date, "recipient_key": key}])
