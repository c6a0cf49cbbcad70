"""Load landed files into raw.* with COPY, one transaction per file, recorded in audit.load_ledger.

Idempotent by construction: a file whose content was already loaded for the same source,
reporter and day adds nothing (a `skipped_duplicate` ledger row); a revised file replaces the
earlier version's rows in the same transaction; a file that cannot be read is quarantined with
its reason and the night goes on.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from itertools import compress, repeat
from pathlib import Path

import psycopg

from ingest import landing as zone
from ingest import pii
from ingest.copy_encoder import RowEncoder, copy_text
from ingest.copy_fast import FastBatchEncoder
from ingest.csv_batches import Batch
from ingest.encoding import NotUtf8, content_sha256, scan
from ingest.feeds import SPECS, FeedSpec
from ingest.holds import Held, evidence, hold_reason
from ingest.readers import read as read_file
from ingest.rejections import Rejection, UnreadableFile
from ingest.tabular import RowOrRejection
from warehouse.connections import connect_as
from warehouse.conninfo import ConnInfo
from warehouse.credentials import pii_hash_key
from warehouse.settings import SERVICE_TZ

log = logging.getLogger(__name__)
LOADER_ROLE = "gov_loader"
REJECT_COLUMNS = ("load_id", "row_number", "column_name", "reason_code", "message", "raw_record")
META_COLUMNS = ("_load_id", "_source_file", "_service_date", "_row_number")  # COPY order


@dataclass
class FileResult:
    path: Path
    source: str
    reporter_code: str
    service_date: date
    status: str
    load_id: int | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    error: str | None = None
    notes: str | None = None  # what was passed over without being a rejected row (a workbook's extra sheets, 合计 rows)


def landed_files(landing: Path, source: str, day: date, reporter: str | None = None) -> list[Path]:
    """The readable files of a landing folder, in name order (`ingest.landing.survey` says which are)."""
    with zone.survey(landing, source, day, reporter) as found:
        return found.files


def connect(wh: ConnInfo) -> psycopg.Connection:
    pii_hash_key()  # no key, no load: a missing PII_HASH_KEY refuses before any file is read
    return connect_as(LOADER_ROLE, wh)


def load_night(wh: ConnInfo, landing: Path, source: str, day: date, reporter: str | None = None) -> list[FileResult]:
    """Every entry of the night's landing folder: its readable files loaded, anything else refused with
    a ledger row saying why (ingest.landing)."""
    with connect(wh) as conn, zone.survey(landing, source, day, reporter) as found:
        results = [refuse(conn, source, day, refusal) for refusal in found.refused]
        results += [load_file(conn, source, day, path, found.folder_fd) for path in found.files]
    log.info("%s %s: %d files, %d rows loaded, %d rejected, %d quarantined, %d held", source, day, len(results),
             sum(r.rows_loaded for r in results), sum(r.rows_rejected for r in results),
             sum(r.status == "quarantined" for r in results), sum(r.status == "held" for r in results))
    return results


def refuse(conn: psycopg.Connection, source: str, day: date, refusal: zone.Refusal) -> FileResult:
    """The ledger row of a landed entry that is not read (a link, a folder, a name that is no reporter
    code): quarantined with the reason, once however often the night runs; its content is never read."""
    result = FileResult(Path(refusal.path), source, refusal.reporter or "", day, "quarantined", error=refusal.error)
    with conn.transaction():
        # two runs of the night at once (a retry racing a straggler) take turns
        conn.execute("select pg_advisory_xact_lock(%s)", (_lock_key(source, refusal.path, day),))
        already = conn.execute(
            """select load_id from audit.load_ledger where source = %s and service_date = %s and file_path = %s
                 and status = 'quarantined' and content_sha256 is null and error = %s""",
            (source, day, refusal.path, refusal.error)).fetchone()
        if already:
            result.load_id = already[0]
            return result
        log.warning("refused %s: %s", refusal.path, refusal.error)
        result.load_id = conn.execute(
            """insert into audit.load_ledger (source, reporter_code, service_date, file_path, file_bytes, status,
                 error, finished_at)
               values (%s, %s, %s, %s, %s, 'quarantined', %s, now()) returning load_id""",
            (source, refusal.reporter, day, refusal.path, refusal.size, refusal.error)).fetchone()[0]
    return result


def load_file(conn: psycopg.Connection, source: str, day: date, path: Path, folder_fd: int | None = None,
              hold_checks: bool = True) -> FileResult:
    """Load one file in its own transaction on `conn` (a connection from `connect`).

    The file is opened without following a link (relative to `folder_fd`, an open landing folder, when
    given) and must be a regular file, else it is refused unread. Unreadable files are quarantined; a
    file that fails a reporter-level check is held (ingest.holds; `hold_checks=False` is a release); any
    other error rolls the file's transaction back (no partial rows), is recorded as a `failed` ledger
    row and the night goes on with the next file.
    """
    bad_name = zone.utf8_problem(path.name)
    if bad_name is not None:
        return refuse(conn, source, day, zone.Refusal(zone.escaped(str(path)), zone.escaped(path.stem),
                                                      bad_name.reason_code, str(bad_name)))
    try:
        with zone.pinned(path, folder_fd) as (readable, size):
            return _load_pinned(conn, SPECS[source], day, readable, size, hold_checks)
    except zone.Refused as err:
        return refuse(conn, source, day, zone.Refusal(str(path), path.stem, err.reason_code, str(err)))


def _load_pinned(conn: psycopg.Connection, spec: FeedSpec, day: date, path: Path, size: int,
                 hold_checks: bool) -> FileResult:
    source = spec.source
    reporter = path.stem
    result = FileResult(path, source, reporter, day, status="loading")
    target = spec.table
    if spec.partitioned_by_day:
        with conn.transaction():  # committed on its own: the load's transaction only writes into it
            target = conn.execute("select raw.ensure_day_partition(%s::regclass, %s)::text",
                                  (spec.table, day)).fetchone()[0]
    # the content hash goes into the ledger at the end of the load: a second thread computes it meanwhile
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        content = Content(size, pool.submit(content_sha256, path))
        try:
            if size == 0:
                result.error = zone.empty_file_note(spec, path)  # or UnreadableFile: a format with a header
            with conn.transaction():
                _load_in_transaction(conn, spec, target, path, reporter, day, content, result, hold_checks)
        except UnreadableFile as err:
            result.status, result.error = "quarantined", f"{err.reason_code}: {err}"
            result.rows_read = result.rows_loaded = result.rows_rejected = 0
            with conn.transaction():
                _record_unloaded(conn, spec, path, reporter, day, content, result)
        except Held as held:
            result.status, result.error = "held", held.reason  # the counts say what it would have loaded
            with conn.transaction():
                _record_unloaded(conn, spec, path, reporter, day, content, result)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise  # the connection is gone: nothing more can be recorded here; a re-run starts clean
        except Exception as err:
            result.status, result.error = "failed", pii.scrub_free_text(f"{type(err).__name__}: {err}")[:2000]
            log.error("failed to load %s: %s", path, result.error)  # scrubbed: no traceback with values in it
            result.rows_read = result.rows_loaded = result.rows_rejected = 0
            with conn.transaction():
                result.load_id = conn.execute(
                    """insert into audit.load_ledger (source, reporter_code, service_date, file_path, content_sha256,
                         file_bytes, status, error, finished_at)
                       values (%s, %s, %s, %s, %s, %s, 'failed', %s, now()) returning load_id""",
                    (source, reporter, day, str(path), content.sha256(), content.size, result.error),
                ).fetchone()[0]
    return result


@dataclass
class Content:
    """A landed file's size, and its SHA-256 (the ledger's idempotency key) from a second thread."""

    size: int
    hashing: Future[str]

    def sha256(self) -> str:
        return self.hashing.result()


def _lock_key(source: str, reporter: str, day: date) -> int:
    return int.from_bytes(hashlib.blake2b(f"{source}|{reporter}|{day}".encode(), digest_size=8).digest(), "big",
                          signed=True)


def _load_in_transaction(conn: psycopg.Connection, spec: FeedSpec, target: str, path: Path, reporter: str, day: date,
                         content: Content, result: FileResult, hold_checks: bool = True) -> None:
    # concurrent loads of the same reporter's day (a retry racing a straggler) take turns
    conn.execute("select pg_advisory_xact_lock(%s)", (_lock_key(spec.source, reporter, day),))
    conn.execute(f"set local timezone to '{SERVICE_TZ}'")  # timestamps without an offset are local time
    if _skipped_as_duplicate(conn, spec, path, reporter, day, content, result):
        return
    load_id = conn.execute(
        """insert into audit.load_ledger (source, reporter_code, service_date, file_path, file_bytes, status)
           values (%s, %s, %s, %s, %s, 'loading') returning load_id""",
        (spec.source, reporter, day, str(path), content.size),
    ).fetchone()[0]
    result.load_id = load_id
    try:
        with conn.transaction():  # a savepoint: a CSV that turns out not to be UTF-8 is undone, then read again
            rejections = _copy_rows(conn, spec, target, path, None, reporter, day, load_id, result)
    except NotUtf8:
        rejections = _copy_rows(conn, spec, target, path, scan(path).encoding, reporter, day, load_id, result)
    _write_rejections(conn, load_id, rejections)
    if hold_checks:  # a reporter-level fault: Held rolls this transaction back, the version in place stays
        duplicates = sum(r.reason_code == "duplicate_record" for r in rejections)
        reason = hold_reason(path.name, result.rows_read, result.rows_loaded, duplicates,
                             evidence(conn, spec.source, reporter, day))
        if reason:
            raise Held(reason)
    _replace_earlier_versions(conn, spec, reporter, day, load_id)
    result.status = "loaded"
    conn.execute(
        """update audit.load_ledger set status = 'loaded', content_sha256 = %s, rows_read = %s, rows_loaded = %s,
             rows_rejected = %s, error = %s, notes = %s, finished_at = now() where load_id = %s""",
        (content.sha256(), result.rows_read, result.rows_loaded, result.rows_rejected, result.error, result.notes,
         load_id),
    )


def _skipped_as_duplicate(conn: psycopg.Connection, spec: FeedSpec, path: Path, reporter: str, day: date,
                          content: Content, result: FileResult) -> bool:
    """Whether the reporter's latest version of the day has this content: then the file is recorded as
    `skipped_duplicate` and nothing else is written."""
    current = conn.execute(
        """select load_id, content_sha256, file_bytes, status from audit.load_ledger
           where source = %s and reporter_code = %s and service_date = %s
             and status in ('loaded', 'quarantined', 'held', 'rejected') and content_sha256 is not null
           order by load_id desc limit 1""",
        (spec.source, reporter, day),
    ).fetchone()
    # only a file of the same size can be the same file again: then the hash is awaited before any write
    if not (current and current[2] == content.size and current[1] == content.sha256()):
        return False
    result.status, result.error = "skipped_duplicate", f"same content as load {current[0]} ({current[3]})"
    result.load_id = conn.execute(
        """insert into audit.load_ledger (source, reporter_code, service_date, file_path, content_sha256,
             file_bytes, status, finished_at, error)
           values (%s, %s, %s, %s, %s, %s, 'skipped_duplicate', now(), %s) returning load_id""",
        (spec.source, reporter, day, str(path), content.sha256(), content.size, result.error),
    ).fetchone()[0]
    return True


def _replace_earlier_versions(conn: psycopg.Connection, spec: FeedSpec, reporter: str, day: date, load_id: int
                              ) -> None:
    """A revised file: the earlier version's rows go, in the load's own transaction (and a held version is
    superseded)."""
    replaced = conn.execute(
        """update audit.load_ledger set status = 'replaced', replaced_by = %s
           where source = %s and reporter_code = %s and service_date = %s and status in ('loaded', 'held')
             and load_id <> %s returning load_id""",
        (load_id, spec.source, reporter, day, load_id),
    ).fetchall()
    if replaced:  # same day: the day's partition, or the raw table's index on (_service_date, _load_id)
        conn.execute(f"delete from {spec.table} where _service_date = %s and _load_id = any(%s)",
                     (day, [r[0] for r in replaced]))


BATCH_ROWS = 1024  # rows of one COPY write on the row-by-row path: small enough to stay in the CPU caches


def source_file(path: Path) -> str:
    """raw.*._source_file: the file's name as delivered. The table names the source and `_service_date` the
    day, so together they name the landed file `<source>/<YYYY-MM-DD>/<file>` (§5); the ledger keeps the
    absolute path. The name alone keeps each of a night's million rows 20 bytes shorter."""
    return path.name


def _copy_rows(conn: psycopg.Connection, spec: FeedSpec, target: str, path: Path, encoding: str | None, reporter: str,
               day: date, load_id: int, result: FileResult) -> list[Rejection]:
    """Stream the file through the reader and the feed's encoder into one COPY (text format), a batch
    of rows at a time: memory stays flat whatever the file size. Column-wise batches of plain CSV lines
    (the reader's `batches()`) take the encoder's fast path (ingest.copy_fast) and are never decoded.

    `encoding` None: a CSV is read as UTF-8 without a pass over the file first. Whatever reaches the
    server is checked there (COPY verifies its input's encoding), anything decoded here is checked by
    Python's decoder, and bytes that are not UTF-8 raise NotUtf8; the caller rolls back and reads again."""
    fields = {"_load_id": str(load_id), "_source_file": copy_text(source_file(path)), "_service_date": day.isoformat()}
    if target != spec.table:
        del fields["_service_date"]  # the day's partition: its column default
    columns = [c for c in META_COLUMNS if c in fields] + ["_row_number"] + spec.raw_columns
    rows = read_file(spec, path, encoding, unchecked_utf8=encoding is None)
    try:
        with conn.cursor().copy(f"copy {target} ({', '.join(columns)}) from stdin") as copy, _no_cycle_collection():
            writer = _CopyWriter(copy, "\t".join(fields[c] for c in columns if c in fields),
                                 RowEncoder(spec, reporter, path.name))
            for item in rows.batches():
                writer.add(item)
            writer.flush()
    except (UnicodeDecodeError, psycopg.errors.CharacterNotInRepertoire):
        if encoding is None:
            raise NotUtf8(f"{path.name}: not UTF-8") from None  # the server's message would quote the row
        raise
    result.rows_read = writer.read
    result.rows_rejected = len(writer.rejections)
    result.rows_loaded = writer.read - result.rows_rejected
    result.notes = "; ".join(rows.notes()) or None  # a workbook's skipped sheets and total rows
    return rows.relabel(writer.rejections)  # a workbook's rejections name their sheet


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cyclic garbage collector paused for one file's COPY. A load allocates millions of lists,
    tuples and bytes that never form cycles (freed by reference counting as each batch is written); each
    allocation burst would trigger a collection that scans all of them for nothing (measured in
    bench/README.md)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _CopyWriter:
    """One file's rows into one open COPY: each line is the load's fields (`head`: load id, file, day),
    the row number and the row's COPY text. Rows (and rejections) are counted in `read`, rejections kept."""

    def __init__(self, copy: psycopg.Copy, head: str, encoder: RowEncoder):
        self.copy, self.head, self.head_bytes = copy, head, head.encode()
        self.encoder, self.fast = encoder, FastBatchEncoder(encoder)
        self.read = 0
        self.rejections: list[Rejection] = []
        self._rows: list[tuple[int, list]] = []  # waiting for the next write

    def add(self, item: RowOrRejection | Batch) -> None:
        if isinstance(item, Batch):
            self.flush()  # earlier rows first: the first of two rows with the same key is kept
            self.read += len(item)
            self._write_batch(item)
            return
        self.read += 1
        if isinstance(item, Rejection):
            self.rejections.append(item)
            return
        self._rows.append(item)
        if len(self._rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """The rows waiting, through the encoder's plain path, as one write."""
        lines = []
        for row_number, values in self._rows:
            out = self.encoder.encode(row_number, values)
            if isinstance(out, Rejection):
                self.rejections.append(out)
            else:
                lines.append("\t".join((self.head, str(row_number), *out)))
        if lines:
            self.copy.write("\n".join(lines) + "\n")
        self._rows.clear()

    def _write_batch(self, batch: Batch) -> None:
        encoded = self.fast.encode(batch.first_row, batch.columns, batch.tail)
        count = len(batch)
        # one printf-style formatting of all the row numbers: half the cost of str() per number
        numbers = ((b"%d " * count) % tuple(range(batch.first_row, batch.first_row + count))).split()
        lines = map(b"\t".join, zip(repeat(self.head_bytes), numbers, *encoded.columns))
        if encoded.rejected:
            self.rejections.extend(encoded.rejections)
            skip = set(encoded.rejected)
            lines = compress(lines, [i not in skip for i in range(count)])
        data = b"\n".join(lines)
        if data:
            self.copy.write(data)
            self.copy.write(b"\n")  # not data + b"\n": that would copy the batch once more


def _write_rejections(conn: psycopg.Connection, load_id: int, rejections: list[Rejection]) -> None:
    if not rejections:
        return
    with conn.cursor().copy(f"copy audit.rejected_rows ({', '.join(REJECT_COLUMNS)}) from stdin") as copy:
        for r in rejections:
            copy.write_row((load_id, r.row_number, r.column, r.reason_code, r.message,
                            json.dumps(r.raw_record, ensure_ascii=False, default=str)))


def _record_unloaded(conn: psycopg.Connection, spec: FeedSpec, path: Path, reporter: str, day: date,
                     content: Content, result: FileResult) -> None:
    """The ledger row of a file whose rows stay out of raw, `result.status` `held` (what it would have loaded,
    and why it was not: ingest.holds) or `quarantined` (why it cannot be read). Once per content: a
    concurrent load of the same file that recorded it first is reused."""
    conn.execute("select pg_advisory_xact_lock(%s)", (_lock_key(spec.source, reporter, day),))
    already = conn.execute(
        """select load_id from audit.load_ledger where source = %s and reporter_code = %s
             and service_date = %s and content_sha256 = %s and status = %s""",
        (spec.source, reporter, day, content.sha256(), result.status),
    ).fetchone()
    if already:
        result.load_id = already[0]
        return
    log.warning("%s %s: %s", result.status, path, result.error)
    result.load_id = conn.execute(
        """insert into audit.load_ledger (source, reporter_code, service_date, file_path, content_sha256,
             file_bytes, rows_read, rows_loaded, rows_rejected, status, error, finished_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) returning load_id""",
        (spec.source, reporter, day, str(path), content.sha256(), content.size, result.rows_read,
         result.rows_loaded, result.rows_rejected, result.status, result.error),
    ).fetchone()[0]


