"""FX: ECB rates with the right publication date, cross rates, conversion and missing rates."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl
import pytest
from currency_converter import CurrencyConverter

from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.fx import RATE_SCHEMA, enrich
from pm_accounting_pipeline.core.rating import rate
from pm_accounting_pipeline.core.rounding import round_to_minor
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, make_raw, one

SATURDAY = date(2026, 2, 28)
FRIDAY = date(2026, 2, 27)
MONDAY = date(2026, 3, 2)
TWELVE = Decimal(1).scaleb(-12)


@pytest.fixture(scope="module")
def published() -> CurrencyConverter:
    """The converter's own history without fallback: None marks a day without a published rate."""
    return CurrencyConverter(decimal=True, fallback_on_missing_rate=False)


def _pairs(*rows: tuple[str, str, date]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"from_currency": pl.String, "to_currency": pl.String, "date": pl.Date}, orient="row"
    )


def test_weekend_uses_fridays_rate_and_records_friday_as_rate_date(ecb, published):
    assert (SATURDAY.weekday(), FRIDAY.weekday()) == (5, 4)
    assert published._rates["GBP"][SATURDAY] is None
    out = ecb.rates(_pairs(("EUR", "GBP", SATURDAY)))
    assert out.schema == RATE_SCHEMA
    row = out.row(0, named=True)
    assert row["rate"] == published._rates["GBP"][FRIDAY]
    assert (row["rate_date"], row["source"], row["rate_type"]) == (FRIDAY, "ecb_offline", "spot")


def test_weekend_rate_equals_the_converters_last_known_fallback(ecb):
    last_known = CurrencyConverter(
        decimal=True, fallback_on_missing_rate=True, fallback_on_missing_rate_method="last_known"
    )
    expected = last_known.convert(1, "EUR", "USD", SATURDAY).quantize(TWELVE)
    assert ecb.lookup("EUR", "USD", SATURDAY) == (expected, FRIDAY)


def test_cross_rate_is_the_ratio_of_the_two_euro_rates(ecb, published):
    usd, gbp = published._rates["USD"][MONDAY], published._rates["GBP"][MONDAY]
    expected = (usd / gbp).quantize(TWELVE, rounding=ROUND_HALF_EVEN)
    row = ecb.rates(_pairs(("GBP", "USD", MONDAY))).row(0, named=True)
    assert (row["rate"], row["rate_date"]) == (expected, MONDAY)
    assert Decimal("1.2") < row["rate"] < Decimal("1.5")


def test_same_currency_rate_is_one_on_the_day_itself(ecb):
    row = ecb.rates(_pairs(("USD", "USD", SATURDAY))).row(0, named=True)
    assert (row["rate"], row["rate_date"], row["source"]) == (Decimal(1), SATURDAY, "identity")


def test_currency_ecb_does_not_quote_and_dates_beyond_the_history_have_no_rate(ecb, published):
    beyond = published.bounds["USD"].last_date + timedelta(days=30)
    out = ecb.rates(_pairs(("KWD", "USD", MONDAY), ("EUR", "USD", beyond)))
    assert out["rate"].null_count() == 2
    assert out["rate_date"].null_count() == 2


def test_each_distinct_pair_and_date_is_answered_once(ecb):
    out = ecb.rates(_pairs(("EUR", "USD", MONDAY), ("EUR", "USD", MONDAY), ("GBP", "USD", MONDAY)))
    assert out.height == 2


def _fx(rows, mapping, provider):
    cleaned = clean_and_map(make_raw(rows), mapping)
    rated = rate(cleaned.work_items, mapping)
    assert cleaned.quarantine.height == 0 and rated.quarantine.height == 0
    result = enrich(rated.rated, mapping, provider)
    assert rated.rated.height == result.fx.height + result.quarantine.height
    assert_contract("staging.fx_billables", result.fx)
    assert_contract("staging.quarantine", result.quarantine)
    return result


def test_amounts_convert_to_functional_and_reporting_currency_exactly(mapping, ecb, published):
    # UK entity (GBP functional), EUR client, USD reporting; 2 h x 110 EUR = 220.00 EUR, cost 2 h x 45 GBP.
    row = {
        "entity": "uk",
        "client": "Euro Client GmbH",
        "project": "Rollout",
        "hours_raw": "2",
        "work_date": MONDAY,
    }
    fx = _fx([row], mapping, ecb).fx.row(0, named=True)
    gbp, usd = published._rates["GBP"][MONDAY], published._rates["USD"][MONDAY]
    assert fx["fx_rate_functional"] == gbp.quantize(TWELVE)
    assert fx["amount_functional_minor"] == round_to_minor(
        Decimal("220.00") * fx["fx_rate_functional"], "GBP"
    )
    assert fx["fx_rate_reporting"] == usd.quantize(TWELVE)
    assert fx["amount_reporting_minor"] == round_to_minor(Decimal("220.00") * fx["fx_rate_reporting"], "USD")
    assert fx["fx_rate_cost_reporting"] == (usd / gbp).quantize(TWELVE, rounding=ROUND_HALF_EVEN)
    assert fx["cost_minor"] == 9000
    assert fx["cost_reporting_minor"] == round_to_minor(
        Decimal("90.00") * fx["fx_rate_cost_reporting"], "USD"
    )
    assert (fx["fx_rate_date"], fx["fx_rate_source"], fx["fx_rate_type"]) == (MONDAY, "ecb_offline", "spot")
    assert (fx["functional_currency"], fx["reporting_currency"]) == ("GBP", "USD")


def test_yen_converts_from_zero_decimals_to_cents(mapping, ecb, published):
    row = {"client": "Tokyo Trading KK", "project": "Import", "hours_raw": "3", "work_date": SATURDAY}
    fx = _fx([row], mapping, ecb).fx.row(0, named=True)
    jpy, usd = published._rates["JPY"][FRIDAY], published._rates["USD"][FRIDAY]
    rate_ = (usd / jpy).quantize(TWELVE, rounding=ROUND_HALF_EVEN)
    assert fx["fx_rate_functional"] == rate_
    assert fx["amount_functional_minor"] == round_to_minor(Decimal(37035) * rate_, "USD")
    assert fx["fx_rate_date"] == FRIDAY


def test_same_currency_rows_keep_their_amounts(mapping, ecb):
    fx = _fx([{"hours_raw": "7.5"}], mapping, ecb).fx.row(0, named=True)
    assert fx["amount_minor"] == fx["amount_functional_minor"] == fx["amount_reporting_minor"] == 112500
    assert fx["fx_rate_functional"] == fx["fx_rate_reporting"] == Decimal(1)


def test_row_without_an_exchange_rate_is_quarantined_as_missing_fx_rate(mapping, ecb):
    rows = [{"source_id": "kwd", "client": "Gulf Partners", "project": "Audit"}, {"source_id": "usd"}]
    result = _fx(rows, mapping, ecb)
    q = one(result.quarantine, source_id="kwd")
    assert (q["reason"], q["layer"]) == ("missing_fx_rate", "fx")
    assert q["detail"] == "no ecb_offline rate for KWD->USD on or shortly before 2026-03-02"
    assert result.fx["source_id"].to_list() == ["usd"]


class _FixedProvider:
    """A contract-rate provider: one fixed rate for every pair, to pin the conversion arithmetic."""

    name = "fixed"

    def __init__(self, rate_: str):
        self.rate = Decimal(rate_)

    def rates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        same = pl.col("from_currency") == pl.col("to_currency")
        return (
            pairs.unique()
            .with_columns(
                rate=pl.when(same).then(pl.lit(Decimal(1))).otherwise(pl.lit(self.rate)),
                rate_date=pl.col("date"),
                source=pl.when(same).then(pl.lit("identity")).otherwise(pl.lit("fixed")),
                rate_type=pl.lit("contract"),
            )
            .cast(dict(RATE_SCHEMA))
        )


@pytest.mark.parametrize(("mode", "minor"), [("half_up", 13), ("half_even", 12)])
def test_conversion_rounds_once_with_the_configured_mode(mode, minor):
    # 0.25 EUR x 0.5 = 0.125 GBP: a tie at the minor unit.
    from pm_accounting_pipeline_tests.test_core.builders import make_mapping

    mapping = make_mapping(
        rate_cards=[{"id": "eur", "bill_rate": "1", "currency": "EUR"}], rounding={"money_mode": mode}
    )
    row = {"entity": "uk", "client": "Euro Client GmbH", "project": "Rollout", "hours_raw": "0.25"}
    fx = _fx([row], mapping, _FixedProvider("0.5")).fx.row(0, named=True)
    assert (fx["amount_minor"], fx["amount_functional_minor"]) == (25, minor)
    assert (fx["fx_rate_source"], fx["fx_rate_type"]) == ("fixed", "contract")
