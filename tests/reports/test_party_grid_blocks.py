"""reports.party_grid's blocks from hand-made mart rows (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reports.party_grid import blocks
from reports.sections import block_text

pytestmark = pytest.mark.unit

ROW = {"grids": 3, "micro_grids": 5, "grid_assistants": 7, "grid_coverage_rate": Decimal("0.75"),
       "compounds_with_party_org": 4, "party_org_grid_alignment_rate": Decimal("0.5"), "party_positions": 2,
       "part_time_committee_members": 6, "party_members_registered": 40, "secretaries_resident_members": 1,
       "secretaries_community_cadres": 3, "property_company_party_branches": 1, "property_party_instructors": 2,
       "dual_model_compounds": 1, "self_funding_compounds": 0, "courtyards_merged": 0, "compounds_from_courtyards": 0,
       "micro_positions": 0, "in_service_members": 0}


def test_streets_then_the_district_total_and_the_districts_lines():
    street = {**ROW, "scope_level": "street", "scope_code": "140106001", "street_name": "柳巷街道"}
    unnamed = {**ROW, "scope_level": "street", "scope_code": "140106009", "street_name": None}
    district = {**ROW, "scope_level": "district", "scope_code": "140106", "street_name": None,
                "grids": 6, "micro_grids": 10, "grid_assistants": 14}
    grid, party, lines = blocks([district, street, unnamed])
    assert grid.rows == [["柳巷街道", "3", "5", "7", "75.0%"], ["140106009", "3", "5", "7", "75.0%"],
                         ["全区合计", "6", "10", "14", "75.0%"]]
    assert party.rows[0] == ["柳巷街道", "4", "50.0%", "2", "6"]
    assert lines.lines == ["党员 40 名；书记由居民党员担任 1 个、由社区干部担任 3 个",
                           "物业党支部 1 个，物业党建指导员 2 名",
                           "推行“双组双建双监督” 1 个小区；无物业自筹自管 0 个小区"]  # no courtyards: no line
    assert "  柳巷街道：网格 3，微网格 5，网格助理 7，入格率 75.0%" in block_text(grid)


def test_before_the_first_publish_and_on_a_day_without_rows():
    assert [b.empty for b in blocks(None)] == ["网格与党组织数据尚未发布。"]
    assert [b.empty for b in blocks([])] == ["本服务日无小区台账数据。"]
