"""The CSV reader's fast path: a chunk of plain lines (no quotes, the same number of fields on every line,
UTF-8) handed over as one column-wise `Batch` of undecoded bytes, so that the COPY encoder
(ingest.copy_fast) converts it a column at a time without a Python call per row. Each function says
when it declines (None): the reader then sends the chunk through the csv module, row by row, and the
rows are the same either way (tests/ingest: the reader's rows with and without this path)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any


class Batch:
    """Consecutive data rows of a CSV file, `first_row` onwards, column-wise: `columns[k]` holds the
    UTF-8 bytes of FeedSpec column k on each row, exactly as the csv module would have split them.

    With `tail`, `columns` covers only the spec columns before `spec.tail_start`, and
    `tail[i]` holds row i's remaining fields as they are in the file, commas included: exactly
    `len(spec.columns) - spec.tail_start` of them (the reader checked). Those columns repeat a few
    combinations of values, so the encoder converts each distinct tail once for the whole file."""

    __slots__ = ("first_row", "columns", "tail")

    def __init__(self, first_row: int, columns: list[Sequence[bytes]], tail: Sequence[bytes] | None = None):
        self.first_row, self.columns, self.tail = first_row, columns, tail

    def __len__(self) -> int:
        return len(self.columns[0])

    def values(self, i: int) -> list[bytes]:
        """Row i's values, one per spec column, as bytes."""
        head = [column[i] for column in self.columns]
        return head if self.tail is None else head + self.tail[i].split(b",")

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        for i in range(len(self)):
            yield self.first_row + i, [v.decode() for v in self.values(i)]



KNOWN_TAILS = 50_000  # distinct line tails remembered per file (bounded memory whatever the file)


def plain_batch(chunk: bytes, order: list[int], first_row: int, tail_start: int | None = None,
                 known_tails: set[bytes] | None = None) -> Batch | None:
    """Whole lines without quotes as a column-wise Batch, when splitting at commas gives exactly what the
    csv module gives and what `_data_rows` would pass on: every line has the same number of fields (at
    least as many as the header mapping needs, extra ones ignored), no NUL or bare CR, and every first
    field is longer than any blank or 合计 label (so no row would be skipped).

    With `tail_start` (FeedSpec.tail_start) and the file's columns in the spec's order, each line is
    split only at its first `tail_start` commas and the rest stays whole (Batch.tail): fewer, larger
    objects, and the encoder converts each distinct tail once."""
    if b"\x00" in chunk:
        return None
    if b"\r" in chunk:  # CRLF line ends (csv.writer's default): no bare CR or LF
        parts = chunk.split(b"\r\n")
        lines = len(parts) - 1  # single-byte counts are cheap, a two-byte pattern's count is not
        if chunk.count(b"\n") != lines or chunk.count(b"\r") != lines:
            return None
    else:
        parts = chunk.split(b"\n")
    if parts[-1] == b"":
        parts.pop()  # the last line of the file may have no line end
    if not parts:
        return None
    if tail_start is not None and known_tails is not None and order == list(range(len(order))):
        batch = tail_batch(parts, len(order), tail_start, first_row, known_tails)
        if batch is not None:
            return batch
    commas = parts[0].count(b",")
    if commas < max(order) or set(map(bytes.count, parts, repeat(b","))) != {commas}:
        return None
    flat = b",".join(parts).split(b",")
    width = commas + 1
    first = flat[0::width]
    if min(map(len, first)) <= 12 or not b"".join(first).isascii():
        return None
    return Batch(first_row, [flat[i::width] for i in order])


def tail_batch(lines: list[bytes], width: int, tail_start: int, first_row: int, known: set[bytes]
                ) -> Batch | None:
    """`plain_batch` for lines of exactly `width` fields in the spec's order, split at their first
    `tail_start` commas only; None when some line has another number of fields (then the caller splits
    the chunk field by field, which copes with extra columns). `known`: tails of this file already
    checked to hold the right number of fields (a few thousand distinct ones in a large file)."""
    rows = list(map(bytes.split, lines, repeat(b","), repeat(tail_start)))
    if sum(map(len, rows)) != (tail_start + 1) * len(rows):
        return None  # a line with fewer fields
    *columns, tail = zip(*rows, strict=True)  # equal lengths: checked above
    if not known.issuperset(tail):
        commas = width - 1 - tail_start
        new = set(tail).difference(known)
        if any(t.count(b",") != commas for t in new):
            return None
        if len(known) + len(new) > KNOWN_TAILS:
            known.clear()
        known.update(new)
    first = columns[0]
    if min(map(len, first)) <= 12 or not b"".join(first).isascii():
        return None
    return Batch(first_row, columns, tail)

