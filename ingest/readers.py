"""The one entry to the readers: `read` picks the reader by the feed's file format.

Each reader yields (row number, [value per FeedSpec column]) in file order, or a Rejection for a row that
cannot even be parsed; a file that cannot be read at all raises UnreadableFile. Header aliases, NFKC and
typing happen later, in the COPY encoder.

- .csv: ingest.csv_reader (the canteens), whose `batches()` may also give runs of plain lines as
  column-wise Batches of undecoded bytes (ingest.csv_batches);
- .xlsx: ingest.workbook (the street offices' registries);
- .jsonl: ingest.jsonlines (the assistance points' case events).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ingest.csv_batches import Batch
from ingest.csv_reader import read_csv
from ingest.encoding import NotUtf8
from ingest.feeds import FeedSpec
from ingest.jsonlines import read_jsonl
from ingest.rejections import Rejection
from ingest.tabular import RowOrRejection
from ingest.workbook import WorkbookRows


class Rows:
    """The rows of one file, one by one; `batches()` may give runs of them as column-wise Batches."""

    workbook: WorkbookRows | None = None  # an .xlsx file being read: its sheets and skipped rows

    def __init__(self, spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False):
        self.spec, self.path, self.encoding, self.unchecked_utf8 = spec, path, encoding, unchecked_utf8

    def batches(self) -> Iterator[RowOrRejection | Batch]:
        if self.spec.extension == "csv":
            return read_csv(self.spec, self.path, self.encoding, self.unchecked_utf8)
        if self.spec.extension == "xlsx":
            self.workbook = WorkbookRows(self.spec, self.path)
            return iter(self.workbook)
        return read_jsonl(self.spec, self.path)

    def relabel(self, rejections: list[Rejection]) -> list[Rejection]:
        """The rejections of this file's rows (the encoder's too), naming the sheet of each in a workbook."""
        return rejections if self.workbook is None else self.workbook.relabel(rejections)

    def notes(self) -> list[str]:
        """What the reader skipped without it being a rejected row (sheets without the header, total rows)."""
        return [] if self.workbook is None else self.workbook.notes()

    def __iter__(self) -> Iterator[RowOrRejection]:
        for item in self.batches():
            if isinstance(item, Batch):
                try:
                    rows = list(item.rows())
                except UnicodeDecodeError as err:  # an unchecked read's batch is decoded here, not by the reader
                    raise NotUtf8(f"{self.path.name}: {err.reason}") from None
                yield from rows
            else:
                yield item


def read(spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False) -> Rows:
    """The file's rows. A CSV reader needs the encoding: `encoding` (from `ingest.encoding.scan`) spares it
    its own pass to detect it; `unchecked_utf8` reads the file as UTF-8 (with or without a BOM) straight
    away and raises NotUtf8 at the first byte sequence that is not, which the caller must then be ready for.
    A checked read (not `unchecked_utf8`) never fails on a byte: a line that does not decode in the
    file's encoding is a bad_encoding Rejection naming its row, column and byte offset."""
    return Rows(spec, path, encoding, unchecked_utf8)
