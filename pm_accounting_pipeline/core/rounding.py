"""The one place that rounds. Everything that rounds time or money calls these functions.

Money is carried as integers: amounts are computed exactly at a fine scale (e.g. 10^-8) as
Int64/Int128 and then rounded to the currency's minor unit by integer arithmetic, so no float and no
truncating Decimal multiplication ever touches a money path. Two modes: half-up (ties away from
zero, the commercial rule) and half-even (banker's rounding).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from enum import StrEnum

import polars as pl

from pm_accounting_pipeline.core.money import minor_digits


class MoneyRounding(StrEnum):
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"


class TimeRounding(StrEnum):
    UP = "up"
    NEAREST = "nearest"
    DOWN = "down"


_DECIMAL_MODES = {MoneyRounding.HALF_UP: ROUND_HALF_UP, MoneyRounding.HALF_EVEN: ROUND_HALF_EVEN}


def round_decimal(value: Decimal, currency: str, mode: MoneyRounding = MoneyRounding.HALF_UP) -> Decimal:
    """Round a Decimal amount to the currency's minor unit."""
    quantum = Decimal(1).scaleb(-minor_digits(currency))
    return value.quantize(quantum, rounding=_DECIMAL_MODES[MoneyRounding(mode)])


def round_to_minor(value: Decimal, currency: str, mode: MoneyRounding = MoneyRounding.HALF_UP) -> int:
    """Round a Decimal amount and return it in integer minor units."""
    return int(round_decimal(value, currency, mode).scaleb(minor_digits(currency)))


def div_round_int(numerator: int, divisor: int, mode: MoneyRounding = MoneyRounding.HALF_UP) -> int:
    """Integer division with the configured tie rule (divisor > 0)."""
    if divisor <= 0:
        raise ValueError("divisor must be positive")
    q, r = divmod(numerator, divisor)  # floor semantics, 0 <= r < divisor
    twice = 2 * r
    if twice > divisor:
        return q + 1
    if twice < divisor:
        return q
    if MoneyRounding(mode) is MoneyRounding.HALF_EVEN:
        return q + (q % 2)
    # half-up: ties away from zero
    return q + 1 if numerator >= 0 else q


def div_round_expr(
    numerator: pl.Expr, divisor: pl.Expr, mode: MoneyRounding = MoneyRounding.HALF_UP
) -> pl.Expr:
    """Vectorised `div_round_int` over Int128 expressions; returns Int64."""
    n = numerator.cast(pl.Int128)
    d = divisor.cast(pl.Int128)
    q = n // d
    r = n - q * d
    twice = r * pl.lit(2, dtype=pl.Int128)
    one = pl.lit(1, dtype=pl.Int128)
    zero = pl.lit(0, dtype=pl.Int128)
    if MoneyRounding(mode) is MoneyRounding.HALF_EVEN:
        tie = pl.when((q % pl.lit(2, dtype=pl.Int128)) != zero).then(one).otherwise(zero)
    else:
        tie = pl.when(n >= zero).then(one).otherwise(zero)
    bump = pl.when(twice > d).then(one).when(twice < d).then(zero).otherwise(tie)
    return (q + bump).cast(pl.Int64)


def rescale_expr(
    value: pl.Expr, from_scale: int, to_scale: pl.Expr | int, mode: MoneyRounding = MoneyRounding.HALF_UP
) -> pl.Expr:
    """Round an integer carried at 10^-from_scale to 10^-to_scale (to_scale <= from_scale).

    `to_scale` may vary per row (e.g. the currency's minor digits), so JPY and KWD rows round in
    one vectorised pass.
    """
    if isinstance(to_scale, int):
        to_scale = pl.lit(to_scale)
    divisor = pl.lit(10, dtype=pl.Int128).pow(pl.lit(from_scale, dtype=pl.Int32) - to_scale.cast(pl.Int32))
    return div_round_expr(value, divisor.cast(pl.Int128), mode)


def decimal_to_scaled_expr(value: pl.Expr, scale: int) -> pl.Expr:
    """A Decimal column as an exact Int128 at 10^-scale (the column's scale must be <= `scale`)."""
    return (value.cast(pl.Decimal(38, scale)) * pl.lit(10**scale, dtype=pl.Int128).cast(pl.Decimal(38, 0))).cast(
        pl.Int128
    )


def minor_to_decimal_expr(minor: pl.Expr, digits: pl.Expr | int, scale: int = 3) -> pl.Expr:
    """Integer minor units as an exact Decimal(18, scale) column; digits may vary per row."""
    if isinstance(digits, int):
        digits = pl.lit(digits)
    shift = pl.lit(10, dtype=pl.Int64).pow(pl.lit(scale, dtype=pl.Int32) - digits.cast(pl.Int32))
    units = minor.cast(pl.Int64) * shift
    return units.cast(pl.Decimal(18, 0)).cast(pl.Decimal(18, scale)) * pl.lit(
        Decimal(1).scaleb(-scale), dtype=pl.Decimal(18, scale)
    )


def round_minutes(
    minutes: int, increment: int, mode: TimeRounding = TimeRounding.NEAREST, minimum: int = 0
) -> int:
    """Round a duration in minutes to the increment (0 or 1 means no rounding), then apply a minimum."""
    if minutes <= 0:
        return minutes
    if increment > 1:
        q, r = divmod(minutes, increment)
        mode = TimeRounding(mode)
        if mode is TimeRounding.UP:
            minutes = (q + (1 if r else 0)) * increment
        elif mode is TimeRounding.DOWN:
            minutes = q * increment
        else:
            minutes = (q + (1 if 2 * r >= increment else 0)) * increment
    return max(minutes, minimum)


def round_duration_expr(
    seconds: pl.Expr, increment_minutes: int, mode: TimeRounding = TimeRounding.NEAREST, minimum_minutes: int = 0
) -> pl.Expr:
    """Vectorised time rounding over a duration in whole seconds (Int64); returns seconds."""
    inc = max(increment_minutes, 0) * 60
    s = seconds.cast(pl.Int64)
    if inc > 1:
        q = s // inc
        r = s - q * inc
        mode = TimeRounding(mode)
        if mode is TimeRounding.UP:
            s = (q + pl.when(r > 0).then(1).otherwise(0)) * inc
        elif mode is TimeRounding.DOWN:
            s = q * inc
        else:
            s = (q + pl.when(2 * r >= inc).then(1).otherwise(0)) * inc
    if minimum_minutes > 0:
        s = pl.when(s > 0).then(pl.max_horizontal(s, pl.lit(minimum_minutes * 60))).otherwise(s)
    return s
