"""Landing files -> raw.*: feed contracts, readers, normalisation, PII, encoding, the COPY loader and its ledger."""
