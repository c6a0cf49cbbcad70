"""The morning summary as zh-CN HTML (inline CSS, table layout, no scripts or remote resources)
and a plain-text alternative. Figures only: no personal data ever reaches this module."""

from __future__ import annotations

from html import escape

from reports.city import city_blocks
from reports.figures import ScopeReport
from reports.night import submission_line
from reports.sections import Block, block_html, block_text, blocks_for

LEVEL_NAMES = {"city": "全市", "district": "区县", "street": "街道"}
# (key, label, kind): kind decides formatting
KEY_FIGURES = [
    ("cases_received", "受理事项（件）", "int"),
    ("cases_resolved", "办结事项（件）", "int"),
    ("overnight_resolution_rate", "解决不隔夜率（前一日受理）", "rate"),
    ("in_grid_resolution_rate", "网格内解决率", "rate"),
    ("cases_escalated", "吹哨上报部门（件）", "int"),
    ("cases_backlog", "积压事项（件）", "int"),
    ("people_served", "帮代办服务人次", "int"),
    ("canteen_person_times", "社区食堂服务人次", "int"),
    ("property_coverage_rate", "物业服务覆盖率", "rate"),
    ("party_org_coverage_rate", "党组织覆盖率", "rate"),
    ("owners_committee_coverage_rate", "业委会（物管会）覆盖率", "rate"),
]
CHART_CID = "trend-chart"

RED, GREY, LINE = "#b91c1c", "#6b7280", "#e5e7eb"
# narrow padding: six columns of figures fit a 375 px phone
CELL = f"padding:6px 4px;border-bottom:1px solid {LINE};font-size:14px;"
HEAD = f"padding:6px 4px;background:{RED};color:#ffffff;font-size:12px;text-align:left;"
NUM = "text-align:right;"


def fmt(value, kind: str = "int") -> str:
    if value is None:
        return "—"
    if kind == "rate":
        return f"{float(value) * 100:.1f}%"
    return f"{round(float(value)):,}"


def subject(report: ScopeReport) -> str:
    return f"【社区治理日报】{report.service_date.isoformat()} {report.scope.name}"


def render_text(report: ScopeReport, dq_line: str, links: dict[str, str]) -> str:
    lines = [subject(report), ""]
    today, prev, week = report.today, report.previous or {}, report.week_avg or {}
    if today is None:
        lines.append(no_figures(report))
    else:
        for key, label, kind in KEY_FIGURES:
            lines.append(f"{label}：{fmt(today.get(key), kind)}（前一日 {fmt(prev.get(key), kind)}，"
                         f"近7日均值 {fmt(week.get(key), kind)}）")
    if report.breakdown:  # a district's streets (the city's districts: reports.city)
        lines += ["", "分区情况："]
        for r in report.breakdown:
            lines.append(f"  {r['name'] or r['unit']}：受理 {fmt(r['cases_received'])}，办结 {fmt(r['cases_resolved'])}，"
                         f"不隔夜率 {fmt(r['overnight_resolution_rate'], 'rate')}，积压 {fmt(r['cases_backlog'])}，"
                         f"食堂 {fmt(r['canteen_person_times'])} 人次")
    if report.days:
        lines += trend_lines(report)
    for block in acting_blocks(report):
        lines += block_text(block)
    if report.attention:
        lines += ["", "需关注的街道："]
        for r in report.attention:
            lines.append(f"  {r['street_name']}（{r['reason']}）：不隔夜率 {fmt(r['overnight_resolution_rate'], 'rate')}，"
                         f"积压 {fmt(r['cases_backlog'])}")
    if report.notes:
        lines += ["", "数据情况："] + [f"  {note}" for note in report.notes]
    if report.submissions:
        lines += ["", "报送情况："]
        for s in report.submissions:
            lines.append(f"  {submission_line(s)}")
    lines += ["", f"数据质量：{dq_line}"]
    lines += [f"{label}：{url}" for label, url in links.items()]
    lines += ["", "本邮件由社区治理数据平台自动生成，不含个人信息。"]
    return "\n".join(lines)


def acting_blocks(report: ScopeReport) -> list[Block]:
    """The sections an official acts on: the street's or district's (reports.sections), the city's (reports.city)."""
    return city_blocks(report) if report.scope.level == "city" else blocks_for(report)


def trend_days(report: ScopeReport) -> list:
    """The chart's days: the last 30, or from the first night with data when the history is shorter
    (a chart of empty days before the platform started would read as 30 days of nothing)."""
    from datetime import timedelta

    last30 = [report.service_date - timedelta(days=i) for i in range(29, -1, -1)]
    if not report.days:
        return last30
    return [d for d in last30 if d >= min(report.days)]


def trend_title(report: ScopeReport) -> str:
    days = trend_days(report)
    if len(days) >= 30:
        return "近30日趋势"
    return f"近{len(days)}日趋势（数据自{days[0].month}月{days[0].day}日起，不足30日）"


def trend_lines(report: ScopeReport) -> list[str]:
    """The chart's figures, for a reader whose client blocks images."""
    lines = ["", f"{trend_title(report)}："]
    for d in trend_days(report):
        r = report.days.get(d)
        lines.append(f"  {d.month}月{d.day}日：" + ("无数据" if r is None else
                     f"受理 {fmt(r['cases_received'])}，办结 {fmt(r['cases_resolved'])}，"
                     f"不隔夜率 {fmt(r['overnight_resolution_rate'], 'rate')}"))
    return lines


def no_figures(report: ScopeReport) -> str:
    if not report.published:
        return "尚无已发布的数据（平台首次运行，或至今没有一个服务日通过发布检查）。"
    return "本服务日暂无已发布的数据；趋势图为此前已发布的数据。"


def _key_figures_html(report: ScopeReport) -> str:
    today, prev, week = report.today, report.previous or {}, report.week_avg or {}
    if today is None:
        return f'<tr><td colspan="4" style="{CELL}">{escape(no_figures(report))}</td></tr>'
    rows = []
    for key, label, kind in KEY_FIGURES:
        rows.append(
            f'<tr><td style="{CELL}">{escape(label)}</td>'
            f'<td style="{CELL}{NUM}font-weight:bold;">{fmt(today.get(key), kind)}</td>'
            f'<td style="{CELL}{NUM}color:{GREY};">{fmt(prev.get(key), kind)}</td>'
            f'<td style="{CELL}{NUM}color:{GREY};">{fmt(week.get(key), kind)}</td></tr>'
        )
    return "".join(rows)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th style="{HEAD}{NUM if i else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td style="{CELL}{NUM if i else ""}">{escape(c)}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return ('<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
            f'style="border-collapse:collapse;"><tr>{head}</tr>{body}</table>')


def section_html(title: str, inner: str) -> str:
    """One section of the email's layout table: its title row, then its content row."""
    return (f'<tr><td style="padding:12px 16px 4px;font-size:15px;font-weight:bold;color:{RED};">{escape(title)}</td></tr>'
            f'<tr><td style="padding:0 16px 8px;">{inner}</td></tr>')


def render_html(report: ScopeReport, dq_line: str, links: dict[str, str], with_chart: bool = True) -> str:
    level = LEVEL_NAMES.get(report.scope.level, "")
    sections = [section_html("今日要点", _table(["指标", "当日", "前一日", "近7日均值"], []).replace(
        "</table>", _key_figures_html(report) + "</table>"))]
    if with_chart:
        sections.append(section_html(trend_title(report), f'<img src="cid:{CHART_CID}" width="600" alt="受理、办结与解决不隔夜率趋势" '
                                            'style="display:block;width:100%;max-width:600px;height:auto;border:0;">'))
    if report.breakdown:
        sections.append(section_html("分街道情况", _table(
            ["街道", "受理", "办结", "不隔夜率", "积压", "食堂人次"],
            [[r["name"] or r["unit"], fmt(r["cases_received"]), fmt(r["cases_resolved"]),
              fmt(r["overnight_resolution_rate"], "rate"), fmt(r["cases_backlog"]), fmt(r["canteen_person_times"])]
             for r in report.breakdown])))
    sections += [section_html(block.title, block_html(block)) for block in acting_blocks(report)]
    if report.attention:
        sections.append(section_html("需关注的街道", _table(
            ["街道", "原因", "不隔夜率", "积压"],
            [[r["street_name"], r["reason"], fmt(r["overnight_resolution_rate"], "rate"), fmt(r["cases_backlog"])]
             for r in report.attention])))
    if report.notes:
        sections.append(section_html("数据情况", "".join(
            f'<div style="font-size:13px;padding:2px 0;">{escape(note)}</div>' for note in report.notes)))
    if report.submissions:
        items = "".join(f'<div style="font-size:13px;padding:2px 0;">{escape(submission_line(s))}</div>'
                        for s in report.submissions)
        sections.append(section_html("报送情况", items))
    link_html = " · ".join(f'<a href="{escape(url)}" style="color:{RED};">{escape(label)}</a>' for label, url in links.items())
    sections.append(section_html("数据质量", f'<div style="font-size:13px;">{escape(dq_line)}</div>'
                                     f'<div style="font-size:12px;padding-top:4px;">{link_html}</div>'))
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(subject(report))}</title></head>
<body style="margin:0;padding:0;background:#f3f4f6;font-family:'PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:640px;margin:0 auto;background:#ffffff;">
<tr><td style="padding:16px;background:{RED};color:#ffffff;font-size:18px;font-weight:bold;">
社区治理日报 · {escape(report.scope.name)}{f"（{level}）" if level else ""}<br>
<span style="font-size:13px;font-weight:normal;">服务日 {report.service_date.isoformat()}</span></td></tr>
{"".join(sections)}
<tr><td style="padding:8px 16px 16px;font-size:12px;color:#9ca3af;">本邮件由社区治理数据平台自动生成，不含个人信息。</td></tr>
</table></body></html>"""
