"""The local docs site serves the dbt docs and the Data Docs over http, and nothing outside their folders."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from orchestration import docs_site

pytestmark = pytest.mark.unit


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_both_sites_are_served_and_nothing_else(tmp_path):
    dbt, gx = tmp_path / "dbt_target", tmp_path / "gx" / "site"
    dbt.mkdir()
    gx.mkdir(parents=True)
    (dbt / "index.html").write_text("<title>dbt docs</title>", encoding="utf-8")
    (dbt / "manifest.json").write_text("{}", encoding="utf-8")
    (gx / "index.html").write_text("<title>Data Docs</title>", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    (dbt / "link").symlink_to(tmp_path / "secret.txt")
    server = docs_site.serve(dbt, gx, port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(f"{base}/dbt-docs/") == (200, "<title>dbt docs</title>")
        assert get(f"{base}/dbt-docs/manifest.json") == (200, "{}")
        assert get(f"{base}/data-docs/index.html") == (200, "<title>Data Docs</title>")
        status, page = get(f"{base}/")
        assert status == 200 and 'href="/dbt-docs/"' in page and 'href="/data-docs/"' in page
        for escape in ("/dbt-docs/../secret.txt", "/dbt-docs/%2e%2e/secret.txt", "/dbt-docs/link", "/secret.txt",
                       "/data-docs/../../secret.txt"):
            status, body = get(base + escape)
            assert status == 404 and "outside" not in body, escape
        assert get(f"{base}/data-docs/missing.html")[0] == 404
    finally:
        server.shutdown()


def test_the_summary_links_to_the_served_docs(tmp_path, monkeypatch):
    from reports.send import doc_links

    for site in ("dbt_target", "data_docs"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "index.html").write_text(f"<title>{site}</title>", encoding="utf-8")
    server = docs_site.serve(tmp_path / "dbt_target", tmp_path / "data_docs", port=0)
    monkeypatch.setenv("GOV_DOCS_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    try:
        links = doc_links({"data_docs": str(tmp_path / "data_docs" / "index.html")})
        assert len(links) == 2 and all(url.startswith("http://") for url in links.values()), links
        pages = {get(url)[1] for url in links.values()}
        assert pages == {"<title>dbt_target</title>", "<title>data_docs</title>"}
    finally:
        server.shutdown()
