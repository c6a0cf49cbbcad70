"""Where things are and what the programme's fixed names are: one home for each constant.

Every environment variable of a path is read here (README: Configuration)."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DAGS_DIR = REPO_ROOT / "dags"
SERVICE_TZ = "Asia/Shanghai"  # schedules, service days and emails are Shanghai time
TZ = ZoneInfo(SERVICE_TZ)
WAREHOUSE_DB = "gov_warehouse"
DOCS_PORT = 8081  # `make docs` serves the dbt docs and Data Docs here; local runs' summaries link here
FEEDS = ("streets", "canteens", "assistance")


def local_dir() -> Path:
    """Working data of a local install (embedded server, landing zone, outbox, Airflow home)."""
    return Path(os.environ.get("GOV_LOCAL_DIR", REPO_ROOT / ".local")).resolve()


def landing_dir() -> Path:
    return Path(os.environ.get("LANDING_DIR", local_dir() / "landing")).resolve()


def outbox_dir() -> Path:
    return Path(os.environ.get("OUTBOX_DIR", local_dir() / "outbox")).resolve()


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", local_dir() / "airflow")).resolve()


def gx_dir() -> Path:
    """Great Expectations' shared store: validation results and the Data Docs site. Every machine that
    runs checks must see the same directory (compose: a shared volume), so one site holds every night."""
    return Path(os.environ.get("GOV_GX_DIR", local_dir() / "gx")).resolve()


# --- behaviour: every other variable of ours is read here too (README: Configuration) -------------------------
DEFAULT_FROM = "社区治理数据平台 <gov-data@taiyuan.example>"
PUBLISH_DEADLINE_VAR = "GOV_PUBLISH_DEADLINE"  # HH:MM, Asia/Shanghai (orchestration/deadlines.py)
NO_DEADLINES_VAR = "GOV_NO_DEADLINE_ALERTS"  # set by local `airflow dags test` runs (orchestration/deadlines.py)
DOCS_NIGHTLY_VAR = "GOV_DBT_DOCS_NIGHTLY"  # `false`: gov_publish's nightly dbt_docs task skips


def text(name: str, default: str = "") -> str:
    """A setting as text: the variable when set and not blank, else `default`."""
    value = os.environ.get(name, "").strip()
    return value or default


def number(name: str, default: float) -> float:
    """A numeric tunable (timeouts, attempts, minutes): the variable, else `default`; a value that is not a
    number is refused by name rather than read as something else."""
    raw = text(name)
    try:
        return float(raw) if raw else float(default)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def switch(name: str, default: bool) -> bool:
    """An on/off setting: false, 0, no, off (any case) are off, any other value on; unset or blank: `default`."""
    raw = text(name).lower()
    return default if not raw else raw not in ("false", "0", "no", "off")


def dbt_threads() -> int:
    """dbt's threads (models built side by side in the night's one build): one per warehouse CPU core."""
    threads = int(number("GOV_DBT_THREADS", 2))
    if threads < 1:
        raise ValueError(f"GOV_DBT_THREADS must be at least 1, not {threads}")
    return threads


def docs_base_url() -> str | None:
    """Where the officials reach the dbt docs and Data Docs (the email's links), without a trailing slash."""
    return text("GOV_DOCS_BASE_URL").rstrip("/") or None


def summary_from() -> str:
    return text("SUMMARY_FROM", DEFAULT_FROM)


def notice_from() -> str:
    """The reporters' notices' sender: NOTICE_FROM, else the summary's."""
    return text("NOTICE_FROM", summary_from())


def summary_recipients() -> list[str]:
    """Extra city-scope recipients of the officials' summary (comma-separated)."""
    return [e.strip() for e in text("SUMMARY_RECIPIENTS").split(",") if e.strip()]


def oncall_email() -> str:
    return text("GOV_ONCALL_EMAIL", "oncall@taiyuan.example")


def dbt_manifest_path(default: Path) -> Path:
    return Path(text("GOV_DBT_MANIFEST") or default).resolve()


SCOPES = ("taiyuan", "shanxi")
SCOPE_VAR = "GOV_SCOPE"  # also read by dbt (dbt_project.yml, macros/reference.sql): the same variable, one meaning


def scope() -> str:
    """The deployment's scope: `taiyuan` (the reference seeds as committed) or `shanxi`, a province deployment,
    whose reference data adds the ten other cities' rows (dbt_project/seeds/province/, issue 21)."""
    value = text(SCOPE_VAR, "taiyuan").lower()
    if value not in SCOPES:
        raise ValueError(f"{SCOPE_VAR}={value!r}: one of {', '.join(SCOPES)}")
    return value
