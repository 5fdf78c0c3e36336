"""extract_raw: landed files to raw rows and quarantine rows, read once per content hash."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime

import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.extract import raw as raw_module
from pm_accounting_pipeline.extract.landing import land_files, list_landing_files
from pm_accounting_pipeline.extract.raw import extract_raw
from pm_accounting_pipeline_tests.test_extract.conftest import (
    EXTRACTED_AT,
    HARVEST_HEADER,
    csv_bytes,
    harvest_row,
)


def _land(write_file, data_dir, mapping, name, rows, now=EXTRACTED_AT):
    return land_files([write_file(name, csv_bytes(HARVEST_HEADER, rows))], "us", data_dir, mapping, now=now)


def test_extract_raw_returns_every_row_and_quarantine_row_of_the_files(mapping, write_file, tmp_path) -> None:
    data_dir = tmp_path / "data"
    _land(write_file, data_dir, mapping, "sep.csv", [harvest_row(), harvest_row(Date="2026-09-31")])
    _land(write_file, data_dir, mapping, "oct.csv", [harvest_row(Date="2026-10-01")])
    rows, quarantine = extract_raw(list_landing_files(data_dir, "us"), "us", mapping, None)
    assert rows.schema == polars_schema("raw.time_entries")
    assert quarantine.schema == polars_schema("staging.quarantine")
    assert sorted(rows["work_date"].to_list()) == [date(2026, 9, 14), date(2026, 10, 1)]
    assert quarantine["reason"].to_list() == ["bad_date"]
    assert rows["extracted_at"].unique().to_list() == [EXTRACTED_AT]


def test_identical_bytes_under_two_names_are_read_once(mapping, write_file, tmp_path) -> None:
    data_dir = tmp_path / "data"
    (landed,) = _land(write_file, data_dir, mapping, "sep.csv", [harvest_row(), harvest_row(Notes="b")])
    shutil.copy(landed.landed_path, landed.landed_path.with_name("copied-by-hand.csv"))
    files = list_landing_files(data_dir, "us")
    assert len(files) == 2
    rows, _ = extract_raw(files, "us", mapping, None)
    assert rows.height == 2
    assert rows["source_file"].unique().to_list() == [landed.landed_path.name]  # the copy with a sidecar


def test_dates_filter_rows_by_work_date_and_quarantine_by_partition_date(
    mapping, write_file, tmp_path
) -> None:
    data_dir = tmp_path / "data"
    rows_in = [harvest_row(), harvest_row(Date="2026-09-15"), harvest_row(Date="2026-13-01")]
    _land(write_file, data_dir, mapping, "sep.csv", rows_in)
    files = list_landing_files(data_dir, "us")
    rows, quarantine = extract_raw(files, "us", mapping, {date(2026, 9, 15)})
    assert rows["work_date"].to_list() == [date(2026, 9, 15)] and quarantine.height == 0
    rows, quarantine = extract_raw(files, "us", mapping, {EXTRACTED_AT.date()})
    assert rows.height == 0 and quarantine["reason"].to_list() == ["bad_date"]


def test_files_whose_sidecar_span_misses_the_dates_are_not_parsed(
    mapping, write_file, tmp_path, monkeypatch
) -> None:
    data_dir = tmp_path / "data"
    _land(write_file, data_dir, mapping, "sep.csv", [harvest_row()])
    _land(write_file, data_dir, mapping, "oct.csv", [harvest_row(Date="2026-10-05")])
    parsed: list[str] = []
    real = raw_module.parse_file

    def spy(path, *args, **kwargs):
        parsed.append(path.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(raw_module, "parse_file", spy)
    rows, _ = extract_raw(list_landing_files(data_dir, "us"), "us", mapping, {date(2026, 10, 5)})
    assert rows["work_date"].to_list() == [date(2026, 10, 5)]
    assert len(parsed) == 1 and parsed[0].endswith("-oct.csv")


def test_landed_demo_exports_extract_to_the_rows_written(tmp_path) -> None:
    from pm_accounting_pipeline.config.schema import load_mapping
    from pm_accounting_pipeline.demo.generator import DemoConfig, write_demo

    files = write_demo(tmp_path / "demo", DemoConfig(seed=11, n_clients=8, n_people=9, malformed_rate=0.01))
    demo_mapping = load_mapping(files.mapping_path)
    data_dir = tmp_path / "data"
    now = datetime(2026, 11, 2, tzinfo=UTC)
    total_rows = total_quarantine = 0
    for entity in demo_mapping.entity_ids:
        exports = sorted(p for p in files.csv_paths if p.parent.name == entity)
        results = land_files(exports, entity, data_dir, demo_mapping, now=now)
        assert [r.status for r in results] == ["landed"] * len(exports)
        rows, quarantine = extract_raw(list_landing_files(data_dir, entity), entity, demo_mapping, None)
        assert rows["entity"].unique().to_list() == [entity]
        total_rows += rows.height
        total_quarantine += quarantine.height
        assert quarantine.filter(pl.col("reason") != "bad_date").height == 0
    assert total_rows + total_quarantine == files.rows_written
    assert total_quarantine == files.malformed_by_kind["bad_date"]
