"""Handing a message to the relay: one way for the morning summary (reports/send.py) and the reporters'
notices (reports/notice_mail.py), through Airflow's connection `smtp_default` (compose: the real relay;
local runs: the SMTP sink)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from warehouse.settings import DEFAULT_FROM as DEFAULT_FROM  # re-exported: the senders' default

SMTP_CONN_ID = "smtp_default"
# errors after which the relay holds nothing of the message: its send-ledger claim can be withdrawn
REFUSED = (ConnectionRefusedError, smtplib.SMTPConnectError, smtplib.SMTPHeloError, smtplib.SMTPAuthenticationError,
           smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)


def deliver(msg: EmailMessage) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    # The hook opens and authenticates the connection from `smtp_default`; its send_email_smtp builds
    # HTML-only messages, so the multipart message is handed to its client directly.
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook._smtp_client.send_message(msg)
