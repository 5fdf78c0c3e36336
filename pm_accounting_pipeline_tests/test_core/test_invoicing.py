"""Invoices: totals, tax, numbering, dates and the invoice journal entry."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pm_accounting_pipeline.core.checks import trial_balance, unbalanced_entries
from pm_accounting_pipeline.core.invoicing import build_invoices
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline.core.rounding import round_to_minor
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, make_mapping, make_raw, one

START, END = date(2026, 3, 1), date(2026, 3, 31)
US_ROWS = [
    {"source_id": "a1", "hours_raw": "7.5", "work_date": date(2026, 3, 2)},
    {"source_id": "a2", "hours_raw": "0.25", "work_date": date(2026, 3, 3), "task": "Design"},
    {"source_id": "a3", "hours_raw": "2", "work_date": date(2026, 3, 3), "project": "Mobile App"},
    {"source_id": "held", "hours_raw": "5", "work_date": date(2026, 3, 3), "approved_raw": "No"},
    {"source_id": "feb", "hours_raw": "1", "work_date": date(2026, 2, 27)},
    {
        "source_id": "t1",
        "client": "Tokyo Trading KK",
        "project": "Import",
        "hours_raw": "3",
        "work_date": date(2026, 3, 4),
    },
    {
        "source_id": "x1",
        "client": "Exempt Foundation",
        "project": "Grant",
        "hours_raw": "0.25",
        "work_date": date(2026, 3, 4),
    },
]
UK_ROWS = [
    {
        "source_id": "e1",
        "entity": "uk",
        "client": "Euro Client GmbH",
        "project": "Rollout",
        "hours_raw": "2",
        "work_date": date(2026, 3, 2),
    },
    {
        "source_id": "e2",
        "entity": "uk",
        "client": "Euro Client GmbH",
        "project": "Rollout",
        "hours_raw": "1.5",
        "work_date": date(2026, 3, 5),
    },
    {
        "source_id": "b1",
        "entity": "uk",
        "client": "Britannia Ltd",
        "project": "Migration",
        "hours_raw": "1",
        "work_date": date(2026, 3, 6),
    },
]


@pytest.fixture(scope="module")
def month(mapping, ecb):
    return run_daily(make_raw(US_ROWS + UK_ROWS), mapping, ecb)


@pytest.fixture(scope="module")
def us(month, mapping):
    return build_invoices(month.fx, mapping, "us", START, END)


def test_outputs_match_the_contracts(us):
    assert_contract("ledger.invoices", us.invoices)
    assert_contract("ledger.invoice_lines", us.invoice_lines)
    assert_contract("ledger.journal_entries", us.entries)
    assert_contract("ledger.journal_lines", us.lines)
    assert_contract("ledger.line_sources", us.line_sources)


def test_one_invoice_per_customer_and_currency_numbered_gap_free_in_order(us):
    got = us.invoices.select("invoice_number", "customer_ref", "currency").rows()
    assert got == [
        ("us-202603-0001", "C-ACME", "USD"),
        ("us-202603-0002", "C-EXEMPT", "USD"),
        ("us-202603-0003", "C-TOKYO", "JPY"),
    ]


def test_invoice_lines_group_by_project_and_task_within_the_period(us):
    acme = one(us.invoices, customer_ref="C-ACME")
    lines = us.invoice_lines.filter(pl.col("invoice_id") == acme["invoice_id"]).sort("line_no")
    got = lines.select("line_no", "description", "item", "quantity", "unit_price", "amount_minor").rows()
    assert got == [
        (1, "Mobile App - Development", "DEV", Decimal("2"), Decimal("150"), 30000),
        (2, "Website - Design", "DES", Decimal("0.25"), Decimal("150"), 3750),
        (3, "Website - Development", "DEV", Decimal("7.5"), Decimal("150"), 112500),
    ]
    # February work and held work are not on the March invoice.
    assert lines["source_count"].sum() == 3


def test_invoice_total_is_lines_plus_tax_rounded_at_invoice_level(us):
    acme = one(us.invoices, customer_ref="C-ACME")
    assert acme["subtotal_minor"] == 146250
    assert acme["tax_minor"] == round_to_minor(Decimal("1462.50") * Decimal("0.08"), "USD") == 11700
    assert acme["total_minor"] == 157950
    assert (acme["subtotal"], acme["tax"], acme["total"]) == (
        Decimal("1462.500"),
        Decimal("117.000"),
        Decimal("1579.500"),
    )
    for inv in us.invoices.iter_rows(named=True):
        lines = us.invoice_lines.filter(pl.col("invoice_id") == inv["invoice_id"])
        assert inv["subtotal_minor"] == lines["amount_minor"].sum()
        assert inv["total_minor"] == inv["subtotal_minor"] + inv["tax_minor"]
        assert inv["line_count"] == lines.height


def test_yen_invoice_tax_rounds_to_whole_yen(us):
    tokyo = one(us.invoices, customer_ref="C-TOKYO")
    # 37,035 x 8% = 2,962.8 -> 2,963
    assert (tokyo["subtotal_minor"], tokyo["tax_minor"], tokyo["total_minor"]) == (37035, 2963, 39998)


def test_exempt_client_pays_no_tax_and_gets_no_tax_line(us):
    exempt = one(us.invoices, customer_ref="C-EXEMPT")
    assert (exempt["tax_rate"], exempt["tax_minor"]) == (Decimal("0"), 0)
    lines = us.lines.filter(pl.col("document_id") == exempt["invoice_id"])
    assert "tax_payable" not in lines["account_role"].to_list()


def test_issue_and_due_dates(us):
    acme = one(us.invoices, customer_ref="C-ACME")
    assert (acme["period_start"], acme["period_end"], acme["issue_date"], acme["due_date"]) == (
        START,
        END,
        END,
        date(2026, 4, 30),
    )


def test_invoice_entry_debits_receivable_and_credits_unbilled_and_tax(us):
    acme = one(us.invoices, customer_ref="C-ACME")
    entry = one(us.entries, document_id=acme["invoice_id"])
    assert acme["entry_id"] == entry["entry_id"]
    assert (entry["entry_type"], entry["posting_date"], entry["currency"]) == ("invoice", END, "USD")
    lines = us.lines.filter(pl.col("entry_id") == entry["entry_id"]).sort("line_no")
    assert lines.select("account", "customer_job", "debit_minor", "credit_minor").rows() == [
        ("1200", None, 157950, 0),
        ("1210", "ACME:Mobile", 0, 30000),
        ("1210", "ACME:Website", 0, 116250),
        ("2200", None, 0, 11700),
    ]


def test_invoice_entries_balance_in_all_three_currencies(month, mapping):
    for entity in ("us", "uk"):
        batch = build_invoices(month.fx, mapping, entity, START, END)
        assert batch.entries.height == batch.invoices.height > 0
        assert unbalanced_entries(batch.lines).height == 0


def test_invoicing_relieves_exactly_what_the_accruals_booked(month, mapping):
    uk = build_invoices(month.fx, mapping, "uk", START, END)
    lines = pl.concat([month.ledger.lines, uk.lines]).filter(pl.col("entity") == "uk")
    for basis in ("transaction", "functional", "reporting"):
        unbilled = trial_balance(lines, basis).filter(pl.col("account") == "1210")
        assert (unbilled["balance"] == 0).all(), (basis, unbilled)


def test_numbering_and_ids_are_deterministic_whatever_the_row_order(month, mapping, ecb, us):
    again = run_daily(make_raw(list(reversed(US_ROWS + UK_ROWS))), mapping, ecb)
    batch = build_invoices(again.fx, mapping, "us", START, END)
    assert batch.invoices.equals(us.invoices)
    assert batch.invoice_lines.equals(us.invoice_lines)
    assert batch.lines.equals(us.lines)


def test_invoice_lines_trace_to_their_work_items(us):
    acme = one(us.invoices, customer_ref="C-ACME")
    entry_id = acme["entry_id"]
    src = us.line_sources.filter(pl.col("entry_id") == entry_id)
    lines = us.lines.filter(pl.col("entry_id") == entry_id)
    assert src.group_by("line_id").len().height == lines.height
    ar = one(lines, account="1200")
    assert src.filter(pl.col("line_id") == ar["line_id"])["amount_minor"].sum() == 146250


def test_no_billable_work_means_no_invoices(month, mapping):
    batch = build_invoices(month.fx, mapping, "us", date(2026, 1, 1), date(2026, 1, 31))
    assert batch.invoices.height == batch.lines.height == 0
    assert_contract("ledger.invoices", batch.invoices)


def test_inclusive_pricing_carves_tax_out_of_the_gross(ecb):
    data_entities = [
        {
            "id": "us",
            "name": "US",
            "functional_currency": "USD",
            "tax": {"rate": "0.20", "pricing": "inclusive"},
        },
        {"id": "uk", "name": "UK", "functional_currency": "GBP"},
    ]
    mapping = make_mapping(
        entities=data_entities, rate_cards=[{"id": "r", "bill_rate": "120", "currency": "USD"}]
    )
    rows = [
        {"client": "Trusted Client", "project": "Retainer", "hours_raw": "1", "work_date": date(2026, 3, 2)}
    ]
    daily = run_daily(make_raw(rows), mapping, ecb)
    batch = build_invoices(daily.fx, mapping, "us", START, END)
    inv = batch.invoices.row(0, named=True)
    # Gross 120.00 incl. 20%: net 100.00, tax 20.00, total = gross.
    assert (inv["subtotal_minor"], inv["tax_minor"], inv["total_minor"]) == (10000, 2000, 12000)
    assert batch.invoice_lines["amount_minor"].to_list() == [12000]
    lines = batch.lines.sort("line_no")
    assert lines.select("account", "debit_minor", "credit_minor").rows() == [
        ("1200", 12000, 0),
        ("4000", 2000, 0),
        ("1210", 0, 12000),
        ("2200", 0, 2000),
    ]
    assert unbalanced_entries(batch.lines).height == 0


def test_invoice_level_rounding_books_the_difference_to_revenue(ecb):
    mapping = make_mapping(
        rate_cards=[{"id": "r", "bill_rate": "0.55", "currency": "USD"}], rounding={"money_level": "invoice"}
    )
    # Each row: 0.1 h x 0.55 = 0.055 -> 0.06 accrued; the invoice line rounds 0.165 once -> 0.17.
    rows = [
        {
            "source_id": f"r{i}",
            "client": "Trusted Client",
            "project": "Retainer",
            "hours_raw": "0.1",
            "work_date": date(2026, 3, 2),
        }
        for i in range(3)
    ]
    daily = run_daily(make_raw(rows), mapping, ecb)
    assert daily.fx["amount_minor"].to_list() == [6, 6, 6]
    batch = build_invoices(daily.fx, mapping, "us", START, END)
    inv = batch.invoices.row(0, named=True)
    assert (inv["subtotal_minor"], inv["tax_minor"], inv["total_minor"]) == (17, 1, 18)
    lines = batch.lines.sort("line_no")
    assert lines.select("account", "debit_minor", "credit_minor").rows() == [
        ("1200", 18, 0),
        ("4000", 1, 0),
        ("1210", 0, 18),
        ("2200", 0, 1),
    ]
    assert unbalanced_entries(batch.lines).height == 0
