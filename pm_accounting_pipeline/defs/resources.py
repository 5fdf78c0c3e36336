"""The pipeline resource: where the data lives and which mapping document to apply."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pm_accounting_pipeline.config.schema import MappingDocument, load_mapping
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline.lib.settings import Paths


class PipelineResource(dg.ConfigurableResource):
    """Data folder (landing files, Parquet lake, reports) and the mapping document path."""

    data_dir: str
    config_path: str

    _mapping: MappingDocument | None = PrivateAttr(default=None)

    @cached_property
    def paths(self) -> Paths:
        return Paths(Path(self.data_dir))

    def mapping(self) -> MappingDocument:
        if self._mapping is None:
            self._mapping = load_mapping(self.config_path)
        return self._mapping

    def lake(self) -> Lake:
        return Lake(Path(self.data_dir) / "lake")
