"""Decisions on a held file (ingest.holds says why a file is held): release loads it as it is, reject never does.

Either records who decided, when and why in its ledger row, which leaves the `held` status."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg

from ingest import landing as zone
from ingest import loader
from ingest.loader import FileResult
from warehouse import settings


@dataclass(frozen=True)
class HeldFile:
    load_id: int
    source: str
    reporter_code: str
    service_date: date
    path: Path
    content_sha256: str
    error: str


class NotHeld(Exception):
    """The load named is not a held file (any more): nothing was changed."""


def _take_held(conn: psycopg.Connection, load_id: int) -> HeldFile:
    row = conn.execute(
        """select load_id, source, reporter_code, service_date, file_path, content_sha256, error, status
           from audit.load_ledger where load_id = %s for update""", (load_id,)).fetchone()
    if row is None:
        raise NotHeld(f"load {load_id} is not in audit.load_ledger")
    if row[7] != "held":
        raise NotHeld(f"load {load_id} is not held: its status is {row[7]}")
    return HeldFile(row[0], row[1], row[2], row[3], Path(row[4]), row[5], row[6])


def _decide(conn: psycopg.Connection, held: HeldFile, status: str, by: str | None, note: str) -> None:
    conn.execute(
        """update audit.load_ledger set status = %s, decided_by = %s, decided_at = now(), decision_note = %s
           where load_id = %s""", (status, by or getpass.getuser(), note, held.load_id))


def reject(conn: psycopg.Connection, load_id: int, note: str, by: str | None = None) -> HeldFile:
    """Reject a held file: it is never loaded (the version in place, if any, keeps serving)."""
    with conn.transaction():
        held = _take_held(conn, load_id)
        _decide(conn, held, "rejected", by, note)
    return held


def release(conn: psycopg.Connection, load_id: int, note: str, by: str | None = None) -> FileResult:
    """Load a held file as it is (no reporter-level checks), in one transaction with the decision: it
    replaces the version in place like any revision. The file must still be at its ledger path with the
    content that was held; otherwise nothing changes (NotHeld). Returns the load's FileResult."""

    with conn.transaction():
        held = _take_held(conn, load_id)
        _decide(conn, held, "released", by, note)
        try:
            with zone.landed_folder(settings.landing_dir(), held.path) as folder_fd:
                result = loader.load_file(conn, held.source, held.service_date, held.path, folder_fd,
                                          hold_checks=False)
        except zone.Refused as err:
            raise NotHeld(f"load {load_id} was not released: {err}") from None
        sha = conn.execute("select content_sha256 from audit.load_ledger where load_id = %s",
                           (result.load_id,)).fetchone() if result.load_id else None
        if result.status != "loaded" or sha is None or sha[0] != held.content_sha256:
            raise NotHeld(f"load {load_id} was not released: {held.path} "
                          + ("no longer has the content that was held (a newer file is loaded by the next run)"
                             if result.status == "loaded" else f"could not be loaded ({result.status}: {result.error})"))
        conn.execute("update audit.load_ledger set replaced_by = %s where load_id = %s", (result.load_id, load_id))
    return result
