"""Reporter-level checks that hold a file (DESIGN §6, §8); ingest.decisions releases or rejects a held file.

A file is *held* when it is readable but its reporter's delivery as a whole looks wrong:

- `shrunk_redelivery`: it would replace the version in place of the same day with fewer than half its
  loaded rows (an empty re-delivery included): the version in place keeps serving;
- `doubled_file`: a third or more of its rows repeat an earlier row's record id in the same file (a file
  with every record twice has half its rows repeated), with at least `DOUBLED_MIN_ROWS` such rows;
- `out_of_band`: its rows are outside the reporter's own recent band: below `BAND_LOW` or above
  `BAND_HIGH` times the median of the rows of its last `BAND_DAYS` loaded days (looked for over the
  `BAND_LOOKBACK_DAYS` days before, so the check costs the same whatever the history). A reporter with
  fewer than `BAND_MIN_DAYS` such days, or a median below `BAND_MIN_ROWS` (an assistance point's one
  event a day), is never held for this.

A held file's rows are not in raw (its load is rolled back and the ledger row says `held`, with the
reason in plain words in `error`), so nothing downstream sees them: the version in place, if any, keeps
serving. `release` loads the very same file (its content hash is checked) without the checks and records
who released it, when and why; `reject` records the same and loads nothing. Either way the ledger row
leaves the `held` status. A file seen again with the content of a held or rejected file is a skipped
duplicate; a newer file of the reporter's day that loads supersedes a held one (`replaced`).

Calibration (built-in scenario, 2023, 365 nights x 312 canteens, the 14-day median): tonight / median
stayed within 0.29..1.73, so 0.25..1.9 holds no genuine night there; 1.9 is also the raw checks' band
ceiling. Recalibrate on real history (holiday closures) before tightening.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

SHRINK_RATIO = 0.5
DOUBLED_SHARE = 1 / 3
DOUBLED_MIN_ROWS = 3
BAND_DAYS = 14
BAND_LOOKBACK_DAYS = 28
BAND_MIN_DAYS = 7
BAND_MIN_ROWS = 20
BAND_LOW = 0.25
BAND_HIGH = 1.9


class Held(Exception):
    """A file failed a reporter-level check: `reason` says which, in plain words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Evidence:
    """What a file is compared with: the version in place of its day, and its reporter's recent days."""

    in_place_load_id: int | None = None
    in_place_rows: int = 0  # rows loaded by the version in place
    recent_rows: tuple[int, ...] = ()  # rows read on each of the reporter's last loaded days before this one


def hold_reason(file_name: str, rows_read: int, rows_loaded: int, duplicates: int, evidence: Evidence) -> str | None:
    """Why a file is held (None: it is not). `duplicates`: its rows rejected as a repeated record id."""
    if evidence.in_place_load_id is not None and evidence.in_place_rows > 0 \
            and rows_loaded < evidence.in_place_rows * SHRINK_RATIO:
        what = "is empty" if rows_read == 0 else f"has {rows_loaded} good rows"
        return (f"shrunk_redelivery: {file_name} {what}, the version already loaded for that day (load "
                f"{evidence.in_place_load_id}) has {evidence.in_place_rows}: the version in place keeps serving "
                f"until this file is released")
    if duplicates >= DOUBLED_MIN_ROWS and duplicates >= rows_read * DOUBLED_SHARE:
        return (f"doubled_file: {file_name} repeats the records of {duplicates} of its {rows_read} rows "
                f"(the same record ids twice): was the file exported or pasted twice?")
    band = recent_band(evidence.recent_rows)
    if band is not None and not band[0] <= rows_read <= band[1]:
        median = statistics.median(evidence.recent_rows)
        return (f"out_of_band: {file_name} has {rows_read} rows, far from this reporter's usual "
                f"{median:g} a day (median of its last {len(evidence.recent_rows)} loaded days; held outside "
                f"{band[0]:g}..{band[1]:g})")
    return None


def recent_band(recent_rows: tuple[int, ...]) -> tuple[float, float] | None:
    """The rows a reporter's file may have without being held, from its recent days (None: not judged)."""
    if len(recent_rows) < BAND_MIN_DAYS:
        return None
    median = statistics.median(recent_rows)
    if median < BAND_MIN_ROWS:
        return None
    return median * BAND_LOW, median * BAND_HIGH


def evidence(conn: psycopg.Connection, source: str, reporter: str, day: date) -> Evidence:
    """The version in place of the reporter's day, and the rows of its last loaded days before it."""
    in_place = conn.execute(
        """select load_id, rows_loaded from audit.load_ledger
           where source = %s and reporter_code = %s and service_date = %s and status = 'loaded'
           order by load_id desc limit 1""", (source, reporter, day)).fetchone()
    recent = conn.execute(
        """select rows_read from audit.load_ledger
           where source = %s and reporter_code = %s and status = 'loaded'
             and service_date >= %s and service_date < %s
           order by service_date desc limit %s""",
        (source, reporter, day - timedelta(days=BAND_LOOKBACK_DAYS), day, BAND_DAYS)).fetchall()
    return Evidence(in_place[0] if in_place else None, in_place[1] if in_place else 0,
                    tuple(r[0] for r in recent))
