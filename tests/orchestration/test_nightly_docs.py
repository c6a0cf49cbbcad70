"""gov_publish's dbt_docs task: `dbt docs generate` as gov_transformer into the folder the docs site serves
(orchestration/docs_site.py, compose's docs service), so GOV_DOCS_BASE_URL/dbt-docs/ shows tonight's project."""

from __future__ import annotations

import json
import urllib.request

import pytest

from orchestration import dbt_tasks, docs_site
from tests.support.dbt_cli import declared_marts

pytestmark = pytest.mark.integration


def test_the_nightly_docs_are_generated_where_the_site_serves_them(fresh_warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv(dbt_tasks.DOCS_SWITCH, "false")
    assert dbt_tasks.generate_docs(fresh_warehouse) is None  # switched off: nothing written
    assert not dbt_tasks.docs_dir().exists()

    monkeypatch.delenv(dbt_tasks.DOCS_SWITCH)
    index = dbt_tasks.generate_docs(fresh_warehouse)
    assert index == dbt_tasks.docs_dir() / "index.html" and index.is_file()
    (tmp_path / "data_docs").mkdir()
    server = docs_site.serve(dbt_tasks.docs_dir(), tmp_path / "data_docs", port=0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/dbt-docs"
        with urllib.request.urlopen(f"{base}/", timeout=10) as page:
            assert page.status == 200 and b"dbt" in page.read()
        with urllib.request.urlopen(f"{base}/manifest.json", timeout=10) as resp:
            manifest = json.load(resp)
        with urllib.request.urlopen(f"{base}/catalog.json", timeout=10) as resp:
            assert resp.status == 200 and "nodes" in json.load(resp)
    finally:
        server.shutdown()
    # the docs describe the project's marts and its exposures (the officials' email, the BI marts)
    marts = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"
             and n["path"].startswith("marts/")}
    assert marts == declared_marts()
    assert {e["name"] for e in manifest["exposures"].values()} >= {"officials_morning_email", "bi_marts"}
