"""Send each official the morning summary for their scope, once per service day.

Messages go through Airflow's smtp provider (connection `smtp_default`); audit.summary_sends is the
send ledger that keeps a re-run from sending twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from datetime import date, timedelta
from email.message import EmailMessage
from email.utils import formatdate

from psycopg.rows import dict_row

from ingest.config import REPORTER, ConnInfo, connect_as, local_dir
from reports.chart import trend_png
from reports.figures import Scope, ScopeReport, load_report
from reports.render import CHART_CID, render_html, render_text, subject

log = logging.getLogger(__name__)
SMTP_CONN_ID = "smtp_default"
DEFAULT_FROM = "社区治理数据平台 <gov-data@taiyuan.example>"


def recipients(wh: ConnInfo) -> list[dict]:
    """Officials from the `officials` seed; SUMMARY_RECIPIENTS (comma-separated) adds city-scope ones."""
    with connect_as(REPORTER, wh, row_factory=dict_row) as conn:
        rows = conn.execute(
            "select official_key, title, email, scope_level, scope_code::text as scope_code, scope_name "
            "from seeds.officials order by official_key"
        ).fetchall()
    extra = [e.strip() for e in os.environ.get("SUMMARY_RECIPIENTS", "").split(",") if e.strip()]
    for email in extra:
        rows.append({"official_key": "env-" + hashlib.sha256(email.encode()).hexdigest()[:12], "title": "订阅人",
                     "email": email, "scope_level": "city", "scope_code": "140100", "scope_name": "太原市"})
    return rows


def dq_status_line(dq: dict) -> str:
    if not dq:
        return "未运行"
    failed, warned = dq.get("failed") or [], dq.get("warnings") or []
    if dq.get("status") == "blocked":
        return f"未通过，今日数据未发布（{len(failed)} 项失败）：" + "；".join(failed[:5])
    if failed:
        return f"未通过 {len(failed)} 项：" + "；".join(failed[:5])
    if warned:
        return f"通过（{len(warned)} 项提示）：" + "；".join(warned[:5])
    return f"全部通过（{dq.get('checks', 0)} 项检查）"


def doc_links(dq: dict) -> dict[str, str]:
    base = os.environ.get("GOV_DOCS_BASE_URL")
    if base:
        base = base.rstrip("/")
        return {"数据质量报告（Data Docs）": f"{base}/data-docs/", "指标口径（dbt docs）": f"{base}/dbt-docs/"}
    links = {}
    if dq.get("data_docs"):
        links["数据质量报告（Data Docs）"] = f"file://{dq['data_docs']}"
    dbt_docs = local_dir() / "dbt_target" / "index.html"
    links["指标口径（dbt docs）"] = f"file://{dbt_docs}"
    return links


def send_summaries(wh: ConnInfo, day: str, dq: dict) -> list[str]:
    service_date = date.fromisoformat(day)
    dq_line, links = dq_status_line(dq), doc_links(dq)
    sent = []
    for official in recipients(wh):
        if _already_sent(wh, service_date, official["official_key"]):
            log.info("summary for %s on %s already sent; not sending again", official["official_key"], day)
            continue
        scope = Scope(official["scope_level"], official["scope_code"], official["scope_name"])
        report = load_report(wh, scope, service_date)
        msg = build_message(official["email"], report, dq_line, links)
        deliver(msg)
        _record(wh, service_date, official, msg)
        sent.append(official["official_key"])
    log.info("summaries for %s sent to %d officials", day, len(sent))
    return sent


def chart_for(report: ScopeReport) -> bytes:
    days = [report.service_date - timedelta(days=i) for i in range(29, -1, -1)]
    rows = [report.days.get(d) or {} for d in days]  # a day without data is a gap, not a zero
    return trend_png(days, [r.get("cases_received") for r in rows], [r.get("cases_resolved") for r in rows],
                     [r.get("overnight_resolution_rate") for r in rows], f"近30日帮代办事项 · {report.scope.name}")


def build_message(to: str, report: ScopeReport, dq_line: str, links: dict[str, str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(report)
    msg["From"] = os.environ.get("SUMMARY_FROM", DEFAULT_FROM)
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    # no long digit runs in the id: it is stored in audit and must not look like an ID or phone number
    msg["Message-ID"] = f"<summary.{uuid.uuid4().hex}@taiyuan.example>"
    msg["X-Gov-Service-Date"] = report.service_date.isoformat()
    msg["X-Gov-Scope"] = f"{report.scope.level}:{report.scope.code}"
    msg.set_content(render_text(report, dq_line, links), charset="utf-8")
    msg.add_alternative(render_html(report, dq_line, links), subtype="html", charset="utf-8")
    html_part = msg.get_payload()[1]
    html_part.add_related(chart_for(report), maintype="image", subtype="png", cid=f"<{CHART_CID}>",
                          filename="trend.png", disposition="inline")
    return msg


def deliver(msg: EmailMessage) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    # The hook opens and authenticates the connection from `smtp_default`; its send_email_smtp builds
    # HTML-only messages, so the multipart message is handed to its client directly.
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook._smtp_client.send_message(msg)


def _already_sent(wh: ConnInfo, service_date: date, key: str) -> bool:
    with connect_as(REPORTER, wh) as conn:
        return conn.execute("select 1 from audit.summary_sends where service_date = %s and recipient_key = %s",
                            (service_date, key)).fetchone() is not None


def _record(wh: ConnInfo, service_date: date, official: dict, msg: EmailMessage) -> None:
    with connect_as(REPORTER, wh) as conn:
        conn.execute(
            """insert into audit.summary_sends (service_date, recipient_key, scope_level, scope_code, message_id,
                 subject) values (%s, %s, %s, %s, %s, %s) on conflict do nothing""",
            (service_date, official["official_key"], official["scope_level"], official["scope_code"],
             msg["Message-ID"], msg["Subject"]),
        )
