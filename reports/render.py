"""The morning summary as zh-CN HTML (inline CSS, table layout, no scripts or remote resources)
and a plain-text alternative."""

from __future__ import annotations

from html import escape

from reports.figures import DayFigures, Scope

# (column, label, kind): kind decides formatting
KEY_FIGURES = [
    ("cases_received", "受理事项（件）", "int"),
    ("cases_resolved", "办结事项（件）", "int"),
    ("overnight_resolution_rate", "解决不隔夜率（前一日受理）", "rate"),
    ("cases_escalated", "吹哨上报部门（件）", "int"),
    ("people_served", "帮代办服务人次", "int"),
    ("canteen_person_times", "社区食堂服务人次", "int"),
    ("canteen_distinct_diners", "食堂就餐人数", "int"),
    ("compounds", "小区总数（个）", "int"),
    ("property_coverage_rate", "物业服务覆盖率", "rate"),
    ("party_org_coverage_rate", "党组织覆盖率", "rate"),
    ("owners_committee_coverage_rate", "业委会（物管会）覆盖率", "rate"),
]


def fmt(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "rate":
        return f"{float(value) * 100:.1f}%"
    return f"{round(float(value)):,}"


def subject(figures: DayFigures, scope: Scope) -> str:
    return f"【社区治理日报】{figures.service_date.isoformat()} {scope.name}"


def render_text(figures: DayFigures, scope: Scope, dq_line: str) -> str:
    lines = [subject(figures, scope), ""]
    if figures.today is None:
        lines.append("本服务日暂无数据。")
    else:
        for key, label, kind in KEY_FIGURES:
            lines.append(f"{label}：{fmt(figures.today.get(key), kind)}"
                         f"（前一日 {fmt((figures.previous or {}).get(key), kind)}，"
                         f"近7日均值 {fmt((figures.week_avg or {}).get(key), kind)}）")
    lines += ["", f"数据质量：{dq_line}", "", "本邮件由社区治理数据平台自动生成，不含个人信息。"]
    return "\n".join(lines)


def render_html(figures: DayFigures, scope: Scope, dq_line: str) -> str:
    cell = "padding:6px 10px;border-bottom:1px solid #e5e7eb;font-size:14px;"
    head = "padding:6px 10px;background:#b91c1c;color:#ffffff;font-size:13px;text-align:left;"
    rows = []
    if figures.today is not None:
        for key, label, kind in KEY_FIGURES:
            rows.append(
                f'<tr><td style="{cell}">{escape(label)}</td>'
                f'<td style="{cell}text-align:right;font-weight:bold;">{fmt(figures.today.get(key), kind)}</td>'
                f'<td style="{cell}text-align:right;color:#6b7280;">{fmt((figures.previous or {}).get(key), kind)}</td>'
                f'<td style="{cell}text-align:right;color:#6b7280;">{fmt((figures.week_avg or {}).get(key), kind)}</td>'
                "</tr>"
            )
    body = "".join(rows) or f'<tr><td colspan="4" style="{cell}">本服务日暂无数据。</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{escape(subject(figures, scope))}</title></head>
<body style="margin:0;padding:0;background:#f3f4f6;font-family:'PingFang SC','Microsoft YaHei',sans-serif;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:640px;margin:0 auto;background:#ffffff;">
<tr><td style="padding:16px;background:#b91c1c;color:#ffffff;font-size:18px;font-weight:bold;">
社区治理日报 · {escape(scope.name)} · {figures.service_date.isoformat()}</td></tr>
<tr><td style="padding:12px 16px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;">
<tr><th style="{head}">指标</th><th style="{head}text-align:right;">当日</th>
<th style="{head}text-align:right;">前一日</th><th style="{head}text-align:right;">近7日均值</th></tr>
{body}
</table></td></tr>
<tr><td style="padding:8px 16px;font-size:13px;color:#374151;">数据质量：{escape(dq_line)}</td></tr>
<tr><td style="padding:8px 16px 16px;font-size:12px;color:#9ca3af;">本邮件由社区治理数据平台自动生成，不含个人信息。</td></tr>
</table></body></html>"""
