"""The city email's published-figure comparison names every figure in Chinese (no database)."""

from __future__ import annotations

import csv
import re

import pytest

from reports import city
from warehouse import settings

pytestmark = pytest.mark.unit


def seed_keys() -> set[str]:
    # every figure mart_published_figures can hold is a row of this seed (it selects from it)
    with (settings.DBT_PROJECT_DIR / "seeds" / "published_figures.csv").open(encoding="utf-8") as f:
        return {r["figure_key"] for r in csv.DictReader(f)}


def test_every_published_figure_has_a_chinese_label():
    keys = seed_keys()
    assert len(keys) >= 45 and "streets.miaoqian.courtyards_before" in keys
    missing = sorted(k for k in keys if k not in city.FIGURE_LABELS)
    assert not missing
    assert all(re.search(r"[\u4e00-\u9fff]", city.label(k)) for k in keys)


def test_the_note_lists_the_figures_that_need_the_programme_period_from_the_rows():
    rows = [{"figure_key": "hot_issues_solved", "needs_programme_period": True},
            {"figure_key": "compounds", "needs_programme_period": False},
            {"figure_key": "hot_issues_solved", "needs_programme_period": True},
            {"figure_key": "subsidy_spent_yuan", "needs_programme_period": True}]
    assert city.period_note(rows) == ("累计指标（解决热点问题（累计）、过渡补贴累计支出（元））"
                                      "需平台载入2023年1月1日至2023年10月31日全部数据后比对。")
    assert city.period_note(rows[1:2]) == ""
