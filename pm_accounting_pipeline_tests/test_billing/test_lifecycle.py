"""Billing over several months against a lake run like the pipeline: source changes after
invoicing become credit memos or next-invoice adjustments (never edits of issued documents),
retainers are drawn down, rates stay frozen, re-runs change nothing, and the books stay right:
unbilled receivables of billed work net to zero and receivables equal what the documents say."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline_tests.test_billing.helpers import (
    APRIL,
    MARCH,
    MAY,
    Books,
    acme,
    balances,
    mapping_with,
)

# Acme: 150.00 USD/h, US tax 8%. Unbilled 1210, receivable 1200, revenue 4000/4010 (Design), tax 2200.
MARCH_ROWS = [acme("a1", "7.5", 2), acme("a2", "2", 3, task="Design")]  # 1125.00 + 300.00; invoice 1539.00
# In April the source says: a1 was 5.5 h, a2 was deleted, "late" (1 h on 20 March) was approved late.
APRIL_SOURCE = [acme("a1", "5.5", 2), acme("late", "1", 20), acme("b1", "4", 2, month=4)]


def _books(tmp_path: Path, **sections) -> Books:
    return Books(tmp_path, mapping_with(**sections))


def _docs(books: Books) -> list[tuple]:
    docs = books.table("ledger.billing_documents").sort("issue_date", "document_number")
    return docs.select(
        "document_number", "document_type", "corrects_document_number", "total_minor", "amount_due_minor"
    ).rows()


def _assert_books_consistent(books: Books) -> None:
    """Every billed entry is relieved from unbilled exactly; receivables equal open documents."""
    tb = balances(books.journal())
    assert tb.get(("1210", "USD"), Decimal(0)) == 0
    docs = books.table("ledger.billing_documents")
    assert tb[("1200", "USD")] == Decimal(int(docs["amount_due_minor"].sum())) / 100


def test_source_changes_after_invoicing_become_a_credit_memo_and_next_invoice_lines(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load(APRIL_SOURCE, [MARCH, APRIL])  # March's days re-materialised with the edits
    books.close(APRIL)
    assert _docs(books) == [
        ("us-202603-0001", "invoice", None, 153900, 153900),
        # April: b1 600.00 + late March work 150.00 = 750.00, tax 60.00
        ("us-202604-0001", "invoice", None, 81000, 81000),
        # a1 -2 h and a2 -2 h at the frozen 150.00: -600.00, tax -48.00
        ("us-CN-202604-0001", "credit_memo", "us-202603-0001", -64800, -64800),
    ]
    credit = books.table("ledger.billing_document_lines").join(
        books.table("ledger.billing_documents")
        .filter(pl.col("document_type") == "credit_memo")
        .select("document_id"),
        on="document_id",
    )
    assert sorted(credit.select("description", "amount_minor").rows()) == [
        ("Correction to us-202603-0001: ACME:Website - Design", -30000),
        ("Correction to us-202603-0001: ACME:Website - Development", -30000),
    ]
    # The March invoice itself is unchanged: same lines, same total, issued once.
    march = books.table("ledger.billing_documents").filter(pl.col("document_number") == "us-202603-0001")
    assert march["total_minor"].to_list() == [153900]
    _assert_books_consistent(books)


def test_credit_memo_is_applied_to_the_invoice_it_corrects(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load(APRIL_SOURCE, [MARCH, APRIL])
    books.close(APRIL)
    settlements = books.table("ledger.settlements").sort("document_number")
    assert settlements.select(
        "document_number", "kind", "amount_minor", "counter_document_number"
    ).rows() == [
        ("us-202603-0001", "credit_applied", -64800, "us-CN-202604-0001"),
        ("us-CN-202604-0001", "credit_applied", 64800, "us-202603-0001"),
    ]


def test_credits_status_names_the_credited_source_entries_for_the_pm_side(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load(APRIL_SOURCE, [MARCH, APRIL])
    books.close(APRIL)
    status = books.table("ledger.credit_status").sort("source_id")
    assert status.select(
        "source_id", "change", "credited_hours", "credited_minor", "original_document_number"
    ).rows() == [
        ("a1", "edited", Decimal("2.0000"), 30000, "us-202603-0001"),
        ("a2", "removed", Decimal("2.0000"), 30000, "us-202603-0001"),
    ]
    exported = pl.read_csv(tmp_path / "exports" / "us" / "credits" / "credits-2026-04.csv")
    assert exported["source_id"].to_list() == ["a1", "a2"]
    assert exported["credited_document_number"].to_list() == ["us-CN-202604-0001"] * 2


def test_next_invoice_mode_puts_the_corrections_on_the_next_invoice(tmp_path: Path) -> None:
    books = _books(tmp_path, billing={"corrections": "next_invoice"})
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load(APRIL_SOURCE, [MARCH, APRIL])
    books.close(APRIL)
    # 600.00 + 150.00 - 600.00 = 150.00, tax 12.00
    assert _docs(books) == [
        ("us-202603-0001", "invoice", None, 153900, 153900),
        ("us-202604-0001", "invoice", None, 16200, 16200),
    ]
    lines = books.table("ledger.billing_document_lines").join(
        books.table("ledger.billing_documents")
        .filter(pl.col("document_number") == "us-202604-0001")
        .select("document_id"),
        on="document_id",
    )
    assert lines.sort("line_no").select("line_type", "description", "amount_minor").rows() == [
        ("time", "Website - Development", 60000),
        ("adjustment", "Work not invoiced before: ACME:Website - Development", 15000),
        ("adjustment", "Correction to us-202603-0001: ACME:Website - Design", -30000),
        ("adjustment", "Correction to us-202603-0001: ACME:Website - Development", -30000),
    ]
    _assert_books_consistent(books)


def test_next_invoice_mode_issues_a_credit_memo_when_there_is_no_next_invoice(tmp_path: Path) -> None:
    books = _books(tmp_path, billing={"corrections": "next_invoice"})
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load([acme("a1", "7.5", 2)], [MARCH, APRIL])  # a2 deleted, no April work
    books.close(APRIL)
    assert _docs(books)[1:] == [("us-CN-202604-0001", "credit_memo", "us-202603-0001", -32400, -32400)]
    _assert_books_consistent(books)


def test_rerunning_a_billed_month_changes_nothing_and_rewrites_the_same_bytes(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    files = sorted((tmp_path / "lake").rglob("2026-03-01.billing.parquet"))
    before = {p: p.read_bytes() for p in files}
    books.bill(MARCH)
    assert {p: p.read_bytes() for p in files} == before


def test_rebilling_a_month_after_a_source_change_never_edits_its_issued_invoice(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load([acme("a1", "8.5", 2), acme("a2", "2", 3, task="Design")], [MARCH])  # +1 h on a1
    result = books.close(MARCH)  # ledger/invoices recomputes March; billing keeps what it issued
    assert _docs(books) == [
        ("us-202603-0001", "invoice", None, 153900, 153900),
        # the extra hour at 150.00 + 8% on a supplementary invoice
        ("us-202603-0002", "invoice", None, 16200, 16200),
    ]
    assert result.drift.select("invoice_number", "base_lines_minor", "issued_time_minor").rows() == [
        ("us-202603-0001", 157500, 142500)
    ]
    _assert_books_consistent(books)


def test_work_moved_to_another_client_is_credited_to_one_and_billed_to_the_other(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    moved = [acme("a1", "7.5", 2), acme("a2", "2", 3, client="Trusted Client", project="Retainer")]
    books.load(moved, [MARCH, APRIL])
    books.close(APRIL)
    # a2 leaves Acme (-300.00 - 24.00); Trusted Client pays the default 100.00/h: 200.00 + 16.00
    assert _docs(books)[1:] == [
        ("us-202604-0001", "invoice", None, 21600, 21600),
        ("us-CN-202604-0001", "credit_memo", "us-202603-0001", -32400, -32400),
    ]
    assert books.table("ledger.credit_status")["change"].to_list() == ["moved"]
    _assert_books_consistent(books)


def test_a_rate_change_after_invoicing_never_reprices_the_invoiced_work(tmp_path: Path) -> None:
    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    # The Acme card is raised to 160.00 from 1 January: the March days are rated again.
    books.mapping = mapping_with(
        extra_cards=[
            {
                "id": "acme-160",
                "client": "Acme Corporation",
                "bill_rate": "160",
                "currency": "USD",
                "valid_from": "2026-01-01",
            }
        ]
    )
    books.load(MARCH_ROWS, [MARCH, APRIL])
    books.close(APRIL)
    assert len(_docs(books)) == 1  # nothing for the customer
    tb = balances(books.journal())
    # accruals now say 9.5 h x 160.00 = 1520.00; the rate-frozen correction takes revenue back to 1425.00
    assert tb[("4000", "USD")] + tb[("4010", "USD")] == Decimal("-1425.00")
    assert tb.get(("1210", "USD"), Decimal(0)) == 0
    entries = books.table("ledger.journal_entries").filter(pl.col("entry_type") == "billing_correction")
    assert entries["total_debit_minor"].to_list() == [9500]


def test_retainer_invoice_creates_a_liability_that_later_invoices_draw_down(tmp_path: Path) -> None:
    books = _books(
        tmp_path,
        retainers=[
            {"id": "acme-ret", "client": "Acme Corporation", "amount": "2000.00", "issue_date": "2026-03-05"}
        ],
    )
    books.load(MARCH_ROWS, [MARCH])
    books.close(MARCH)
    books.load([*MARCH_ROWS, acme("b1", "4", 2, month=4)], [APRIL])
    books.close(APRIL)
    assert _docs(books) == [
        # the invoice keeps the ledger/invoices number; the retainer invoice takes the next one
        ("us-202603-0002", "retainer_invoice", None, 200000, 200000),
        ("us-202603-0001", "invoice", None, 153900, 0),  # 1539.00 drawn from the 2000.00
        ("us-202604-0001", "invoice", None, 64800, 64800 - 46100),  # the remaining 461.00
    ]
    movements = books.table("ledger.retainer_movements").sort("movement_date", "document_number")
    assert movements.select("kind", "amount_minor").rows() == [
        ("issued", 200000),
        ("drawn", -153900),
        ("drawn", -46100),
    ]
    tb = balances(books.journal())
    assert tb[("2300", "USD")] == 0  # retainer liability fully used
    _assert_books_consistent(books)


def test_monthly_retainer_issues_one_invoice_per_month_until_its_end(tmp_path: Path) -> None:
    books = _books(
        tmp_path,
        retainers=[
            {
                "id": "r",
                "client": "Trusted Client",
                "amount": "100.00",
                "issue_date": "2026-03-31",
                "recurrence": "monthly",
                "end_date": "2026-04-30",
            }
        ],
    )
    books.load([], [MARCH, APRIL, MAY])
    for month in (MARCH, APRIL, MAY):
        books.close(month)
    retainers = books.table("ledger.billing_documents").sort("issue_date")
    # 31 March, then the last day of April (30); nothing in May
    assert retainers.select("document_number", "issue_date").rows() == [
        ("us-202603-0001", MARCH.replace(day=31)),
        ("us-202604-0001", APRIL.replace(day=30)),
    ]
    assert balances(books.journal())[("2300", "USD")] == Decimal("-200.00")


def test_billing_refuses_a_month_whose_days_are_not_all_materialised(tmp_path: Path) -> None:
    from pm_accounting_pipeline.lib.billing import IncompletePeriodError

    books = _books(tmp_path)
    books.load(MARCH_ROWS, [MARCH])
    with pytest.raises(IncompletePeriodError, match="2026-04 would freeze documents while 30 day"):
        books.bill(APRIL)


def test_late_approval_is_billed_on_the_next_invoice(tmp_path: Path) -> None:
    books = _books(tmp_path)
    held = acme("h1", "3", 10, approved_raw="No")
    books.load([*MARCH_ROWS, held], [MARCH])
    books.close(MARCH)
    assert _docs(books)[0][3] == 153900  # held work is not billed
    books.load([*MARCH_ROWS, {**held, "approved_raw": "Yes"}], [MARCH, APRIL])
    books.close(APRIL)
    # 3 h x 150.00 = 450.00 + 8% on an April invoice
    assert _docs(books)[1] == ("us-202604-0001", "invoice", None, 48600, 48600)
    _assert_books_consistent(books)


def test_jpy_correction_credits_whole_yen_at_the_frozen_rate(tmp_path: Path) -> None:
    books = _books(tmp_path)
    tokyo = {"client": "Tokyo Trading KK", "project": "Import"}
    books.load([acme("t1", "3", 4, **tokyo)], [MARCH])
    books.close(MARCH)  # 3 h x 12345 = 37035 JPY + 8% (2962.8 -> 2963) = 39998
    books.load([acme("t1", "2.5", 4, **tokyo)], [MARCH, APRIL])
    books.close(APRIL)
    # 2.5 h x 12345 = 30862.5 -> 30863, so -6172 JPY; tax 8% of -6172 = -493.76 -> -494; total -6666
    assert _docs(books) == [
        ("us-202603-0001", "invoice", None, 39998, 39998),
        ("us-CN-202604-0001", "credit_memo", "us-202603-0001", -6666, -6666),
    ]
    tb = balances(books.journal())
    assert tb.get(("1210", "JPY"), Decimal(0)) == 0
    assert tb[("1200", "JPY")] == Decimal(39998 - 6666)
