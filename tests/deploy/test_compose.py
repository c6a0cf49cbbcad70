"""The production topology as files (issue #8): docker-compose.yml, Dockerfile and .env.example.

No Docker engine runs here, so the compose file is checked the way `docker compose config` would
check it — against the Compose Specification's JSON schema (the copy check-jsonschema ships),
before and after variable interpolation with the values of .env.example — and its wiring is
checked against the design (DESIGN.md §11) and the project's own configuration: every service,
one Airflow configuration shared by all Airflow processes, the project's variables, secrets only
from the environment, health checks, named volumes, Metabase reading the warehouse as gov_bi_reader.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import psycopg
import pytest
import yaml

from warehouse import connections, conninfo, credentials, settings

pytestmark = pytest.mark.integration

ROOT = settings.REPO_ROOT
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

# DESIGN.md §11 and issue #8: the services a city deployment runs
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"}
DESIGN_SERVICES = AIRFLOW_SERVICES | {"redis", "airflow-db", "warehouse", "mailpit", "metabase"}
ONE_SHOT = {"secrets-check", "airflow-init", "metabase-init"}
# README "Configuration" and the DAGs' settings: what the Airflow processes of a deployment must be given
PROJECT_VARIABLES = {"WAREHOUSE_URL", "LANDING_DIR", "PII_HASH_KEY", "GOV_LOCAL_DIR", "SUMMARY_RECIPIENTS",
                     "AIRFLOW_CONN_SMTP_DEFAULT", "GOV_ONCALL_EMAIL", "GOV_TASK_RETRIES", "GOV_RETRY_DELAY_SECONDS"}


def compose_spec_schema() -> dict:
    """The Compose Specification's JSON schema as vendored by check-jsonschema."""
    path = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(path.read_text(encoding="utf-8"))


def schema_errors(document: Any) -> list[str]:
    schema = compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|(\w+))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, ${VAR:+alt}, ${VAR+alt} (the Compose Specification's "Interpolation" section)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        dollar, name, op, arg, bare = m.groups()
        if dollar:
            return "$"
        if bare:
            return env.get(bare, "")
        current = env.get(name)
        unset_or_empty = not current
        if op in (":-", "-"):
            use_default = unset_or_empty if op == ":-" else current is None
            return interpolate(arg, env) if use_default else current
        if op in (":?", "?"):
            if (unset_or_empty if op == ":?" else current is None):
                raise KeyError(f"required variable {name} is not set: {arg}")
            return current
        if op in (":+", "+"):
            present = not unset_or_empty if op == ":+" else current is not None
            return interpolate(arg, env) if present else ""
        return current or ""

    return _VAR.sub(substitute, value)


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as `docker compose` would run it with .env copied from .env.example."""
    return interpolate(raw_compose(), read_env_file(ENV_EXAMPLE))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def named_mounts(service: dict) -> dict[str, str]:
    """Named-volume mounts of a service: target -> volume name."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source and not source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


# --- the file is a valid Compose file ---------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    assert schema_errors(raw_compose()) == []


def test_compose_file_after_interpolation_matches_the_compose_specification(compose):
    assert schema_errors(compose) == []


def test_schema_check_rejects_a_broken_compose_file():
    """The validator really checks: a misspelt dependency condition and an unknown key are reported."""
    broken = copy.deepcopy(raw_compose())
    broken["services"]["airflow-init"]["depends_on"]["warehouse"]["condition"] = "service_healty"
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    errors = schema_errors(broken)
    assert any("service_healty" in e for e in errors), errors
    assert any("helthcheck" in e for e in errors), errors


def test_check_jsonschema_cli_accepts_the_compose_file():
    """The same schema through the tool CI users would run by hand."""
    cli = Path(settings.REPO_ROOT / ".venv" / "bin" / "check-jsonschema")
    if not cli.exists():
        import shutil

        cli = Path(shutil.which("check-jsonschema") or "check-jsonschema")
    proc = subprocess.run([str(cli), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- what the design asks for -----------------------------------------------------------------


def test_every_service_of_the_design_is_there(compose):
    services = compose["services"]
    assert DESIGN_SERVICES <= set(services)
    commands = {name: " ".join(map(str, s.get("command", []))) for name, s in services.items()}
    assert "api-server" in commands["airflow-apiserver"]
    assert commands["airflow-scheduler"].endswith("scheduler")
    assert "dag-processor" in commands["airflow-dag-processor"]
    assert "triggerer" in commands["airflow-triggerer"]
    assert "celery worker" in commands["airflow-worker"]
    assert "db migrate" in commands["airflow-init"] and "pools set warehouse" in commands["airflow-init"]
    assert "bootstrap" in commands["airflow-init"]  # the warehouse's roles, schemas and tables


def test_airflow_processes_share_one_celery_configuration(compose):
    services = compose["services"]
    envs = {name: environment(services[name]) for name in AIRFLOW_SERVICES}
    shared = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
              "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
              "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__CORE__DAGS_FOLDER")
    for key in shared:
        values = {name: env.get(key) for name, env in envs.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), (key, values)
    env = envs["airflow-scheduler"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert {services[name]["image"] for name in AIRFLOW_SERVICES} == {services["metabase-init"]["image"]}


def test_metadata_database_and_broker_point_at_their_services(compose):
    from sqlalchemy.engine import make_url

    services = compose["services"]
    env = environment(services["airflow-scheduler"])
    db_env = environment(services["airflow-db"])
    url = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    # the project ships psycopg 3 only: loading the dialect imports the driver the URL names
    assert url.drivername == "postgresql+psycopg"
    url.get_dialect().import_dbapi()
    assert (url.host, url.port, url.database) == ("airflow-db", 5432, db_env["POSTGRES_DB"])
    assert (url.username, url.password) == (db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"])
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # the async engine on a driver the image has (the lock carries psycopg 3, not asyncpg)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]).get_dialect().import_dbapi()
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    redis_command = [str(c) for c in services["redis"]["command"]]
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert broker.password == redis_command[redis_command.index("--requirepass") + 1]
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
    assert any(str(p).endswith(f":{api.port}") for p in services["airflow-apiserver"]["ports"])


def test_project_variables_reach_every_airflow_process(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert PROJECT_VARIABLES <= set(env), (name, PROJECT_VARIABLES - set(env))
        mounts = named_mounts(services[name])
        # every worker sees the same landing zone: a load task may run on any of them
        assert mounts.get(env["LANDING_DIR"]) == "landing", name
        assert env["GOV_LOCAL_DIR"] in mounts, name
        assert mounts.get("/opt/airflow/logs") == "airflow-logs", name


def test_warehouse_url_is_the_warehouse_service(compose):
    services = compose["services"]
    wh = conninfo.parse_url(environment(services["airflow-worker"])["WAREHOUSE_URL"])
    wh_env = environment(services["warehouse"])
    assert wh.host == "warehouse" and wh.port == 5432
    assert wh.dbname == wh_env["POSTGRES_DB"] == settings.WAREHOUSE_DB
    # only airflow-init, which bootstraps, holds the administrator's password
    admin = conninfo.parse_url(environment(services["airflow-init"])["WAREHOUSE_URL"])
    assert (admin.host, admin.port, admin.dbname) == (wh.host, wh.port, wh.dbname)
    assert (admin.user, admin.password) == ("postgres", wh_env["POSTGRES_PASSWORD"])


def test_smtp_default_is_mailpit(compose):
    # Airflow's JSON form of a connection in AIRFLOW_CONN_* (conn_type, host, port, login, password, extra);
    # parsed here as JSON rather than through airflow.models, whose import costs half a minute on a busy machine
    env = environment(compose["services"]["airflow-worker"])
    conn = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert (conn["conn_type"], conn["host"], conn["port"]) == ("smtp", "mailpit", 1025)
    assert conn["extra"]["from_email"] and conn["extra"]["disable_tls"] is True
    assert set(conn) <= {"conn_type", "host", "port", "login", "password", "schema", "extra", "description"}


def test_every_variable_compose_sets_is_read_by_the_project(compose):
    """No typos: each non-Airflow variable given to the Airflow processes is read somewhere in the code."""
    packages = ("warehouse", "ingest", "orchestration", "reports", "expectations", "dags")
    sources = "\n".join(p.read_text(encoding="utf-8") for pkg in packages for p in (ROOT / pkg).rglob("*.py"))
    sources += (ROOT / "dbt_project" / "profiles.yml").read_text(encoding="utf-8")
    env = environment(compose["services"]["airflow-worker"])
    # read by Airflow, dbt and GX themselves rather than by the project's code
    third_party = {"AIRFLOW_CONN_SMTP_DEFAULT", "GX_ANALYTICS_ENABLED", "DBT_SEND_ANONYMOUS_USAGE_STATS"}
    unread = [k for k in env if not k.startswith("AIRFLOW__") and k not in third_party and f'"{k}"' not in sources]
    assert unread == []
    assert "GOV_BI_READER_PASSWORD" in sources  # airflow-init's, read by the bootstrap


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_come_only_from_the_environment():
    text = "\n".join(_strings(raw_compose()))  # values only: comments may mention ${VAR} syntax
    referenced = set(re.findall(r"(?<!\$)\$\{(\w+)", text))  # $${X} is a literal, not a reference
    required = set(re.findall(r"\$\{(\w+):\?", text))
    with_default = set(re.findall(r"\$\{(\w+):?-", text))
    example = read_env_file(ENV_EXAMPLE)
    documented = set(example) | set(re.findall(r"^# (\w+)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert required <= set(example), required - set(example)  # must-set values are in .env.example
    assert referenced <= documented | with_default, referenced - documented - with_default
    assert referenced - with_default <= set(example)
    # .env.example holds placeholders only, no secret
    assert {v for k, v in example.items()} == {"change-me"}
    raw = raw_compose()
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if re.search(r"(PASSWORD|_PASS|SECRET|FERNET_KEY|HASH_KEY)$", key):
                assert value.startswith("${"), (name, key, value)
            for userinfo in re.findall(r"://([^/@\s]*)@", value):  # credentials inside URLs
                assert ":" not in userinfo or "${" in userinfo, (name, key, value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_real_env_file_is_never_committed():
    proc = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert proc.returncode == 0, ".env must be listed in .gitignore"
    assert ".env" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def test_a_missing_secret_stops_compose():
    env = read_env_file(ENV_EXAMPLE)
    del env["PII_HASH_KEY"]
    with pytest.raises(KeyError, match="PII_HASH_KEY"):
        interpolate(raw_compose(), env)


def test_workers_hold_each_step_s_password_and_not_the_administrator_s(compose):
    raw = raw_compose()["services"]
    services = compose["services"]
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        env = environment(services[name])
        assert conninfo.parse_url(env["WAREHOUSE_URL"]).password == "", name
        assert "WAREHOUSE_ADMIN_PASSWORD" not in str(raw[name]) and "WAREHOUSE_ADMIN_PASSWORD" not in str(
            raw_compose()["x-airflow-env"]), name
        for role, var in connections.ROLE_PASSWORD_ENV.items():
            assert env[var] == read_env_file(ENV_EXAMPLE)[var], (name, role)
        assert env["GOV_BOOTSTRAP"] == "verify", name  # the nightly bootstrap task only checks
    assert environment(services["airflow-init"])["GOV_BOOTSTRAP"] == "apply"


def _ports(compose: dict) -> dict[str, list[str]]:
    return {name: [str(p) for p in s.get("ports", [])] for name, s in compose["services"].items() if s.get("ports")}


def test_published_ports_listen_on_localhost_unless_the_operator_opts_in():
    env = read_env_file(ENV_EXAMPLE)
    local = _ports(interpolate(raw_compose(), env))
    assert {"warehouse", "airflow-db", "redis", "mailpit", "airflow-apiserver", "metabase"} <= set(local)
    assert all(p.startswith("127.0.0.1:") for ports in local.values() for p in ports), local
    opened = _ports(interpolate(raw_compose(), {**env, "GOV_BIND_ADDRESS": "10.0.0.5", "GOV_UI_BIND_ADDRESS": "0.0.0.0"}))
    assert {p.split(":")[0] for ports in opened.values() for p in ports} == {"10.0.0.5", "0.0.0.0"}
    assert all(p.startswith("10.0.0.5:") for s in ("warehouse", "airflow-db", "redis") for p in opened[s])


def _depends_on_all(services: dict, name: str) -> set[str]:
    direct = set(services[name].get("depends_on", {}))
    return direct.union(*(_depends_on_all(services, d) for d in direct)) if direct else set()


def _run_secrets_check(service: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = service["command"]
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env={"PATH": os.environ.get("PATH", ""), **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_weak_secret_stops_the_whole_stack(compose):
    services = compose["services"]
    check = services["secrets-check"]
    for name in set(services) - {"secrets-check"}:
        assert "secrets-check" in _depends_on_all(services, name), name
    # every variable a secret anywhere in compose is made of is checked (an SMTP relay may need no login)
    raw = raw_compose()
    values = [v for s in [*raw["services"].values(), {"environment": raw["x-airflow-env"]}]
              for k, v in environment(s).items() if credentials.SECRET_NAME.search(k)]
    secrets = {name for v in values for name in re.findall(r"\$\{(\w+)", v)}
    assert len(secrets) >= 10 and secrets - {"SMTP_PASSWORD"} <= set(environment(check))
    refused = _run_secrets_check(check, environment(check))  # .env.example as shipped: change-me everywhere
    assert refused.returncode != 0
    assert "PII_HASH_KEY" in refused.stderr and "GOV_LOADER_PASSWORD" in refused.stderr
    real = {k: f"real-{k.lower()}-4f9a" for k in environment(check)}
    assert _run_secrets_check(check, real).returncode == 0
    one_empty = {**real, "GOV_CHECKER_PASSWORD": ""}
    proc = _run_secrets_check(check, one_empty)
    assert proc.returncode != 0 and "GOV_CHECKER_PASSWORD" in proc.stderr
    assert "real-" not in proc.stderr + proc.stdout  # names the variables, never a value


def test_nightly_bootstrap_in_verify_mode_needs_no_administrator(fresh_warehouse, server_url, monkeypatch):
    from tests.conftest import create_database, drop_database
    from warehouse.bootstrap import NotBootstrapped, bootstrap

    monkeypatch.setenv("GOV_BOOTSTRAP", "verify")
    # a wrong administrator password is never used: verification logs in as gov_loader
    bootstrap(conninfo.ConnInfo(fresh_warehouse.host, fresh_warehouse.port, "nobody", "wrong", fresh_warehouse.dbname))
    bare = create_database(server_url, "gov_unbootstrapped")
    try:
        with psycopg.connect(bare.conninfo(), autocommit=True) as conn:
            conn.execute("create schema audit")
        with pytest.raises(NotBootstrapped, match="airflow-init"):
            bootstrap(bare)
    finally:
        drop_database(bare)


# --- health, order, storage -------------------------------------------------------------------


def test_long_running_services_have_health_checks(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), name


def test_start_order_waits_for_health_and_for_init(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    conditions = {name: {d: c["condition"] for d, c in s.get("depends_on", {}).items()} for name, s in services.items()}
    assert conditions["airflow-init"] == {"airflow-db": "service_healthy", "warehouse": "service_healthy",
                                          "redis": "service_healthy"}
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert conditions[name]["airflow-init"] == "service_completed_successfully", name
    # Metabase is connected once the bootstrap has given gov_bi_reader its password
    assert conditions["metabase-init"] == {"metabase": "service_healthy",
                                           "airflow-init": "service_completed_successfully"}


def test_data_lives_in_named_volumes(compose):
    services = compose["services"]
    declared = set(compose["volumes"])
    used = {v for s in services.values() for v in named_mounts(s).values()}
    assert used == declared
    for db in ("airflow-db", "warehouse", "metabase-db"):
        assert "/var/lib/postgresql/data" in named_mounts(services[db]), db
    assert {"landing", "airflow-logs", "airflow-db-data", "warehouse-data"} <= declared


def test_the_docs_service_serves_what_the_workers_write(compose):
    """dbt docs (gov_publish's dbt_docs task writes them into GOV_LOCAL_DIR/dbt_target) and Data Docs (GOV_GX_DIR/
    data_docs), served read-only from the workers' volumes by orchestration.docs_site; the email links there."""
    docs, worker = compose["services"]["docs"], compose["services"]["airflow-worker"]
    env = environment(worker)
    command = list(map(str, docs["command"]))
    assert command[:3] == ["python", "-m", "orchestration.docs_site"]
    served = {command[i].lstrip("-"): command[i + 1] for i in range(3, len(command), 2)}
    mounts, worker_mounts = named_mounts(docs), named_mounts(worker)
    for flag, folder in (("dbt-docs", f"{env['GOV_LOCAL_DIR']}/dbt_target"),
                         ("data-docs", f"{env['GOV_GX_DIR']}/data_docs")):
        assert served[flag] == folder
        mount = next(m for m in mounts if folder.startswith(m + "/"))
        assert mounts[mount] == worker_mounts[mount], flag  # the same named volume as the workers'
    assert all(v.endswith(":ro") for v in raw_compose()["services"]["docs"]["volumes"])
    port = served["port"]
    assert env["GOV_DOCS_BASE_URL"] == f"http://localhost:{port}"
    assert docs["ports"] == [f"127.0.0.1:{port}:{port}"]


# --- Metabase ---------------------------------------------------------------------------------


def test_metabase_reads_the_warehouse_as_gov_bi_reader(compose):
    services = compose["services"]
    init_env = environment(services["metabase-init"])
    assert init_env["GOV_BI_READER_PASSWORD"] == environment(services["airflow-init"])["GOV_BI_READER_PASSWORD"]
    assert init_env["WAREHOUSE_DB"] == settings.WAREHOUSE_DB and init_env["WAREHOUSE_HOST"] == "warehouse"
    assert urlsplit(init_env["METABASE_URL"]).hostname == "metabase"
    script = compose["configs"]["metabase-setup"]["content"]
    compile(script, "metabase_setup.py", "exec")
    assert '"user": "gov_bi_reader"' in script and '"schema-filters-patterns": "marts"' in script
    mounts = [c["target"] for c in services["metabase-init"]["configs"]]
    assert services["metabase-init"]["command"][-1] in mounts
    # Metabase's own settings are kept in its PostgreSQL, not in a file inside the container
    mb, mb_db = environment(services["metabase"]), environment(services["metabase-db"])
    assert (mb["MB_DB_TYPE"], mb["MB_DB_HOST"]) == ("postgres", "metabase-db")
    assert (mb["MB_DB_USER"], mb["MB_DB_PASS"], mb["MB_DB_DBNAME"]) == (
        mb_db["POSTGRES_USER"], mb_db["POSTGRES_PASSWORD"], mb_db["POSTGRES_DB"])


def _scram_matches(verifier: str, password: str) -> bool:
    """RFC 5802/7677: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, recomputed from the password."""
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return (method == "SCRAM-SHA-256"
            and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
            and base64.b64encode(hmac.new(salted, b"Server Key", hashlib.sha256).digest()).decode() == server_key)


def test_bootstrap_gives_gov_bi_reader_the_password_from_the_environment(fresh_warehouse):
    from warehouse.bootstrap import set_role_passwords

    def verifier(conn: psycopg.Connection) -> str | None:
        return conn.execute("select rolpassword from pg_authid where rolname = 'gov_bi_reader'").fetchone()[0]

    password = "Bi-Reader's pässword 1"
    with psycopg.connect(fresh_warehouse.conninfo(), autocommit=True) as conn:
        before = verifier(conn)
        try:
            assert set_role_passwords(conn, {}) == []  # no variable: the password is left as it is
            assert verifier(conn) == before
            assert set_role_passwords(conn, {"GOV_BI_READER_PASSWORD": password}) == ["gov_bi_reader"]
            assert _scram_matches(verifier(conn), password)
            assert not _scram_matches(verifier(conn), password + "x")
        finally:
            # roles are shared by every database of the server: leave gov_bi_reader as the bootstrap made it
            conn.execute("alter role gov_bi_reader password null" if before is None
                         else psycopg.sql.SQL("alter role gov_bi_reader password {}").format(psycopg.sql.Literal(before)))


# --- the image --------------------------------------------------------------------------------


def test_image_is_built_from_the_lock_file_with_every_package():
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    instructions = [line.split() for line in dockerfile.splitlines() if line and not line.startswith("#")]
    copies = {parts[-1].rstrip("/") for parts in instructions if parts[0] == "COPY"}
    assert "uv.lock" in dockerfile and "uv sync --frozen" in dockerfile
    for package in pyproject["tool"]["setuptools"]["packages"]:
        assert package in copies, package  # a package missing from the image breaks the DAG imports
    assert {"dags", "dbt_project"} <= copies
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    sources = {src for parts in instructions if parts[0] == "COPY" for src in parts[1:-1]}
    assert not sources & ignored, sources & ignored  # the build context must hold what the image copies
    workdir = next(parts[1] for parts in instructions if parts[0] == "WORKDIR")
    env = environment(raw_compose()["services"]["airflow-scheduler"])
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == f"{workdir}/dags"
    base = next(parts[1] for parts in instructions if parts[0] == "FROM")
    python = re.search(r"(\d+\.\d+)", pyproject["project"]["requires-python"]).group(1)
    assert base.startswith(f"python:{python}")
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M).group(1)
    assert f"uv=={makefile_uv}" in dockerfile  # the same uv as `make setup`
    if "dbt-manifest" in (ROOT / "commands" / "cli.py").read_text(encoding="utf-8"):
        # gov_publish's DAG file reads the dbt manifest: the image must carry one
        assert "gov-warehouse dbt-manifest" in dockerfile
