"""Building and handing a reporters' notice to the relay, through the same Airflow connection
(`smtp_default`) as the morning summary (reports/send.py; these few lines are copied from there so
that the notices do not depend on the summary's module)."""

from __future__ import annotations

import hashlib
import os
import smtplib
from email.message import EmailMessage
from email.utils import formatdate

SMTP_CONN_ID = "smtp_default"
DEFAULT_FROM = "社区治理数据平台 <gov-data@taiyuan.example>"
XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
# errors after which the relay holds nothing of the message: the claim can be withdrawn
REFUSED = (ConnectionRefusedError, smtplib.SMTPConnectError, smtplib.SMTPHeloError, smtplib.SMTPAuthenticationError,
           smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)


def message_id(kind: str, service_date: str, key: str) -> str:
    """The same Message-ID for the same notice in every run. Letters only after the date: no digit run
    that could look like an ID or phone number."""
    digest = hashlib.sha256(f"{kind}|{service_date}|{key}".encode()).hexdigest()[:20]
    letters = digest.translate(str.maketrans("0123456789abcdef", "abcdefghijklmnop"))
    return f"<notice.{kind}.{service_date}.{letters}@taiyuan.example>"


def build(to: str, subject: str, text: str, html: str, msg_id: str, headers: dict[str, str],
          attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = os.environ.get("NOTICE_FROM") or os.environ.get("SUMMARY_FROM", DEFAULT_FROM)
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = msg_id
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    if attachment:
        name, data = attachment
        msg.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=name)
    return msg


def deliver(msg: EmailMessage) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    # The hook opens and authenticates the connection from `smtp_default`; its send_email_smtp builds
    # HTML-only messages, so the multipart message is handed to its client directly.
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook._smtp_client.send_message(msg)
