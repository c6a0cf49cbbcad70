"""The sections of the city email (市级日报), built as Blocks (reports/sections.py) so that the text part
carries every figure the HTML has: the districts side by side on the district email's key figures (three
narrow tables, one row per district, that fit a 375 px phone), once a month the programme's published
figures against the warehouse's, the reporters missing or held counted by district, and how many
reporters were sent a 数据报送问题通知 tonight and why.
"""

from __future__ import annotations

from decimal import Decimal

from reports import city_figures, night
from reports.figures import ScopeReport
from reports.notice_rules import FILE_REASONS, HELD_REASONS, ROW_REASONS
from reports.sections import Block, num, pct
from warehouse import reference, settings

# figure_key of the published_figures seed -> what the programme published it as (seed-facts.yaml)
FIGURE_LABELS = {
    "canteens_with_assistance_desk": "社区食堂设立帮代办点", "canteen_beneficiaries": "食堂惠及特殊群体人数",
    "canteen_person_times_per_day": "社区食堂日均服务人次", "assistance_points": "帮代办点",
    "assistance_matters_handled": "帮代办受理群众事项（累计）", "assistance_person_times": "帮代办服务群众人次（累计）",
    "owners_committee_coverage_rate": "业委会（物管会）覆盖率", "resident_population": "常住人口",
    "compounds": "小区数", "communities": "社区数", "compounds_per_community_avg": "每社区平均小区数",
    "compounds_without_property_service_before": "改革前无物业服务小区",
    "four_measures.red_property": "四个一批：红色物业帮建", "four_measures.unit_assisted": "四个一批：驻地单位协建",
    "four_measures.subsidy_transition": "四个一批：财政补贴过渡", "four_measures.community_fallback": "四个一批：社区兜底",
    "subsidy_transitions_ending_soon_all_marketised": "过渡期满即将市场化小区",
    "subsidy_yuan_per_m2_month": "过渡补贴标准（元/㎡·月）", "subsidy_months": "过渡补贴月数",
    "subsidy_spent_yuan": "过渡补贴累计支出（元）", "governance_fund_yuan_per_year": "治理专项资金（元/年）",
    "party_branches_compound_or_grid": "小区（网格）党支部", "party_groups": "党小组", "building_heads": "楼栋长",
    "unit_heads": "单元长", "xinyuan_model_replicated_to": "馨园模式推广小区", "party_service_stations": "党群服务站",
    "micro_grids": "微网格", "grid_assistants": "网格协管员", "compounds_with_party_org": "建立党组织小区",
    "party_org_grid_alignment_rate": "党组织与网格对应率", "party_positions": "小区党组织阵地",
    "party_members_registered": "报到党员",
    "secretaries_resident_members": "小区党组织书记由居民党员担任",
    "secretaries_community_cadres": "小区党组织书记由社区干部担任",
    "part_time_committee_members": "小区党组织兼职委员", "property_party_instructors": "物业党建指导员",
    "property_company_party_branches": "物业企业党支部", "self_funding_no_property_compounds": "无物业小区自筹自管",
    "hot_issues_solved": "解决热点问题（累计）", "urgent_issues_solved": "解决急难愁盼问题（累计）",
    "compound_party_orgs_solving_issues": "参与解决问题的小区党组织（累计）",
    "party_org_funding_yuan_per_year": "小区党组织工作经费（元/年）",
    "committee_communication_subsidy_yuan": "兼职委员通讯补贴（元）",
    "streets.miaoqian.courtyards_before": "整合前院落", "streets.miaoqian.compounds_after": "院落整合后小区",
    "streets.liuxiang.micro_positions": "驻区企业提供微阵地", "streets.wenmiao.in_service_members": "在职党员随网格员报到",
}
REASON_KINDS = {"missing": "连续未报送，已发提醒", "received": "更正文件已入库，已回复“已收到，已入库”"}


def city_blocks(report: ScopeReport) -> list[Block]:
    """The city email's acting sections; without the day's figures, only what the ledgers say."""
    blocks = district_blocks(report) if report.today is not None and report.districts else []
    if report.reconciliation is not None:
        blocks.append(reconciliation_block(report))
    elif report.today is not None:
        blocks.append(Block("公布数据核对", lines=[
            "每月最后一个服务日的日报附公布数据与平台数据的核对，下次："
            f"{city_figures.next_reconciliation(report.service_date).isoformat()}。"]))
    blocks.append(problem_counts_block(report))
    blocks.append(notices_block(report.notified or {}))
    return blocks


def district_blocks(report: ScopeReport) -> list[Block]:
    rows, city = report.districts, {**(report.today or {}), "name": "全市合计"}
    work = Block("各区县办事情况", ["区县", "受理", "办结", "不隔夜率", "网格内解决率", "积压"],
                 [[r["name"], num(r["cases_received"]), num(r["cases_resolved"]),
                   pct(r["overnight_resolution_rate"]), pct(r["in_grid_resolution_rate"]), num(r["cases_backlog"])]
                  for r in [*rows, city]],
                 note="不隔夜率：前一日受理、次日9时前办结的比例；网格内解决率：当日办结中未吹哨的比例。")
    service = Block("各区县服务情况", ["区县", "吹哨上报", "帮代办人次", "食堂人次"],
                    [[r["name"], num(r["cases_escalated"]), num(r["people_served"]), num(r["canteen_person_times"])]
                     for r in [*rows, city]])
    coverage = Block("各区县覆盖情况", ["区县", "小区", "物业服务", "党组织", "业委会"],
                     [[r["name"], num(r["compounds"]), pct(r["property_coverage_rate"]),
                       pct(r["party_org_coverage_rate"]), pct(r["owners_committee_coverage_rate"])]
                      for r in [*rows, city]],
                     note="覆盖率：当日台账中有物业服务、有党组织、有业委会（物管会）的小区占比。")
    return [work, service, coverage]


def _value(v) -> str:
    if v is None:
        return "—"
    d = Decimal(v)
    return f"{int(d):,}" if d == d.to_integral_value() else f"{d.normalize():f}"


def reconciliation_block(report: ScopeReport) -> Block:
    recon = report.reconciliation or {}
    cards, counts = [], {"一致": 0, "不一致": 0, "暂不比对": 0}
    for f in recon.get("figures", []):
        if f["needs_programme_period"] and not recon.get("programme_loaded"):
            status = "暂不比对"
        else:
            status = "一致" if f["matches"] else "不一致"
        counts[status] += 1
        cards.append((f"{label(f['figure_key'])} · {f['scope_name']}",
                      f"公布 {_value(f['published'])}{'（约数）' if f['approx'] else ''} · 平台 {_value(f['warehouse'])}"
                      f" · {status}"))
    as_of = next((f["registry_as_of"] for f in recon.get("figures", []) if f["registry_as_of"]), None)
    summary = "，".join(f"{k} {v} 项" for k, v in counts.items())
    return Block("公布数据核对（每月一次）", cards=cards, empty="尚无公布数据核对结果（核对表未发布）。",
                 note=f"{summary}。台账截至 {as_of.isoformat() if as_of else '—'}；约数按 5% 以内为一致。"
                      + period_note(recon.get("figures", [])))


def period_note(figures: list[dict]) -> str:
    """Which figures count the whole programme period (needs_programme_period of the mart's rows), so
    are compared only once it is all loaded."""
    labels = list(dict.fromkeys(label(f["figure_key"]) for f in figures if f["needs_programme_period"]))
    if not labels:
        return ""
    start, end = city_figures.PROGRAMME_START, city_figures.PROGRAMME_END
    return (f"累计指标（{'、'.join(labels)}）需平台载入{start.year}年{start.month}月{start.day}日至"
            f"{end.year}年{end.month}月{end.day}日全部数据后比对。")


def label(figure_key: str) -> str:
    """A published figure's name in Chinese (FIGURE_LABELS); a key it does not know, as itself."""
    return FIGURE_LABELS.get(figure_key, figure_key)


def problem_counts_block(report: ScopeReport) -> Block:
    """Missing and held reporters, counted per district (every district, in code order)."""
    counts = {d["district_code"]: {"name": d["district_name"], "missing": 0, "held": 0}
              for d in night.seed_rows("districts") if reference.city_of(d["district_code"]) == report.scope.code}
    for street in report.problems:
        entry = counts.setdefault(street["street_code"][:6], {"name": street["street_code"][:6], "missing": 0, "held": 0})
        entry["missing"] += len(street["missing"])
        entry["held"] += len(street["held"])
    rows = [[c["name"], num(c["missing"]), num(c["held"])] for c in counts.values()]
    rows.append(["全市合计", num(sum(c["missing"] for c in counts.values())),
                 num(sum(c["held"] for c in counts.values()))])
    return Block("未报送或暂缓采用的报送单位（按区县）", ["区县", "未报", "暂缓采用"], rows,
                 note="未报：未报送或文件无法读取；暂缓采用：文件待数据管理员核实。"
                      "各单位名单见各区县日报的“未报送或暂缓采用的报送单位”（按街道列名）。",
                 link=problems_link())


def problems_link() -> tuple[str, str] | None:
    """Where the list is, for a reader with the docs site (GOV_DOCS_BASE_URL): the model of the reporters'
    submissions per night (marts.mart_source_freshness, which BI reads by reporter and day)."""
    base = settings.docs_base_url()
    if not base:
        return None
    return ("报送单位名单口径（mart_source_freshness）",
            f"{base}/dbt-docs/#!/model/model.gov_warehouse.mart_source_freshness")


def reason_label(reason: str) -> str:
    """A notice reason (reports.notices.notice_counts) in Chinese, short; its code stays in brackets."""
    kind, _, code = reason.partition(":")
    if kind == "quarantined":
        what = FILE_REASONS.get(code, ("文件无法读取",))[0]
        return f"文件未能导入：{what.split('（')[0]}"
    if kind == "held":
        return "文件暂缓采用：" + HELD_REASONS.get(code, "文件整体看起来不正常").split("（")[0]
    if reason in REASON_KINDS:
        return REASON_KINDS[reason]
    return "有数据行未能入库：" + ROW_REASONS.get(reason, ("数据行无法使用",))[0].split("（")[0]


def notices_block(counts: dict[str, int]) -> Block:
    lines = [f"{reason_label(r)}（{r}）：{n:,} 个单位" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return Block("数据报送问题通知", lines=lines, empty="本夜无需通知的报送单位。",
                 note="同一单位因多种原因收到通知的，分别计入。")
