"""The analysts' DuckDB warehouse: views over the Parquet lake plus the SQL files in `sql/`.

The warehouse file holds only view definitions. The pipeline writes Parquet, never this file, so an
analyst can keep it open (even read-write in the `duckdb` CLI) while backfills run, and parallel
runs never contend for DuckDB's single-writer lock. Views are (re)written only when their SQL
changes; if the file is locked at that moment the old, still valid views stay and we say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pm_accounting_pipeline.contracts.layers import TABLES
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline.lib.settings import PACKAGE_DIR, Paths

SQL_DIR = PACKAGE_DIR.parent / "sql"
SCHEMAS = ("raw", "staging", "ledger", "analytics")


@dataclass(frozen=True)
class WarehouseStatus:
    path: Path
    state: str  # "created", "updated", "unchanged", "locked"
    message: str


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def analytics_sql() -> str:
    files = sorted(SQL_DIR.glob("analytics/*.sql"))
    if not files:
        raise FileNotFoundError(f"no analytics SQL found under {SQL_DIR}")
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def view_sql(lake: Lake) -> str:
    """The complete DDL: schemas, one base view per contract table, then the analytics views."""
    parts = [f"CREATE SCHEMA IF NOT EXISTS {s};" for s in SCHEMAS]
    for table in TABLES:
        parts.append(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet("
            f"{_quote(lake.glob(table))}, union_by_name = true);"
        )
    parts.append(analytics_sql())
    return "\n".join(parts)


def connect_in_memory(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the same views: what the pipeline itself queries (no file lock)."""
    lake.ensure_schema_files()
    con = duckdb.connect(":memory:")
    con.execute(view_sql(lake))
    return con


def init_warehouse(paths: Paths, force: bool = False) -> WarehouseStatus:
    lake = Lake(paths.lake)
    lake.ensure_schema_files()
    sql = view_sql(lake)
    digest = hashlib.sha256(sql.encode()).hexdigest()
    stamp = paths.warehouse.with_suffix(".views.sha256")
    existed = paths.warehouse.exists()
    if existed and not force and stamp.exists() and stamp.read_text().strip() == digest:
        return WarehouseStatus(paths.warehouse, "unchanged", "views are up to date")
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(paths.warehouse))
    except duckdb.IOException as exc:
        return WarehouseStatus(
            paths.warehouse,
            "locked",
            f"{paths.warehouse} is open in another process, so its views were not refreshed "
            f"(the existing views keep working): {exc}",
        )
    try:
        con.execute(sql)
    finally:
        con.close()
    stamp.write_text(digest + "\n")
    state = "updated" if existed else "created"
    return WarehouseStatus(paths.warehouse, state, f"views {state} in {paths.warehouse}")
