"""What happened to a service day, in plain Chinese, for the morning email: whether it was published
or blocked (and by which checks), which checks only warned, which reporters' files were held or
quarantined, and which reporters sent nothing, each reporter by name (reference data:
dbt_project/seeds), not by code alone.

Everything here is read from the load ledger, the publish outcome and the seed files, never from the
marts, so that the email can say it even on a first night with nothing published. The pure functions
(names, scopes, lines) take plain values and are unit-tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from warehouse import reference

SOURCE_NAMES = {"streets": "街道小区台账", "canteens": "社区食堂", "assistance": "帮代办点"}
RECEIVED = ("loaded", "replaced", "skipped_duplicate", "held")  # the reporter did send a file
SHOWN = 5  # reporters named per line; the rest are counted


@dataclass(frozen=True)
class LedgerFile:
    source: str
    reporter_code: str
    file_name: str
    status: str
    error: str | None = None
    late: bool = False


@dataclass
class NightNotes:
    """The night's status lines for one scope, and per source: expected, received, late, missing."""
    lines: list[str] = field(default_factory=list)
    submissions: list[dict] = field(default_factory=list)


def seed_rows(name: str) -> list[dict]:
    """The rows of a dbt seed in force (warehouse.reference.seed_rows: a province deployment's other cities
    beside Taiyuan's): the reference names the emails use."""
    return list(reference.seed_rows(name))


@cache
def reporters() -> dict[str, dict[str, str]]:
    """source -> reporter code -> display name, for every expected reporter. Assistance points have no
    name of their own in the reference data: they are named after their street and number."""
    streets = {r["street_code"]: r["street_name"] for r in seed_rows("streets")}
    return {
        "streets": dict(streets),
        "canteens": {r["canteen_code"]: r["canteen_name"] for r in seed_rows("canteens")},
        "assistance": {r["point_code"]: f"{streets.get(r['street_code'], r['street_code'])}帮代办点"
                                        f"{int(r['point_code'][-3:])}号" for r in seed_rows("assistance_points")},
    }


def reporter_street(source: str, code: str) -> str:
    """The street code of a reporter code (a street's own code; CT/AP + street + 3 digits)."""
    return code if source == "streets" else code[2:11]


def in_scope(street_code: str, level: str, scope_code: str) -> bool:
    if level == "city":  # the city's own streets: a province deployment's ledger holds eleven cities'
        return reference.city_of(street_code[:6]) == scope_code
    return street_code.startswith(scope_code) if level == "district" else street_code == scope_code


def named(source: str, code: str) -> str:
    name = reporters().get(source, {}).get(code)
    return f"{name}（{code}）" if name else f"未登记的报送单位 {code}"


def _listed(items: list[str]) -> str:
    return "、".join(items[:SHOWN]) + (f"等 {len(items)} 个" if len(items) > SHOWN else "")


def publication_lines(outcome: dict) -> list[str]:
    """Whether the day was published, and what blocked or warned, by the checks' Chinese descriptions."""
    issues = outcome.get("issues") or []
    blocking = [i for i in issues if i.get("severity") == "fail"]
    warning = [i for i in issues if i.get("severity") == "warn"]
    status = outcome.get("status")
    if status == "published":
        lines = ["本服务日数据已通过检查并发布。"]
    elif status == "blocked":
        reasons = "；".join(_issue(i) for i in blocking) or "；".join(outcome.get("failed_zh") or []) or "构建未完成"
        lines = [f"本服务日数据未发布（被阻断），原因：{reasons}。"]
    elif status == "failed":
        lines = ["本服务日数据未能发布（发布步骤故障，数据管理员正在处理）。"]
    else:
        lines = ["本服务日数据尚未发布。"]
    if warning:
        lines.append("数据提示（不影响发布，相关记录未计入指标）：" + "；".join(_issue(i) for i in warning) + "。")
    return lines


def _issue(issue: dict) -> str:
    text, count = issue.get("zh") or issue.get("label", ""), issue.get("unexpected_count")
    return f"{text}（{count} 条）" if count else text


def file_lines(files: list[LedgerFile], level: str, scope_code: str) -> list[str]:
    """Held and quarantined files of reporters in the scope, by name."""
    lines = []
    for f in files:
        if not in_scope(reporter_street(f.source, f.reporter_code), level, scope_code):
            continue
        if f.status == "held":
            lines.append(f"暂缓采用：{SOURCE_NAMES.get(f.source, f.source)} {named(f.source, f.reporter_code)}"
                         "的文件待数据管理员核实，核实前沿用其上一次的数据。")
        elif f.status == "quarantined":
            code = (f.error or "").split(":", 1)[0].strip()
            lines.append(f"已隔离：{SOURCE_NAMES.get(f.source, f.source)} {named(f.source, f.reporter_code)}"
                         f"的文件（{f.file_name}）无法读取" + (f"（原因代码 {code}）" if code else "") + "，请重新报送。")
    return lines


def submissions(files: list[LedgerFile], level: str, scope_code: str) -> list[dict]:
    """Per source: reporters expected in the scope, received, late, and the missing ones by name."""
    out = []
    for source, names in reporters().items():
        expected = [c for c in names if in_scope(reporter_street(source, c), level, scope_code)]
        sent = {f.reporter_code for f in files if f.source == source and f.status in RECEIVED}
        late = {f.reporter_code for f in files if f.source == source and f.status in RECEIVED and f.late}
        missing = [c for c in expected if c not in sent]
        out.append({"source": source, "expected": len(expected), "received": len(expected) - len(missing),
                    "late": len(late & set(expected)), "missing": [named(source, c) for c in missing]})
    return out


def submission_line(s: dict) -> str:
    line = f"{SOURCE_NAMES.get(s['source'], s['source'])}：应报 {s['expected']}，已报 {s['received']}"
    if s.get("late"):
        line += f"，迟报 {s['late']}"
    if s.get("missing"):
        line += f"，未报 {len(s['missing'])}（{_listed(s['missing'])}）"
    return line


def notes(outcome: dict, files: list[LedgerFile], level: str, scope_code: str) -> NightNotes:
    return NightNotes(lines=publication_lines(outcome) + file_lines(files, level, scope_code),
                      submissions=submissions(files, level, scope_code))


def problems_by_street(files: list[LedgerFile], level: str, scope_code: str) -> list[dict]:
    """Per street of the scope with a reporter that sent nothing usable or was held: the missing ones
    (no file, or a file that could not be read) and the held ones, all by name, street code order."""
    statuses: dict[tuple[str, str], set[str]] = {}
    for f in files:
        statuses.setdefault((f.source, f.reporter_code), set()).add(f.status)
    streets = reporters()["streets"]
    out: dict[str, dict] = {}
    for source, names in reporters().items():
        for code in names:
            street = reporter_street(source, code)
            if not in_scope(street, level, scope_code):
                continue
            seen = statuses.get((source, code), set())
            if "held" in seen:
                kind, what = "held", named(source, code)
            elif not seen & set(RECEIVED):  # as in submissions(): an unreadable file brings no data
                kind, what = "missing", named(source, code) + ("（文件无法读取）" if "quarantined" in seen else "")
            else:
                continue
            entry = out.setdefault(street, {"street_code": street, "street_name": streets.get(street, street),
                                            "missing": [], "held": []})
            entry[kind].append(f"{SOURCE_NAMES[source]} {what}")
    return [out[k] for k in sorted(out)]
