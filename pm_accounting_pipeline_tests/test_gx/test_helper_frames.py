"""The frames the ledger suite hands to great-expectations: exact pandas conversion and the
per-entry balance batch. Pure polars/pandas, no great-expectations import."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import polars as pl

from pm_accounting_pipeline.config.schema import parse_mapping
from pm_accounting_pipeline.defs.ledger.gx_suite import (
    ENTRY_BALANCE_COLUMNS,
    entry_balances,
    mapping_currencies,
    to_pandas_exact,
)
from pm_accounting_pipeline_tests.test_gx.conftest import balanced_rows, line, lines_frame


def test_decimal_money_reaches_pandas_as_exact_integers_of_its_scale() -> None:
    frame = pl.DataFrame(
        {"debit": [Decimal("999999999999999.999"), Decimal("0.001"), Decimal("-2.5")]},
        schema={"debit": pl.Decimal(18, 3)},
    )

    out = to_pandas_exact(frame)

    assert out["debit"].dtype == "int64"
    assert out["debit"].tolist() == [999_999_999_999_999_999, 1, -2_500]


def test_integer_column_with_nulls_becomes_nullable_int_not_float() -> None:
    frame = pl.DataFrame({"debit_minor": [9_007_199_254_740_993, None]}, schema={"debit_minor": pl.Int64})

    out = to_pandas_exact(frame)

    assert str(out["debit_minor"].dtype) == "Int64"
    assert out["debit_minor"][0] == 9_007_199_254_740_993  # 2**53 + 1: a float would have lost the 1
    assert out["debit_minor"].isna().tolist() == [False, True]


def test_dates_become_utc_timestamps_even_beyond_the_nanosecond_range() -> None:
    frame = pl.DataFrame({"posting_date": [date(2026, 3, 31), date(2999, 1, 1), None]})

    out = to_pandas_exact(frame)

    assert str(out["posting_date"].dtype) == "datetime64[s, UTC]"
    assert out["posting_date"][1] == pd.Timestamp(datetime(2999, 1, 1, tzinfo=UTC))
    assert out["posting_date"].isna().tolist() == [False, False, True]


def test_strings_become_categoricals_except_identifiers() -> None:
    frame = pl.DataFrame({"line_id": ["b", "a", "c"], "currency": ["USD", None, "EUR"]})

    out = to_pandas_exact(frame)

    assert out["line_id"].dtype == object
    assert out["line_id"].tolist() == ["b", "a", "c"]
    assert isinstance(out["currency"].dtype, pd.CategoricalDtype)
    assert list(out["currency"].cat.categories) == ["EUR", "USD"]
    assert out["currency"].astype(object).where(out["currency"].notna(), None).tolist() == [
        "USD",
        None,
        "EUR",
    ]


def test_entry_balances_hold_each_entrys_imbalance_in_every_currency_view() -> None:
    rows = [
        *balanced_rows(),
        line("E3", 1, debit=700),
        line("E3", 2, credit=650, currency="EUR", entity="beta"),
    ]

    out = entry_balances(lines_frame(rows))

    assert tuple(out.columns) == ENTRY_BALANCE_COLUMNS
    assert out.rows() == [
        ("E1", 2, 1, 1, 0, 0, 0),
        ("E2", 3, 1, 1, 0, 0, 0),
        ("E3", 2, 2, 2, 50, 500, 500),  # 0.50 in minor units, 0.500 in thousandths
    ]


def test_mapping_currencies_collect_reporting_functional_client_and_rate_card_codes() -> None:
    mapping = parse_mapping(
        {
            "version": 1,
            "reporting_currency": "CHF",
            "start_date": "2026-01-01",
            "entities": [
                {"id": "us", "name": "US Inc", "functional_currency": "USD"},
                {"id": "uk", "name": "UK Ltd", "functional_currency": "GBP"},
            ],
            "clients": [{"name": "Tokyo KK", "customer_ref": "C-T", "entity": "us", "currency": "JPY"}],
            "rate_cards": [
                {"id": "gulf", "bill_rate": "45.125", "currency": "KWD"},
                {"id": "any", "cost_rate": "40"},
            ],
        }
    )

    assert mapping_currencies(mapping) == {"CHF", "USD", "GBP", "JPY", "KWD"}
