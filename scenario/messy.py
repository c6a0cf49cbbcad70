"""`--messy` mode: what real street offices, canteens and assistance points send.

Built on the clean records of `scenario.generator.Scenario`; the clean output of `write_night` is
not changed. `write_messy_night(scenario, day, landing)` writes the night's files with a few
reporters' files made messy, and returns a `MessyManifest` saying, file by file, what a correct
loader must record (status, rows read/loaded/rejected, reason codes), so tests take their
expectations from the generator rather than from the loader.

The cases, each on a reporter chosen deterministically from (seed, day):

- streets, `titles_merged_total`: a workbook with two title rows above a two-row header (vertically
  merged column names, horizontally merged group titles), compound and community codes stored as
  Excel numbers, full-width digits, dates as 2023年3月5日 / 2023/3/5 / Excel serials / date cells,
  a blank row and a 合计 total row (neither is a data row: not counted as read), plus a row with
  households "约300" (bad_integer), a row with an unknown property mode (bad_enum) and one row
  repeated verbatim (duplicate_record);
- streets, `unreadable_workbook`: a truncated .xlsx: quarantined, the night goes on;
- canteens, `gb18030`: GB18030 bytes, slashed and full-width timestamps, ¥ amounts, full-width ages,
  a meal 夜宵 (bad_enum) and a repeated record (duplicate_record);
- canteens, `utf8_bom`: UTF-8 with BOM, a row of another canteen (wrong_reporter), a negative
  subsidy (negative_value) and a served_at of 昨天中午 (bad_timestamp);
- canteens, `utf16`: an Excel "Unicode text" export (UTF-16): neither UTF-8 nor GB18030, quarantined;
- canteens, `late`: the file is missing when night `day` runs. The service day comes from the
  folder, so a late file is delivered into its own day's folder after that night ran: it is written
  by the messy generation of the next day (`day + 1`), and is loaded when night `day` is re-run
  (a backfill, or the DAG's re-load of the previous day);
- canteens, `revised`: night `day` gets a version missing its last two records; the next day's
  messy generation writes the corrected version into `day`'s folder over it, and re-running night
  `day` replaces the earlier version's rows;
- assistance, `truncated_jsonl`: a repeated event line (duplicate_record), an event with
  satisfaction 7 (out_of_range), full-width people_served, and a last line cut off mid-object with
  no newline (malformed_json: that event is rejected, not lost).

So `write_messy_night(s, D, L)` writes night D (with D's late file withheld and D's revised file in
its first version) and also delivers D-1's late file and D-1's revised file into D-1's folder;
those appear in the manifest with `phase="after"` and `service_date=D-1`.
"""

from __future__ import annotations

import csv
import random
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from scenario.generator import (
    CANTEEN_HEADERS,
    STREET_HEADERS,
    Canteen,
    Scenario,
    street_row_values,
)
from scenario.writers import canteen_csv_text, event_line, meal_values, save_stable, street_workbook
from warehouse import reference as ref

FULL_WIDTH = str.maketrans("0123456789.-:/", "０１２３４５６７８９．－：／")
EXCEL_EPOCH = date(1899, 12, 30)


@dataclass
class FileCase:
    """What the loader must record for one delivered file."""

    kind: str
    source: str
    service_date: date
    reporter: str
    path: Path
    status: str  # status of this file's first load: loaded or quarantined
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    reasons: Counter = field(default_factory=Counter)  # reason_code -> rejected rows
    quarantine_reason: str | None = None
    phase: str = "night"  # "night": present when night `service_date` runs; "after": delivered later
    replaces: bool = False  # a revised file: its load replaces the earlier version's rows
    note: str = ""


@dataclass
class MessyManifest:
    day: date
    cases: list[FileCase] = field(default_factory=list)
    withheld: list[Path] = field(default_factory=list)  # late files of `day`, absent from its folder tonight
    clean_files: int = 0  # clean files written alongside (full mode)

    def by_kind(self, kind: str, phase: str = "night") -> FileCase:
        return next(c for c in self.cases if c.kind == kind and c.phase == phase)

    def for_night(self) -> list[FileCase]:
        return [c for c in self.cases if c.phase == "night"]

    def summary(self) -> str:
        lines = [f"messy night {self.day}: {len(self.cases)} messy files"
                 + (f" among {self.clean_files} clean ones" if self.clean_files else "")]
        for c in self.cases:
            lines.append(f"  {c.phase:5} {c.service_date} {c.source:10} {c.path.name:22} {c.kind:20} -> {c.status}"
                         f" read {c.rows_read} loaded {c.rows_loaded} rejected {c.rows_rejected}"
                         + (f" {dict(c.reasons)}" if c.reasons else "")
                         + (f" ({c.quarantine_reason})" if c.quarantine_reason else ""))
        return "\n".join(lines)


@dataclass(frozen=True)
class Choice:
    streets: tuple[str, str]  # titles_merged_total, unreadable_workbook
    canteens: dict[str, Canteen]  # kind -> canteen


def choose(scenario: Scenario, day: date) -> Choice:
    rng = random.Random(f"{scenario.seed}:messy:{day.isoformat()}")
    streets = sorted({c.street_code for c in scenario.compounds})
    s1, s2 = rng.sample(streets, 2)
    kinds = ("gb18030", "utf8_bom", "utf16", "late", "revised")
    canteens = dict(zip(kinds, rng.sample(scenario.canteens, len(kinds)), strict=True))
    return Choice((s1, s2), canteens)


def write_messy_night(scenario: Scenario, day: date, landing: Path, full: bool = True) -> MessyManifest:
    """Write night `day` in messy form (and deliver `day - 1`'s late and revised files).

    full=True writes the whole clean night first and makes the chosen reporters' files messy
    (what `gov-warehouse generate --messy` does); full=False writes only the messy files,
    which is what the tests use to stay fast.
    """
    manifest = MessyManifest(day=day)
    choice = choose(scenario, day)
    if full:
        manifest.clean_files = len(scenario.write_night(day, landing).files)
    registry = scenario.registry_rows(day)
    _streets_titles_merged_total(manifest, registry, choice.streets[0], day, landing)
    _streets_unreadable(manifest, registry, choice.streets[1], day, landing)
    c = choice.canteens
    _canteen_gb18030(manifest, scenario, c["gb18030"], day, landing)
    _canteen_bom(manifest, scenario, c["utf8_bom"], c["gb18030"], day, landing)
    _canteen_utf16(manifest, scenario, c["utf16"], day, landing)
    late = _canteen_path(landing, day, c["late"].code)
    late.unlink(missing_ok=True)  # not delivered tonight
    manifest.withheld.append(late)
    _canteen_revised_first(manifest, scenario, c["revised"], day, landing)
    _assistance_truncated(manifest, scenario, day, landing)
    # what arrives after night day-1 ran: its late file and its revised file
    before = day - timedelta(days=1)
    previous = choose(scenario, before).canteens
    _canteen_late(manifest, scenario, previous["late"], before, landing)
    _canteen_revised_second(manifest, scenario, previous["revised"], before, landing)
    return manifest


# ---------------------------------------------------------------- streets


def _messy_street_values(r: dict, i: int) -> list:
    v = street_row_values(r)
    # codes as Excel numbers (what happens when a clerk retypes them), or in full-width digits
    v[0] = int(r["compound_code"]) if i % 3 == 0 else (r["compound_code"].translate(FULL_WIDTH) if i % 3 == 1
                                                        else r["compound_code"])
    v[2] = int(r["community_code"]) if i % 2 == 0 else float(r["community_code"])
    if i % 4 == 1:
        v[3] = str(r["households"]).translate(FULL_WIDTH)
    if i % 5 == 2:
        v[4] = f"{r['building_area_m2']:,.2f}"
    if r["subsidy_start_month"]:
        m = r["subsidy_start_month"]
        v[8] = f"{m.year}年{m.month}月" if i % 2 else m
    since = r["party_org_since"]
    if since:
        v[10] = [f"{since.year}年{since.month}月{since.day}日", f"{since.year}/{since.month}/{since.day}",
                 (since - EXCEL_EPOCH).days, datetime.combine(since, datetime.min.time()),
                 since.isoformat().translate(FULL_WIDTH)][i % 5]
    return v


def _streets_titles_merged_total(manifest: MessyManifest, registry: list[dict], street: str, day: date,
                                 landing: Path) -> None:
    rows = [r for r in registry if r["street_code"] == street]
    district = ref.district_by_code(street[:6])
    street_name = district.streets[int(street[6:]) - 1]
    wb, ws = street_workbook("小区台账")
    width = len(STREET_HEADERS)
    ws.append([f"太原市{district.name}{street_name}小区（院落）基本情况台账"] + [None] * (width - 1))
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    ws.append([f"填报单位：{street_name}办事处", None, None, None, None, None, None, None, None, None, None,
               None, f"填报日期：{day.year}年{day.month}月{day.day}日", None, None])
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=8)
    # two-row header: columns 1-9 merged vertically, two groups merged horizontally above the rest
    upper = (STREET_HEADERS[:9] + ["党组织与自治组织", None, None, "网格力量", None, None]
             + [None] * (width - 15))  # the optional columns (issue 23) under no group
    lower = [None] * 9 + STREET_HEADERS[9:]
    ws.append(upper)
    ws.append(lower)
    for col in range(1, 10):
        ws.merge_cells(start_row=3, start_column=col, end_row=4, end_column=col)
    ws.merge_cells(start_row=3, start_column=10, end_row=3, end_column=12)
    ws.merge_cells(start_row=3, start_column=13, end_row=3, end_column=15)
    reasons: Counter = Counter()
    data_rows = 0
    for i, r in enumerate(rows):
        ws.append(_messy_street_values(r, i))
        data_rows += 1
        if i == 1:  # a clerk's estimate instead of a number
            bad = _messy_street_values(r, i)
            bad[3] = "约300"
            ws.append(bad)
            reasons["bad_integer"] += 1
            data_rows += 1
        if i == 2:  # a property mode outside the code list
            bad = _messy_street_values(r, i)
            bad[6] = "物业托管"
            ws.append(bad)
            reasons["bad_enum"] += 1
            data_rows += 1
        if i == 3:  # the same row pasted twice
            ws.append(_messy_street_values(r, i))
            reasons["duplicate_record"] += 1
            data_rows += 1
    ws.append([None] * width)
    ws.append(["合  计", None, None, sum(r["households"] for r in rows), None, sum(r["buildings"] for r in rows)])
    path = landing / "streets" / day.isoformat() / f"{street}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_stable(wb, path)  # byte-identical re-generation: the same night twice is a duplicate, not a revision
    rejected = sum(reasons.values())
    manifest.cases.append(FileCase("titles_merged_total", "streets", day, street, path, "loaded", data_rows,
                                   data_rows - rejected, rejected, reasons,
                                   note=f"{len(rows)} compounds, title rows, two-row merged header, 合计 row"))


def _streets_unreadable(manifest: MessyManifest, registry: list[dict], street: str, day: date,
                        landing: Path) -> None:
    wb, ws = street_workbook("小区台账")
    ws.append(STREET_HEADERS)
    for r in registry:
        if r["street_code"] == street:
            ws.append(street_row_values(r))
    path = landing / "streets" / day.isoformat() / f"{street}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_stable(wb, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the upload broke off half way
    assert not zipfile.is_zipfile(path)
    manifest.cases.append(FileCase("unreadable_workbook", "streets", day, street, path, "quarantined",
                                   quarantine_reason="unreadable_workbook", note="truncated upload"))


# ---------------------------------------------------------------- canteens


def _canteen_path(landing: Path, day: date, code: str) -> Path:
    path = landing / "canteens" / day.isoformat() / f"{code}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _canteen_gb18030(manifest: MessyManifest, scenario: Scenario, canteen: Canteen, day: date,
                     landing: Path) -> None:
    meals = scenario.canteen_meals(canteen, day)
    rows = []
    for i, r in enumerate(meals):
        v = meal_values(r)
        if i % 3 == 0:
            ts = r["served_at"]
            v[2] = f"{ts.year}/{ts.month}/{ts.day} {ts.hour}:{ts.minute:02d}:{ts.second:02d}"
        if i % 4 == 1:
            v[2] = v[2].translate(FULL_WIDTH)
            v[6] = v[6].translate(FULL_WIDTH)
        if i % 5 == 2:
            v[7] = "¥" + v[7]
        rows.append(v)
    bad = meal_values(meals[0])
    bad[3] = "夜宵"
    rows.insert(1, bad)
    rows.insert(3, list(rows[2]))  # the same record twice
    path = _canteen_path(landing, day, canteen.code)
    path.write_bytes(canteen_csv_text(rows).encode("gb18030"))
    reasons = Counter({"bad_enum": 1, "duplicate_record": 1})
    manifest.cases.append(FileCase("gb18030", "canteens", day, canteen.code, path, "loaded", len(rows),
                                   len(meals), 2, reasons, note="GB18030, slashed/full-width timestamps"))


def _canteen_bom(manifest: MessyManifest, scenario: Scenario, canteen: Canteen, other: Canteen, day: date,
                 landing: Path) -> None:
    meals = scenario.canteen_meals(canteen, day)
    rows = [meal_values(r) for r in meals]
    wrong = meal_values(scenario.canteen_meals(other, day)[0])  # a row of another canteen pasted in
    negative = meal_values(meals[1])
    negative[0] += "-R"
    negative[8] = "-3.00"
    yesterday = meal_values(meals[2])
    yesterday[0] += "-Y"
    yesterday[2] = "昨天中午"
    rows[2:2] = [wrong, negative, yesterday]
    path = _canteen_path(landing, day, canteen.code)
    path.write_bytes(canteen_csv_text(rows).encode("utf-8-sig"))
    reasons = Counter({"wrong_reporter": 1, "negative_value": 1, "bad_timestamp": 1})
    manifest.cases.append(FileCase("utf8_bom", "canteens", day, canteen.code, path, "loaded", len(rows),
                                   len(meals), 3, reasons, note="UTF-8 with BOM"))


def _canteen_utf16(manifest: MessyManifest, scenario: Scenario, canteen: Canteen, day: date,
                   landing: Path) -> None:
    rows = [meal_values(r) for r in scenario.canteen_meals(canteen, day)]
    path = _canteen_path(landing, day, canteen.code)
    path.write_bytes(canteen_csv_text(rows).replace(",", "\t").encode("utf-16"))
    manifest.cases.append(FileCase("utf16", "canteens", day, canteen.code, path, "quarantined",
                                   quarantine_reason="bad_encoding", note="Excel 'Unicode text' export"))


def _canteen_late(manifest: MessyManifest, scenario: Scenario, canteen: Canteen, day: date,
                  landing: Path) -> None:
    meals = scenario.canteen_meals(canteen, day)
    path = _canteen_path(landing, day, canteen.code)
    path.write_text(canteen_csv_text([meal_values(r) for r in meals]), encoding="utf-8")
    manifest.cases.append(FileCase("late", "canteens", day, canteen.code, path, "loaded", len(meals), len(meals),
                                   phase="after", note="delivered after its night ran, into its own day's folder"))


def _canteen_revised_first(manifest: MessyManifest, scenario: Scenario, canteen: Canteen, day: date,
                           landing: Path) -> None:
    meals = scenario.canteen_meals(canteen, day)[:-2]
    path = _canteen_path(landing, day, canteen.code)
    path.write_text(canteen_csv_text([meal_values(r) for r in meals]), encoding="utf-8")
    manifest.cases.append(FileCase("revised", "canteens", day, canteen.code, path, "loaded", len(meals),
                                   len(meals), note="first version: last two records missing"))


def _canteen_revised_second(manifest: MessyManifest, scenario: Scenario, canteen: Canteen, day: date,
                            landing: Path) -> None:
    meals = scenario.canteen_meals(canteen, day)
    path = _canteen_path(landing, day, canteen.code)
    path.write_text(canteen_csv_text([meal_values(r) for r in meals]), encoding="utf-8")
    manifest.cases.append(FileCase("revised", "canteens", day, canteen.code, path, "loaded", len(meals),
                                   len(meals), phase="after", replaces=True,
                                   note="revised version: replaces the first version's rows"))


# ---------------------------------------------------------------- assistance


def _assistance_truncated(manifest: MessyManifest, scenario: Scenario, day: date, landing: Path) -> None:
    events = scenario.events(day)
    by_point: dict[str, list[dict]] = {}
    for e in events:
        by_point.setdefault(e["point_code"], []).append(e)
    busy = sorted((code for code, evs in by_point.items() if len(evs) >= 3),
                  key=lambda code: (-len(by_point[code]), code))
    rng = random.Random(f"{scenario.seed}:messy-point:{day.isoformat()}")
    code = rng.choice(busy[:20])
    evs = by_point[code]

    lines = [event_line(e) for e in evs]
    full_width = {**evs[0], "people_served": str(evs[0]["people_served"]).translate(FULL_WIDTH)}
    lines[0] = event_line(full_width)
    lines.insert(1, lines[0])  # the same event sent twice
    lines.insert(2, event_line({**evs[1], "event": "closed", "satisfaction": 7}))
    last = lines[-1]
    text = "\n".join(lines[:-1]) + "\n" + last[: len(last) // 2]  # the upload broke off mid-line
    path = landing / "assistance" / day.isoformat() / f"{code}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    reasons = Counter({"duplicate_record": 1, "out_of_range": 1, "malformed_json": 1})
    manifest.cases.append(FileCase("truncated_jsonl", "assistance", day, code, path, "loaded", len(lines),
                                   len(evs) - 1, 3, reasons,
                                   note=f"{len(evs)} events; the last one cut off mid-line"))


# ---------------------------------------------------------------- volume


def write_volume_csv(scenario: Scenario, path: Path, rows: int, first_day: date = date(2023, 11, 6),
                     canteen: Canteen | None = None) -> int:
    """One canteen CSV of `rows` meal records (the canteen's records of consecutive days, record ids
    unique), for benchmarks and for killing a load half way through. Returns the rows written."""
    canteen = canteen or scenario.canteens[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    base_days = 28
    base = [(r, meal_values(r)) for k in range(base_days)
            for r in scenario.canteen_meals(canteen, first_day + timedelta(days=k))]
    written = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(CANTEEN_HEADERS)
        block = 0
        while written < rows:
            shift = timedelta(days=base_days * block)
            for r, v in base[: rows - written]:
                served = (r["served_at"] + shift).isoformat(" ", "seconds")[:19]
                w.writerow([f"{canteen.code}-{served[:10].replace('-', '')}-{r['record_id'][-5:]}", v[1], served,
                            *v[3:]])
            written += min(len(base), rows - written)
            block += 1
    return written


# ---------------------------------------------------------------- landing zone


SECRET_MARK = "NOT-A-LANDED-FILE"  # in the file a planted link points to: must never reach the warehouse
NOT_UTF8_NAME = b"\xb2\xe2\xca\xd4.csv"  # 测试.csv saved by a GBK system: not valid UTF-8


def write_landing_oddities(scenario: Scenario, day: date, landing: Path, outside: Path) -> list[FileCase]:
    """Lay over the night's canteen folder (already written) what a landing zone really collects, each a
    case the loader must refuse with a ledger row, its content unread: copies of a canteen's file (`… (1)`,
    `…_副本`), a prefix of the codes (`C.csv`), a name that is not UTF-8, a link to a file outside the
    landing zone (in `outside`, which holds that canteen's real file plus a marked line), a folder named
    like a file and a 0-byte file. The last three take the place of a genuine canteen's file."""
    folder = landing / "canteens" / day.isoformat()
    rng = random.Random(f"{scenario.seed}:landing:{day.isoformat()}")
    copied, linked, dir_named, empty = (c.code for c in rng.sample(scenario.canteens, 4))
    cases: list[FileCase] = []

    def case(kind: str, path: Path, reason: str, reporter: str) -> None:
        cases.append(FileCase(kind, "canteens", day, reporter, path, "quarantined", quarantine_reason=reason))

    for name in (f"{copied} (1).csv", f"{copied}_副本.csv"):
        (folder / name).write_bytes((folder / f"{copied}.csv").read_bytes())
        case("copy_name", folder / name, "copy_file_name", name[:-4])
    (folder / "C.csv").write_bytes((folder / f"{copied}.csv").read_bytes())
    case("prefix_name", folder / "C.csv", "unknown_reporter", "C")
    raw_name = folder.joinpath(NOT_UTF8_NAME.decode("utf-8", "surrogateescape"))
    raw_name.write_bytes((folder / f"{copied}.csv").read_bytes())
    case("not_utf8_name", raw_name, "name_not_utf8", NOT_UTF8_NAME[:-4].decode("utf-8", "backslashreplace"))

    outside.mkdir(parents=True, exist_ok=True)
    target = outside / f"{linked}.csv"
    target.write_bytes((folder / f"{linked}.csv").read_bytes() + f"{SECRET_MARK},x,y\n".encode())
    (folder / f"{linked}.csv").unlink()
    (folder / f"{linked}.csv").symlink_to(target)
    case("symlink", folder / f"{linked}.csv", "symlink", linked)

    (folder / f"{dir_named}.csv").unlink()
    (folder / f"{dir_named}.csv").mkdir()
    case("directory", folder / f"{dir_named}.csv", "not_a_file", dir_named)

    (folder / f"{empty}.csv").write_bytes(b"")
    case("empty_file", folder / f"{empty}.csv", "empty_file", empty)
    return cases
