"""The project-local Dagster instance: DAGSTER_HOME under the data folder unless set.

The embedded default is Dagster's SQLite storage; `deploy/dagster.yaml` documents the PostgreSQL
setting for production.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

DEFAULT_DAGSTER_YAML = """\
# Project-local Dagster instance (embedded default: SQLite storage under this folder).
# For production with PostgreSQL see deploy/dagster.yaml in the repository.
telemetry:
  enabled: false
concurrency:
  default_op_concurrency_limit: 4
"""


def ensure_dagster_home(data_dir: Path) -> Path:
    """Point DAGSTER_HOME at <data>/dagster_home (unless already set) and seed its dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or (data_dir / "dagster_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DEFAULT_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(data_dir: Path) -> dg.DagsterInstance:
    ensure_dagster_home(data_dir)
    return dg.DagsterInstance.get()
