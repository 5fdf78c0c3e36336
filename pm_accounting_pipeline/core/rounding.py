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
    """Vectorised `div_round_int` over Int128 expressions (divisor > 0); returns Int64."""
    n = numerator.cast(pl.Int128)
    d = divisor.cast(pl.Int128)
    if MoneyRounding(mode) is MoneyRounding.HALF_EVEN:
        q = n // d  # floor, so 0 <= r < d
        twice = (n - q * d) * 2
        bump = (twice > d) | ((twice == d) & ((q % 2) != 0))
        return (q + bump.cast(pl.Int128)).cast(pl.Int64)
    # Half-up (ties away from zero): round |n| / d with floor((2|n| + d) / 2d), then restore the sign.
    q = ((n.abs() * 2 + d) // (d * 2)).cast(pl.Int64)
    return pl.when(n < 0).then(-q).otherwise(q)


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
    # A Decimal(38, scale) is stored as exactly that integer, so this is a cast and no arithmetic.
    return value.cast(pl.Decimal(38, scale)).to_physical().cast(pl.Int128)


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
    seconds: pl.Expr,
    increment_minutes: int,
    mode: TimeRounding = TimeRounding.NEAREST,
    minimum_minutes: int = 0,
) -> pl.Expr:
    """Vectorised time rounding over a duration in whole seconds (Int64); returns seconds.

    Same rule as `round_minutes`: any positive duration bills at least the minimum, even when the
    increment rounded it down to zero.
    """
    inc = max(increment_minutes, 0) * 60
    original = seconds.cast(pl.Int64)
    s = original
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
        s = pl.when(original > 0).then(pl.max_horizontal(s, pl.lit(minimum_minutes * 60))).otherwise(s)
    return s


def scaled_to_decimal_expr(value: pl.Expr, scale: int, precision: int = 38) -> pl.Expr:
    """An integer carried at 10^-scale as an exact Decimal(precision, scale) column."""
    unit = pl.lit(Decimal(1).scaleb(-scale), dtype=pl.Decimal(38, scale))
    return (value.cast(pl.Int128).cast(pl.Decimal(38, 0)) * unit).cast(pl.Decimal(precision, scale))


def round_hours_expr(
    hours_e4: pl.Expr,
    increment_minutes: int,
    mode: TimeRounding = TimeRounding.NEAREST,
    minimum_minutes: int = 0,
) -> pl.Expr:
    """Time rounding of hours carried as integers at 10^-4 h; returns hours at 10^-4 h (Int64).

    0.0001 h is 0.36 s, so the duration is rounded exactly in centiseconds (36 per 10^-4 h) with
    `round_duration_expr`, and a result on an increment that is not a whole number of 10^-4 h
    (e.g. 5 minutes = 0.08333.. h) is rounded half-up back to 4 decimals. A duration within half
    of 10^-4 h (0.18 s) of an increment counts as on it, so rounding already-rounded hours (such as
    a source's rounded hours) never moves them again, provided the minimum lies on the increment
    grid. Without an increment or minimum, hours pass through unchanged.
    """
    if increment_minutes <= 1 and minimum_minutes <= 0:
        return hours_e4.cast(pl.Int64)
    centis = hours_e4.cast(pl.Int64) * 36
    increment = increment_minutes if increment_minutes > 1 else 0
    if increment:
        step = increment * 6000
        nearest = div_round_expr(centis, pl.lit(step)) * step
        centis = pl.when((centis - nearest).abs() <= 18).then(nearest).otherwise(centis)
    # Scaling both increment and minimum by 100 makes round_duration_expr count centiseconds.
    rounded = round_duration_expr(centis, increment * 100, mode, minimum_minutes * 100)
    return div_round_expr(rounded, pl.lit(36), MoneyRounding.HALF_UP)
