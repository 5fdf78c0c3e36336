"""The analysts' billing views: open items (what is still owed per document), AR aging built on them,
retainer balances and the client review list."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.dedupe import decision_log
from pm_accounting_pipeline.lib.warehouse import connect_in_memory
from pm_accounting_pipeline_tests.test_billing.helpers import APRIL, MARCH, Books, acme, mapping_with
from pm_accounting_pipeline_tests.test_core.builders import make_raw


def _payment(invoice_id: str, number: str, amount_minor: int) -> pl.DataFrame:
    """One row of ledger.payments (the payments step's table) for an invoice in USD."""
    schema = polars_schema("ledger.payments")
    row = {name: None for name in schema.names()}
    row.update(
        payment_id="p1",
        entity="us",
        invoice_id=invoice_id,
        invoice_number=number,
        customer_ref="C-ACME",
        payment_date=date(2026, 4, 15),
        currency="USD",
        amount_minor=amount_minor,
        amount=Decimal(amount_minor) / 100,
        source_file="payments.csv",
        source_row=1,
        functional_currency="USD",
        reporting_currency="USD",
        fx_rate_functional=Decimal(1),
        fx_rate_reporting=Decimal(1),
        rate_direction="USD->USD",
        fx_rate_date=date(2026, 4, 15),
        fx_rate_source="identity",
        fx_rate_type="spot",
        functional_minor=amount_minor,
        reporting_minor=amount_minor,
        carrying_functional_minor=amount_minor,
        carrying_reporting_minor=amount_minor,
        realised_functional_minor=0,
        realised_reporting_minor=0,
        open_after_minor=0,
        entry_id="e1",
    )
    return pl.DataFrame([row], schema=schema)


def test_open_items_and_ar_aging_follow_credits_retainers_and_partial_payments(tmp_path: Path) -> None:
    books = Books(
        tmp_path,
        mapping_with(
            retainers=[
                {"id": "r1", "client": "Acme Corporation", "amount": "500.00", "issue_date": "2026-03-05"}
            ]
        ),
    )
    books.load([acme("a1", "7.5", 2), acme("a2", "2", 3, task="Design")], [MARCH])
    books.close(MARCH)
    books.load([acme("a1", "7.5", 2)], [MARCH, APRIL])  # a2 deleted after invoicing
    books.close(APRIL)
    invoice = (
        books.table("ledger.billing_documents")
        .filter(pl.col("document_number") == "us-202603-0001")
        .row(0, named=True)
    )
    books.lake.write_partitions(
        "ledger.payments",
        _payment(invoice["document_id"], "us-202603-0001", 50000),
        [("us", "2026-04-01")],
        "payments",
        pl.lit("2026-04-01"),
    )
    con = connect_in_memory(books.lake)
    rows = con.sql(
        "SELECT document_number, document_type, total, settled, paid, open FROM analytics.open_items ORDER BY document_number"
    ).fetchall()
    # invoice 1539.00 - 500.00 retainer - 324.00 credit memo - 500.00 partial payment = 215.00 open
    assert rows == [
        (
            "us-202603-0001",
            "invoice",
            Decimal("1539.000"),
            Decimal("-824.000"),
            Decimal("500.000"),
            Decimal("215.000"),
        ),
        (
            "us-202603-0002",
            "retainer_invoice",
            Decimal("500.000"),
            Decimal("0.000"),
            Decimal("0.000"),
            Decimal("500.000"),
        ),
        (
            "us-CN-202604-0001",
            "credit_memo",
            Decimal("-324.000"),
            Decimal("324.000"),
            Decimal("0.000"),
            Decimal("0.000"),
        ),
    ]
    aging = con.sql("SELECT customer_ref, invoices, open_total FROM analytics.ar_aging").fetchall()
    assert aging == [("C-ACME", 2, Decimal("715.000"))]
    retainers = con.sql(
        "SELECT customer_ref, issued, drawn, balance FROM analytics.retainer_balances"
    ).fetchall()
    assert retainers == [("C-ACME", Decimal("500.000"), Decimal("500.000"), Decimal("0.000"))]


def test_ar_aging_falls_back_to_ledger_invoices_for_months_billing_has_not_run(tmp_path: Path) -> None:
    books = Books(tmp_path, mapping_with())
    books.load([acme("a1", "7.5", 2)], [MARCH])
    books.invoice(MARCH)
    con = connect_in_memory(books.lake)
    assert con.sql("SELECT document_number, open FROM analytics.open_items").fetchall() == [
        ("us-202603-0001", Decimal("1215.000"))
    ]


def test_client_review_view_lists_pending_spellings(tmp_path: Path) -> None:
    books = Books(tmp_path, mapping_with())
    raw = make_raw([{"source_id": "u1", "entity": "uk", "client": "Brittania Ltd", "project": "Migration"}])
    books.lake.write_partitions(
        "staging.client_matches",
        decision_log(raw, books.mapping),
        [("uk", "2026-03-02")],
        "billing",
        pl.lit("2026-03-02"),
    )
    con = connect_in_memory(books.lake)
    assert con.sql(
        "SELECT source_name, suggested_client, score, rows FROM analytics.client_review"
    ).fetchall() == [("Brittania Ltd", "Britannia Ltd", 88.89, 1)]
