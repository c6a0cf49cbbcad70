"""What a reporters' notice says: the text part (every fact), the HTML part (the same, as a table that
reads on a phone) and the .xlsx of the file's rejected rows. Pure functions of plain values; personal
fields never appear (reports.notice_rules.shown_value)."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from datetime import date

from reports.notice_rules import (
    COLUMN_NAMES,
    COLUMNS_BY_SOURCE,
    FEED_FILE_TYPES,
    FEED_NAMES,
    column_name,
    file_problem,
    row_problem,
    shown_value,
)

SHEET_ROWS = 10_000_000  # a workbook's row number: (sheet - 1) x 10,000,000 + the sheet's own row
ROWS_IN_TEXT = 50  # rows listed in the message itself; the attachment always has them all


@dataclass
class FileVersion:
    """One version of one reporter's file, as the load ledger has it, with its rejected rows."""

    load_id: int
    source: str
    reporter_code: str
    service_date: date
    file_name: str
    version: str
    status: str
    error: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows: list[dict] = field(default_factory=list)  # audit.rejected_rows of the load, by row number


@dataclass(frozen=True)
class Line:
    """One rejected row as the clerk reads it."""

    sheet: str | None
    row: int | None
    column: str
    wrong: str
    value: str
    todo: str

    @property
    def place(self) -> str:
        where = f"工作表“{self.sheet}”" if self.sheet else ""
        return f"{where}第 {self.row} 行" if self.row is not None else (where or "（行号未知）")

    @property
    def where(self) -> str:
        """Place and column: 工作表“小区台账”第 7 行，“户数”列 (a row rejected as a whole has no column)."""
        return f"{self.place}，“{self.column}”列" if self.column else self.place


def line_of(rejected: dict) -> Line:
    record = rejected.get("raw_record") or {}
    sheet, row = record.get("_sheet"), record.get("_sheet_row")
    if row is None and rejected.get("row_number") is not None:
        row = rejected["row_number"] % SHEET_ROWS if sheet else rejected["row_number"]
    column = rejected.get("column_name")
    wrong, todo = row_problem(rejected["reason_code"], column)
    return Line(sheet, row, column_name(column), wrong, shown_value(column, record.get(column)), todo)


def day_text(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def file_summary(f: FileVersion) -> str:
    what = f"{day_text(f.service_date)}的{FEED_NAMES[f.source]}文件 {f.file_name} "
    if f.status == "quarantined":
        return f"{what}整个文件未能导入，没有一行入库。"
    if f.status == "held":
        return f"{what}暂未入库（系统检查发现异常，需数据管理员核实）。"
    return (f"{what}已导入：{f.rows_loaded} 行已入库，{f.rows_rejected} 行有问题、未入库。"
            "请改正下列各行后，重新上传完整的文件（文件名不变），新文件会替换旧文件。")


def file_lines(f: FileVersion) -> tuple[str, str] | None:
    """(what was wrong, what to do) of a whole file, quarantined or held."""
    return file_problem(f.status, f.error) if f.status in ("quarantined", "held") else None


def problems_subject(name: str, files: list[FileVersion]) -> str:
    rows = sum(f.rows_rejected for f in files if f.status not in ("quarantined", "held"))
    whole = [f for f in files if f.status in ("quarantined", "held")]
    parts = ([f"{len(whole)} 个文件未入库"] if whole else []) + ([f"{rows} 行未入库"] if rows else [])
    return f"【数据报送问题通知】{name} {day_text(files[0].service_date)}：{'，'.join(parts)}"


def problems_text(name: str, code: str, files: list[FileVersion], attachment: str | None) -> str:
    out = [f"{name}（{code}）：", "", "您好！昨夜导入数据时，您报送的文件有以下问题，请尽快处理。", ""]
    for f in files:
        out.append(file_summary(f))
        whole = file_lines(f)
        if whole:
            out += [f"  问题：{whole[0]}", f"  怎么办：{whole[1]}",
                    f"  请把文件命名为 {f.reporter_code}{FEED_FILE_TYPES[f.source]} 后重新上传。"]
        for i, r in enumerate(line_of(x) for x in f.rows[:ROWS_IN_TEXT]):
            value = f"（填写的是“{r.value}”）" if r.value else ""
            out += [f"  {i + 1}. {r.where}：{r.wrong}{value}", f"     怎么改：{r.todo}"]
        if len(f.rows) > ROWS_IN_TEXT:
            out.append(f"  ……共 {len(f.rows)} 行，其余各行见附件。")
        out.append("")
    if attachment:
        out += [f"附件“{attachment}”列出了全部未入库的行（个人信息已隐去）。", ""]
    out += ["改正后重新上传即可，系统会在下一次导入时自动处理，并回复确认。",
            "此邮件由社区治理数据平台自动发送。如有疑问，请联系区数据管理员。"]
    return "\n".join(out)


def received_subject(name: str, files: list[FileVersion]) -> str:
    return f"【已收到，已入库】{name} {day_text(files[0].service_date)}"


def received_text(name: str, code: str, files: list[FileVersion]) -> str:
    out = [f"{name}（{code}）：", "", "已收到，已入库。"]
    out += [f"{day_text(f.service_date)}的{FEED_NAMES[f.source]}文件 {f.file_name}：{f.rows_loaded} 行全部入库。"
            for f in files]
    return "\n".join(out + ["", "谢谢！此邮件由社区治理数据平台自动发送。"])


def missing_subject(name: str, nights: int) -> str:
    return f"【数据报送提醒】{name}：已连续 {nights} 晚未收到报送文件"


def missing_text(name: str, code: str, source: str, since: date, nights: int) -> str:
    return "\n".join([
        f"{name}（{code}）：", "",
        f"从 {day_text(since)} 起，已连续 {nights} 晚没有收到您的{FEED_NAMES[source]}文件。",
        f"请每天上传 {code}{FEED_FILE_TYPES[source]}（文件名就是本单位编码）。如果当天确实没有数据，"
        "请告知区数据管理员。", "",
        "同一段连续未报送只提醒这一次。此邮件由社区治理数据平台自动发送。"])


def as_html(text: str) -> str:
    """A plain notice (received, missing) as HTML: its paragraphs."""
    return _page("".join("<p>" + "<br>".join(html.escape(x) for x in para.split("\n")) + "</p>"
                         for para in text.split("\n\n")))


def problems_html(name: str, code: str, files: list[FileVersion], attachment: str | None) -> str:
    """The problems notice as HTML: the same facts as its text part, each file's rows as a table."""
    esc = html.escape
    out = [f"<p>{esc(name)}（{esc(code)}）：</p><p>您好！昨夜导入数据时，您报送的文件有以下问题，请尽快处理。</p>"]
    for f in files:
        out.append(f"<h3 style='font-size:16px;margin:16px 0 4px'>{esc(f.file_name)}</h3><p>{esc(file_summary(f))}</p>")
        whole = file_lines(f)
        if whole:
            out.append(f"<p><b>问题：</b>{esc(whole[0])}<br><b>怎么办：</b>{esc(whole[1])}<br>"
                       f"请把文件命名为 {esc(f.reporter_code + FEED_FILE_TYPES[f.source])} 后重新上传。</p>")
        if f.rows:
            out.append(_rows_table([line_of(x) for x in f.rows[:ROWS_IN_TEXT]]))
        if len(f.rows) > ROWS_IN_TEXT:
            out.append(f"<p>……共 {len(f.rows)} 行，其余各行见附件。</p>")
    if attachment:
        out.append(f"<p>附件“{esc(attachment)}”列出了全部未入库的行（个人信息已隐去）。</p>")
    out.append("<p>改正后重新上传即可，系统会在下一次导入时自动处理，并回复确认。<br>"
               "<span style='color:#666'>此邮件由社区治理数据平台自动发送。如有疑问，请联系区数据管理员。</span></p>")
    return _page("".join(out))


def _rows_table(rows: list[Line]) -> str:
    """One block per row (a list, not a wide table): a phone 375 px wide reads it without scrolling."""
    esc = html.escape
    items = "".join(
        "<li style='margin:0 0 10px;padding:6px 8px;border-left:3px solid #c0392b;background:#fafafa'>"
        f"<b>{esc(r.where)}</b><br>问题：{esc(r.wrong)}"
        + (f"<br><span style='color:#666'>填写的是“{esc(r.value)}”</span>" if r.value else "")
        + f"<br>怎么改：{esc(r.todo)}</li>" for r in rows)
    return f"<ol style='padding-left:20px;word-break:break-word'>{items}</ol>"


def _page(body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
            "<body style='font-family:sans-serif;max-width:720px;margin:0 auto;padding:8px;line-height:1.6'>"
            f"{body}</body></html>")


def attachment_name(files: list[FileVersion]) -> str:
    f = files[0]
    return f"{f.reporter_code}_{f.service_date.isoformat()}_未入库行.xlsx"


def rejected_rows_xlsx(files: list[FileVersion]) -> bytes:
    """Every rejected row of `files`: where, what, what to do, then the row's fields (personal ones hidden)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "未入库的行"
    order = [k for f in files for k in COLUMNS_BY_SOURCE[f.source]]
    fields = [k for k in dict.fromkeys(order) if any(k in (x.get("raw_record") or {}) for f in files for x in f.rows)]
    ws.append(["文件", "工作表", "行号", "列", "问题", "怎么改", "填写的内容", "原因代码"]
              + [COLUMN_NAMES[k] for k in fields])
    for f in files:
        for x in f.rows:
            r, record = line_of(x), x.get("raw_record") or {}
            ws.append([f.file_name, r.sheet or "", r.row, r.column or "整行", r.wrong, r.todo, r.value, x["reason_code"]]
                      + [shown_value(k, record.get(k)) for k in fields])
    for col, width in zip("ABCDEFGH", (22, 12, 8, 14, 40, 40, 20, 18), strict=True):
        ws.column_dimensions[col].width = width
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
