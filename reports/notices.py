"""Reporters' notices (数据报送问题通知): after a night's loads, every street office, canteen and assistance
point whose file was quarantined, held, or had rejected rows gets one email in plain Chinese (which file,
sheet, row and column, what was wrong, what to do) with an .xlsx of its rejected rows, personal fields
hidden; a corrected version that then loads cleanly gets a short 已收到，已入库; a reporter with no file
for MISSING_NIGHTS nights running gets one reminder per such streak.

Everything is read from audit.load_ledger and audit.rejected_rows, the contacts from the
`reporter_contacts` seed. audit.notice_sends is the send ledger, one row per reporter, service day, kind
and file version (its content_sha256), claimed before the message goes to the relay, exactly as the
morning summary's audit.summary_sends (one module for both: reports/claims.py): `claimed` -> `sent`,
or `unconfirmed` when a run died in between (never re-sent automatically; delete the row to send it again). So a re-run sends
nothing twice, and a new version of a file is a new notice.

The files looked at are those of `day` and of the day before (a re-run of the previous night loads its
late and corrected files); the reminders are judged only when `day` is the latest night loaded.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg
from psycopg.rows import dict_row

from reports import notice_content as content
from reports import notice_mail as mail
from reports.claims import CLAIMED, SENT, Ledger
from reports.mail import REFUSED, deliver
from reports.notice_content import FileVersion
from reports.notice_rules import reason_of
from warehouse import reference as ref
from warehouse import settings
from warehouse.connections import REPORTER, connect_as
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)
PROBLEMS, RECEIVED, MISSING = "problems", "received", "missing"
KIND_OF_SOURCE = {"streets": "street", "canteens": "canteen", "assistance": "point"}
LOOKBACK_NIGHTS = 28  # a reporter silent for longer has had its reminder; it is not reminded again


def missing_nights() -> int:
    """N: a reporter whose file has been missing for N nights running is reminded (GOV_NOTICE_MISSING_NIGHTS)."""
    return int(settings.number("GOV_NOTICE_MISSING_NIGHTS", 2))


@dataclass
class Notice:
    """One message to one reporter, and the send-ledger rows it claims (one per file version)."""

    kind: str
    contact: dict
    source: str
    files: list[FileVersion] = field(default_factory=list)
    missing_since: date | None = None
    missing_count: int = 0

    def keys(self) -> list[dict]:
        if self.kind == MISSING:
            return [{"service_date": self.missing_since, "version": f"missing-since:{self.missing_since}",
                     "load_id": None, "file_name": None, "reasons": {MISSING: 1}}]
        return [{"service_date": f.service_date, "version": f.version, "load_id": f.load_id,
                 "file_name": f.file_name, "reasons": reasons_of(f) if self.kind == PROBLEMS else {RECEIVED: 1}}
                for f in self.files]


def reasons_of(f: FileVersion) -> dict[str, int]:
    """reason -> rows for a file with rejected rows; `quarantined:<code>` / `held:<code>` for a whole file."""
    if f.status in ("quarantined", "held"):
        return {f"{f.status}:{reason_of(f.status, f.error)}": 1}
    return dict(Counter(r["reason_code"] for r in f.rows))


# ---------------------------------------------------------------- the entry points


def send_notices(wh: ConnInfo, day: str | date) -> dict:
    """Send every notice the night calls for that is not in the send ledger yet; returns what was sent:
    {"service_date", "sent": {kind: messages}, "reasons": {reason: reporters}, "reporters": n,
    "already_sent": file versions (and streaks) of the night whose notice the ledger already has}."""
    service_date = day if isinstance(day, date) else date.fromisoformat(day)
    contacts = load_contacts(wh)
    done = ledger_keys(wh)
    notices, already = planned(wh, service_date, contacts, done)
    sent: Counter = Counter()
    reasons: Counter = Counter()
    reporters: set[str] = set()
    refused: list[str] = []
    for notice in notices:
        outcome = send_one(wh, service_date, notice)
        if outcome == SENT:
            sent[notice.kind] += 1
            reporters.add(notice.contact["reporter_code"])
            for reason in {r for k in notice.keys() for r in k["reasons"]}:
                reasons[reason] += 1
        elif outcome:
            refused.append(outcome)
    summary = {"service_date": service_date.isoformat(), "sent": dict(sent), "reasons": dict(sorted(reasons.items())),
               "reporters": len(reporters), "already_sent": already}
    log.info("reporters' notices for %s: %s", service_date, json.dumps(summary, ensure_ascii=False))
    if refused:
        # claims withdrawn: the task's retry sends these, and nothing already sent goes twice
        raise RuntimeError(f"the SMTP relay refused {len(refused)} notices: " + "; ".join(refused[:5]))
    return summary


def notice_counts(wh: ConnInfo, day: str | date) -> dict[str, int]:
    """reason -> reporters notified by the notices run for night `day` (sent or unconfirmed), e.g.
    {"bad_enum": 2, "quarantined:bad_encoding": 1, "held:shrunk_redelivery": 1, "missing": 3, "received": 1}.
    A reporter notified for two reasons counts under both."""
    with connect_as(REPORTER, wh) as conn:
        rows = conn.execute(
            """select r.reason, count(distinct n.reporter_code)
               from audit.notice_sends n cross join lateral jsonb_object_keys(n.reasons) as r(reason)
               where n.noticed_on = %s and n.status <> %s group by 1 order by 1""",
            (day, CLAIMED)).fetchall()
    return dict(rows)


# ---------------------------------------------------------------- what the night calls for


def planned(wh: ConnInfo, day: date, contacts: dict[str, dict], done: set[tuple]) -> tuple[list[Notice], int]:
    """The notices not yet in the send ledger (problems, then received replies, then reminders), and how
    many the ledger already has."""
    already = 0
    versions = current_versions(wh, day)
    attach_rejected_rows(wh, [f for f in versions if f.rows_rejected])
    noticed = problem_days(wh)
    by_reporter: dict[tuple[str, str], dict[str, list[FileVersion]]] = {}
    for f in versions:
        contact = contact_of(f.reporter_code, contacts)
        if contact is None:
            continue
        f.reporter_code = contact["reporter_code"]
        if f.status in ("quarantined", "held") or f.rows_rejected:
            kind = PROBLEMS
        elif f.status == "loaded" and (f.reporter_code, f.service_date) in noticed:
            kind = RECEIVED
        else:
            continue
        if (f.reporter_code, f.service_date, kind, f.version) in done:
            already += 1
        else:
            by_reporter.setdefault((f.reporter_code, f.source), {}).setdefault(kind, []).append(f)
    notices = [Notice(kind, contacts[code], source, files)
               for (code, source), kinds in sorted(by_reporter.items()) for kind, files in sorted(kinds.items())]
    notices.sort(key=lambda n: n.kind != PROBLEMS)
    for source in KIND_OF_SOURCE:
        for code, since, count in missing_streaks(wh, source, day):
            contact = contacts.get(code)
            if contact is None:
                continue
            if (code, since, MISSING, f"missing-since:{since}") in done:
                already += 1
            else:
                notices.append(Notice(MISSING, contact, source, missing_since=since, missing_count=count))
    return notices, already


def current_versions(wh: ConnInfo, day: date) -> list[FileVersion]:
    """Per landed file of `day` and the day before, its current version: the latest ledger row that
    is not a skipped duplicate (a held file seen again stays held) nor the loader's own failure."""
    with connect_as(REPORTER, wh, row_factory=dict_row) as conn:
        rows = conn.execute(
            """select distinct on (file_path) load_id, source, reporter_code, service_date,
                      regexp_replace(file_path, '^.*/', '') as file_name,
                      coalesce(content_sha256, 'path:' || md5(file_path || coalesce(error, ''))) as version,
                      status, error, rows_read, rows_loaded, rows_rejected
               from audit.load_ledger
               where service_date between %s and %s and reporter_code is not null
                 and status not in ('skipped_duplicate', 'failed', 'loading')
               order by file_path, load_id desc""", (day - timedelta(days=1), day)).fetchall()
    return sorted((FileVersion(**r) for r in rows), key=lambda f: f.load_id)


def attach_rejected_rows(wh: ConnInfo, files: list[FileVersion]) -> None:
    by_load = {f.load_id: f for f in files}
    if not by_load:
        return
    with connect_as(REPORTER, wh, row_factory=dict_row) as conn:
        for r in conn.execute("""select load_id, row_number, column_name, reason_code, raw_record
                                 from audit.rejected_rows where load_id = any(%s)
                                 order by load_id, row_number nulls last, column_name""", (list(by_load),)):
            by_load[r["load_id"]].rows.append(r)


def problem_days(wh: ConnInfo) -> set[tuple[str, date]]:
    """(reporter, service day) that have had a problems notice: a clean version after it gets a reply."""
    with connect_as(REPORTER, wh) as conn:
        return {(c, d) for c, d in conn.execute(
            "select distinct reporter_code, service_date from audit.notice_sends where kind = %s and status <> %s",
            (PROBLEMS, CLAIMED)).fetchall()}


def missing_streaks(wh: ConnInfo, source: str, day: date) -> list[tuple[str, date, int]]:
    """(reporter, first missing night, nights missing) of the reporters of `source` that delivered a file
    in the last LOOKBACK_NIGHTS nights but none in the last MISSING_NIGHTS. A night is a service day the
    loader ran for that source; judged only when `day` is the latest such night."""
    with connect_as(REPORTER, wh) as conn:
        return conn.execute(
            """with nights as (
                   select service_date, row_number() over (order by service_date desc) as k
                   from (select distinct service_date from audit.load_ledger where source = %(s)s
                         and service_date is not null) d),
               recent as (select service_date from nights where k <= %(lookback)s),
               last_file as (
                   select reporter_code, max(service_date) as last_day from audit.load_ledger
                   where source = %(s)s and reporter_code is not null and service_date in (select * from recent)
                   group by 1)
               select l.reporter_code, min(r.service_date), count(r.service_date)::int
               from last_file l join recent r on r.service_date > l.last_day
               where (select max(service_date) from nights) = %(day)s
               group by l.reporter_code having count(r.service_date) >= %(n)s
               order by 1""",
            {"s": source, "lookback": LOOKBACK_NIGHTS, "day": day, "n": missing_nights()}).fetchall()


# ---------------------------------------------------------------- contacts


def load_contacts(wh: ConnInfo) -> dict[str, dict]:
    """reporter code -> contact, from the `reporter_contacts` seed (before dbt has loaded it: its file), and in a
    province deployment (GOV_SCOPE=shanxi) the other cities' reporters' too (warehouse.reference.seed_files)."""
    try:
        with connect_as(REPORTER, wh, row_factory=dict_row) as conn:
            rows = []
            for path in ref.seed_files("reporter_contacts"):
                rows += conn.execute("select reporter_code, reporter_kind, reporter_name, email "
                                     f"from seeds.{path.stem}").fetchall()
    except psycopg.errors.UndefinedTable:
        rows = ref.seed_rows("reporter_contacts")
    return {r["reporter_code"]: r for r in rows}


def contact_of(code: str, contacts: dict[str, dict]) -> dict | None:
    """The reporter a ledger row names: its code, or for a refused copy (`CT… (1)`, `CT…_副本`) the
    reporter whose code the name starts with."""
    if code in contacts:
        return contacts[code]
    prefixes = [c for c in contacts if code.startswith(c) and not code[len(c):len(c) + 1].isalnum()]
    return contacts[max(prefixes, key=len)] if prefixes else None


# ---------------------------------------------------------------- the send ledger


CLAIM_STALE_VAR = "GOV_NOTICE_CLAIM_STALE_MINUTES"  # minutes after which an unconfirmed claim is `unconfirmed`
LEDGER = Ledger("audit.notice_sends", ("reporter_code", "service_date", "kind", "version"), CLAIM_STALE_VAR)


def ledger_keys(wh: ConnInfo) -> set[tuple]:
    """Every notice in the send ledger, after turning stale claims into `unconfirmed`."""
    with connect_as(REPORTER, wh) as conn:
        stale = LEDGER.expire_stale(conn, ("reporter_code", "kind", "message_id"))
        for code, kind, mid in stale:
            log.warning("%s notice to %s: claimed, never confirmed as sent (Message-ID %s): now 'unconfirmed', "
                        "not re-sent; delete its audit.notice_sends row to send it again", kind, code, mid)
        return set(conn.execute("select reporter_code, service_date, kind, version from audit.notice_sends").fetchall())


def send_one(wh: ConnInfo, day: date, notice: Notice) -> str | None:
    """Claim, send, confirm. SENT; None when another run holds the claim; a description when refused."""
    msg = compose(notice)
    code = notice.contact["reporter_code"]
    rows = [{"reporter_code": code, "source": notice.source, "service_date": k["service_date"], "kind": notice.kind,
             "version": k["version"], "load_id": k["load_id"], "file_name": k["file_name"],
             "reasons": json.dumps(k["reasons"]), "recipient": notice.contact["email"],
             "message_id": msg["Message-ID"], "subject": msg["Subject"], "noticed_on": day} for k in notice.keys()]
    with connect_as(REPORTER, wh) as conn:  # every row of the notice in one transaction, or none
        claimed = LEDGER.claim(conn, rows)
    if not claimed:
        log.info("%s notice to %s was claimed by another run meanwhile; not sending", notice.kind, code)
        return None
    try:
        deliver(msg)
    except REFUSED as err:
        with connect_as(REPORTER, wh) as conn:
            LEDGER.withdraw(conn, rows)
        log.error("the relay refused the %s notice to %s: %s: %s", notice.kind, code, type(err).__name__, err)
        return f"{notice.kind} {code}: {type(err).__name__}"
    with connect_as(REPORTER, wh) as conn:
        LEDGER.confirm(conn, rows)
    return SENT


# ---------------------------------------------------------------- the message


def compose(notice: Notice):
    c = notice.contact
    name, code = c["reporter_name"], c["reporter_code"]
    headers = {"X-Gov-Notice-Kind": notice.kind, "X-Gov-Reporter": code}
    if notice.kind == MISSING:
        since = notice.missing_since.isoformat()
        text = content.missing_text(name, code, notice.source, notice.missing_since, notice.missing_count)
        return mail.build(c["email"], content.missing_subject(name, notice.missing_count), text, content.as_html(text),
                          mail.message_id(MISSING, since, code), {**headers, "X-Gov-Service-Date": since})
    files = notice.files
    key = code + "|" + "|".join(sorted(f.version for f in files))
    headers["X-Gov-Service-Date"] = ",".join(sorted({f.service_date.isoformat() for f in files}))
    if notice.kind == RECEIVED:
        text = content.received_text(name, code, files)
        return mail.build(c["email"], content.received_subject(name, files), text, content.as_html(text),
                          mail.message_id(RECEIVED, files[0].service_date.isoformat(), key), headers)
    attachment = content.attachment_name(files) if any(f.rows for f in files) else None
    return mail.build(c["email"], content.problems_subject(name, files),
                      content.problems_text(name, code, files, attachment),
                      content.problems_html(name, code, files, attachment),
                      mail.message_id(PROBLEMS, files[0].service_date.isoformat(), key), headers,
                      (attachment, content.rejected_rows_xlsx(files)) if attachment else None)
