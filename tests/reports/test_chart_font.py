"""The chart's CJK font: the system's Noto Sans CJK (fonts-noto-cjk) when installed, else the packaged copy."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from noto_cjk_sans_otc import FONT_PATH

from reports import chart

pytestmark = pytest.mark.unit


def test_the_system_font_is_preferred_when_installed(tmp_path):
    # a system font where fonts-noto-cjk puts it (here: a copy of a real Noto Sans CJK collection)
    system = tmp_path / "usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
    system.parent.mkdir(parents=True)
    shutil.copyfile(FONT_PATH, system)
    missing = tmp_path / "elsewhere/NotoSansCJK-Regular.ttc"
    assert chart.cjk_font_path((missing, system)) == system
    assert chart.register_font(system).startswith("Noto Sans CJK")


def test_the_packaged_font_is_the_fallback(tmp_path):
    assert chart.cjk_font_path((tmp_path / "no/NotoSansCJK-Regular.ttc",)) == Path(FONT_PATH)


def test_the_chart_draws_with_whichever_was_found():
    png = chart.trend_png([date(2023, 11, d) for d in (6, 7)], [3, 4], [2, 4], [0.5, 1.0],
                          "帮代办事项")
    assert png.startswith(b"\x89PNG") and chart.cjk_font().startswith("Noto Sans CJK")
