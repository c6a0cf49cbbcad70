"""The Great Expectations context of one validation task: ephemeral, with a shared results store and site.

Data sources, suites, validation definitions and the checkpoint are built from code (expectations/suites.py)
in memory on every run, so tasks on different machines share no GX definitions to race on, and nothing GX
holds is written to disk: the checker's URL, password included, lives only in this process. Only what a
night produces is shared, under `settings.gx_dir()` (GOV_GX_DIR: one shared volume for every worker):

- `validations/`: every validation result, as GX's ValidationResultsStore keeps it (one JSON file per
  suite, run name, run time and batch: a new key per run, so concurrent tasks never write the same file);
- `data_docs/`: the Data Docs site that UpdateDataDocsAction updates, whose index GX builds from that store
  (so it lists every machine's results, not only this process's).

Two GX defaults assume one writer, and are replaced through GX's own `class_name`/`module_name` hooks:
files are written whole (to a temporary name, then renamed), so a reader on another machine never sees
half a page or half a result; and an index build does not prune the site of pages whose result it did
not list, which, between its two listings, may be a page another machine has just written."""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from great_expectations.data_context.store.tuple_store_backend import TupleFilesystemStoreBackend
from great_expectations.render.renderer.site_builder import DefaultSiteIndexBuilder

from warehouse.conninfo import ConnInfo
from warehouse.settings import gx_dir

SITE = "data_docs"
SOURCE = "warehouse"
# the index lists the most recent results only (a row per suite and night, about 35 a night: a week's worth).
# UpdateDataDocsAction rebuilds the index after each result, reading every listed result back from the store,
# so an unbounded index would make each night slower than the last; older pages stay on the site
INDEX_LIMIT = 250


class AtomicFilesystemStoreBackend(TupleFilesystemStoreBackend):
    """GX's filesystem store backend, writing each file under a temporary name and renaming it into place."""

    def _set(self, key: Any, value: Any, **kwargs: Any) -> str:
        if not isinstance(key, tuple):
            key = key.to_tuple()
        target = Path(self.full_base_directory) / self._convert_key_to_filepath(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # a name no other writer uses (process ids repeat across machines and containers)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        partial.write_bytes(value.encode("utf-8") if isinstance(value, str) else value)
        partial.replace(target)  # atomic within one directory, on a local disk and on NFS alike
        return str(target)


class SharedSiteIndexBuilder(DefaultSiteIndexBuilder):
    """GX's index builder, listing what the shared store holds without deleting pages it did not list."""

    def build(self, skip_and_clean_missing: bool = False, build_index: bool = True) -> Any:
        return super().build(skip_and_clean_missing=False, build_index=build_index)


def results_dir() -> Path:
    return gx_dir() / "validations"


def data_docs_dir() -> Path:
    return gx_dir() / "data_docs"


def data_docs_index() -> Path | None:
    index = data_docs_dir() / "index.html"
    return index if index.exists() else None


def _filesystem(path: Path) -> dict[str, Any]:
    return {"class_name": AtomicFilesystemStoreBackend.__name__, "module_name": __name__, "base_directory": str(path)}


def ephemeral_context() -> Any:
    """An EphemeralDataContext whose validation results and Data Docs site are the shared ones."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    warnings.filterwarnings("ignore", module="great_expectations")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    stores[defaults.validation_results_store_name] = {"class_name": "ValidationResultsStore",
                                                      "store_backend": _filesystem(results_dir())}
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": _filesystem(data_docs_dir()),
        "site_index_builder": {"class_name": SharedSiteIndexBuilder.__name__, "module_name": __name__,
                               "validation_results_limit": INDEX_LIMIT},
        "site_section_builders": {"profiling": "None"},
    }
    config = DataContextConfig(store_backend_defaults=defaults, stores=stores, data_docs_sites={SITE: site},
                               analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False))
    return gx.get_context(mode="ephemeral", project_config=config)


def remove_results(context: Any, keys: list[Any]) -> None:
    """Take these validation results out of the shared store and their pages off the site (the index,
    which lists the store, drops them at its next build)."""
    from great_expectations.data_context.store.html_site_store import HtmlSiteStore
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

    pages = HtmlSiteStore(store_backend=_filesystem(data_docs_dir())).store_backends[ValidationResultIdentifier]
    for key in keys:
        context.validation_results_store.remove_key(key)
        pages.remove_key(key.to_tuple())


def add_warehouse(context: Any, checker: ConnInfo) -> Any:
    """The warehouse as a GX data source, logged in as `checker`. The URL is handed over in memory: an
    ephemeral context writes no configuration, so the password reaches no file and no environment variable."""
    url = checker.sqlalchemy_url()
    if checker.host.startswith("/"):
        # GX's Postgres source validates the URL as a network address: a Unix-socket directory (the
        # embedded demo server) goes through its generic SQL source, the same SQLAlchemy engine underneath
        return context.data_sources.add_sql(name=SOURCE, connection_string=url)
    return context.data_sources.add_postgres(name=SOURCE, connection_string=url)
