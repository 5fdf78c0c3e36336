"""Fixtures for extraction tests: a small mapping document and a writer for hand-made export files."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pm_accounting_pipeline.config.schema import MappingDocument, parse_mapping

EXTRACTED_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

HARVEST_HEADER = [
    "Date", "Client", "Project", "Project Code", "Task", "Notes", "Hours", "Hours Rounded", "Billable?",
    "Invoiced?", "Approved?", "First Name", "Last Name", "Employee Id", "Roles", "Employee?",
    "Billable Rate", "Billable Amount", "Cost Rate", "Cost Amount", "Currency", "External Reference URL",
]  # fmt: skip


def harvest_row(**overrides: str) -> dict[str, str]:
    row = {
        "Date": "2026-09-14", "Client": "Globex Corporation", "Project": "Website Redesign",
        "Project Code": "GLX-001", "Task": "Development", "Notes": "Sprint planning", "Hours": "7.50",
        "Hours Rounded": "7.50", "Billable?": "Yes", "Invoiced?": "No", "Approved?": "Yes",
        "First Name": "Mary", "Last Name": "Smith", "Employee Id": "3300012", "Roles": "Engineering",
        "Employee?": "Yes", "Billable Rate": "150.00", "Billable Amount": "1,125.00", "Cost Rate": "70.00",
        "Cost Amount": "525.00", "Currency": "US Dollar - USD", "External Reference URL": "",
    }  # fmt: skip
    row.update(overrides)
    return row


def csv_bytes(
    header: Sequence[str], rows: Sequence[dict[str, str]], *, encoding: str = "utf-8", newline: str = "\n"
) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(header), lineterminator=newline, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode(encoding)


@pytest.fixture
def mapping() -> MappingDocument:
    return parse_mapping(
        {
            "version": 1,
            "start_date": "2026-01-01",
            "entities": [
                {
                    "id": "us",
                    "name": "US",
                    "functional_currency": "USD",
                    "harvest_csv": {"date_format": "YYYY-MM-DD"},
                },
                {
                    "id": "uk",
                    "name": "UK",
                    "functional_currency": "GBP",
                    "harvest_csv": {"date_format": "DD/MM/YYYY"},
                },
                {
                    "id": "de",
                    "name": "DE",
                    "functional_currency": "EUR",
                    "harvest_csv": {"date_format": "DD.MM.YYYY", "decimal_separator": ","},
                },
                {"id": "auto", "name": "Auto-detect", "functional_currency": "USD"},
            ],
        }
    )


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / "drops" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return write
