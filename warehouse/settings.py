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
