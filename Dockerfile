# Project image: Airflow, dbt, GX and the project packages, installed from the lock file.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH AIRFLOW_HOME=/opt/airflow
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir uv==0.13.9
WORKDIR /opt/gov
COPY pyproject.toml uv.lock README.md ./
COPY ingest ingest
COPY reports reports
COPY expectations expectations
RUN uv sync --frozen --no-dev
COPY dags dags
COPY dbt_project dbt_project
