"""Ledger checks: unbalanced entries are found and named; the trial balance sums to zero."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pm_accounting_pipeline.core.checks import (
    UnbalancedEntryError,
    assert_balanced,
    trial_balance,
    unbalanced_entries,
)
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline_tests.test_core.builders import make_raw

ROWS = [
    {"source_id": "a", "hours_raw": "2"},
    {"source_id": "e", "entity": "uk", "client": "Euro Client GmbH", "project": "Rollout", "hours_raw": "1"},
]


@pytest.fixture(scope="module")
def lines(mapping, ecb) -> pl.DataFrame:
    return run_daily(
        make_raw([{**r, "work_date": date(2026, 3, 2)} for r in ROWS]), mapping, ecb
    ).ledger.lines


def test_balanced_lines_have_no_offenders(lines):
    assert unbalanced_entries(lines).height == 0
    assert_balanced(lines)


def test_a_line_off_by_one_cent_in_the_reporting_currency_is_found_and_named(lines):
    victim = lines.filter(pl.col("currency") == "EUR").row(0, named=True)
    tampered = lines.with_columns(
        reporting_debit=pl.when(pl.col("line_id") == victim["line_id"])
        .then(pl.col("reporting_debit") + pl.lit(Decimal("0.01")))
        .otherwise(pl.col("reporting_debit"))
        .cast(pl.Decimal(18, 3))
    )
    off = unbalanced_entries(tampered)
    assert off["entry_id"].to_list() == [victim["entry_id"]]
    row = off.row(0, named=True)
    assert (row["difference_minor"], row["difference"], row["functional_difference"]) == (0, 0, 0)
    assert row["reporting_difference"] == Decimal("0.01") if victim["reporting_debit"] > 0 else True
    with pytest.raises(UnbalancedEntryError, match=victim["entry_id"]) as err:
        assert_balanced(tampered)
    assert err.value.offenders.height == 1


def test_a_missing_credit_line_unbalances_the_transaction_currency(lines):
    credit = lines.filter(pl.col("credit_minor") > 0).row(0, named=True)
    off = unbalanced_entries(lines.filter(pl.col("line_id") != credit["line_id"]))
    assert off.row(0, named=True)["difference_minor"] == credit["credit_minor"]


def test_trial_balance_sums_to_zero_per_entity_and_currency_in_every_basis(lines):
    for basis in ("transaction", "functional", "reporting"):
        tb = trial_balance(lines, basis)
        assert tb.columns == ["entity", "account", "currency", "debit", "credit", "balance"]
        totals = tb.group_by("entity", "currency").agg(pl.col("balance").sum())
        assert (totals["balance"] == 0).all(), basis
    tb = trial_balance(lines)
    assert tb.filter((pl.col("entity") == "us") & (pl.col("account") == "4000"))["balance"].to_list() == [
        Decimal("-300.000")
    ]
