"""Where things live: the data folder and the mapping document, from flags or the environment.

`PM_ACCOUNTING_DATA` (default `./data`) holds the landing folders, the Parquet lake, the analysts'
DuckDB warehouse, reports and the project-local DAGSTER_HOME. `PM_ACCOUNTING_CONFIG` names the
mapping document (default `<data>/mapping.yaml`, else the packaged example).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
EXAMPLE_MAPPING = PACKAGE_DIR / "config" / "example_mapping.yaml"


@dataclass(frozen=True)
class Paths:
    data_dir: Path

    @property
    def landing(self) -> Path:
        return self.data_dir / "landing"

    @property
    def lake(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        return self.data_dir / "reports"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    def landing_for(self, entity: str) -> Path:
        return self.landing / entity


def data_dir() -> Path:
    return Path(os.environ.get("PM_ACCOUNTING_DATA", "data")).resolve()


def paths() -> Paths:
    return Paths(data_dir())


def config_path() -> Path:
    env = os.environ.get("PM_ACCOUNTING_CONFIG")
    if env:
        return Path(env).resolve()
    candidate = data_dir() / "mapping.yaml"
    return candidate if candidate.exists() else EXAMPLE_MAPPING
