"""Secrets: the PII hashing key (a demo key for the embedded server only) and the start-up check for weak ones."""

from __future__ import annotations

import os
import re
import secrets
import warnings
from pathlib import Path

from warehouse.connections import is_embedded
from warehouse.conninfo import parse_url
from warehouse.settings import local_dir

PII_KEY_VAR = "PII_HASH_KEY"
MAKE_KEY_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class MissingSecret(RuntimeError):
    """A secret the run cannot do without is not configured (raised before any file is read)."""


def pii_hash_key() -> bytes:
    """Secret for keyed hashing of personal identifiers (`PII_HASH_KEY`).

    Required for any warehouse but the embedded demo server: a run without it refuses with
    MissingSecret. The embedded demo generates a key once into the local directory (mode 0600,
    outside the repository) and warns that it is a demo key."""
    key = os.environ.get(PII_KEY_VAR)
    if key:
        return key.encode()
    url = os.environ.get("WAREHOUSE_URL")
    if url and not is_embedded(parse_url(url)):
        raise MissingSecret(
            f"{PII_KEY_VAR} is not set: personal identifiers cannot be hashed, so nothing is loaded. "
            f"Make a key with `{MAKE_KEY_HINT}`, keep it in your secret store and set {PII_KEY_VAR} for every "
            "task (docs/security.md: key rotation)")
    return _demo_pii_key()


_DEMO_KEY_WARNED = False


def _demo_pii_key() -> bytes:
    global _DEMO_KEY_WARNED
    path = local_dir() / "secrets" / "pii_hash_key"
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(32))
    if not _DEMO_KEY_WARNED:
        warnings.warn(f"{PII_KEY_VAR} is unset: the embedded demo uses the key generated into {path}; "
                      f"set {PII_KEY_VAR} for real data", stacklevel=3)
        _DEMO_KEY_WARNED = True
    return path.read_text(encoding="utf-8").strip().encode()


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600, created so: never readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


# What a deployment's start refuses (docker-compose.yml's secrets-check): a secret left empty or at
# the placeholder .env.example ships with
SECRET_NAME = re.compile(r"(PASSWORD|_PASS|SECRET|FERNET_KEY|HASH_KEY)$")
PLACEHOLDERS = frozenset({"", "change-me", "changeme", "change_me", "password", "secret"})


def weak_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Names of the secret-looking variables (…PASSWORD, …SECRET, …KEY) that are empty or a placeholder."""
    environ = os.environ if environ is None else environ
    return sorted(k for k, v in environ.items() if SECRET_NAME.search(k) and v.strip().lower() in PLACEHOLDERS)


def refuse_weak_secrets(environ: dict[str, str] | None = None) -> None:
    """Exit non-zero naming every weak secret (values are never printed)."""
    weak = weak_secrets(environ)
    if weak:
        raise SystemExit(f"refusing to start: {', '.join(weak)} empty or still 'change-me'; set real values in .env "
                         f"(e.g. `{MAKE_KEY_HINT}`)")
    print("secrets-check: every secret is set")
