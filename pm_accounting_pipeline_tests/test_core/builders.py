"""Small hand-built inputs for the core tests: a mapping document and raw time entries."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument, parse_mapping
from pm_accounting_pipeline.contracts.layers import polars_schema

EXTRACTED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def exempt_client() -> dict[str, Any]:
    """A us client in USD whose invoices carry no tax (tax profile `exempt`), as a mapping entry."""
    return {
        "name": "Exempt Foundation",
        "customer_ref": "C-EXEMPT",
        "entity": "us",
        "currency": "USD",
        "tax_profile": "exempt",
    }


def trusted_client() -> dict[str, Any]:
    """A us client in USD whose work and expenses are billed without approval, as a mapping entry."""
    return {
        "name": "Trusted Client",
        "customer_ref": "C-TRUST",
        "entity": "us",
        "currency": "USD",
        "require_approval": False,
    }


def mapping_dict() -> dict[str, Any]:
    """Two entities (US in USD, UK in GBP) with clients billing in USD, GBP, JPY and KWD."""
    return {
        "version": 1,
        "reporting_currency": "USD",
        "start_date": "2026-01-01",
        "entities": [
            {"id": "us", "name": "Example US Inc", "functional_currency": "USD", "tax": {"rate": "0.08"}},
            {
                "id": "uk",
                "name": "Example UK Ltd",
                "functional_currency": "GBP",
                "tax": {"rate": "0.20"},
                "harvest_csv": {"decimal_separator": ","},
            },
        ],
        "clients": [
            {
                "name": "Acme Corporation",
                "customer_ref": "C-ACME",
                "entity": "us",
                "currency": "USD",
                "source_id": "1001",
                "aliases": ["ACME Corp"],
                "payment_terms_days": 30,
            },
            {"name": "Tokyo Trading KK", "customer_ref": "C-TOKYO", "entity": "us", "currency": "JPY"},
            {"name": "Gulf Partners", "customer_ref": "C-GULF", "entity": "us", "currency": "KWD"},
            exempt_client(),
            trusted_client(),
            {"name": "Britannia Ltd", "customer_ref": "C-BRIT", "entity": "uk", "currency": "GBP"},
            {"name": "Euro Client GmbH", "customer_ref": "C-EURO", "entity": "uk", "currency": "EUR"},
        ],
        "projects": [
            {
                "name": "Website",
                "client": "Acme Corporation",
                "code": "ACM-1",
                "customer_job": "ACME:Website",
            },
            {"name": "Mobile App", "client": "Acme Corporation", "customer_job": "ACME:Mobile"},
            {"name": "Import", "client": "Tokyo Trading KK", "customer_job": "TOKYO:Import"},
            {"name": "Audit", "client": "Gulf Partners", "customer_job": "GULF:Audit"},
            {"name": "Grant", "client": "Exempt Foundation", "customer_job": "EXEMPT:Grant"},
            {"name": "Retainer", "client": "Trusted Client", "customer_job": "TRUST:Retainer"},
            {"name": "Migration", "client": "Britannia Ltd", "customer_job": "BRIT:Migration"},
            {"name": "Rollout", "client": "Euro Client GmbH", "customer_job": "EURO:Rollout"},
            {
                "name": "Internal Training",
                "client": "Acme Corporation",
                "customer_job": "ACME:Internal",
                "billable": False,
            },
        ],
        "tasks": [
            {"name": "Development", "item": "DEV"},
            {"name": "Design", "item": "DES", "revenue_account": "4010"},
            {"name": "Admin", "item": "ADM", "billable_by_default": False},
        ],
        "rate_cards": [
            {"id": "default-usd", "bill_rate": "100", "cost_rate": "40", "currency": "USD"},
            {"id": "acme-2026", "client": "Acme Corporation", "bill_rate": "150", "currency": "USD"},
            {"id": "tokyo", "client": "Tokyo Trading KK", "bill_rate": "12345", "currency": "JPY"},
            {"id": "gulf", "client": "Gulf Partners", "bill_rate": "45.125", "currency": "KWD"},
            {"id": "exempt", "client": "Exempt Foundation", "bill_rate": "99.99", "currency": "USD"},
            {
                "id": "brit",
                "client": "Britannia Ltd",
                "bill_rate": "120",
                "cost_rate": "50",
                "currency": "GBP",
            },
            {"id": "euro", "client": "Euro Client GmbH", "bill_rate": "110", "currency": "EUR"},
            {"id": "uk-cost", "cost_rate": "45", "currency": "GBP"},
        ],
        "rounding": {"use_source_rounded_hours": True},
        "approval": {"require_approval": True},
    }


def make_mapping(**overrides: Any) -> MappingDocument:
    data = mapping_dict()
    data.update(overrides)
    return parse_mapping(data)


_DEFAULTS: dict[str, Any] = {
    "entity": "us",
    "work_date": date(2026, 3, 2),
    "source_system": "canonical_csv",
    "source_file": "drop/2026-03-02.csv",
    "file_hash": "f" * 64,
    "client": "Acme Corporation",
    "client_id": None,
    "project": "Website",
    "project_code": None,
    "task": "Development",
    "person": "Ada Lovelace",
    "person_id": None,
    "email": None,
    "notes": None,
    "hours_raw": "1",
    "rounded_hours_raw": None,
    "billable_raw": "Yes",
    "approved_raw": "Yes",
    "invoiced_raw": "No",
    "bill_rate_raw": None,
    "cost_rate_raw": None,
    "currency_raw": None,
}


def make_raw(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Raw time entries in the exact `raw.time_entries` schema; unspecified fields get defaults.

    source_row defaults to the position (1-based) and source_id to "e<position>".
    """
    schema = polars_schema("raw.time_entries")
    records = []
    for i, row in enumerate(rows, start=1):
        rec = {**_DEFAULTS, "source_row": i, "source_id": f"e{i}", **row}
        rec.setdefault("extracted_at", EXTRACTED_AT)
        rec.setdefault("date_raw", rec["work_date"].isoformat())
        rec.setdefault(
            "source_record", json.dumps({k: str(v) for k, v in sorted(rec.items())}, sort_keys=True)
        )
        rec.setdefault("landing_entity", rec["entity"])
        rec.setdefault("entity_rule", "pm_account")
        records.append(rec)
    return pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)


def assert_contract(table: str, df: pl.DataFrame) -> None:
    """The frame has exactly the contract's columns, in order, with its dtypes, and passes its checks."""
    from pm_accounting_pipeline.contracts.layers import TABLES

    assert df.schema == polars_schema(table), f"{table}: {df.schema} != {polars_schema(table)}"
    TABLES[table].validate(df, lazy=True)


def one(df: pl.DataFrame, **where: Any) -> dict[str, Any]:
    """The single row matching the column values in `where`, as a dict."""
    hit = df.filter(*[pl.col(k) == v for k, v in where.items()])
    assert hit.height == 1, f"expected one row for {where}, got {hit.height}"
    return hit.row(0, named=True)
