"""Fixtures for the great-expectations ledger suite: hand-built ledger frames with the contract dtypes
and one shared import of great_expectations (it takes several seconds)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import polars_schema


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gx: runs the great-expectations suite (shares one slow import)")


@pytest.fixture(scope="module")
def gx_loaded() -> object:
    """Import great_expectations once per test module so no single test pays for it unnoticed."""
    import great_expectations

    return great_expectations


def line(
    entry: str,
    no: int,
    *,
    debit: int = 0,
    credit: int = 0,
    currency: str = "USD",
    account: str | None = "1210",
    posting_date: date = date(2026, 3, 31),
    entity: str = "acme",
) -> dict[str, Any]:
    """One journal line; amounts in minor units of a two-decimal currency, Decimal columns derived."""
    d, c = Decimal(debit).scaleb(-2), Decimal(credit).scaleb(-2)
    return {
        "line_id": f"{entry}-L{no}",
        "entry_id": entry,
        "line_no": no,
        "entity": entity,
        "posting_date": posting_date,
        "entry_type": "revenue_accrual",
        "account": account,
        "account_role": "unbilled_receivables" if debit else "service_revenue",
        "currency": currency,
        "debit_minor": debit,
        "credit_minor": credit,
        "debit": d,
        "credit": c,
        "functional_currency": "USD",
        "functional_debit": d,
        "functional_credit": c,
        "reporting_currency": "USD",
        "reporting_debit": d,
        "reporting_credit": c,
        "customer_ref": "C-ACME",
        "project_code": "P-1",
        "customer_job": "Acme:Website",
        "document_id": None,
        "source_count": 1,
        "rule_version": "r1",
    }


def invoice(
    number: str, *, subtotal: int = 10_000, tax: int = 2_000, total: int | None = None
) -> dict[str, Any]:
    total = subtotal + tax if total is None else total
    return {
        "invoice_id": f"id-{number}-{subtotal}-{tax}",
        "invoice_number": number,
        "entity": "acme",
        "customer_ref": "C-ACME",
        "client_name": "Acme",
        "currency": "USD",
        "period_start": date(2026, 3, 1),
        "period_end": date(2026, 3, 31),
        "issue_date": date(2026, 3, 31),
        "due_date": date(2026, 4, 30),
        "subtotal_minor": subtotal,
        "tax_minor": tax,
        "total_minor": total,
        "subtotal": Decimal(subtotal).scaleb(-2),
        "tax": Decimal(tax).scaleb(-2),
        "total": Decimal(total).scaleb(-2),
        "tax_rate": Decimal("0.2"),
        "line_count": 1,
        "entry_id": "INV-E",
        "rule_version": "r1",
    }


def lines_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=polars_schema("ledger.journal_lines"))


def invoices_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=polars_schema("ledger.invoices"))


def balanced_rows() -> list[dict[str, Any]]:
    """Two balanced entries: a two-line accrual and a three-line invoice entry with tax."""
    return [
        line("E1", 1, debit=15_000, account="1210"),
        line("E1", 2, credit=15_000, account="4000"),
        line("E2", 1, debit=12_000, account="1200"),
        line("E2", 2, credit=10_000, account="4000"),
        line("E2", 3, credit=2_000, account="2200"),
    ]
