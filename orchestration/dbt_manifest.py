"""The dbt manifest that gov_publish renders its per-model dbt tasks from (no Airflow import here).

Cosmos can discover a dbt project by running `dbt ls` while the DAG file is parsed; that would put a
dbt command (seconds, and a profile) on every parse of the dag-processor. Instead `dbt parse` runs
ahead of time, at the entry points that are about to start Airflow (`gov-warehouse run` /
`airflow` / `dbt-manifest`, the test fixtures, the image build), and the DAG file only reads the
resulting `manifest.json`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from warehouse import settings

log = logging.getLogger(__name__)

# dbt writes here by default (dbt_project.yml: target-path), so `dbt docs`-style tooling finds it too
DEFAULT_MANIFEST = settings.DBT_PROJECT_DIR / "target" / "manifest.json"
# what the manifest depends on: the project's sources, not its build output
_PROJECT_INPUTS = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml",
                   "models", "seeds", "snapshots", "macros", "tests", "analyses")
# `dbt parse` renders the profile but does not connect, and the manifest must not depend on where a
# warehouse is (the image is built without one): these placeholders are never used to connect
_PARSE_ENV = {"WH_HOST": "parse-only.invalid", "WH_PORT": "5432", "WH_USER": "parse_only",
              "WH_PASSWORD": "", "WH_DBNAME": "parse_only"}


def manifest_path() -> Path:
    """Where the manifest is read and written: `GOV_DBT_MANIFEST`, else dbt_project/target/manifest.json."""
    return settings.dbt_manifest_path(DEFAULT_MANIFEST)


def project_digest() -> str:
    """SHA-256 over the dbt project's source files and the dbt version: changes when the manifest would."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"dbt-core {version('dbt-core')}\n".encode())
    root = settings.DBT_PROJECT_DIR
    for name in _PROJECT_INPUTS:
        top = root / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _digest_file(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".sha256")


def is_current(manifest: Path | None = None) -> bool:
    manifest = manifest or manifest_path()
    stamp = _digest_file(manifest)
    return manifest.is_file() and stamp.is_file() and stamp.read_text().strip() == project_digest()


def ensure_manifest(force: bool = False) -> Path:
    """Run `dbt parse` into `manifest_path()` unless the manifest there is of the current project.

    The manifest is written to a temporary directory and moved into place, so a DAG parse (or a
    concurrent call) never reads a half-written file.
    """
    manifest = manifest_path()
    if not force and is_current(manifest):
        return manifest
    from orchestration.dbt_run import dbt_executable

    digest = project_digest()
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dbt-parse-", dir=manifest.parent) as tmp:
        env = {**os.environ, **_PARSE_ENV, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
        cmd = [dbt_executable(), "parse", "--quiet", "--no-partial-parse",
               "--project-dir", str(settings.DBT_PROJECT_DIR), "--profiles-dir", str(settings.DBT_PROJECT_DIR),
               "--target-path", tmp, "--log-path", str(Path(tmp) / "logs")]
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, env=env, cwd=settings.DBT_PROJECT_DIR, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
            raise RuntimeError(f"dbt parse failed with exit code {proc.returncode}; see the output above")
        shutil.move(str(Path(tmp) / "manifest.json"), manifest)
        _digest_file(manifest).write_text(digest + "\n")
    log.info("dbt manifest written to %s", manifest)
    return manifest
