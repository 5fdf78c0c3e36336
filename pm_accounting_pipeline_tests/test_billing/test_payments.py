"""Payments settle any receivable document billing issued: invoices, supplementary invoices and
retainer invoices; credit memos reduce what can be paid; unusable payments are quarantined with a
reason. Open items (Python and the SQL view) agree with the payments applied."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.core.billing.balances import open_items
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.revaluation import read_payments, settle
from pm_accounting_pipeline.lib.warehouse import connect_in_memory
from pm_accounting_pipeline_tests.test_billing.helpers import MARCH, Books, acme, mapping_with
from pm_accounting_pipeline_tests.test_group.builders import hand_rates

MARCH_END = (date(2026, 3, 1), date(2026, 3, 31))


@pytest.fixture
def books(tmp_path: Path) -> Books:
    """March: invoice 0001 = 1125.00 + 300.00 + 8% = 1539.00, less the 500.00 retainer = 1039.00
    due; retainer invoice 0002 = 500.00; then work added after issue is billed on the
    supplementary invoice 0003 = 150.00 + 12.00 = 162.00."""
    b = Books(
        tmp_path,
        mapping_with(
            retainers=[
                {"id": "r1", "client": "Acme Corporation", "amount": "500.00", "issue_date": "2026-03-05"}
            ]
        ),
    )
    rows = [acme("a1", "7.5", 2), acme("a2", "2", 3, task="Design")]
    b.load(rows, [MARCH])
    b.close(MARCH)
    b.load([*rows, acme("a3", "1", 20)], [MARCH])
    b.close(MARCH)
    return b


def _settle(books: Books, csv: str):
    folder = books.root / "landing" / "us" / "payments"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bank.csv").write_text("invoice_number,date,amount,currency,reference\n" + csv)
    return settle(
        read_payments(folder, "us", MARCH_END[0]),
        books.table("ledger.invoices"),
        books.table("ledger.journal_lines").filter(pl.col("entry_type") == "invoice"),
        books.mapping,
        "us",
        hand_rates(),
        *MARCH_END,
        documents=books.table("ledger.billing_documents"),
        settlements=books.table("ledger.settlements"),
    )


def test_documents_of_the_scenario(books: Books) -> None:
    docs = books.table("ledger.billing_documents").sort("document_number")
    assert docs.select("document_number", "document_type", "total_minor", "amount_due_minor").rows() == [
        ("us-202603-0001", "invoice", 153900, 103900),
        ("us-202603-0002", "retainer_invoice", 50000, 50000),
        ("us-202603-0003", "invoice", 16200, 16200),
    ]
    assert docs["base_invoice_id"].null_count() == 2  # 0002 and 0003 are not ledger/invoices invoices


def test_retainer_and_supplementary_invoices_are_paid_and_bad_payments_quarantined(books: Books) -> None:
    res = _settle(
        books,
        "us-202603-0002,2026-03-20,200.00,USD,R-PART\n"  # partial payment of the retainer invoice
        "us-202603-0003,2026-03-25,162.00,USD,SUPP\n"  # the supplementary invoice in full
        "us-202603-0001,2026-03-26,1039.01,USD,OVER\n"  # one cent more than the 1039.00 due
        "us-202603-0099,2026-03-27,10.00,USD,NOPE\n",  # no such document
    )
    paid = res.payments.sort("payment_date")
    assert paid.select("invoice_number", "amount_minor", "open_after_minor").rows() == [
        ("us-202603-0002", 20000, 30000),
        ("us-202603-0003", 16200, 0),
    ]
    docs = dict(books.table("ledger.billing_documents").select("document_number", "document_id").iter_rows())
    assert paid["invoice_id"].to_list() == [docs["us-202603-0002"], docs["us-202603-0003"]]
    q = res.quarantine.sort("source_row")
    assert q.select("source_row", "reason").rows() == [(3, "overpayment"), (4, "unknown_invoice")]
    assert "more than the 103900 payable" in q["detail"][0]
    assert_balanced(res.journal.lines)
    # Cr accounts receivable 362.00 in all, Dr cash 362.00
    ar = res.journal.lines.filter(pl.col("account") == "1200")
    assert (ar["credit"].sum(), ar["debit"].sum()) == (Decimal("362.000"), Decimal("0.000"))

    # Open items agree: retainer 500.00 - 200.00 = 300.00; supplement paid; invoice 1039.00 open.
    books.lake.write_partitions(
        "ledger.payments", res.payments, [("us", "2026-03-01")], "payment", pl.lit("2026-03-01")
    )
    items = open_items(
        books.table("ledger.billing_documents"),
        books.table("ledger.settlements"),
        books.table("ledger.payments"),
    )
    assert items.select("document_number", "open_minor").rows() == [
        ("us-202603-0001", 103900),
        ("us-202603-0002", 30000),
        ("us-202603-0003", 0),
    ]
    con = connect_in_memory(books.lake)
    assert con.sql("SELECT document_number, open FROM analytics.open_items ORDER BY 1").fetchall() == [
        ("us-202603-0001", Decimal("1039.000")),
        ("us-202603-0002", Decimal("300.000")),
        ("us-202603-0003", Decimal("0.000")),
    ]
    assert con.sql("SELECT invoices, open_total FROM analytics.ar_aging").fetchall() == [
        (2, Decimal("1339.000"))
    ]


def test_a_credit_memo_reduces_what_can_be_paid_and_is_not_payable_itself(books: Books) -> None:
    folder = books.root / "landing" / "us" / "credits"
    folder.mkdir(parents=True)
    (folder / "c.csv").write_text(
        "credit_id,document_number,date,amount,reason\nc1,us-202603-0003,2026-03-31,50.00,goodwill\n"
    )
    books.bill(MARCH)  # the credit memo: -50.00 - 4.00 tax = -54.00, applied to 0003 (162.00)
    cm = (
        books.table("ledger.billing_documents")
        .filter(pl.col("document_type") == "credit_memo")
        .row(0, named=True)
    )
    assert (cm["total_minor"], cm["corrects_document_number"]) == (-5400, "us-202603-0003")
    res = _settle(
        books,
        "us-202603-0003,2026-04-01,108.00,USD,REST\n"  # 162.00 - 54.00 = 108.00 still payable
        f"{cm['document_number']},2026-04-02,1.00,USD,CM\n",
    )
    assert res.payments.height == 0  # dated in April, outside the settled period: checked, not booked
    assert res.quarantine.height == 0
    april = settle(
        read_payments(books.root / "landing" / "us" / "payments", "us", date(2026, 4, 1)),
        books.table("ledger.invoices"),
        books.table("ledger.journal_lines").filter(pl.col("entry_type") == "invoice"),
        books.mapping,
        "us",
        hand_rates(),
        date(2026, 4, 1),
        date(2026, 4, 30),
        documents=books.table("ledger.billing_documents"),
        settlements=books.table("ledger.settlements"),
    )
    assert april.payments.select("invoice_number", "amount_minor", "open_after_minor").rows() == [
        ("us-202603-0003", 10800, 0)
    ]
    assert april.quarantine.select("source_row", "reason").rows() == [(2, "not_receivable")]
