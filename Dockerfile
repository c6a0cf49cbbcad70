# The project image for every Airflow service of docker-compose.yml (api-server, scheduler,
# dag-processor, triggerer, Celery workers, airflow-init): Airflow, dbt, Great Expectations and the
# project's packages, installed from uv.lock only (`uv sync --frozen --no-dev`), so the image runs exactly
# what the tests ran, without the test and lint tools (the lock's dev group).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    GX_ANALYTICS_ENABLED=False \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False

# curl for the health checks, tini to pass signals on (a Celery worker's warm shutdown), Debian's Noto CJK
# fonts for the email's chart (reports/chart.py prefers them to the packaged fallback)
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl tini fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir uv==0.13.9

WORKDIR /opt/gov

# dependencies first: this layer is rebuilt only when the lock file changes
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# then the project itself (every package listed in pyproject.toml), installed in place so that
# warehouse.connections finds dags/ and dbt_project/ beside it
COPY warehouse warehouse
COPY ingest ingest
COPY scenario scenario
COPY expectations expectations
COPY reports reports
COPY orchestration orchestration
COPY commands commands
COPY dags dags
COPY dbt_project dbt_project
RUN uv sync --frozen --no-dev \
    && python -c "import warehouse, ingest, scenario, expectations, reports, orchestration, commands"
# the dbt manifest gov_publish renders its per-model tasks from: `dbt parse` at build time, so that
# no Airflow process runs dbt while parsing DAG files (needs no warehouse)
RUN gov-warehouse dbt-manifest
# the project's Airflow plugins (the UI's time zone, gov_publish's 07:00 deadline reference) in the plugins folder
# the scheduler and the DAG processor read ($AIRFLOW_HOME/plugins)
RUN python -c "from pathlib import Path; from orchestration.airflow_local import install_plugins; \
install_plugins(Path('/opt/airflow/plugins'))"

# an unprivileged user (Airflow's customary uid) owning the volumes' mount points, so that named
# volumes are created writable for it
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --no-create-home airflow \
    && mkdir -p /opt/airflow/logs /opt/airflow/home /data/landing /data/local \
    && chown -R 50000:0 /opt/airflow /data \
    && chmod -R g+rwX /opt/airflow /data
USER 50000

ENV LANDING_DIR=/data/landing \
    GOV_LOCAL_DIR=/data/local

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
