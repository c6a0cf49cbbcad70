"""What the project installs: one lock file for Python 3.11-3.13, test tools only in the dev group, an image
without them (its every `uv sync` passes --no-dev)."""

from __future__ import annotations

import re
import tomllib

import pytest

from warehouse.settings import REPO_ROOT

pytestmark = pytest.mark.unit

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DEV_TOOLS = {"pytest", "ruff", "check-jsonschema"}


def names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}


def test_test_and_lint_tools_are_dev_dependencies_only():
    assert not names(PYPROJECT["project"]["dependencies"]) & DEV_TOOLS
    assert names(PYPROJECT["dependency-groups"]["dev"]) >= DEV_TOOLS


def test_the_image_installs_without_the_dev_group():
    syncs = re.findall(r"uv sync[^\n]*", (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs


def test_one_lock_for_python_3_11_to_3_13():
    spec = PYPROJECT["project"]["requires-python"]
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text(encoding="utf-8"))
    assert lock["requires-python"].replace(" ", "") == spec.replace(" ", "")
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec.replace(" ", "")).groups()
    assert (int(low), int(high)) == (11, 14)


def test_every_pin_says_why():
    lines = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    for pin in ("dbt-core>=1.11,<1.12", "astronomer-cosmos>=1.15,<1.16", "celery>=5.5,<5.7"):
        at = next(i for i, line in enumerate(lines) if f'"{pin}"' in line)
        assert lines[at - 1].strip().startswith("#"), pin  # the reason, on the line above
