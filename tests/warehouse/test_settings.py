"""warehouse.settings' readers: one parsing of a variable for every module (blank is unset, a bad number is
refused by name, the on/off words)."""

from __future__ import annotations

import pytest

from warehouse import settings

pytestmark = pytest.mark.unit


def test_blank_is_unset_and_a_number_that_is_not_one_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("GOV_PUBLISH_ATTEMPTS", "  ")
    assert settings.number("GOV_PUBLISH_ATTEMPTS", 3) == 3.0
    monkeypatch.setenv("GOV_PUBLISH_ATTEMPTS", "5")
    assert settings.number("GOV_PUBLISH_ATTEMPTS", 3) == 5.0
    monkeypatch.setenv("GOV_PUBLISH_ATTEMPTS", "five")
    with pytest.raises(ValueError, match="GOV_PUBLISH_ATTEMPTS='five' is not a number"):
        settings.number("GOV_PUBLISH_ATTEMPTS", 3)


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("OFF", False), ("0", False), ("no", False),
                                               ("true", True), ("1", True), ("yes", True), ("", True)])
def test_switch_words(monkeypatch, raw, expected):
    monkeypatch.setenv(settings.DOCS_NIGHTLY_VAR, raw)
    assert settings.switch(settings.DOCS_NIGHTLY_VAR, True) is expected


def test_senders_recipients_and_the_docs_site(monkeypatch):
    for name in ("SUMMARY_FROM", "NOTICE_FROM", "SUMMARY_RECIPIENTS", "GOV_DOCS_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert settings.summary_from() == settings.notice_from() == settings.DEFAULT_FROM
    assert settings.summary_recipients() == [] and settings.docs_base_url() is None
    monkeypatch.setenv("SUMMARY_FROM", "Data <d@x.example>")
    assert settings.notice_from() == "Data <d@x.example>"  # the notices follow the summary's sender
    monkeypatch.setenv("NOTICE_FROM", "Notices <n@x.example>")
    assert settings.notice_from() == "Notices <n@x.example>"
    monkeypatch.setenv("SUMMARY_RECIPIENTS", " a@x.example, ,b@x.example ")
    assert settings.summary_recipients() == ["a@x.example", "b@x.example"]
    monkeypatch.setenv("GOV_DOCS_BASE_URL", "https://docs.example/")
    assert settings.docs_base_url() == "https://docs.example"


def test_dbt_threads_reach_the_profile_dbt_reads(monkeypatch):
    from pathlib import Path

    from orchestration import dbt_run
    from warehouse.conninfo import parse_url

    wh = parse_url("postgresql://gov_owner@db.example:5432/gov")
    assert dbt_run.dbt_env(wh)["WH_THREADS"] == "2"  # the documented default
    monkeypatch.setenv("GOV_DBT_THREADS", "6")
    assert dbt_run.dbt_env(wh)["WH_THREADS"] == "6"
    profile = (Path(dbt_run.__file__).parents[1] / "dbt_project" / "profiles.yml").read_text()
    assert "threads: \"{{ env_var('WH_THREADS', '2') | int }}\"" in profile
    monkeypatch.setenv("GOV_DBT_THREADS", "0")
    with pytest.raises(ValueError, match="GOV_DBT_THREADS must be at least 1"):
        settings.dbt_threads()
