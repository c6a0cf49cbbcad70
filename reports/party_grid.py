"""The district email's section on grids and compound party organisations (issue 23): per street, the
grids, micro-grids and grid assistants (mart_grid_coverage) and the party organisations' alignment with
the grids, positions and part-time committee members (mart_party_organisation), with the district's
secretaries, property-company party work and local arrangements under them. Read from the published marts
as gov_bi_reader, like every figure of the email (reports.figures), and built as reports.sections' Blocks,
so the text part carries every figure the HTML has.

One call: `party_grid_blocks(wh, district_code, day)` gives the Blocks reports.send puts in the district
email (reports.render renders them as every other section); before the first publish, or on a day without
registry rows, the section says so instead of failing.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg.rows import dict_row

from reports.sections import Block, num, pct
from warehouse.connections import BI_READER, connect_as
from warehouse.conninfo import ConnInfo

TITLE = "网格与小区党组织"  # the section's name where there is nothing to show
TABLES = ("marts.mart_grid_coverage", "marts.mart_party_organisation", "marts.dim_street")
DISTRICT_TOTAL = "全区合计"

# street rows of the day (and the district's row, first), both marts side by side
SQL = """
select g.scope_level, g.scope_code, s.street_name, g.compounds, g.grids, g.micro_grids, g.grid_assistants,
       g.grid_coverage_rate, o.compounds_with_party_org, o.party_orgs_on_grid, o.party_org_grid_alignment_rate,
       o.party_positions, o.part_time_committee_members, o.party_members_registered,
       o.secretaries_resident_members, o.secretaries_community_cadres, o.property_company_party_branches,
       o.property_party_instructors, o.dual_model_compounds, o.self_funding_compounds, o.courtyards_merged,
       o.compounds_from_courtyards, o.micro_positions, o.in_service_members
from marts.mart_grid_coverage g
join marts.mart_party_organisation o using (service_date, scope_level, scope_code)
left join marts.dim_street s on g.scope_level = 'street' and s.street_code = g.scope_code
where g.service_date = %(day)s and g.district_code = %(district)s
order by g.scope_level = 'street', g.scope_code
"""


def read_rows(conn: psycopg.Connection, district_code: str, day: date) -> list[dict] | None:
    """The district's row then its streets' (None before the first publish: the marts do not exist yet)."""
    for table in TABLES:
        if conn.execute("select to_regclass(%s) is not null as found", (table,)).fetchone()["found"] is False:
            return None
    return conn.execute(SQL, {"day": day, "district": district_code}).fetchall()


def blocks(rows: list[dict] | None) -> list[Block]:
    """The section's blocks from the rows `read_rows` gives."""
    if rows is None:
        return [Block(TITLE, empty="网格与党组织数据尚未发布。")]
    district = next((r for r in rows if r["scope_level"] == "district"), None)
    streets = [r for r in rows if r["scope_level"] == "street"]
    if district is None:
        return [Block(TITLE, empty="本服务日无小区台账数据。")]

    def name(r: dict) -> str:
        return r["street_name"] or r["scope_code"]

    grid = Block("网格力量（分街道）", ["街道", "网格", "微网格", "网格助理", "入格率"],
                 [[name(r), num(r["grids"]), num(r["micro_grids"]), num(r["grid_assistants"]),
                   pct(r["grid_coverage_rate"])] for r in streets]
                 + [[DISTRICT_TOTAL, num(district["grids"]), num(district["micro_grids"]),
                     num(district["grid_assistants"]), pct(district["grid_coverage_rate"])]],
                 note="入格率：有所属网格的小区占小区数；微网格、网格助理按街道台账填报数合计。")
    party = Block("小区党组织（分街道）", ["街道", "党组织", "建在网格上", "阵地", "兼职委员"],
                  [[name(r), num(r["compounds_with_party_org"]), pct(r["party_org_grid_alignment_rate"]),
                    num(r["party_positions"]), num(r["part_time_committee_members"])] for r in streets]
                  + [[DISTRICT_TOTAL, num(district["compounds_with_party_org"]),
                      pct(district["party_org_grid_alignment_rate"]), num(district["party_positions"]),
                      num(district["part_time_committee_members"])]],
                  note="建在网格上：党组织与所在网格对应的比例（占建有党组织的小区）。")
    d = district
    lines = [
        f"党员 {num(d['party_members_registered'])} 名；书记由居民党员担任 {num(d['secretaries_resident_members'])} 个、"
        f"由社区干部担任 {num(d['secretaries_community_cadres'])} 个",
        f"物业党支部 {num(d['property_company_party_branches'])} 个，"
        f"物业党建指导员 {num(d['property_party_instructors'])} 名",
        f"推行“双组双建双监督” {num(d['dual_model_compounds'])} 个小区；"
        f"无物业自筹自管 {num(d['self_funding_compounds'])} 个小区",
    ]
    if d["courtyards_merged"]:
        lines.append(f"{num(d['courtyards_merged'])} 个院落整合为 {num(d['compounds_from_courtyards'])} 个小区")
    if d["micro_positions"] or d["in_service_members"]:
        lines.append(f"微阵地 {num(d['micro_positions'])} 个，在职党员报到 {num(d['in_service_members'])} 名")
    return [grid, party, Block("党建引领（全区）", lines=lines)]


def party_grid_blocks(wh: ConnInfo | psycopg.Connection, district_code: str, day: date) -> list[Block]:
    """The section's blocks (for an email that renders Blocks itself); `wh` is the warehouse (read as
    gov_bi_reader) or a connection already open with a dict row factory."""
    if isinstance(wh, psycopg.Connection):
        return blocks(read_rows(wh, district_code, day))
    with connect_as(BI_READER, wh, row_factory=dict_row) as conn:
        return blocks(read_rows(conn, district_code, day))

