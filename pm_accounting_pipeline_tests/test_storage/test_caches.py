"""The in-process caches that keep a run fast must never serve stale data."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.demo.generator import DemoConfig, generate
from pm_accounting_pipeline.lib import lake as lake_module
from pm_accounting_pipeline.lib.instance import FastSqliteEventLogStorage
from pm_accounting_pipeline.lib.lake import Lake, clear_memo


def test_mapping_document_is_validated_once_and_read_again_after_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    text = generate(DemoConfig(seed=3, entries=50)).mapping_yaml
    path.write_text(text, encoding="utf-8")
    first = load_mapping(path)
    assert load_mapping(path) is first
    edited = text.replace("max_hours_per_entry: '24'", "max_hours_per_entry: '23'", 1)
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    second = load_mapping(path)
    assert second is not first
    assert str(second.limits.max_hours_per_entry) == "23"
    assert second.rule_version != first.rule_version


def test_lake_memo_is_bounded_and_older_tables_are_read_from_disk(tmp_path: Path) -> None:
    clear_memo()
    lake = Lake(tmp_path / "lake")
    frame = empty_frame("staging.quarantine")
    partitions = [("us", "2026-09-01")]
    for i in range(lake_module.MEMO_TABLES + 3):
        lake.write_partitions("staging.quarantine", frame, partitions, f"w{i}", pl.col("partition_date"))
    assert len(lake_module._MEMO) == lake_module.MEMO_TABLES
    # The oldest writer is no longer memoised, but its file is still read correctly.
    assert lake._from_memo("staging.quarantine", "w0", set(partitions)) is None
    back = lake.read("staging.quarantine", partitions, writer="w0")
    assert back.schema == frame.schema and back.height == 0
    newest = f"w{lake_module.MEMO_TABLES + 2}"
    assert lake._from_memo("staging.quarantine", newest, set(partitions)) is not None
    clear_memo()


def test_event_log_remembers_existing_tables_but_not_missing_ones(tmp_path: Path) -> None:
    storage = FastSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        assert storage.has_table("asset_keys") is True
        assert "asset_keys" in storage.__dict__["_known_tables"]
        assert storage.has_table("no_such_table") is False
        assert "no_such_table" not in storage.__dict__["_known_tables"]
    finally:
        storage.dispose()
