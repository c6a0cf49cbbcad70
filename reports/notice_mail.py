"""Building a reporters' notice; reports/mail.py hands it to the relay, as it does the morning summary."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formatdate

from warehouse import settings

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


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
    msg["From"] = settings.notice_from()
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
