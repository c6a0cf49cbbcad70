"""The night's orchestration: the steps DAG tasks call, dbt invocation, publish, reconciliation, local Airflow."""
