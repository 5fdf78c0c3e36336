"""The posting resource: the ledger database, the mapping document and where the ledger lake is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.config.schema import MappingDocument, load_mapping
from pm_accounting_pipeline.posting.store import PostingStore, open_store


class PostingResource(dg.ConfigurableResource):
    """Ledger database (DuckDB `<data_dir>/ledger.duckdb` unless `ledger_url` names PostgreSQL).

    `reverse_missing_documents`: a document posted before and absent from the ledger now (its source
    rows were deleted) is reversed. Target tokens come from the environment (see the mapping
    document's `posting.targets[].token_env`).
    """

    data_dir: str
    config_path: str | None = None
    ledger_url: str | None = None
    reverse_missing_documents: bool = True

    def mapping(self) -> MappingDocument | None:
        if self.config_path and Path(self.config_path).exists():
            return load_mapping(self.config_path)
        return None

    def lake_root(self) -> Path:
        return Path(self.data_dir) / "lake"

    @contextmanager
    def open(self) -> Iterator[PostingStore]:
        store = open_store(Path(self.data_dir), self.ledger_url or None)
        try:
            yield store
        finally:
            store.close()
