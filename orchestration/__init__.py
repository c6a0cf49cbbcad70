"""Airflow-side helpers shared by the DAG files (defaults, assets, notifiers); no business logic."""
