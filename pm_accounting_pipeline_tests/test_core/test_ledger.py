"""Accrual journal entries: structure, amounts, balance in three currencies, audit trail, ids."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pm_accounting_pipeline.core.checks import unbalanced_entries
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, make_raw, one

MONDAY = date(2026, 3, 2)
ROWS = [
    {"source_id": "a1", "hours_raw": "7.5"},  # Acme Website, 150 USD -> 1125.00
    {"source_id": "a2", "hours_raw": "2", "project": "Mobile App"},  # Acme Mobile -> 300.00
    {"source_id": "a3", "hours_raw": "1", "task": "Design"},  # Acme Website, revenue 4010 -> 150.00
    {"source_id": "held", "hours_raw": "4", "approved_raw": "No"},  # no revenue, cost 160.00
    {"source_id": "t1", "client": "Tokyo Trading KK", "project": "Import", "hours_raw": "3"},  # 37,035 JPY
    {"source_id": "e1", "entity": "uk", "client": "Euro Client GmbH", "project": "Rollout", "hours_raw": "2"},
    {
        "source_id": "e2",
        "entity": "uk",
        "client": "Euro Client GmbH",
        "project": "Rollout",
        "hours_raw": "0.5",
    },
    {"source_id": "b1", "entity": "uk", "client": "Britannia Ltd", "project": "Migration", "hours_raw": "1"},
]


@pytest.fixture(scope="module")
def daily(mapping, ecb):
    return run_daily(make_raw([{**r, "work_date": MONDAY} for r in ROWS]), mapping, ecb)


def test_outputs_match_the_ledger_contracts(daily):
    assert_contract("ledger.journal_entries", daily.ledger.entries)
    assert_contract("ledger.journal_lines", daily.ledger.lines)
    assert_contract("ledger.line_sources", daily.ledger.line_sources)


def test_one_revenue_accrual_per_entity_day_and_currency_and_one_cost_accrual_per_entity_day(daily):
    keys = daily.ledger.entries.select("entity", "entry_type", "currency").sort(pl.all()).rows()
    assert keys == [
        ("uk", "cost_accrual", "GBP"),
        ("uk", "revenue_accrual", "EUR"),
        ("uk", "revenue_accrual", "GBP"),
        ("us", "cost_accrual", "USD"),
        ("us", "revenue_accrual", "JPY"),
        ("us", "revenue_accrual", "USD"),
    ]


def test_revenue_accrual_debits_unbilled_per_job_and_credits_revenue_per_account_and_job(daily):
    entry = one(daily.ledger.entries, entity="us", entry_type="revenue_accrual", currency="USD")
    lines = daily.ledger.lines.filter(pl.col("entry_id") == entry["entry_id"]).sort("line_no")
    got = lines.select(
        "line_no", "account", "customer_job", "debit_minor", "credit_minor", "source_count"
    ).rows()
    assert got == [
        (1, "1210", "ACME:Mobile", 30000, 0, 1),
        (2, "1210", "ACME:Website", 127500, 0, 2),
        (3, "4000", "ACME:Mobile", 0, 30000, 1),
        (4, "4000", "ACME:Website", 0, 112500, 1),
        (5, "4010", "ACME:Website", 0, 15000, 1),
    ]
    assert entry["total_debit_minor"] == 157500
    assert entry["line_count"] == 5
    assert lines["debit"].sum() == Decimal("1575.000")


def test_held_work_is_not_accrued_as_revenue_but_its_cost_is(daily):
    held = one(daily.work_items, source_id="held")
    sources = daily.ledger.line_sources.filter(pl.col("work_item_id") == held["work_item_id"])
    types = set(
        daily.ledger.entries.filter(pl.col("entry_id").is_in(sources["entry_id"].to_list()))["entry_type"]
    )
    assert types == {"cost_accrual"}
    assert sources["amount_minor"].to_list() == [16000, 16000]  # 4 h x 40.00, on Dr cost and Cr clearing


def test_cost_accrual_debits_cost_per_job_and_credits_one_payroll_clearing_line(daily):
    entry = one(daily.ledger.entries, entity="us", entry_type="cost_accrual")
    lines = daily.ledger.lines.filter(pl.col("entry_id") == entry["entry_id"]).sort("line_no")
    assert lines.select("account", "customer_job", "debit_minor", "credit_minor").rows() == [
        ("5000", "ACME:Mobile", 8000, 0),
        ("5000", "ACME:Website", 50000, 0),  # (7.5 + 1 + 4) h x 40.00
        ("5000", "TOKYO:Import", 12000, 0),
        ("2100", None, 0, 70000),
    ]
    assert entry["currency"] == "USD"


def test_every_entry_balances_in_transaction_functional_and_reporting_currency(daily):
    assert unbalanced_entries(daily.ledger.lines).height == 0
    foreign = daily.ledger.lines.filter(pl.col("currency") == "EUR")
    assert foreign["functional_currency"].unique().to_list() == ["GBP"]
    assert foreign["reporting_currency"].unique().to_list() == ["USD"]
    assert foreign["functional_debit"].sum() == foreign["functional_credit"].sum() > 0
    assert foreign["reporting_debit"].sum() == foreign["reporting_credit"].sum() > 0


def test_accrued_foreign_amounts_are_sums_of_the_rows_converted_amounts(daily):
    eur_rows = daily.fx.filter(pl.col("currency") == "EUR")
    debit = daily.ledger.lines.filter((pl.col("currency") == "EUR") & (pl.col("debit_minor") > 0)).row(
        0, named=True
    )
    assert debit["debit_minor"] == eur_rows["amount_minor"].sum() == 27500
    assert debit["functional_debit"] == Decimal(eur_rows["amount_functional_minor"].sum()).scaleb(-2)
    assert debit["reporting_debit"] == Decimal(eur_rows["amount_reporting_minor"].sum()).scaleb(-2)


def test_yen_lines_carry_whole_yen_as_decimal_amounts(daily):
    jpy = daily.ledger.lines.filter(pl.col("currency") == "JPY")
    assert jpy["debit"].sum() == Decimal("37035.000")
    assert jpy["debit_minor"].sum() == 37035


def test_line_sources_link_each_line_to_each_work_item_behind_it(daily):
    sources, lines = daily.ledger.line_sources, daily.ledger.lines
    per_line = sources.group_by("line_id").len()
    counts = lines.select("line_id", "source_count").join(per_line, on="line_id")
    assert counts.height == lines.height
    assert (counts["source_count"] == counts["len"]).all()
    # Every line's transaction amount is the sum of its sources' amounts.
    sums = sources.group_by("line_id").agg(pl.col("amount_minor").sum())
    check = lines.select("line_id", (pl.col("debit_minor") + pl.col("credit_minor")).alias("amount")).join(
        sums, on="line_id"
    )
    assert (check["amount"] == check["amount_minor"]).all()
    # Billable rows appear on two revenue lines and two cost lines.
    a1 = one(daily.work_items, source_id="a1")["work_item_id"]
    assert sources.filter(pl.col("work_item_id") == a1).height == 4


def test_ledger_is_deterministic(mapping, ecb, daily):
    shuffled = list(reversed(ROWS))
    again = run_daily(make_raw([{**r, "work_date": MONDAY} for r in shuffled]), mapping, ecb)
    assert again.ledger.entries.equals(daily.ledger.entries)
    assert again.ledger.lines.equals(daily.ledger.lines)
    twice = run_daily(make_raw([{**r, "work_date": MONDAY} for r in ROWS]), mapping, ecb)
    assert twice.ledger.line_sources.equals(daily.ledger.line_sources)


def test_entry_ids_depend_on_entity_date_type_currency_and_rule_version(daily):
    ids = daily.ledger.entries["entry_id"]
    assert ids.n_unique() == ids.len()
    assert daily.ledger.lines["line_id"].n_unique() == daily.ledger.lines.height
    assert set(daily.ledger.lines["entry_id"]) == set(ids)
