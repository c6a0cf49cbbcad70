"""The district email's grid and party-organisation section (reports.party_grid) on the published marts of
the shared two-night build (tests/dbt/conftest.py), read as gov_bi_reader and rendered as the email renders
its sections (reports.render); expected figures from the generator's registry rows of the night."""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest

from reports.party_grid import party_grid_blocks
from reports.render import section_html
from reports.sections import block_html, block_text
from tests.dbt.conftest import NIGHT1, NIGHT2
from warehouse import reference as ref

pytestmark = pytest.mark.integration


def party_grid_section(wh, district: str, day) -> tuple[str, str]:
    """The section's (html, text) by the district email's own path: the blocks reports.send adds to the
    report, each rendered by reports.render's section and the Block's text lines."""
    parts = party_grid_blocks(wh, district, day)
    return ("".join(section_html(b.title, block_html(b)) for b in parts),
            "\n".join(line for b in parts for line in block_text(b)))


def _pct(numerator: int, denominator: int) -> str:
    """As the mart rounds a rate (4 places, half up) and the email shows it (a percentage, 1 place)."""
    rate = (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return f"{float(rate) * 100:.1f}%"


@pytest.mark.parametrize("district", ["140106", "140105"])
def test_district_section_shows_each_streets_grids_and_party_organisations(built, district):
    rows = [r for r in built["nights"][NIGHT2].compounds if r["district_code"] == district]
    html, text = party_grid_section(built["wh"], district, NIGHT2)
    by_street: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_street[r["street_code"]].append(r)
    names = ref.district_by_code(district).streets
    lines = text.splitlines()
    for code, rs in by_street.items():
        name = names[int(code[6:]) - 1]
        with_org = [r for r in rs if r["party_org_type"] != "none"]
        grid_line = (f"  {name}：网格 {len({r['grid_code'] for r in rs}):,}，微网格 {sum(r['micro_grids'] for r in rs):,}，"
                     f"网格助理 {sum(r['grid_assistants'] for r in rs):,}，入格率 100.0%")
        party_line = (f"  {name}：党组织 {len(with_org):,}，"
                      f"建在网格上 {_pct(sum(r['party_org_on_grid'] for r in with_org), len(with_org))}，"
                      f"阵地 {sum(r['party_positions'] for r in rs):,}，"
                      f"兼职委员 {sum(r['part_time_members'] for r in rs):,}")
        assert grid_line in lines and party_line in lines, (grid_line, party_line, text)
        assert name in html
    total = f"  全区合计：网格 {len({r['grid_code'] for r in rows}):,}，微网格 {sum(r['micro_grids'] for r in rows):,}，"
    assert any(line.startswith(total) for line in lines), text
    secretaries = (f"  党员 {sum(r['party_members'] for r in rows):,} 名；"
                   f"书记由居民党员担任 {sum(r['secretary_type'] == 'resident_member' for r in rows):,} 个、"
                   f"由社区干部担任 {sum(r['secretary_type'] == 'community_cadre' for r in rows):,} 个")
    assert secretaries in lines, text
    property_line = (f"  物业党支部 {sum(r['property_party_branch'] for r in rows):,} 个，"
                     f"物业党建指导员 {sum(r['party_instructors'] for r in rows):,} 名")
    assert property_line in lines
    assert f"{sum(r['dual_model'] for r in rows):,} 个小区" in text
    if district == "140106":  # 迎泽区: 庙前's 275 courtyards in 98 compounds, 柳巷's 5 micro-positions, 文庙's 357
        assert "  275 个院落整合为 98 个小区" in lines and "  微阵地 5 个，在职党员报到 357 名" in lines
        assert "251" in html and "442" in html and "275" in html
    else:
        assert "院落" not in text  # 小店区 reports no regrouped courtyards
    # the HTML is the email's section rows, with every figure the text has, and loads nothing remote
    assert html.startswith("<tr>") and html.endswith("</tr>")
    assert "网格力量（分街道）" in html and "小区党组织（分街道）" in html and "http" not in html


def test_a_day_without_registry_rows_says_so(built):
    html, text = party_grid_section(built["wh"], "140106", NIGHT1.replace(year=2022))
    assert "本服务日无小区台账数据。" in text and "本服务日无小区台账数据。" in html
