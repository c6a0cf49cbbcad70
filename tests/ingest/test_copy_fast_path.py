"""The COPY encoder's fast path (ingest.copy_fast) against its plain path (copy_encoder.RowEncoder.encode),
on varied batches: the fast path must reject exactly the rows the plain path rejects, with the plain
path's rejections, and write every other row as the plain path does (a timestamp: the same instant).
The plain path, row by row on an encoder of its own, is the expected value."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ingest.copy_encoder import ColumnEncoder, RowEncoder
from ingest.copy_fast import FastBatchEncoder, _fast_text, _fast_timestamp
from ingest.feeds import CANTEENS
from ingest.normalize import CellError
from ingest.rejections import Rejection

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")
CANTEEN = "CT140105001001"
SERVED_AT = CANTEENS.raw_columns.index("served_at")

# per column: values the fast path's checks and memos must treat as the plain path does (no commas: a
# batch's values come from lines split at their commas)
VARIANTS = {
    "record_id": [" R-padded ", "-", "", "N/a", "流水１", "a\\b", "a\tb", "x", "—"],
    "canteen_code": ["CT140106002005", "CT14", "CT999999001001", "ＣＴ140105001001", "", " CT140105001001 "],
    "served_at": ["2023-11-06T07:09:55", "2024-02-29 12:00:00", "2023-02-29 12:00:00", "2023-11-06 24:00:00",
                  "2023-11-06 23:60:00", "2023-11-06 23:59:60", "2023/11/6 7:01", "２０２３-１１-０６ ０７:０１:０２", "",
                  "2023-11-06 07:09:55+08:00", "2023-13-01 00:00:00", "2023-04-31 08:00:00", "0999-01-01 00:00:00",
                  "2023-11-06 19:30:00", "2023-11-06 20:00:00", "1990-07-01 12:00:00", "2023-11-07 07:09:55"],
    "meal": ["夜宵", "", "-", "lunch", " 午 "],
    "diner_category": ["居民", "elderly", "学生", ""],
    "diner_card": ["", "-", " 6217500100000534 ", "62175001000005341234", "卡"],
    "age": ["８", "-1", "abc", "", "8.0", "130"],
    "price_yuan": ["-1", "abc", "", "3", "3.005"],
    "subsidy_yuan": ["-0.01", "", "2", "元"],
    "payment_method": ["", "cash", "a\tb", "微信", "-", "a\\b"],
}
CLEAN = {"canteen_code": [CANTEEN], "meal": ["早", "午", "晚"], "diner_category": ["老年人", "儿童", "残疾人"],
         "diner_card": ["6217500100000534", "6217500100000999", ""], "age": ["8", "70", "81"],
         "price_yuan": ["3.00", "9.00"], "subsidy_yuan": ["2.00", "0.00"], "payment_method": ["现金", "微信"]}


def _clean_row(rng: random.Random, number: int) -> dict[str, str]:
    row = {name: rng.choice(options) for name, options in CLEAN.items()}
    row["record_id"] = f"{CANTEEN}-20231106-{number:05d}"
    row["served_at"] = f"2023-11-06 {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
    return row


def _batches(seed: int) -> list[tuple[bool, list[list[str]]]]:
    """(messy, rows in spec order) of 25 batches: clean ones with ascending ids, and messy ones where each
    cell is one of its column's variants one time in five, some ids repeating earlier ones."""
    rng = random.Random(seed)
    out, number = [], 1
    for _ in range(25):
        rows = []
        messy = rng.random() < 0.6
        for _ in range(rng.randrange(1, 60)):
            row = _clean_row(rng, number)
            number += 1
            if messy:
                for name, options in VARIANTS.items():
                    if rng.random() < 0.2:
                        row[name] = rng.choice(options)
                if rng.random() < 0.1:
                    row["record_id"] = f"{CANTEEN}-20231106-{rng.randrange(1, number):05d}"  # a repeat, maybe
            rows.append([row[c.name] for c in CANTEENS.columns])
        out.append((messy, rows))
    return out


def _same_instant(fast: str, plain: str) -> bool:
    if plain == "\\N":
        return fast == plain
    quick = datetime.fromisoformat(fast)
    return (quick if quick.tzinfo else quick.replace(tzinfo=TZ)) == datetime.fromisoformat(plain)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_tail", [False, True])
def test_the_fast_path_gives_what_the_plain_path_gives(seed, with_tail):
    plain, fast = RowEncoder(CANTEENS, CANTEEN, "f.csv"), FastBatchEncoder(RowEncoder(CANTEENS, CANTEEN, "f.csv"))
    first, rejected_seen = 2, set()
    for _, rows in _batches(seed):
        expected = [plain.encode(first + i, values) for i, values in enumerate(rows)]
        columns = [[v.encode() for v in column] for column in zip(*rows, strict=True)]
        if with_tail:
            start = CANTEENS.tail_start
            got = fast.encode(first, columns[:start], [b",".join(t) for t in zip(*columns[start:], strict=True)])
        else:
            got = fast.encode(first, columns)
        assert got.rejected == [i for i, e in enumerate(expected) if isinstance(e, Rejection)]
        assert got.rejections == [e for e in expected if isinstance(e, Rejection)]
        for i, e in enumerate(expected):
            if isinstance(e, Rejection):
                continue
            line = b"\t".join(column[i] for column in got.columns).decode().split("\t")
            assert _same_instant(line.pop(SERVED_AT), e[SERVED_AT]), (rows[i], e)
            assert line == e[:SERVED_AT] + e[SERVED_AT + 1:], rows[i]
        rejected_seen.update(r.reason_code for r in got.rejections)
        first += len(rows)
    # the batches reached the plain path's rejections of every kind, not only the clean rows
    assert {"duplicate_record", "wrong_reporter", "bad_enum", "bad_timestamp", "missing_value"} <= rejected_seen


def test_the_whole_column_checks_are_taken_on_clean_columns():
    """Clean batches do take the checks (else the test above would compare the plain path with itself)."""
    clean = [rows for messy, rows in _batches(0) if not messy]
    assert len(clean) >= 5
    for rows in clean:
        ids, served = ([r[k].encode() for r in rows] for k in (0, SERVED_AT))
        assert _fast_text(ids) == ids
        assert _fast_timestamp(served) == served


def _plain(column: str, value: str) -> str | None:
    try:
        return "\t".join(ColumnEncoder(next(c for c in CANTEENS.columns if c.name == column), None).convert(value))
    except CellError:
        return None


def test_fast_timestamp_accepts_only_what_the_plain_path_accepts():
    """Every 19-character shape of a local timestamp, valid or not (days 0-32, months 0-13, hours 0-25,
    minutes and seconds 0-61, leap days of 1900, 2000, 2023, 2024): accepted alone only when the plain
    path converts it, to the same instant; and every value the plain path converts in this shape, from
    year 1000 on, is accepted."""
    rng = random.Random(7)
    values = [f"{y:04d}-{m:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}"
              for y, m, d, sep, h, mi, s in ((rng.choice([999, 1900, 2000, 2023, 2024, 9999]), rng.randrange(14),
                                               rng.randrange(33), rng.choice(" T"), rng.randrange(26),
                                               rng.randrange(62), rng.randrange(62)) for _ in range(3000))]
    values += ["1900-02-29 00:00:00", "2000-02-29 00:00:00", "2023-02-29 00:00:00", "2024-02-29 00:00:00"]
    for value in values:
        plain = _plain("served_at", value)
        fast = _fast_timestamp([value.encode()])
        if plain is None or value < "1000":
            assert fast is None, value
        else:
            assert fast == [value.encode()] and _same_instant(value, plain), value
    assert _fast_timestamp([v.encode() for v in values]) is None  # one bad value declines the column


def test_fast_text_passes_only_what_the_plain_path_writes_unchanged():
    """Text values, one at a time: accepted only when they are the plain path's COPY text once stripped."""
    values = ["R1", " R1 ", "-", "--", "/", "N/A", "n/a", "a-b", "a/b", "", " ", "流水", "a\\b", "a\tb", "a\x00b",
              "x\x1fy", "ａｂ", "R-1/2", "NA", "\\N"]
    for value in values:
        plain = _plain("record_id", value)
        fast = _fast_text([value.encode()])
        if fast is not None:
            assert plain is not None and fast == [plain.encode()], value
    assert _fast_text([b"R1", b" R2", b"R-3"]) == [b"R1", b"R2", b"R-3"]


def test_a_rejected_rows_key_is_free_for_a_later_row():
    """A row rejected for another reason does not register its key, on either path, even in a batch whose
    keys ascend (the fast path's lookup-free case): a later row with that key is the file's first."""
    rng = random.Random(3)
    rows = [_clean_row(rng, k) for k in (1, 2, 3)]
    rows[1]["meal"] = "夜宵"  # bad_enum on row 2
    again = {**rows[1], "meal": "午"}  # row 2's key, on a good row
    values = [[r[c.name] for c in CANTEENS.columns] for r in (*rows, again)]
    plain = RowEncoder(CANTEENS, CANTEEN, "f.csv")
    expected = [plain.encode(2 + i, v) for i, v in enumerate(values)]
    assert [e.reason_code if isinstance(e, Rejection) else None for e in expected] == [None, "bad_enum", None, None]
    fast = FastBatchEncoder(RowEncoder(CANTEENS, CANTEEN, "f.csv"))
    got = [fast.encode(first, [[v.encode() for v in c] for c in zip(*batch, strict=True)])
           for first, batch in ((2, values[:3]), (5, values[3:]))]
    assert [g.rejected for g in got] == [[1], []]
