"""Unit tests of the shared normalisation, PII handling, the row encoder and the readers (no database)."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from stdnum.cn import ric

from ingest import csv_batches, csv_reader, encoding, pii
from ingest import normalize as n
from ingest.copy_encoder import NULL, RowEncoder, copy_text
from ingest.copy_fast import FastBatchEncoder, _fast_timestamp
from ingest.feeds import ASSISTANCE, CANTEENS, STREETS
from ingest.readers import read
from ingest.rejections import Rejection, UnreadableFile
from scenario import messy, writers
from scenario.generator import Scenario
from warehouse.credentials import pii_hash_key

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")


# ---------------------------------------------------------------- normalize


@pytest.mark.parametrize("value, expected", [
    ("2023-03-05", date(2023, 3, 5)),
    ("2023/3/5", date(2023, 3, 5)),
    ("2023年3月5日", date(2023, 3, 5)),
    ("２０２３年３月５日", date(2023, 3, 5)),
    ("2023.03.05", date(2023, 3, 5)),
    (44990, date(2023, 3, 5)),  # Excel serial
    (44990.0, date(2023, 3, 5)),
    ("44990", date(2023, 3, 5)),
    (datetime(2023, 3, 5, 0, 0), date(2023, 3, 5)),
    (date(2023, 3, 5), date(2023, 3, 5)),
    ("", None),
    (None, None),
])
def test_to_date(value, expected):
    assert n.to_date(value) == expected


def test_to_date_month_only_and_errors():
    assert n.to_date("2023年3月", month_only=True) == date(2023, 3, 1)
    assert n.to_date("2023-03", month_only=True) == date(2023, 3, 1)
    with pytest.raises(n.CellError) as err:
        n.to_date("2023年2月30日")
    assert err.value.reason_code == "bad_date"
    with pytest.raises(n.CellError) as err:
        n.to_date("去年")
    assert err.value.reason_code == "bad_date"


@pytest.mark.parametrize("value, expected", [
    ("2023-11-06 07:01:02", datetime(2023, 11, 6, 7, 1, 2, tzinfo=TZ)),
    ("2023/11/6 7:01", datetime(2023, 11, 6, 7, 1, tzinfo=TZ)),
    ("2023年11月6日 7时01分", datetime(2023, 11, 6, 7, 1, tzinfo=TZ)),
    ("２０２３－１１－０６ ０７：０１：０２", datetime(2023, 11, 6, 7, 1, 2, tzinfo=TZ)),
    ("2023-11-06T07:01:02+08:00", datetime(2023, 11, 6, 7, 1, 2, tzinfo=TZ)),
    ("2023-11-05T23:01:02Z", datetime(2023, 11, 6, 7, 1, 2, tzinfo=TZ)),
])
def test_to_timestamp(value, expected):
    assert n.to_timestamp(value) == expected


@pytest.mark.parametrize("value", ["昨天中午", "2023-13-01 00:00", "12:00"])
def test_to_timestamp_rejects(value):
    with pytest.raises(n.CellError) as err:
        n.to_timestamp(value)
    assert err.value.reason_code == "bad_timestamp"


def test_numbers_text_and_enums():
    assert n.to_int("３２０") == 320
    assert n.to_int(320.0) == 320
    assert n.to_int("1,200") == 1200
    with pytest.raises(n.CellError) as err:
        n.to_int("约300")
    assert err.value.reason_code == "bad_integer"
    with pytest.raises(n.CellError):
        n.to_int(True)
    for too_big in ("99999999999", 1e12):  # would break the whole COPY: rejected row by row instead
        with pytest.raises(n.CellError) as err:
            n.to_int(too_big)
        assert err.value.reason_code == "out_of_range"
    with pytest.raises(n.CellError) as err:
        n.to_decimal("123456789.00")
    assert err.value.reason_code == "out_of_range"
    assert n.to_decimal("¥7.00") == Decimal("7.00")
    assert n.to_decimal("１２．５０") == Decimal("12.50")
    assert n.to_decimal("1,234.50") == Decimal("1234.50")
    with pytest.raises(n.CellError) as err:
        n.to_decimal("NaN")
    assert err.value.reason_code == "bad_number"
    # codes Excel stored as numbers come back as their digits
    assert n.to_text(140105001001001.0) == "140105001001001"
    assert n.to_text(140105001001) == "140105001001"
    assert n.to_text("１４０１０５") == "140105"
    assert n.to_text("  ") is None
    assert n.to_enum("老年人", {"老年人": "elderly"}) == "elderly"
    assert n.to_enum("Elderly", {"老年人": "elderly"}) == "elderly"
    with pytest.raises(n.CellError) as err:
        n.to_enum("夜宵", {"早": "breakfast"})
    assert err.value.reason_code == "bad_enum"
    assert n.to_bool("有") is True and n.to_bool("无") is False
    assert n.header_key("建筑面积（㎡）") == n.header_key("建筑面积(㎡)") == n.header_key("建筑面积")
    assert n.header_key("Compound_Code") == n.header_key("compound code")


# ---------------------------------------------------------------- pii


def test_gb11643_check_digit():
    assert pii.id_number_valid("11010519491231002X")  # the standard's own example
    assert pii.id_number_valid("11010519491231002x")
    assert not pii.id_number_valid("110105194912310021")  # wrong check digit
    assert not pii.id_number_valid("110105194913310028")  # no 13th month
    assert not pii.id_number_valid("1101051949123100")  # too short
    rng = random.Random(7)
    for _ in range(50):
        body = f"140105{rng.randint(1940, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        check = ric.calc_check_digit(body + "?")  # python-stdnum wants the number with a check digit slot
        assert pii.id_number_valid(body + check)
        assert not pii.id_number_valid(body + ("0" if check != "0" else "1"))


def test_masks_and_keyed_hash(monkeypatch):
    assert pii.mask_phone("13812345678") == "*******5678"  # at most the last four digits
    assert pii.mask_phone("138-1234-5678") == "*******5678"
    assert pii.mask_card("6217500100000534") == pii.mask_card(" 6217500100000000534") == "****0534"  # one width
    assert pii.mask_card("534") == "***"
    h = pii.keyed_hash("13812345678", "phone")
    assert len(h) == pii.HASH_HEX_CHARS == 32 and "13812345678" not in h
    # HMAC-SHA-256 truncated to 128 bits, computed here independently
    assert h == hmac.new(pii_hash_key(), b"phone:13812345678", hashlib.sha256).hexdigest()[:32]
    assert h == pii.keyed_hash(" 13812345678 ", "phone")  # normalised before hashing
    assert h != pii.keyed_hash("13812345678", "card")  # kinds are separate namespaces
    monkeypatch.setenv("PII_HASH_KEY", "another-key-" + "y" * 20)
    assert pii.keyed_hash("13812345678", "phone") != h  # keyed: a different key, a different hash


def test_scrub_free_text():
    text = "居民王某，电话13812345678，身份证11010519491231002X，已处理"
    scrubbed = pii.scrub_free_text(text)
    assert "13812345678" not in scrubbed and "11010519491231002X" not in scrubbed
    assert "*******5678" in scrubbed and "[身份证号已脱敏]" in scrubbed
    assert pii.scrub_free_text("工单SR202311060001234") == "工单SR202311060001234"  # not a phone


# ---------------------------------------------------------------- encoder


def test_copy_text_escapes():
    assert copy_text(None) == NULL
    assert copy_text(True) == "t"
    assert copy_text("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re"
    assert copy_text(Decimal("1.50")) == "1.50"
    assert copy_text(date(2023, 3, 5)) == "2023-03-05"
    with pytest.raises(n.CellError) as err:
        copy_text("a\x00b")
    assert err.value.reason_code == "bad_character"


def _meal(**overrides):
    base = {"record_id": "CT140105001001-20231106-00001", "canteen_code": "CT140105001001",
            "served_at": "2023-11-06 07:09:55", "meal": "早", "diner_category": "儿童",
            "diner_card": "6217500100000534", "age": "8", "price_yuan": "3.00", "subsidy_yuan": "2.00",
            "payment_method": "现金"}
    base.update(overrides)
    return [base[c.name] for c in CANTEENS.columns]


def test_encoder_plain_and_fast_paths_agree():
    """The fast path over a batch's byte columns rejects the rows the plain path rejects, with the plain
    path's rejections, and writes the other rows as the plain path does (timestamps: the same instant)."""
    rows = [
        _meal(),
        _meal(record_id="R2", meal="夜宵"),  # bad_enum
        _meal(record_id="R3", served_at="2023/11/6 7:01"),  # fine, value by value
        _meal(),  # duplicate_record of the first
        _meal(record_id="R5", canteen_code="CT140106002005"),  # wrong_reporter
        _meal(record_id="R6", subsidy_yuan="-1"),  # negative_value
        _meal(record_id="R7", served_at=""),  # missing_value
        _meal(record_id="R8", age="８"),
        _meal(record_id="R9", served_at="２０２３-１１-０６ ０７:０１:０２"),
        _meal(record_id="R10", served_at="2023-02-30 07:01:02"),  # bad_timestamp
    ]
    numbers = list(range(2, 2 + len(rows)))
    row_wise = RowEncoder(CANTEENS, "CT140105001001", "f.csv")
    expected = [row_wise.encode(rn, r) for rn, r in zip(numbers, rows, strict=True)]
    reasons = [e.reason_code if isinstance(e, Rejection) else None for e in expected]
    assert reasons == [None, "bad_enum", None, "duplicate_record", "wrong_reporter", "negative_value",
                       "missing_value", None, None, "bad_timestamp"]
    columns = [[v.encode() for v in column] for column in zip(*rows, strict=True)]
    fast = FastBatchEncoder(RowEncoder(CANTEENS, "CT140105001001", "f.csv")).encode(2, columns)
    assert fast.rejected == [i for i, r in enumerate(reasons) if r]
    assert fast.rejections == [e for e in expected if isinstance(e, Rejection)]
    for i, e in enumerate(expected):
        if not isinstance(e, Rejection):
            assert b"\t".join(col[i] for col in fast.columns) == "\t".join(e).encode()
    # a batch of plain ISO timestamps is checked whole and passed on: the plain path's instant
    plain = [_meal(record_id=f"P{i}", served_at=f"2023-11-06 07:0{i}:00") for i in range(5)]
    columns = [[v.encode() for v in column] for column in zip(*plain, strict=True)]
    fast = FastBatchEncoder(RowEncoder(CANTEENS, "CT140105001001", "f.csv")).encode(0, columns)
    row_path = RowEncoder(CANTEENS, "CT140105001001", "f.csv")
    assert fast.rejected == []
    names = [c.name for c in CANTEENS.columns]
    for i, r in enumerate(plain):
        slow = dict(zip(CANTEENS.raw_columns, row_path.encode(i, r), strict=True))
        quick = dict(zip(names, [c[i].decode() for c in fast.columns], strict=True))
        quick.update(zip(("diner_card_hash", "diner_card_masked"), quick.pop("diner_card").split("\t"), strict=True))
        assert datetime.fromisoformat(quick.pop("served_at")).replace(tzinfo=TZ) == datetime.fromisoformat(
            slow.pop("served_at"))
        assert quick == slow


def test_assistance_pii_hashed_and_id_flagged():
    enc = RowEncoder(ASSISTANCE, "AP140105001501", "p.jsonl")
    record = {"service_request_id": "SR1", "point_code": "AP140105001501", "event": "received",
              "event_at": "2023-11-06T08:00:00+08:00", "requester_name": "王伟", "requester_phone": "13812345678",
              "requester_id_number": "110105194912310021", "status_notes": "回电13812345678"}
    row, rejection = enc.normalise(1, record)
    assert rejection is None
    assert row["requester_phone_masked"] == "*******5678"
    assert row["requester_id_valid"] == "f"  # invalid check digit: flagged, not dropped
    assert row["requester_id_hash"] == pii.keyed_hash("110105194912310021", "id")
    text = "|".join(row.values())
    assert not pii.PHONE_RE.search(text) and not pii.ID_NUMBER_RE.search(text) and "王伟" not in text


# ---------------------------------------------------------------- readers on the messy files


@pytest.fixture(scope="module")
def messy_night(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    scenario = Scenario()
    day = date(2023, 11, 6)
    return scenario, day, messy.write_messy_night(scenario, day, landing, full=False)


def test_messy_workbook_reader(messy_night):
    scenario, day, manifest = messy_night
    case = manifest.by_kind("titles_merged_total")
    items = list(read(STREETS, case.path))
    assert len(items) == case.rows_read  # title rows, header rows, blank row and 合计 row are not data
    enc = RowEncoder(STREETS, case.reporter, case.path.name)
    loaded = {}
    reasons = []
    for rn, values in items:
        out = enc.encode(rn, values)
        if isinstance(out, Rejection):
            reasons.append(out.reason_code)
        else:
            row = dict(zip(STREETS.raw_columns, out, strict=True))
            loaded[row["compound_code"]] = row
    assert sorted(reasons) == sorted(case.reasons.elements())
    expected = {r["compound_code"]: r for r in scenario.registry_rows(day) if r["street_code"] == case.reporter}
    assert loaded.keys() == expected.keys()
    for code, r in expected.items():  # every messy spelling came back as the clean value
        got = loaded[code]
        assert got["community_code"] == r["community_code"]
        assert int(got["households"]) == r["households"]
        assert Decimal(got["building_area_m2"]) == Decimal(str(r["building_area_m2"]))
        assert got["property_mode"] == r["property_mode"]
        assert got["party_org_since"] == (r["party_org_since"].isoformat() if r["party_org_since"] else NULL)
        assert got["subsidy_start_month"] == (r["subsidy_start_month"].isoformat()
                                              if r["subsidy_start_month"] else NULL)
        assert got["service_station"] == ("t" if r["service_station"] else "f")


def test_messy_csv_readers(messy_night):
    scenario, day, manifest = messy_night
    for kind in ("gb18030", "utf8_bom"):
        case = manifest.by_kind(kind)
        items = list(read(CANTEENS, case.path))
        assert len(items) == case.rows_read
        canteen = next(c for c in scenario.canteens if c.code == case.reporter)
        meals = {m["record_id"]: m for m in scenario.canteen_meals(canteen, day)}
        enc = RowEncoder(CANTEENS, case.reporter, case.path.name)
        rows = [enc.encode(rn, v) for rn, v in items]
        good = [dict(zip(CANTEENS.raw_columns, r, strict=True)) for r in rows if not isinstance(r, Rejection)]
        assert {g["record_id"] for g in good} == meals.keys()
        for g in good:
            m = meals[g["record_id"]]
            assert datetime.fromisoformat(g["served_at"]) == m["served_at"]
            assert int(g["age"]) == m["age"] and Decimal(g["price_yuan"]) == Decimal(str(m["price_yuan"]))


def test_unreadable_files(messy_night):
    _, _, manifest = messy_night
    for kind, spec in (("unreadable_workbook", STREETS), ("utf16", CANTEENS)):
        case = manifest.by_kind(kind)
        with pytest.raises(UnreadableFile) as err:
            list(read(spec, case.path))
        assert err.value.reason_code == case.quarantine_reason
        assert case.path.name in str(err.value)


def test_header_found_below_titles_with_english_aliases(tmp_path):
    path = tmp_path / "CT140105001001.csv"
    path.write_text("食堂就餐流水\n导出时间：2023-11-07\n"
                    "record_id,canteen_code,served_at,meal,diner_category,diner_card,age,price_yuan,subsidy_yuan,"
                    "payment_method,extra\n"
                    "R1,CT140105001001,2023-11-06 12:00:00,lunch,elderly,,70,9.00,3.00,微信,x\n"
                    ",,,,,,,,,,\n合计,,,,,,,9.00,3.00,,\n", encoding="utf-8")
    items = list(read(CANTEENS, path))
    assert [rn for rn, _ in items] == [4]
    out = RowEncoder(CANTEENS, "CT140105001001", path.name).encode(*items[0])
    assert not isinstance(out, Rejection)
    with pytest.raises(UnreadableFile) as err:
        (tmp_path / "CT140105001002.csv").write_text("a,b,c\n1,2,3\n", encoding="utf-8")
        list(read(CANTEENS, tmp_path / "CT140105001002.csv"))
    assert err.value.reason_code == "no_header"


# ---------------------------------------------------------------- CSV fast path (bytes, column-wise)


def test_plain_timestamps_agree_with_the_calendar():
    """The column-wise timestamp check accepts exactly the real calendar times written YYYY-MM-DD HH:MM:SS
    (or with a T), years 1000 on."""
    rng = random.Random(11)

    def expected(value: bytes) -> bool:
        text = value.decode("latin-1")
        if len(text) != 19 or not all(c.isdigit() for c in text[:4] + text[5:7] + text[8:10] + text[11:13]
                                      + text[14:16] + text[17:]):
            return False
        if (text[4], text[7], text[13], text[16]) != ("-", "-", ":", ":") or text[10] not in " T":
            return False
        try:
            return datetime.fromisoformat(text).year >= 1000
        except ValueError:
            return False

    values = []
    for _ in range(3000):
        v = bytearray(f"{rng.randint(990, 2100):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}"
                      f"{rng.choice(' T')}{rng.randint(0, 29):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}",
                      "ascii")
        if rng.random() < 0.2:  # a stray character anywhere
            v[rng.randrange(19)] = ord(rng.choice("0123456789-: Tx"))
        values.append(bytes(v))
    for v in values:
        assert (_fast_timestamp([v]) is not None) == expected(v), v
    good = [v for v in values if expected(v)]
    assert _fast_timestamp(good) == good
    assert _fast_timestamp(good + [b"2023-02-29 00:00:00"]) is None
    one_day = [b"2023-02-28 07:00:00", b"2023-02-28 23:59:59"] * 50  # a batch of one day: checked as one date
    assert _fast_timestamp(one_day) == one_day
    assert _fast_timestamp([b"2023-02-29 07:00:00"] * 100) is None
    assert _fast_timestamp(one_day + [b"2023-02-29 07:00:00"]) is None  # one day in the last digit apart


def _rows_without_fast_path(monkeypatch, spec, path):
    with monkeypatch.context() as m:
        m.setattr(csv_reader, "plain_batch", lambda *args, **kwargs: None)  # every chunk through the csv module
        return list(read(spec, path))


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_fast_path_gives_what_the_csv_module_gives(tmp_path, monkeypatch, newline):
    """Chunks split at their first commas only (the rest of a line kept whole), chunks split at every
    comma, and chunks read by the csv module all give the same rows; lines of another width, a bare CR
    or extra columns make a chunk fall back."""
    monkeypatch.setattr(csv_reader, "CHUNK_BYTES", 700)  # many chunks
    scenario = Scenario()
    canteen = scenario.canteens[0]
    meals = [writers.meal_values(r) for r in scenario.canteen_meals(canteen, date(2023, 11, 6))][:60]
    header = ",".join(messy.CANTEEN_HEADERS)
    lines = [",".join(str(v) for v in m) for m in meals]
    variants = {
        "plain": [header, *lines],
        "short_line": [header, *lines[:30], ",".join(lines[30].split(",")[:7]), *lines[31:]],
        "long_line": [header, *lines[:30], lines[30] + ",extra", *lines[31:]],
        "extra_column": [header + ",备注", *(line + ",x" for line in lines)],
        "bare_cr": [header, *lines[:30], lines[30].replace(",", ",\r", 1), *lines[31:]],
    }
    for name, content in variants.items():
        path = tmp_path / name / f"{canteen.code}.csv"
        path.parent.mkdir()
        path.write_bytes((newline.join(content) + newline).encode())
        fast = list(read(CANTEENS, path))
        assert fast == _rows_without_fast_path(monkeypatch, CANTEENS, path), name
        batches = [b for b in read(CANTEENS, path).batches() if isinstance(b, csv_batches.Batch)]
        if name == "plain":
            assert batches and all(b.tail is not None for b in batches) and len(fast) == len(meals)


def test_fast_path_with_tail_agrees_with_column_wise():
    """A row's trailing fields converted as one memoised tail give the same COPY text and the same
    rejections (file, row, column, reason) as converting them column by column."""
    rows = [
        _meal(),
        _meal(record_id="R2", meal="夜宵"),  # bad_enum, in the tail
        _meal(),  # duplicate of the first
        _meal(record_id="R4", canteen_code="CT140106002005"),  # wrong_reporter
        _meal(record_id="R5", subsidy_yuan="-1"),  # negative_value, in the tail
        _meal(record_id="R6", age="８"),  # full-width digit: converted, not rejected
        _meal(record_id="R7", diner_card=""),  # no card: NULL hash and mask
        _meal(record_id="R8"),
    ]
    columns = [[v.encode() for v in column] for column in zip(*rows, strict=True)]
    start = CANTEENS.tail_start
    tail = [b",".join(values) for values in zip(*columns[start:], strict=True)]
    whole = FastBatchEncoder(RowEncoder(CANTEENS, "CT140105001001", "f.csv")).encode(2, columns)
    tailed = FastBatchEncoder(RowEncoder(CANTEENS, "CT140105001001", "f.csv")).encode(2, columns[:start], tail)
    assert tailed[1] == whole[1] == [1, 2, 3, 4]
    assert [(r.row_number, r.column, r.reason_code, r.message) for r in tailed[2]] == [
        (r.row_number, r.column, r.reason_code, r.message) for r in whole[2]]
    for i in (0, 5, 6, 7):
        assert b"\t".join(c[i] for c in tailed[0]) == b"\t".join(c[i] for c in whole[0])


def test_duplicate_records_found_across_ascending_and_unordered_batches():
    """Batches whose record ids ascend skip the duplicate lookups; a later batch out of order, a row on the
    row path and a batch with a repeat inside still find every repeat of an earlier id, and only those.
    Expected rejections: a plain model of the ids seen so far."""
    encoder = RowEncoder(CANTEENS, "CT140105001001", "f.csv")
    fast = FastBatchEncoder(encoder)
    batches = [
        [f"R{i:04d}" for i in range(1, 101)],  # ascending
        [f"R{i:04d}" for i in range(101, 201)],  # ascending, above the first
        ["R0190", "R0201", "R0202"],  # ascending, but from below the last batch's top: R0190 repeats
        ["R0250", "R0050", "Q0001", "R0150"],  # out of order: R0050 and R0150 repeat ascending rows
        [f"R{i:04d}" for i in range(300, 310)] + ["R0309"],  # a repeat inside the batch
        [f"S{i:04d}" for i in range(1, 51)],  # ascending again, above everything
        ["R0199", "S0050", "S0051"],  # repeats of ascending rows, out of order again
    ]
    seen, expected, got, row = set(), [], [], 2
    for ids in batches:
        for i, record_id in enumerate(ids):
            if record_id in seen:
                expected.append(row + i)
            seen.add(record_id)
        rows = [_meal(record_id=record_id) for record_id in ids]
        columns = [[v.encode() for v in column] for column in zip(*rows, strict=True)]
        _, _, rejections = fast.encode(row, columns)
        got += [(r.row_number, r.reason_code) for r in rejections]
        row += len(ids)
    for record_id in ("R0042", "S0007", "T0001"):  # the row path after ascending batches
        out = encoder.encode(row, _meal(record_id=record_id))
        if record_id[0] != "T":
            expected.append(row)
        if isinstance(out, Rejection):
            got.append((out.row_number, out.reason_code))
        row += 1
    assert got == [(r, "duplicate_record") for r in expected]
    assert len(expected) == 8


def test_printed_warehouse_url_hides_the_password():
    from warehouse import conninfo

    info = conninfo.parse_url("postgresql+psycopg://gov_loader:s3cr%40t@db.example:5433/gov_warehouse")
    assert info.password == "s3cr@t"
    assert info.display_url() == "postgresql+psycopg://gov_loader:***@db.example:5433/gov_warehouse"
    assert "s3cr" not in info.display_url()
    embedded = conninfo.parse_url("postgresql+psycopg://postgres@/gov_warehouse?host=/tmp/pg&port=5432")
    assert embedded.display_url() == embedded.sqlalchemy_url()


@pytest.mark.parametrize("threaded", [False, True])
def test_scan_hashes_and_detects_the_encoding_in_one_pass(tmp_path, monkeypatch, threaded):
    """encoding.scan against hashlib over the whole bytes and against decoding the whole file, for UTF-8
    (a three-byte character split across the 1 MiB chunk boundary), UTF-8 with a BOM, GB18030 (the only
    non-UTF-8 byte at the very end) and an empty file; small and large files take the two code paths."""
    monkeypatch.setattr(encoding, "THREADED_SCAN_BYTES", 0 if threaded else 1 << 40)
    pad = b"a" * (encoding.SCAN_CHUNK - 1)
    cases = {
        "utf8.csv": (pad + "食堂,午餐\r\n".encode() * 1000, "utf-8"),
        "bom.csv": (b"\xef\xbb\xbf" + "流水号\n".encode(), "utf-8-sig"),
        "gb.csv": (pad * 2 + "合计".encode("gb18030"), "gb18030"),
        "empty.csv": (b"", "utf-8"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert encoding.scan(path) == encoding.FileScan(hashlib.sha256(content).hexdigest(), len(content), expected)
