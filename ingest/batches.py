"""A feed's night split into batches of files, so that its load spreads over Airflow's workers (issue 21).

gov_ingest plans each feed's night (`plan`: the landing folder surveyed, its entries dealt into a few
batches of about equal work) and loads every batch in a task of its own (`load_batch`, one mapped task
instance per batch, Airflow's dynamic task mapping); `feed_summary` puts the batches' summaries back together
into the feed's, which the feed's asset event carries.

Everything the loader promises holds batch by batch, because a batch is only a subset of the folder's entries
handed to the same loader (ingest.loader.load_file / refuse):

- every entry of the folder belongs to exactly one batch (by its name), so it gets one ledger row per load,
  as when one task walked the folder;
- a batch re-surveys the folder when it runs and reads its files through the same landing-zone checks
  (links never followed, names must be reporter codes, in-progress names passed over): what changed between
  planning and loading is judged as it is at load time; an entry that appeared since is left to the next run
  (logged), one that went away is passed over;
- a retried batch (or a re-run) reloads nothing twice: a file whose content is already loaded is a
  `skipped_duplicate`, a refusal already recorded is reused; a revised file replaces its earlier version;
- a bad file is quarantined or held and the batch goes on; only an unexpected error (`failed`) fails the batch's
  task, after the rest of the batch is loaded, so that Airflow retries it;
- two batches never hold the same reporter (one file per reporter and day), so they never wait on each other's
  per-reporter locks.

A batch is a plain dict (it travels as an XCom): feed, service day, index, the names it owns, and whether it
also owns a refusal of the folder itself (the first batch).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from ingest import landing as zone
from ingest import loader
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)

# A batch's work is weighed as its files' bytes plus a fixed cost per file (transaction, ledger rows, the
# reader's start). Measured with the loader alone on Taiyuan's night (bench/province.py --costs-only,
# bench/README.md, *Province*): 7-15 ms a file whatever its size (an assistance point's file of a few hundred
# bytes), and per kB 0.5-7 ms more (a canteen's CSV - a street's workbook; the machine's load moves both), so a
# file weighs FILE_WEIGHT_BYTES more than its bytes. A batch holds up to BYTES_PER_BATCH of weight (some tens
# of seconds of loading: well above a task's start on a Celery worker, a few seconds) and FILES_PER_BATCH
# files; a feed is cut into at most MAX_BATCHES. A Taiyuan night is then one batch a feed, as when one task
# walked each folder, and a Shanxi night (ten times the files) a dozen load tasks, never thousands.
FILE_WEIGHT_BYTES = 2_000
FILES_PER_BATCH = 3_000
BYTES_PER_BATCH = 6_000_000
MAX_BATCHES = 16
FOLDER_KEY = ""  # the key of a refusal of the day's folder itself (a link, a file in its place)


def entry_key(refusal_or_path: zone.Refusal | Path) -> str:
    """The name by which a batch owns a folder entry: the file name (a refusal's escaped the same way as its
    ledger row, so that JSON can carry it), FOLDER_KEY for a refusal of the folder itself."""
    if isinstance(refusal_or_path, zone.Refusal):
        return FOLDER_KEY if refusal_or_path.reporter is None else refusal_or_path.path.rpartition("/")[2]
    return zone.escaped(refusal_or_path.name)


def batch_count(files: int, weight: int, files_per_batch: int = FILES_PER_BATCH,
                bytes_per_batch: int = BYTES_PER_BATCH, max_batches: int = MAX_BATCHES) -> int:
    """How many batches a feed's night is cut into: enough that none exceeds either bound, at most
    `max_batches`, at least one (a night without files is one empty batch: its task succeeds)."""
    wanted = max(math.ceil(files / files_per_batch), math.ceil(weight / bytes_per_batch), 1)
    return max(1, min(wanted, max_batches, max(files, 1)))


def deal(weights: dict[str, int], batches: int) -> list[list[str]]:
    """The keys dealt into `batches` bins of about equal total weight: heaviest first, each into the lightest
    bin so far (ties: the lower bin, then the name), so the split is the same whatever the listing order. Each
    bin's keys in name order (the order in which one task walked the folder)."""
    bins: list[list[str]] = [[] for _ in range(batches)]
    totals = [0] * batches
    for key in sorted(weights, key=lambda k: (-weights[k], k)):
        lightest = min(range(batches), key=lambda i: (totals[i], i))
        bins[lightest].append(key)
        totals[lightest] += weights[key]
    return [sorted(b) for b in bins]


def plan(landing: Path, source: str, day: date, reporter: str | None = None, *,
         files_per_batch: int = FILES_PER_BATCH, bytes_per_batch: int = BYTES_PER_BATCH,
         max_batches: int = MAX_BATCHES) -> list[dict]:
    """The batches of `source`'s landing folder of `day` (only `reporter`'s entries when given): every entry,
    readable or refused, in exactly one batch. Reads no file's content and needs no warehouse."""
    weights: dict[str, int] = {}
    folder_refused = False
    with zone.survey(landing, source, day, reporter) as found:
        for path in found.files:
            try:
                size = os.stat(path.name, dir_fd=found.folder_fd, follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # gone since the listing: nothing to load or record
            weights[entry_key(path)] = size + FILE_WEIGHT_BYTES
        for refusal in found.refused:
            if refusal.reporter is None:
                folder_refused = True
            else:
                weights[entry_key(refusal)] = FILE_WEIGHT_BYTES  # its content is never read
    count = batch_count(len(weights), sum(weights.values()), files_per_batch, bytes_per_batch, max_batches)
    batches = [{"source": source, "service_date": day.isoformat(), "index": i, "batches": count, "names": names,
                "folder": folder_refused and i == 0, "bytes": sum(weights[k] for k in names)}
               for i, names in enumerate(deal(weights, count))]
    log.info("%s %s: %d entries in %d batches (%s entries each)", source, day, len(weights), count,
             "/".join(str(len(b["names"])) for b in batches))
    return batches


def skipped_plan(source: str, day: str) -> list[dict]:
    """The plan of a feed a run does not load (its `feed` param names another): one batch that loads nothing."""
    return [{"source": source, "service_date": day, "index": 0, "batches": 1, "names": [], "folder": False,
             "bytes": 0, "skipped": True}]


def load_batch(wh: ConnInfo, landing: Path, batch: dict, reporter: str | None = None) -> list[loader.FileResult]:
    """Load the entries `batch` owns, as ingest.loader.load_night loads a folder: the refused ones recorded
    (once however often), the readable ones loaded one transaction each, in name order."""
    source, day = batch["source"], date.fromisoformat(batch["service_date"])
    owned = set(batch["names"])
    with loader.connect(wh) as conn, zone.survey(landing, source, day, reporter) as found:
        refused = [r for r in found.refused if (entry_key(r) == FOLDER_KEY and batch["folder"])
                   or entry_key(r) in owned]
        files = [p for p in found.files if entry_key(p) in owned]
        results = [loader.refuse(conn, source, day, refusal) for refusal in refused]
        results += [loader.load_file(conn, source, day, path, found.folder_fd) for path in files]
        seen = {entry_key(p) for p in found.files} | {entry_key(r) for r in found.refused}
    if missing := owned - seen:  # went away since planning: nothing to read or record, as in load_night
        log.info("%s %s batch %d: %d planned entries gone since planning", source, day, batch["index"], len(missing))
    return results


def results_summary(source: str, day: str, results: Sequence[loader.FileResult]) -> dict:
    """What a load of files returns and logs (a feed's night, orchestration.steps.load_feed, or one batch of it):
    counts by status and rows, and the files quarantined, held or failed with why."""
    return {
        "source": source,
        "service_date": day,
        "files": len(results),
        "statuses": dict(Counter(r.status for r in results)),
        "rows_read": sum(r.rows_read for r in results),
        "rows_loaded": sum(r.rows_loaded for r in results),
        "rows_rejected": sum(r.rows_rejected for r in results),
        "quarantined": [f"{r.path.name}: {r.error}" for r in results if r.status == "quarantined"],
        "held": [f"{r.path.name}: {r.error}" for r in results if r.status == "held"],
        "failed": [f"{r.path.name}: {r.error}" for r in results if r.status == "failed"],
    }


def batch_summary(batch: dict, results: Sequence[loader.FileResult]) -> dict:
    """What a batch's task returns (and logs): results_summary, plus the batch's index."""
    summary = {**results_summary(batch["source"], batch["service_date"], results), "batch": batch["index"]}
    if batch.get("skipped"):
        summary["skipped"] = True
    return summary


class BatchFailed(RuntimeError):
    """Files of a batch failed for an unexpected reason (not bad data): the task fails so that Airflow retries
    it, and the retry skips what was loaded."""


def run_batch(wh: ConnInfo, landing: Path, batch: dict, reporter: str | None = None) -> dict:
    """A mapped load task's work: the batch loaded (nothing when its feed is not in the run), its summary
    logged and returned; raises BatchFailed after the whole batch when a file failed."""
    results = [] if batch.get("skipped") else load_batch(wh, landing, batch, reporter)
    summary = batch_summary(batch, results)
    log.info("load summary: %s", json.dumps(summary, ensure_ascii=False))
    if summary["failed"]:
        raise BatchFailed(f"{len(summary['failed'])} {batch['source']} files of batch {batch['index']} failed to "
                          "load: " + "; ".join(summary["failed"][:5]))
    return summary


def feed_summary(source: str, day: str, summaries: Iterable[dict]) -> dict:
    """The feed's night from its batches' summaries: what one task loading the whole folder returned."""
    parts = sorted(summaries, key=lambda s: s["batch"])
    statuses: Counter[str] = Counter()
    for s in parts:
        statuses.update(s["statuses"])
    out = {"source": source, "service_date": day, "batches": len(parts),
           "files": sum(s["files"] for s in parts), "statuses": dict(statuses)}
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        out[key] = sum(s[key] for s in parts)
    for key in ("quarantined", "held", "failed"):
        out[key] = [x for s in parts for x in s[key]]
    if parts and all(s.get("skipped") for s in parts):
        out["skipped"] = True
    return out
