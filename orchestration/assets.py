"""Names of the data assets the DAGs produce and consume (plain strings: no Airflow import here)."""

RAW_FEED_ASSETS = {
    "streets": "gov://warehouse/raw/streets_compounds",
    "canteens": "gov://warehouse/raw/canteens_meals",
    "assistance": "gov://warehouse/raw/assistance_case_events",
}
# emitted once a night's loads and raw checks are done (also by a late file's reload)
RAW_NIGHT_ASSET = "gov://warehouse/raw/night"
MARTS_ASSET = "gov://warehouse/marts"
