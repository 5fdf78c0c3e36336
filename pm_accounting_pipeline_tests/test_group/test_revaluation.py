"""IAS 21 against hand-computed figures: a EUR invoice of the GBP entity (reporting USD),
revalued at month end and reversed the next day, then settled by two payments with realised
FX gain/loss (the first one partial), and bad payment rows quarantined with their reasons.

Rates (EUR legs): 2 Mar GBP 0.85 USD 1.10; 31 Mar 0.86 / 1.12; 15 Apr 0.88 / 1.15; 30 Apr 0.87 / 1.13.
Work: 10 h x 110 EUR = 1,100.00 EUR on 2 Mar; invoice with 20% tax = 1,320.00 EUR, booked at
1,122.00 GBP (1,320 x 0.85) and 1,452.00 USD (1,320 x 1.10).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.fx_providers import CompositeRateProvider, ManualOverrides
from pm_accounting_pipeline.core.revaluation import MissingClosingRateError, read_payments, revalue, settle
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, one
from pm_accounting_pipeline_tests.test_group.builders import (
    daily,
    group_mapping,
    hand_rates,
    invoices_for,
    write_csv,
)

MAR, APR = (date(2026, 3, 1), date(2026, 3, 31)), (date(2026, 4, 1), date(2026, 4, 30))
HEADER = "invoice_number,date,amount,currency,reference"
INVOICE = "uk-202603-0001"


@pytest.fixture(scope="module")
def book():
    m, p = group_mapping(), hand_rates()
    d = daily([{"entity": "uk", "client": "Euro Client GmbH", "project": "Rollout", "hours_raw": "10"}], m, p)
    inv = invoices_for(d.fx, m, "uk", *MAR)
    return m, p, inv, pl.concat([d.ledger.lines, inv.lines])


def _minor(df: pl.DataFrame, col: str, digits: int = 2) -> int:
    return int(df[col].sum() * 10**digits)


def _pay(tmp_path: Path, *rows: str):
    write_csv(tmp_path / "payments" / "bank.csv", HEADER, *rows)
    return read_payments(tmp_path / "payments", "uk", APR[0])


def test_invoice_is_booked_at_the_work_date_rate(book):
    _, _, inv, _ = book
    row = one(inv.invoices, invoice_number=INVOICE)
    assert (row["currency"], row["total_minor"]) == ("EUR", 132000)
    ar = inv.lines.filter(pl.col("account_role") == "accounts_receivable")
    assert (_minor(ar, "functional_debit"), _minor(ar, "reporting_debit")) == (112200, 145200)


def test_open_receivable_is_revalued_at_the_closing_rate_and_reversed_next_day(book):
    m, p, _, lines = book
    res = revalue(lines, empty_frame("ledger.intercompany_links"), m, "uk", MAR[1], p)
    item = one(res.revaluations, account_role="accounts_receivable")
    # 1,320 EUR x 0.86 = 1,135.20 GBP (+13.20); x 1.12 = 1,478.40 USD (+26.40).
    assert (item["open_minor"], item["carrying_functional_minor"], item["revalued_functional_minor"]) == (
        132000,
        112200,
        113520,
    )
    assert (item["unrealised_functional_minor"], item["unrealised_reporting_minor"]) == (1320, 2640)
    assert (str(item["closing_rate_functional"]), str(item["closing_rate_reporting"])) == (
        "0.860000000000",
        "1.120000000000",
    )
    assert (item["rate_date"], item["rate_source"], item["rate_direction"]) == (
        MAR[1],
        "manual",
        "EUR->GBP and EUR->USD",
    )
    lines_out = res.journal.lines.sort("posting_date", "line_no")
    got = [
        (
            r["entry_type"],
            r["posting_date"],
            r["account"],
            str(r["functional_debit"]),
            str(r["functional_credit"]),
            str(r["reporting_debit"]),
            str(r["reporting_credit"]),
        )
        for r in lines_out.iter_rows(named=True)
    ]
    assert got == [
        ("fx_revaluation", date(2026, 3, 31), "1200", "13.200", "0.000", "26.400", "0.000"),
        ("fx_revaluation", date(2026, 3, 31), "7910", "0.000", "13.200", "0.000", "26.400"),
        ("fx_revaluation_reversal", date(2026, 4, 1), "7910", "13.200", "0.000", "26.400", "0.000"),
        ("fx_revaluation_reversal", date(2026, 4, 1), "1200", "0.000", "13.200", "0.000", "26.400"),
    ]
    assert_balanced(res.journal.lines)
    assert res.links.row(0, named=True)["link_type"] == "reverses"
    assert res.links["linked_entry_id"].to_list() == [item["entry_id"]]
    assert_contract("ledger.fx_revaluations", res.revaluations)
    assert_contract("ledger.journal_lines", res.journal.lines)


def test_partial_payment_books_the_realised_gain_on_the_settled_part(book, tmp_path: Path):
    m, p, inv, _ = book
    res = settle(
        _pay(tmp_path, f"{INVOICE},2026-04-15,660.00,EUR,BANK-1"), inv.invoices, inv.lines, m, "uk", p, *APR
    )
    pay = res.payments.row(0, named=True)
    # 660 EUR at 0.88 = 580.80 GBP; the settled half of 1,122.00 = 561.00 -> +19.80 GBP.
    # 660 EUR at 1.15 = 759.00 USD; half of 1,452.00 = 726.00 -> +33.00 USD.
    assert (pay["functional_minor"], pay["carrying_functional_minor"], pay["realised_functional_minor"]) == (
        58080,
        56100,
        1980,
    )
    assert (pay["reporting_minor"], pay["carrying_reporting_minor"], pay["realised_reporting_minor"]) == (
        75900,
        72600,
        3300,
    )
    assert pay["open_after_minor"] == 66000
    by_type = {t: g for (t,), g in res.journal.lines.group_by("entry_type")}
    cash = one(by_type["payment"], account="1000")
    assert (str(cash["debit"]), cash["currency"], str(cash["functional_debit"])) == (
        "660.000",
        "EUR",
        "580.800",
    )
    gain = one(by_type["fx_realised"], account="7900")
    assert (str(gain["functional_credit"]), str(gain["reporting_credit"]), gain["currency"]) == (
        "19.800",
        "33.000",
        "GBP",
    )
    assert_balanced(res.journal.lines)
    assert res.links["link_type"].to_list() == ["settles"]
    assert_contract("ledger.payments", res.payments)


def test_last_payment_settles_exactly_what_is_left_and_the_receivable_is_zero(book, tmp_path: Path):
    m, p, inv, lines = book
    payments = _pay(
        tmp_path, f"{INVOICE},2026-04-15,660.00,EUR,BANK-1", f"{INVOICE},2026-04-30,660.00,EUR,BANK-2"
    )
    res = settle(payments, inv.invoices, inv.lines, m, "uk", p, *APR)
    second = one(res.payments, reference="BANK-2")
    # 660 EUR at 0.87 = 574.20 GBP against the remaining 561.00 -> +13.20; 745.80 USD vs 726.00 -> +19.80.
    assert (
        second["realised_functional_minor"],
        second["realised_reporting_minor"],
        second["open_after_minor"],
    ) == (1320, 1980, 0)
    ar = pl.concat([lines, res.journal.lines]).filter(pl.col("account_role") == "accounts_receivable")
    eur = ar.filter(pl.col("currency") == "EUR")
    assert eur["debit"].sum() == eur["credit"].sum() == pl.Series([1320]).cast(pl.Decimal(18, 3))[0]
    assert ar["functional_debit"].sum() == ar["functional_credit"].sum()
    assert ar["reporting_debit"].sum() == ar["reporting_credit"].sum()


def test_revaluation_after_a_partial_payment_retranslates_only_what_is_open(book, tmp_path: Path):
    m, p, inv, lines = book
    march = revalue(lines, empty_frame("ledger.intercompany_links"), m, "uk", MAR[1], p)
    paid = settle(
        _pay(tmp_path, f"{INVOICE},2026-04-15,660.00,EUR,BANK-1"), inv.invoices, inv.lines, m, "uk", p, *APR
    )
    ledger = pl.concat([lines, march.journal.lines, paid.journal.lines])
    april = revalue(ledger, empty_frame("ledger.intercompany_links"), m, "uk", APR[1], p)
    item = one(april.revaluations, account_role="accounts_receivable")
    # Open 660 EUR carried at 561.00 GBP / 726.00 USD; at 0.87 / 1.13: 574.20 / 745.80.
    assert (item["open_minor"], item["carrying_functional_minor"], item["carrying_reporting_minor"]) == (
        66000,
        56100,
        72600,
    )
    assert (item["unrealised_functional_minor"], item["unrealised_reporting_minor"]) == (1320, 1980)


def test_bad_payment_rows_are_quarantined_with_their_reason(book, tmp_path: Path):
    m, p, inv, _ = book
    payments = _pay(
        tmp_path,
        f"{INVOICE},2026-04-10,100.00,EUR,ok",
        f"{INVOICE},2026-04-11,1.234,EUR,three-decimals",
        f"{INVOICE},2026-04-31,1.00,EUR,bad-date",
        f"{INVOICE},2026-04-12,,EUR,no-amount",
        "uk-202603-0099,2026-04-12,1.00,EUR,unknown",
        f"{INVOICE},2026-04-12,1.00,GBP,wrong-currency",
        f"{INVOICE},2026-04-13,1300.00,EUR,too-much",
    )
    res = settle(payments, inv.invoices, inv.lines, m, "uk", p, *APR)
    got = dict(zip(res.quarantine["source_row"].to_list(), res.quarantine["reason"].to_list(), strict=True))
    assert got == {
        2: "bad_rate",
        3: "bad_date",
        4: "missing_required",
        5: "unknown_invoice",
        6: "currency_mismatch",
        7: "overpayment",
    }
    assert res.payments["reference"].to_list() == ["ok"]
    assert_contract("staging.quarantine", res.quarantine)


def test_a_period_cannot_be_revalued_without_a_closing_rate(book):
    m, _, _, lines = book
    no_gbp = CompositeRateProvider(precedence=("manual",), market={}, manual=ManualOverrides.empty())
    with pytest.raises(
        MissingClosingRateError, match=r"no closing rate on or shortly before 2026-03-31 for \['EUR'\]"
    ):
        revalue(lines, empty_frame("ledger.intercompany_links"), m, "uk", MAR[1], no_gbp)
