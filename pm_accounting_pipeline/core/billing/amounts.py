"""Document arithmetic: tax per line or per invoice with exclusive or inclusive pricing, percentage
shares, and conversions at a document's rate. All of it is integer minor units rounded by
`core.rounding`; nothing here knows about documents' meaning.

Tax (r = the document's rate as an integer at 10^-6):
- exclusive pricing: lines are net. Invoice level: tax = round(S x r) on the sum S of the lines;
  line level: tax = sum of round(line x r). total = S + tax, subtotal = S.
- inclusive pricing: lines are gross. Invoice level: net = round(S / (1 + r)), tax = S - net;
  line level: tax = sum of (line - round(line / (1 + r))). total = S, subtotal = S - tax.
Rounding is symmetric (half-up rounds ties away from zero), so a negative document (a credit
memo) has exactly the negated tax of the same positive document.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from pm_accounting_pipeline.core.rounding import MoneyRounding, div_round_expr, div_round_int

TAX_SCALE = 1_000_000  # tax rates are carried as integers at 10^-6
PERCENT_SCALE = 1_000_000  # percentages (0-100) as integers at 10^-4, so 100% = 10^6


def rate_e6(rate: Decimal) -> int:
    """A tax rate fraction (0.19) as an integer at 10^-6; more decimals than that is an error."""
    scaled = rate.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"tax rate {rate} has more than six decimals")
    return int(scaled)


def percent_e4(percent: Decimal) -> int:
    """A percentage (12.5) as an integer at 10^-4 (125000)."""
    scaled = percent.scaleb(4)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"percentage {percent} has more than four decimals")
    return int(scaled)


def share(amount: int, percent_e4_value: int, mode: MoneyRounding) -> int:
    """round(amount x percent / 100) for a percentage carried at 10^-4."""
    return div_round_int(amount * percent_e4_value, PERCENT_SCALE, mode)


def line_tax_expr(amount: pl.Expr, rate: pl.Expr, inclusive: pl.Expr, mode: MoneyRounding) -> pl.Expr:
    """The tax inside (inclusive) or on top of (exclusive) one line, rounded on its own."""
    wide = amount.cast(pl.Int128)
    exclusive_tax = div_round_expr(wide * rate, pl.lit(TAX_SCALE), mode)
    inclusive_tax = amount - div_round_expr(wide * TAX_SCALE, rate + TAX_SCALE, mode)
    return pl.when(inclusive).then(inclusive_tax).otherwise(exclusive_tax)


def document_taxes(
    lines: pl.DataFrame, documents: pl.DataFrame, mode: MoneyRounding
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tax per line (line level) and subtotal, tax and total per document.

    `lines`: document_id, amount_minor (signed). `documents`: document_id, tax_rate_e6 (Int64),
    pricing ("exclusive" | "inclusive"), tax_level ("invoice" | "line"). Returns the lines with
    `line_tax_minor` (null at invoice level) and the documents with `lines_minor` (the sum S),
    `subtotal_minor`, `tax_minor` and `total_minor` (see the module docstring).
    """
    keyed = lines.join(
        documents.select("document_id", "tax_rate_e6", "pricing", "tax_level"), on="document_id", how="left"
    )
    inclusive = pl.col("pricing") == "inclusive"
    rate = pl.col("tax_rate_e6").cast(pl.Int64)
    keyed = keyed.with_columns(
        line_tax_minor=pl.when(pl.col("tax_level") == "line").then(
            line_tax_expr(pl.col("amount_minor"), rate, inclusive, mode)
        )
    )
    sums = keyed.group_by("document_id").agg(
        pl.col("amount_minor").sum().alias("lines_minor"),
        pl.col("line_tax_minor").sum().alias("_line_taxes"),
    )
    docs = documents.join(sums, on="document_id", how="left").with_columns(
        lines_minor=pl.col("lines_minor").fill_null(0), _line_taxes=pl.col("_line_taxes").fill_null(0)
    )
    doc_inclusive = pl.col("pricing") == "inclusive"
    doc_rate = pl.col("tax_rate_e6").cast(pl.Int64)
    invoice_tax = line_tax_expr(pl.col("lines_minor"), doc_rate, doc_inclusive, mode)
    tax = pl.when(pl.col("tax_level") == "line").then(pl.col("_line_taxes")).otherwise(invoice_tax)
    docs = docs.with_columns(tax_minor=tax.cast(pl.Int64)).with_columns(
        subtotal_minor=pl.when(doc_inclusive)
        .then(pl.col("lines_minor") - pl.col("tax_minor"))
        .otherwise(pl.col("lines_minor")),
        total_minor=pl.when(doc_inclusive)
        .then(pl.col("lines_minor"))
        .otherwise(pl.col("lines_minor") + pl.col("tax_minor")),
    )
    return keyed.drop("tax_rate_e6", "pricing", "tax_level"), docs.drop("_line_taxes")


@dataclass(frozen=True)
class Fraction:
    """A conversion rate as an exact fraction of minor units: target = round(source x num / den)."""

    num: int
    den: int

    def __post_init__(self) -> None:
        if self.den == 0:
            raise ValueError("a conversion fraction needs a non-zero denominator")

    def convert(self, amount: int, mode: MoneyRounding) -> int:
        num, den = (self.num, self.den) if self.den > 0 else (-self.num, -self.den)
        return div_round_int(amount * num, den, mode)


def prorate(amount: int, whole: int, whole_converted: int, mode: MoneyRounding) -> int:
    """The converted value of `amount` out of a balance `whole` worth `whole_converted`; exactly
    `whole_converted` when amount == whole, so a balance taken in full always clears."""
    if amount == whole:
        return whole_converted
    if whole == 0:
        raise ValueError("cannot prorate against an empty balance")
    return Fraction(whole_converted, whole).convert(amount, mode)
