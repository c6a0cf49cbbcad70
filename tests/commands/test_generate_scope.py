"""`gov-warehouse generate --scope`: the default is Taiyuan's night, `shanxi` the eleven cities' (issue 21)."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from commands import cli
from scenario.generator import Scenario

pytestmark = pytest.mark.integration  # writes a province night: about 17,000 files

DAY = "2023-11-07"
# 太原 大同 阳泉 长治 晋城 朔州 晋中 运城 忻州 临汾 吕梁: Shanxi's prefecture-level division codes
SHANXI = {f"14{n:02d}" for n in range(1, 12)}


def _digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cities(folder) -> set[str]:
    # a reporter's file is named by its code, whose first four digits after the letters are its city's
    return {p.stem.lstrip("ACPT")[:4] for p in folder.rglob("*") if p.is_file()}


def test_the_default_scope_writes_taiyuans_night_as_the_generator_does(tmp_path):
    cli.main(["generate", "--day", DAY, "--out", str(tmp_path / "cli")])
    Scenario().write_night(date.fromisoformat(DAY), tmp_path / "direct")
    assert _digests(tmp_path / "cli") == _digests(tmp_path / "direct")
    assert _cities(tmp_path / "cli") == {"1401"}


def test_the_shanxi_scope_writes_every_citys_reporters(tmp_path):
    cli.main(["generate", "--day", DAY, "--out", str(tmp_path / "shanxi"), "--scope", "shanxi"])
    taiyuan = _digests(tmp_path / "shanxi")
    assert _cities(tmp_path / "shanxi") == SHANXI
    Scenario().write_night(date.fromisoformat(DAY), tmp_path / "taiyuan")
    # the province's Taiyuan part is the Taiyuan scenario's night, file for file
    assert _digests(tmp_path / "taiyuan").items() <= taiyuan.items()
