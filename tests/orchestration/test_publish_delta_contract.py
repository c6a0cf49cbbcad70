"""The contract the publish's deltas rest on (orchestration/publish.py): every incremental model merges
by delete+insert on a unique key, the strategy whose merges record the keys they rewrote
(dbt_project/macros/publish_delta.sql). A model merged another way (append, merge) would change its
candidate table in place without a record, and the publish would not move those rows."""

from __future__ import annotations

import re

import pytest

from warehouse import settings

pytestmark = pytest.mark.unit

CONFIG = re.compile(r"\{\{\s*config\((.*?)\)\s*\}\}", re.S)


def test_every_incremental_model_merges_by_delete_insert_on_a_key():
    incremental = {}
    for path in (settings.DBT_PROJECT_DIR / "models").rglob("*.sql"):
        config = CONFIG.search(path.read_text(encoding="utf-8"))
        if config and re.search(r"materialized\s*=\s*['\"]incremental['\"]", config.group(1)):
            incremental[path.stem] = config.group(1)
    assert "fct_canteen_day" in incremental and "mart_source_freshness" in incremental  # the parse finds them
    for model, config in incremental.items():
        assert re.search(r"incremental_strategy\s*=\s*['\"]delete\+insert['\"]", config), model
        assert re.search(r"unique_key\s*=", config), model
