"""The sections of the street and district emails that officials act on, each built once as plain
strings (a Block) and rendered twice, as HTML and as text, so that the text part carries every
figure the HTML has. Tables only where their columns fit a 375 px phone; case lists are cards
(a line of what, a line of who), which wrap instead of scrolling sideways."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from reports.figures import ScopeReport

RED, GREY, LINE = "#b91c1c", "#6b7280", "#e5e7eb"
TCELL = f"padding:5px 4px;border-bottom:1px solid {LINE};font-size:13px;"
THEAD = f"padding:5px 4px;background:{RED};color:#ffffff;font-size:12px;text-align:left;"
NUM = "text-align:right;white-space:nowrap;"
COMMUNITY_COUNTS = ("cases_received", "cases_resolved", "cases_open", "overnight_cohort", "overnight_resolved",
                    "canteen_person_times")
TOTAL_LABELS = ("街道合计", "全区合计", "全市合计")  # a table's summing row, set in bold


@dataclass
class Block:
    title: str
    headers: list[str] = field(default_factory=list)  # a table; empty: `cards` or `lines`
    rows: list[list[str]] = field(default_factory=list)
    left: int = 1  # the table's leading text columns (left-aligned); the rest are figures
    cards: list[tuple[str, str]] = field(default_factory=list)  # (what, who) per case
    lines: list[str] = field(default_factory=list)
    empty: str = ""  # said when there is nothing to list
    note: str = ""
    link: tuple[str, str] | None = None  # (label, url) under the section, in both parts


def num(v) -> str:
    """A count as the emails show it: rounded, thousands separated; — when unknown."""
    return "—" if v is None else f"{round(float(v)):,}"


def pct(v) -> str:
    """A rate (0..1) as a percentage with one place; — when unknown."""
    return "—" if v is None else f"{float(v) * 100:.1f}%"


def _change(v, points: bool) -> str:
    if v is None:
        return "—"
    return f"{float(v) * 100:+.1f}" if points else f"{float(v):+.1f}"


def _local(ts) -> str:
    from warehouse.settings import TZ

    return ts.astimezone(TZ).strftime("%m-%d %H:%M")


def community_label(row: dict) -> str:
    """A community by its name (community_names seed, through dim_community); a code the seed does not
    name by the code's own number within its street; cases of no registered community as such."""
    if row.get("community_code") is None:
        return "未登记小区"
    return row.get("community_name") or f"社区{row['community_code'][-3:]}"


def street_blocks(report: ScopeReport) -> list[Block]:
    active = [r for r in report.communities if any(r[k] for k in COMMUNITY_COUNTS)]
    rows = [[community_label(r), num(r["cases_received"]), num(r["cases_resolved"]),
             num(r["cases_open"]), pct(_ratio(r["overnight_resolved"], r["overnight_cohort"])),
             num(r["canteen_person_times"])]
            for r in active]
    quiet = len(report.communities) - len(active)
    today = report.today or {}
    if report.communities:
        total = {k: sum(r[k] for r in report.communities) for k in COMMUNITY_COUNTS}
        rows.append(["街道合计", num(total["cases_received"]), num(total["cases_resolved"]), num(total["cases_open"]),
                     pct(_ratio(total["overnight_resolved"], total["overnight_cohort"])),
                     num(today.get("canteen_person_times"))])
    unplaced = report.canteen_unplaced
    blocks = [Block("分社区情况", ["社区", "受理", "办结", "未办结", "不隔夜率", "食堂人次"], rows,
                    empty="本服务日无分社区数据。",
                    note=(f"其余 {quiet} 个社区本服务日无事项、无食堂就餐。" if quiet else "")
                    + "食堂人次按食堂所在社区计；"
                    + (f"未登记所在社区的食堂 {unplaced:,} 人次只计入街道合计。" if unplaced
                       else "各食堂均已登记所在社区。"))]
    blocks.append(Block("隔夜未办结事项", cards=[_overdue_card(r) for r in report.overdue],
                        empty="无：前一日及更早受理的事项均已办结。",
                        note="受理后至次日9时仍未办结的事项，时长计至服务日24时，按受理先后排列。"))
    blocks.append(Block("吹哨待部门响应", cards=[_waiting_card(r) for r in report.waiting],
                        empty="无：已吹哨的事项均已得到部门办结。", note="按吹哨时间先后排列，最早的在前。"))
    blocks.append(problems_block(report))
    return blocks


def _overdue_card(r: dict) -> tuple[str, str]:
    what = f"已 {r['hours_open']} 小时 · {r['service_code']} · {r['compound_name'] or '未登记小区'}"
    handler = r["handler"] or ("部门" if r["escalated"] else "—")
    dept = r["agency_responsible"] if r["escalated"] else "未吹哨"
    return what, f"编号 {r['service_request_id']} · 受理 {_local(r['received_at'])} · 承办 {handler} · 吹哨部门 {dept}"


def _waiting_card(r: dict) -> tuple[str, str]:
    what = f"{r['agency_responsible'] or '未注明部门'} · 已等待 {r['hours_waiting']} 小时"
    return what, (f"{r['service_code']} · {r['compound_name'] or '未登记小区'} · 编号 {r['service_request_id']} · "
                  f"吹哨 {_local(r['escalated_at'])}")


def district_blocks(report: ScopeReport) -> list[Block]:
    ranking = Block("街道排名（解决不隔夜率、积压）", ["街道", "不隔夜率", "较近7日", "积压", "较近7日"],
                    [[r["street_name"], pct(r["overnight_resolution_rate"]), _change(r["rate_change"], True),
                      num(r["cases_backlog"]), _change(r["backlog_change"], False)] for r in report.ranking],
                    empty="本服务日无街道数据。",
                    note="按不隔夜率由低到高（无前一日受理的街道在后），同率按积压由多到少；"
                         "较近7日：不隔夜率差（百分点，前7日合计口径），积压差（件，前7日日均）。")
    worst = Block("未办结事项最多的小区", ["小区", "街道", "未办结", "其中隔夜"],
                  [[r["compound_name"] or r["compound_code"], r["street_name"] or "—", num(r["cases_open"]),
                    num(r["cases_overdue"])] for r in report.worst_compounds],
                  left=2, empty="无：本区所有事项均已办结。")
    return [ranking, worst, *report.party_grid, problems_block(report)]


def problems_block(report: ScopeReport) -> Block:
    lines = []
    for s in report.problems:
        parts = ([f"未报 {'、'.join(s['missing'])}"] if s["missing"] else []) + \
                ([f"暂缓采用 {'、'.join(s['held'])}"] if s["held"] else [])
        lines.append(f"{s['street_name']}：" + "；".join(parts))
    return Block("未报送或暂缓采用的报送单位", lines=lines, empty="无：所有报送单位均已按时报送。")


def _ratio(numerator, denominator) -> float | None:
    return None if not denominator else float(numerator) / float(denominator)


def blocks_for(report: ScopeReport) -> list[Block]:
    """The acting sections of a street or district email; without the day's figures, only who did not report."""
    if report.scope.level not in ("street", "district"):
        return []
    if report.today is None:
        return [problems_block(report)]
    if report.scope.level == "street":
        return street_blocks(report)
    if report.scope.level == "district":
        return district_blocks(report)
    return []


def block_text(block: Block) -> list[str]:
    lines = ["", f"{block.title}："]
    if block.headers:
        for row in block.rows:
            lines.append(f"  {row[0]}：" + "，".join(f"{h} {v}" for h, v in zip(block.headers[1:], row[1:],
                                                                              strict=True)))
    for what, who in block.cards:
        lines += [f"  {what}", f"    {who}"]
    lines += [f"  {line}" for line in block.lines]
    if not (block.rows or block.cards or block.lines):
        lines.append(f"  {block.empty}")
    elif block.note:
        lines.append(f"  （{block.note}）")
    if block.link:
        lines.append(f"  {block.link[0]}：{block.link[1]}")
    return lines


def block_html(block: Block) -> str:
    if block.rows:
        head = "".join(f'<th style="{THEAD}{NUM if i >= block.left else ""}">{escape(h)}</th>'
                       for i, h in enumerate(block.headers))
        body = "".join(_row_html(r, block.left) for r in block.rows)
        inner = ('<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
                 f'style="border-collapse:collapse;"><tr>{head}</tr>{body}</table>')
    elif block.cards:
        inner = "".join(f'<div style="padding:6px 0;border-bottom:1px solid {LINE};">'
                        f'<div style="font-size:14px;font-weight:bold;">{escape(what)}</div>'
                        f'<div style="font-size:12px;color:{GREY};word-break:break-all;">{escape(who)}</div></div>'
                        for what, who in block.cards)
    elif block.lines:
        inner = "".join(f'<div style="font-size:13px;padding:2px 0;">{escape(line)}</div>' for line in block.lines)
    else:
        inner = f'<div style="font-size:13px;color:{GREY};">{escape(block.empty)}</div>'
    if block.note and (block.rows or block.cards or block.lines):
        inner += f'<div style="font-size:12px;color:{GREY};padding-top:4px;">{escape(block.note)}</div>'
    if block.link:
        inner += (f'<div style="font-size:12px;padding-top:4px;"><a href="{escape(block.link[1])}" '
                  f'style="color:{RED};">{escape(block.link[0])}</a></div>')
    return inner


def _row_html(row: list[str], left: int) -> str:
    bold = "font-weight:bold;" if row[0] in TOTAL_LABELS else ""
    return "<tr>" + "".join(f'<td style="{TCELL}{NUM if i >= left else ""}{bold}">{escape(c)}</td>'
                            for i, c in enumerate(row)) + "</tr>"
