-- One row per landed file and load attempt, as the loader recorded it. Only what the models read
-- (file paths, hashes, errors and decisions stay in audit): a plain projection, so filters reach the
-- ledger's (source, reporter_code, service_date) index.
select
    load_id,
    source,
    reporter_code,
    service_date,
    status,
    rows_read,
    rows_loaded,
    rows_rejected,
    started_at,
    finished_at
from {{ source('audit', 'load_ledger') }}
