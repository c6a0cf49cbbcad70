"""Ingest package: source readers, normalisation, PII hashing, COPY loaders, ledger, scenario generator."""
