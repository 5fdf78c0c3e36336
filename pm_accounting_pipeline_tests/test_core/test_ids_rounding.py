"""The vectorised id and rounding helpers agree with their one-value definitions."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.rounding import (
    MoneyRounding,
    TimeRounding,
    div_round_expr,
    div_round_int,
    rescale_expr,
    round_hours_expr,
    round_minutes,
    scaled_to_decimal_expr,
)


def test_stable_id_expr_is_two_seeded_hashes_written_as_a_uuid():
    df = pl.DataFrame({"a": ["x", None, "y"], "b": ["1", "2", None]})
    got = df.select(stable_id_expr("a", "b", prefix="p")).to_series().to_list()
    key = df.select(
        pl.concat_str(
            [pl.lit("p"), pl.col("a").fill_null("\x00"), pl.col("b").fill_null("\x00")], separator="\x1f"
        )
    ).to_series()
    expected = []
    for h1, h2 in zip(key.hash(seed=0x5EED).to_list(), key.hash(seed=0xACC7).to_list(), strict=True):
        x, y = f"{h1:016x}", f"{h2:016x}"
        expected.append(f"{x[:8]}-{x[8:12]}-{x[12:16]}-{y[:4]}-{y[4:]}")
    assert got == expected
    assert len(set(got)) == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(10**15), 10**15), min_size=1, max_size=30),
    st.integers(1, 10**9),
    st.sampled_from(list(MoneyRounding)),
)
def test_div_round_expr_matches_div_round_int(numerators, divisor, mode):
    got = (
        pl.DataFrame({"n": numerators}).select(div_round_expr(pl.col("n"), pl.lit(divisor), mode)).to_series()
    )
    assert got.to_list() == [div_round_int(n, divisor, mode) for n in numerators]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10**12), min_size=1, max_size=30),
    st.integers(0, 4),
    st.sampled_from(list(MoneyRounding)),
)
def test_rescaling_is_idempotent(values, digits, mode):
    df = pl.DataFrame({"v": values})
    once = df.select(rescale_expr(pl.col("v"), 8, digits, mode).alias("v"))
    back = once.select((pl.col("v") * 10 ** (8 - digits)).alias("v"))
    twice = back.select(rescale_expr(pl.col("v"), 8, digits, mode).alias("v"))
    assert once.equals(twice)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 24 * 10**4), min_size=1, max_size=30),
    st.sampled_from([0, 1, 5, 6, 10, 15, 30, 60]),
    st.sampled_from(list(TimeRounding)),
    st.sampled_from([0, 15, 30]),
)
@example(hours_e4=[10834], increment=5, mode=TimeRounding.UP, minimum=0)  # 70 min is not exact at 4 dp
@example(
    hours_e4=[7500], increment=60, mode=TimeRounding.DOWN, minimum=15
)  # rounds to 0: minimum still applies
def test_time_rounding_is_idempotent_and_matches_round_minutes(hours_e4, increment, mode, minimum):
    df = pl.DataFrame({"h": hours_e4})
    once = df.select(round_hours_expr(pl.col("h"), increment, mode, minimum).alias("h"))
    twice = once.select(round_hours_expr(pl.col("h"), increment, mode, minimum).alias("h"))
    if increment <= 1 or minimum % increment == 0:  # a minimum off the grid gets rounded again
        assert once.equals(twice)
    for h, rounded in zip(hours_e4, once["h"].to_list(), strict=True):
        if h * 36 % 6000 == 0:  # a whole number of minutes: comparable with round_minutes
            minutes = round_minutes(h * 36 // 6000, increment, mode, minimum)
            assert rounded == div_round_int(minutes * 6000, 36)


def test_scaled_integers_become_exact_decimals():
    out = pl.DataFrame({"v": [112500, -5, 0]}).select(scaled_to_decimal_expr(pl.col("v"), 4, 18)).to_series()
    assert out.dtype == pl.Decimal(18, 4)
    assert out.to_list() == [Decimal("11.25"), Decimal("-0.0005"), Decimal("0")]
