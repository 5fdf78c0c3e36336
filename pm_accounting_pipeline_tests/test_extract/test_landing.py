"""Landing: validated, content-addressed copies with sidecars, de-duplicated by content hash."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, date, datetime

from pm_accounting_pipeline.extract.landing import land_files, list_landing_files
from pm_accounting_pipeline_tests.test_extract.conftest import (
    EXTRACTED_AT,
    HARVEST_HEADER,
    csv_bytes,
    harvest_row,
)


def _export(write_file, name: str = "harvest_sept.csv"):
    rows = [harvest_row(), harvest_row(Date="2026-09-16"), harvest_row(Date="2026-09-31")]
    return write_file(name, csv_bytes(HARVEST_HEADER, rows))


def test_landing_copies_the_file_content_addressed_with_a_sidecar(mapping, write_file, tmp_path) -> None:
    src = _export(write_file)
    (result,) = land_files([src], "us", tmp_path / "data", mapping, now=EXTRACTED_AT)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert result.status == "landed" and result.error is None
    assert result.landed_path == tmp_path / "data" / "landing" / "us" / f"{digest[:12]}-harvest_sept.csv"
    assert result.landed_path.read_bytes() == src.read_bytes()
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (3, 2, 1)
    assert result.quarantined_by_reason == {"bad_date": 1}
    assert "2 of 3 rows accepted" in result.message and "bad_date 1" in result.message
    meta = json.loads(result.landed_path.with_name(result.landed_path.name + ".meta.json").read_text())
    assert meta == {
        "file_hash": digest,
        "format": "harvest_csv",
        "landed_at": "2026-11-02T09:30:00+00:00",
        "rows_in": 3,
        "rows_ok": 2,
        "rows_quarantined": 1,
        "quarantined_by_reason": {"bad_date": 1},
        "original_name": "harvest_sept.csv",
        "work_date_min": "2026-09-14",
        "work_date_max": "2026-09-16",
        "rows_by_entity": {"us": 2},
    }


def test_landing_the_same_bytes_twice_is_a_no_op_whatever_the_name(mapping, write_file, tmp_path) -> None:
    src = _export(write_file)
    data_dir = tmp_path / "data"
    (first,) = land_files([src], "us", data_dir, mapping, now=EXTRACTED_AT)
    later = datetime(2026, 11, 3, tzinfo=UTC)
    again, renamed = land_files(
        [src, write_file("copy of export.csv", src.read_bytes())], "us", data_dir, mapping, now=later
    )
    for r in (again, renamed):
        assert r.status == "already landed"
        assert r.landed_path == first.landed_path
        assert "already landed" in r.message
        assert (r.rows_in, r.rows_ok, r.rows_quarantined) == (3, 2, 1)
    assert sorted(p.name for p in (data_dir / "landing" / "us").iterdir()) == [
        first.landed_path.name,
        first.landed_path.name + ".meta.json",
    ]
    (listed,) = list_landing_files(data_dir, "us")
    assert listed.extracted_at == EXTRACTED_AT  # the first landing is the fact that counts


def test_a_changed_export_with_the_same_name_lands_beside_the_first(mapping, write_file, tmp_path) -> None:
    data_dir = tmp_path / "data"
    land_files([_export(write_file)], "us", data_dir, mapping, now=EXTRACTED_AT)
    changed = write_file("harvest_sept.csv", csv_bytes(HARVEST_HEADER, [harvest_row(Hours="1.00")]))
    (result,) = land_files([changed], "us", data_dir, mapping, now=EXTRACTED_AT)
    assert result.status == "landed"
    assert len(list_landing_files(data_dir, "us")) == 2


def test_rejected_files_are_not_copied_and_other_files_still_land(mapping, write_file, tmp_path) -> None:
    bad = write_file("notes.txt", b"just some notes\n")
    good = _export(write_file)
    rejected, landed = land_files([bad, good], "us", tmp_path / "data", mapping, now=EXTRACTED_AT)
    assert rejected.status == "rejected" and rejected.landed_path is None
    assert rejected.error is not None and rejected.error.startswith("notes.txt: not a recognised format")
    assert rejected.quarantined_by_reason == {"unknown_format": 1}
    assert landed.status == "landed"
    assert [f.original_name for f in list_landing_files(tmp_path / "data", "us")] == ["harvest_sept.csv"]


def test_a_missing_file_is_rejected_not_raised(mapping, tmp_path) -> None:
    (result,) = land_files([tmp_path / "nope.csv"], "us", tmp_path / "data", mapping, now=EXTRACTED_AT)
    assert result.status == "rejected" and "nope.csv: cannot be read" in (result.error or "")


def test_listing_ignores_sidecars_and_temporary_files(mapping, write_file, tmp_path) -> None:
    data_dir = tmp_path / "data"
    land_files([_export(write_file)], "us", data_dir, mapping, fmt="harvest_csv", now=EXTRACTED_AT)
    folder = data_dir / "landing" / "us"
    for junk in (".half-written.csv.tmp", "upload.csv.part", "~lock.csv#", ".DS_Store"):
        (folder / junk).write_bytes(b"x")
    (listed,) = list_landing_files(data_dir, "us")
    assert listed.format == "harvest_csv"
    assert listed.original_name == "harvest_sept.csv"
    assert (listed.work_date_min, listed.work_date_max) == (date(2026, 9, 14), date(2026, 9, 16))


def test_files_copied_in_without_a_sidecar_are_listed_with_hash_and_mtime(write_file, tmp_path) -> None:
    folder = tmp_path / "data" / "landing" / "uk"
    folder.mkdir(parents=True)
    path = folder / "dropped.csv"
    path.write_bytes(csv_bytes(HARVEST_HEADER, [harvest_row()]))
    os.utime(path, (1_790_000_000, 1_790_000_000))
    (listed,) = list_landing_files(tmp_path / "data", "uk")
    assert listed.file_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert listed.format is None
    assert listed.extracted_at == datetime.fromtimestamp(1_790_000_000, tz=UTC)
    assert list_landing_files(tmp_path / "data", "de") == []
