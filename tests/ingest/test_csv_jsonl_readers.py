"""The canteen CSV and assistance JSON Lines readers on the files real reporters send (issue 14): stray
bytes, NUL, UTF-16 and binary files, deep nesting, over-long lines, JSON arrays, aliases and Open311
GeoReport keys, duplicate keys, nested values; what a malformed line keeps (issue 16). No database:
each file is built here, and expected rows, reasons, row numbers and byte offsets are worked out from
the bytes written, never from the reader.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from ingest import csv_reader, encoding, jsonlines
from ingest.copy_encoder import RowEncoder
from ingest.encoding import NotUtf8
from ingest.feeds import ASSISTANCE, CANTEENS
from ingest.readers import read
from ingest.rejections import Rejection, UnreadableFile, safe_record, storable_text
from scenario.generator import CANTEEN_HEADERS

pytestmark = pytest.mark.unit

CANTEEN = "CT140105001001"
POINT = "AP140105001501"
HEADER = ",".join(CANTEEN_HEADERS)


def meal(i: int, payment: str = "微信") -> list[str]:
    return [f"{CANTEEN}-{i:06d}", CANTEEN, "2023-11-06 12:00:00", "午", "老年人", "6217500100000534", "70",
            "9.00", "3.00", payment]


def write(tmp_path: Path, content: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def split(items) -> tuple[dict[int, list], list[tuple]]:
    rows, rejected = {}, []
    for item in items:
        if isinstance(item, Rejection):
            rejected.append((item.row_number, item.column, item.reason_code))
        else:
            rows[item[0]] = item[1]
    return rows, rejected


def rejections(items) -> list[Rejection]:
    return [i for i in items if isinstance(i, Rejection)]


def no_unstorable_text(record: dict) -> bool:
    """What PostgreSQL's text and jsonb cannot hold: NUL, lone surrogates."""
    text = json.dumps(record, ensure_ascii=False)
    return "\x00" not in text and "\\u0000" not in text and all(not 0xD800 <= ord(c) <= 0xDFFF for c in text)


# ---------------------------------------------------------------- CSV: stray bytes


@pytest.mark.parametrize("quoted, bad_row, bom", [
    (False, 120, False),  # the plain fast path
    (True, 120, False),  # the csv module, from a quote on
    (False, 3, False),  # among the first lines, read with the header
    (False, 120, True),  # UTF-8 with a BOM
])
def test_stray_gb18030_word_in_a_utf8_csv_rejects_that_row_only(tmp_path, monkeypatch, quoted, bad_row, bom):
    monkeypatch.setattr(csv_reader, "CHUNK_BYTES", 2000)  # many chunks: the bad one is neither first nor last
    lines = [",".join(meal(i)) for i in range(1, 201)]
    if quoted:
        lines[4] = lines[4].replace("微信", '"微信"')
    lines[bad_row - 1] = lines[bad_row - 1].replace("微信", "@@")  # record bad_row is file row bad_row + 1
    content = (HEADER + "\r\n" + "\r\n".join(lines) + "\r\n").encode().replace(b"@@", "现金".encode("gb18030"))
    content = (b"\xef\xbb\xbf" if bom else b"") + content
    path = write(tmp_path, content, f"{CANTEEN}.csv")
    offset = content.index("现金".encode("gb18030"))
    assert content.count("现金".encode("gb18030")) == 1

    assert encoding.scan(path).encoding == ("utf-8-sig" if bom else "utf-8")  # 1 line of 201 is not UTF-8
    with pytest.raises(NotUtf8):
        list(read(CANTEENS, path, unchecked_utf8=True))
    items = list(read(CANTEENS, path))
    rows, rejected = split(items)
    assert rejected == [(bad_row + 1, "payment_method", "bad_encoding")]
    assert sorted(rows) == [r for r in range(2, 202) if r != bad_row + 1]
    assert all(rows[i + 1] == meal(i) for i in range(1, 201) if i != bad_row)
    [r] = rejections(items)
    assert r.message == (f"{CANTEEN}.csv, row {bad_row + 1}, column payment_method: not UTF-8 from byte {offset} "
                         f"of the file (0x{content[offset]:02x})")
    # CF D6 BD F0: CF and F0 are no UTF-8 (kept as \\xNN, storable), D6 BD happens to be (U+05BD)
    assert r.raw_record["payment_method"] == "\\xcf\u05bd\\xf0"
    assert r.raw_record["diner_card"].startswith("hmac:") and no_unstorable_text(r.raw_record)


def test_undecodable_bytes_in_a_column_the_feed_does_not_read_reject_nothing(tmp_path):
    lines = [",".join([*meal(i), "备注"]) for i in range(1, 31)]
    lines[9] = lines[9].replace("备注", "@@")
    content = (HEADER + ",备注\n" + "\n".join(lines) + "\n").encode().replace(b"@@", "午餐".encode("gb18030"))
    path = write(tmp_path, content, f"{CANTEEN}.csv")
    rows, rejected = split(read(CANTEENS, path))
    assert rejected == [] and rows == {i + 1: meal(i) for i in range(1, 31)}


def test_genuine_gb18030_file_still_reads_as_gb18030_and_rejects_only_a_line_that_is_neither(tmp_path):
    lines = [",".join(meal(i, "现金" if i % 2 else "微信")) for i in range(1, 101)]
    lines[50] = lines[50].replace("现金", "@@")  # record 51, file row 52
    content = (HEADER + "\n" + "\n".join(lines) + "\n").encode("gb18030").replace(b"@@", b"\xff\xfe")
    path = write(tmp_path, content, f"{CANTEEN}.csv")
    assert encoding.scan(path).encoding == "gb18030"
    items = list(read(CANTEENS, path))
    rows, rejected = split(items)
    assert rejected == [(52, "payment_method", "bad_encoding")]
    assert rows == {i + 1: meal(i, "现金" if i % 2 else "微信") for i in range(1, 101) if i != 51}
    offset = content.index(b"\xff\xfe")
    assert rejections(items)[0].message.endswith(f"not GB18030 from byte {offset} of the file (0xff)")


def test_encoding_vote_counts_non_ascii_lines():
    def vote(content: bytes, chunk: int = 7) -> str:
        v = encoding.EncodingVote()
        for i in range(0, len(content), chunk):  # chunks split lines and characters anywhere
            v.feed(content[i:i + chunk])
        v.feed(b"", final=True)
        return v.encoding()

    utf8 = "午,老年人\n".encode() * 10
    assert vote(utf8 + "现金\n".encode("gb18030")) == "utf-8"  # 1 against 10
    assert vote(utf8[:11] + "现金\n".encode("gb18030") * 2) == "gb18030"  # 2 against 1
    assert vote(b"abc\n" * 500 + "号\n".encode("gb18030")) == "gb18030"  # ASCII lines do not vote
    assert vote("午,老年人\n".encode("utf-16-le") * 5) == encoding.UNDECODABLE  # NUL on every line
    assert vote(b"\xff\xfe\x80\n" * 5) == encoding.UNDECODABLE  # neither UTF-8 nor GB18030
    assert vote(b"abc\n" * 5 + b"\xff\n") == "utf-8"  # one line that is neither, among ASCII ones


def test_one_stray_byte_that_is_no_text_at_all_rejects_one_row(tmp_path):
    """An ASCII file (English header, English values) with one byte that neither UTF-8 nor GB18030 reads:
    one rejected row, not a quarantined file; the same for a point's JSON Lines."""
    header = ",".join(c.name for c in CANTEENS.columns)
    lines = [",".join(meal(i, "cash")).replace("午", "lunch").replace("老年人", "elderly") for i in range(1, 21)]
    lines[6] = lines[6].replace("cash", "ca@@sh")
    path = write(tmp_path, (header + "\n" + "\n".join(lines) + "\n").encode().replace(b"@@", b"\xff"), "a.csv")
    rows, rejected = split(read(CANTEENS, path))
    assert rejected == [(8, "payment_method", "bad_encoding")] and sorted(rows) == [r for r in range(2, 22) if r != 8]
    events = [json.dumps(event(f"SR{i}")) for i in range(1, 6)]
    events[2] = events[2].replace("SR3", "SR3\xff")
    path = write(tmp_path, ("\n".join(events) + "\n").encode("latin-1"), "p.jsonl")
    rows, rejected = split(read(ASSISTANCE, path))
    assert rejected == [(3, None, "bad_encoding")] and sorted(rows) == [1, 2, 4, 5]


def test_a_gb18030_json_lines_file_is_read_as_gb18030(tmp_path):
    lines = [json.dumps(event(f"SR{i}", handler="网格员", status_notes="已上门"), ensure_ascii=False)
             for i in range(1, 5)]
    path = write(tmp_path, ("\n".join(lines) + "\n").encode("gb18030"), f"{POINT}.jsonl")
    rows, rejected = split(read(ASSISTANCE, path))
    assert rejected == [] and rows == {i: values(event(f"SR{i}", handler="网格员", status_notes="已上门"))
                                       for i in range(1, 5)}


# ---------------------------------------------------------------- CSV: NUL, UTF-16, binary


@pytest.mark.parametrize("unchecked", [False, True])
def test_nul_byte_in_a_csv_row_rejects_that_row_with_a_storable_record(tmp_path, unchecked):
    lines = [",".join(meal(i)) for i in range(1, 6)]
    lines[2] = lines[2].replace(f"{CANTEEN}-000003", f"{CANTEEN}-0\x0000003")
    path = write(tmp_path, (HEADER + "\n" + "\n".join(lines) + "\n").encode(), f"{CANTEEN}.csv")
    encoder = RowEncoder(CANTEENS, CANTEEN, path.name)
    out = [encoder.encode(rn, values) for rn, values in read(CANTEENS, path, unchecked_utf8=unchecked)]
    bad = [o for o in out if isinstance(o, Rejection)]
    assert len(out) == 5 and [(r.row_number, r.column, r.reason_code) for r in bad] == [
        (4, "record_id", "bad_character")]
    assert bad[0].raw_record["record_id"] == f"{CANTEEN}-0\\x0000003" and no_unstorable_text(bad[0].raw_record)


@pytest.mark.parametrize("kind", ["utf16_bom", "utf16be_bom", "utf16_no_bom", "zip"])
def test_utf16_and_binary_csv_are_quarantined_not_failed(tmp_path, kind):
    text = HEADER + "\n" + "\n".join(",".join(meal(i)) for i in range(1, 40)) + "\n"
    if kind == "zip":  # an .xlsx (a zip) renamed .csv
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("xl/worksheets/sheet1.xml", text * 20)
        content = buffer.getvalue()
    else:
        content = text.encode({"utf16_bom": "utf-16", "utf16be_bom": "utf-16", "utf16_no_bom": "utf-16-le"}[kind])
        if kind == "utf16be_bom":
            content = "\ufeff".encode("utf-16-be") + text.encode("utf-16-be")
    path = write(tmp_path, content, f"{CANTEEN}.csv")

    def as_the_loader_reads() -> None:  # UTF-8 unchecked first; on NotUtf8 again with the scanned encoding
        try:
            list(read(CANTEENS, path, unchecked_utf8=True))
        except NotUtf8:
            list(read(CANTEENS, path, encoding.scan(path).encoding))

    for attempt in (as_the_loader_reads, lambda: list(read(CANTEENS, path))):
        with pytest.raises(UnreadableFile) as err:
            attempt()
        assert err.value.reason_code == "bad_encoding" and path.name in str(err.value)


def test_scan_calls_a_utf16_file_without_bom_undecodable(tmp_path):
    text = HEADER + "\n" + "\n".join(",".join(meal(i)) for i in range(1, 40)) + "\n"
    path = write(tmp_path, text.encode("utf-16-le"), "x.csv")
    assert encoding.scan(path).encoding == encoding.UNDECODABLE


@pytest.mark.parametrize("unchecked", [False, True])
def test_csv_line_longer_than_the_limit_is_quarantined_without_being_read_whole(tmp_path, unchecked):
    for name, content in {
        "first.csv": b"x" * (40 << 20),  # one 40 MiB line, no line end
        "later.csv": (HEADER + "\n" + ",".join(meal(1)) + "\n").encode() + b"y" * (40 << 20) + b"\n",
    }.items():
        path = write(tmp_path, content, name)
        tracemalloc.start()
        try:
            with pytest.raises(UnreadableFile) as err:
                list(read(CANTEENS, path, unchecked_utf8=unchecked))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert err.value.reason_code == "line_too_long" and name in str(err.value), name
        assert peak < 10 << 20, name  # a few MiB of chunks (the encoding scan's too), not the 40 MiB line


@pytest.mark.parametrize("unchecked", [False, True])
def test_csv_with_bare_cr_line_ends_longer_than_the_line_limit_is_read(tmp_path, monkeypatch, unchecked):
    """Old Mac exports end lines with CR alone: no LF within the line limit, yet every row is there."""
    monkeypatch.setattr(csv_reader, "MAX_LINE_BYTES", 5000)
    monkeypatch.setattr(csv_reader, "CHUNK_BYTES", 3000)
    records = [meal(i) for i in range(1, 401)]  # some 40 KB
    path = write(tmp_path, (HEADER + "\r" + "\r".join(",".join(m) for m in records) + "\r").encode(), "cr.csv")
    rows, rejected = split(read(CANTEENS, path, unchecked_utf8=unchecked))
    assert rejected == [] and rows == {i + 1: m for i, m in enumerate(records, start=1)}


# ---------------------------------------------------------------- JSON Lines: bad lines


def event(sr: str = "SR1", **over) -> dict:
    return {"service_request_id": sr, "point_code": POINT, "event": "received",
            "event_at": "2023-11-06T08:00:00+08:00", **over}


def jsonl(tmp_path: Path, lines: list[str | bytes], name: str = f"{POINT}.jsonl") -> Path:
    raw = [line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass") for line in lines]
    return write(tmp_path, b"\n".join(raw) + b"\n", name)


def values(d: dict) -> list:
    return [d.get(c.name) for c in ASSISTANCE.columns]


def test_each_bad_json_line_is_one_rejected_row_and_the_rest_loads(tmp_path):
    good = [json.dumps(event(f"SR{i}"), ensure_ascii=False) for i in range(1, 5)]
    lines: list[str | bytes] = [
        good[0],
        json.dumps(event("SR9", status_notes="a\u0000b")),  # a \u0000 escape
        json.dumps(event("SR9"))[:-1].encode() + b', "handler": "\x00"}',  # a raw NUL byte
        json.dumps(event("SR9", handler="\ud800")),  # half a surrogate pair
        '{"a":' * 50_000 + "1" + "}" * 50_000,  # nested 50,000 deep
        json.dumps(event("SR9", status_notes={"text": "x"})),  # an object in a text field
        json.dumps(event("SR9", handler=["党员", "社工"]), ensure_ascii=False),  # an array in a text field
        json.dumps(event("SR9", status_notes="@@"))[:-1].encode().replace(b"@@", "现金".encode("gb18030")) + b"}",
        '{"service_request_id": "SR9", "event": "received", "event": "closed"}',  # a key twice
        '{"service_request_id": "SR9", "event": "received", "事件": "closed"}',  # two keys of one column
        '"just a string"',
        "",  # blank lines are no rows
        good[1],
        json.dumps(event("SR9"))[:40],  # cut off
        good[2],
        good[3],
    ]
    path = jsonl(tmp_path, lines)
    content = path.read_bytes()
    items = list(read(ASSISTANCE, path))
    rows, rejected = split(items)
    assert rows == {1: values(event("SR1")), 13: values(event("SR2")), 15: values(event("SR3")),
                    16: values(event("SR4"))}
    assert rejected == [
        (2, "status_notes", "bad_character"),
        (3, None, "bad_character"),
        (4, "handler", "bad_character"),
        (5, None, "json_too_deep"),
        (6, "status_notes", "nested_value"),
        (7, "handler", "nested_value"),
        (8, None, "bad_encoding"),
        (9, "event", "duplicate_key"),
        (10, "event", "duplicate_key"),
        (11, None, "malformed_json"),
        (14, None, "malformed_json"),
    ]
    messages = {r.row_number: r.message for r in rejections(items)}
    nul = content.index(b"\x00")
    assert messages[3] == f"{POINT}.jsonl, row 3: a NUL byte at byte {nul} of the file"
    gb = content.index("现金".encode("gb18030"))
    assert messages[8] == f"{POINT}.jsonl, row 8: not UTF-8 from byte {gb} of the file (0x{content[gb]:02x})"
    assert messages[10] == f"{POINT}.jsonl, row 10, column event: keys 'event' and '事件' both give event"
    for r in rejections(items):
        assert no_unstorable_text(r.raw_record) and "\x00" not in r.message, r.row_number


def test_one_stray_nul_in_the_first_line_is_a_rejected_row_not_a_binary_file(tmp_path):
    first = json.dumps(event("SR1"))[:-1].encode() + b', "handler": "\x00"}'
    path = jsonl(tmp_path, [first, json.dumps(event("SR2"))])
    rows, rejected = split(read(ASSISTANCE, path))
    assert rejected == [(1, None, "bad_character")] and rows == {2: values(event("SR2"))}


def test_over_long_line_is_rejected_and_never_read_whole(tmp_path):
    huge = b'{"status_notes": "' + b"x" * (40 << 20) + b'"}'  # 40 MiB on one line
    path = jsonl(tmp_path, [json.dumps(event("SR1")), huge, json.dumps(event("SR2"))])
    tracemalloc.start()
    try:
        items = list(read(ASSISTANCE, path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rows, rejected = split(items)
    assert sorted(rows) == [1, 3] and rejected == [(2, None, "line_too_long")]
    assert peak < 10 << 20  # a line is read a bounded piece at a time (the encoding vote's chunks too)


def test_utf16_jsonl_is_quarantined(tmp_path):
    text = "\n".join(json.dumps(event(f"SR{i}")) for i in range(3)) + "\n"
    for i, content in enumerate((text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be"))):
        path = write(tmp_path, content, f"{i}.jsonl")
        with pytest.raises(UnreadableFile) as err:
            list(read(ASSISTANCE, path))
        assert err.value.reason_code == "bad_encoding" and path.name in str(err.value)


def test_malformed_line_keeps_only_values_of_non_personal_columns(tmp_path):
    line = ('{"service_request_id": "SR7", "point_code": "' + POINT + '", "姓名": "张三", '
            '"requester_phone": "13812345678", "备注": "住3号楼，电话13912345678", "channel": "电话", "event": "recei')
    path = jsonl(tmp_path, [line])
    [r] = list(read(ASSISTANCE, path))
    assert (r.row_number, r.reason_code) == (1, "malformed_json")
    assert r.raw_record == {"service_request_id": "SR7", "point_code": POINT, "channel": "电话", "event": "recei",
                            "_other_keys": ["姓名", "requester_phone", "备注"], "_line_bytes": len(line.encode()) + 1}
    kept = json.dumps(r.raw_record, ensure_ascii=False) + r.message
    assert "张三" not in kept and "1381234" not in kept and "1391234" not in kept and "3号楼" not in kept


def test_rejected_parsed_object_keeps_unknown_keys_by_name_only(tmp_path):
    path = jsonl(tmp_path, [json.dumps(event("SR1", 姓名="李四", 住址="和平小区3号楼", handler={"x": 1}),
                                       ensure_ascii=False)])
    [r] = list(read(ASSISTANCE, path))
    assert r.reason_code == "nested_value"
    assert r.raw_record == {**event("SR1"), "requester_name": r.raw_record["requester_name"], "handler": "<dict>",
                            "_other_keys": ["住址"]}
    assert r.raw_record["requester_name"].startswith("hmac:") and "和平小区" not in json.dumps(r.raw_record)


# ---------------------------------------------------------------- JSON Lines: keys


def test_chinese_and_nfkc_keys_map_like_headers(tmp_path):
    lines = [
        json.dumps({"工单号": "SR1", "帮代办点编码": POINT, "事件": "resolved", "事件时间": "2023-11-06T09:00:00+08:00",
                    "事项类别": "维修", "渠道": "电话", "办理人": "网格员", "服务人次": 2, "满意度": 5,
                    "姓名": "王伟", "电话": "13812345678", "备注": "已修好"}, ensure_ascii=False),
        json.dumps({"Service_Request_ID": "SR2", "ＰＯＩＮＴ＿ＣＯＤＥ": POINT, " Event ": "received",
                    "event at": "2023-11-06T10:00:00+08:00"}, ensure_ascii=False),
    ]
    rows, rejected = split(read(ASSISTANCE, jsonl(tmp_path, lines)))
    assert rejected == []
    assert rows[1] == values({"service_request_id": "SR1", "point_code": POINT, "event": "resolved",
                              "event_at": "2023-11-06T09:00:00+08:00", "service_code": "维修", "channel": "电话",
                              "handler": "网格员", "people_served": 2, "satisfaction": 5, "requester_name": "王伟",
                              "requester_phone": "13812345678", "status_notes": "已修好"})
    assert rows[2] == values(event("SR2", event_at="2023-11-06T10:00:00+08:00"))


def test_open311_georeport_records_map_to_the_contract(tmp_path):
    geo = {"service_request_id": "SR1", "point_code": POINT, "service_code": "001", "service_name": "维修",
           "description": "楼道灯坏了", "agency_responsible": "住建局", "service_notice": "三日内处理",
           "requested_datetime": "2023-11-06T08:00:00+08:00", "lat": 37.8, "long": 112.5, "address": "和平街1号",
           "media_url": "http://example.invalid/a.jpg"}
    lines = [
        {**geo, "status": "open"},
        {**geo, "service_request_id": "SR2", "status": "closed", "updated_datetime": "2023-11-06T18:00:00+08:00",
         "status_notes": "已修好"},
        {**geo, "service_request_id": "SR3", "event": "dispatched", "updated_datetime": "2023-11-06T09:30:00+08:00",
         "service_code": "维修", "service_name": "路灯维修", "first_name": "伟", "last_name": "王", "phone": "13812345678"},
        {key: v for key, v in geo.items() if key != "service_name"} | {"service_request_id": "SR4"},
        {**geo, "status": "open", **dict.fromkeys(jsonlines.GEOREPORT_DROPPED, "13812345678 x")},  # none kept
    ]
    rows, rejected = split(read(ASSISTANCE, jsonl(tmp_path, [json.dumps(x, ensure_ascii=False) for x in lines])))
    assert rejected == []
    base = {"point_code": POINT, "service_code": "维修", "agency_responsible": "住建局", "status_notes": "楼道灯坏了"}
    assert rows == {
        1: values({**base, "service_request_id": "SR1", "event": "received", "event_at": "2023-11-06T08:00:00+08:00"}),
        2: values({**base, "service_request_id": "SR2", "event": "closed", "event_at": "2023-11-06T18:00:00+08:00",
                   "status_notes": "楼道灯坏了；已修好"}),
        3: values({**base, "service_request_id": "SR3", "event": "dispatched", "event_at": "2023-11-06T09:30:00+08:00",
                   "requester_name": "王伟", "requester_phone": "13812345678"}),
        4: values({**base, "service_request_id": "SR4", "event": "received", "event_at": "2023-11-06T08:00:00+08:00",
                   "service_code": "001"}),  # GeoReport's id with no name: the encoder rejects it as bad_enum
        5: values({**base, "service_request_id": "SR1", "event": "received", "event_at": "2023-11-06T08:00:00+08:00"}),
    }
    encoder = RowEncoder(ASSISTANCE, POINT, "p.jsonl")
    out = [encoder.encode(rn, v) for rn, v in sorted(rows.items())]
    assert [o.reason_code if isinstance(o, Rejection) else None for o in out] == [None, None, None, "bad_enum",
                                                                                  "duplicate_record"]  # row 5 is row 1


# ---------------------------------------------------------------- JSON arrays


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_file_is_read_as_the_array_it_is(tmp_path, indent):
    records = [event(f"SR{i}") for i in range(1, 6)]
    records[2] = {**records[2], "event": "received", "service_request_id": "SR3"}
    text = json.dumps(records, indent=indent, ensure_ascii=False)
    text = text.replace('"service_request_id": "SR4"', '"service_request_id": "SR4", "event": "closed"', 1)
    path = write(tmp_path, ("\ufeff" + text + "\n").encode(), f"{POINT}.jsonl")
    rows, rejected = split(read(ASSISTANCE, path))
    assert rejected == [(4, "event", "duplicate_key")]
    assert rows == {i: values(event(f"SR{i}")) for i in (1, 2, 3, 5)}


def test_pretty_printed_objects_one_after_another_are_read_as_records(tmp_path):
    """`jq .` output: each object over several lines, the first line a lone {; not thousands of rejections."""
    records = [event(f"SR{i}") for i in range(1, 4)]
    text = "\n".join(json.dumps(r, indent=2) for r in records) + "\n"
    rows, rejected = split(read(ASSISTANCE, write(tmp_path, text.encode(), f"{POINT}.jsonl")))
    assert rejected == [] and rows == {i: values(event(f"SR{i}")) for i in (1, 2, 3)}
    with pytest.raises(UnreadableFile) as err:  # cut off in the third object
        list(read(ASSISTANCE, write(tmp_path, text[:-20].encode(), "cut.jsonl")))
    assert err.value.reason_code == "malformed_json_file" and "at record 3" in str(err.value)


def test_json_arrays_that_cannot_be_read_are_quarantined_as_one_file(tmp_path, monkeypatch):
    records = json.dumps([event(f"SR{i}") for i in range(1, 4)])
    cases = {
        "cut": (records[:-30], "malformed_json_file"),
        "deep": ("[" + '{"a":' * 50_000 + "1" + "}" * 50_000 + "]", "malformed_json_file"),
        "trailing": (records + "\n" + json.dumps(event()), "malformed_json_file"),
        "large": ("[" + ",".join([json.dumps(event())] * 5000) + "]", "json_file_too_large"),
    }
    monkeypatch.setattr(jsonlines, "MAX_ARRAY_BYTES", 400_000)  # the deep one is 300,002 bytes
    for name, (text, reason) in cases.items():
        path = write(tmp_path, text.encode(), f"{name}.jsonl")
        with pytest.raises(UnreadableFile) as err:
            list(read(ASSISTANCE, path))
        assert err.value.reason_code == reason and path.name in str(err.value), name
    assert split(read(ASSISTANCE, write(tmp_path, b"[ ]\n", "empty.jsonl"))) == ({}, [])
    rows, rejected = split(read(ASSISTANCE, write(tmp_path, b'[1, {"event": "closed"}]', "odd.jsonl")))
    assert rejected == [(1, None, "malformed_json")] and list(rows) == [2]


def test_storable_text_and_safe_record():
    assert storable_text("a\x00b") == "a\\x00b"
    assert storable_text("现\udccf金") == "现\\xcf金"
    assert storable_text("x\ud800") == "x\\ud800"
    assert storable_text("普通文本") == "普通文本"
    record = safe_record({"record_id": "R\x001", "diner_card": "62\udcff"}, {"diner_card": "card"})
    assert record["record_id"] == "R\\x001" and record["diner_card"].startswith("hmac:")
