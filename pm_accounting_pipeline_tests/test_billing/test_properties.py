"""Property tests of billing arithmetic: totals equal the sum of their lines, rounding is idempotent
and symmetric, no cent is created or lost between lines, totals and the journal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pm_accounting_pipeline.core.billing.amounts import TAX_SCALE, document_taxes, prorate, share
from pm_accounting_pipeline.core.billing.documents import time_lines
from pm_accounting_pipeline.core.rounding import MoneyRounding, div_round_int, rescale_expr, round_decimal
from pm_accounting_pipeline_tests.test_billing.helpers import MARCH, acme, bill_month, mapping_with

MODES = st.sampled_from([MoneyRounding.HALF_UP, MoneyRounding.HALF_EVEN])
AMOUNTS = st.lists(st.integers(-(10**11), 10**11), min_size=1, max_size=12)
RATES = st.integers(0, 999_999)


def _taxes(amounts: list[int], rate: int, pricing: str, level: str, mode: MoneyRounding):
    lines = pl.DataFrame(
        {"document_id": ["d"] * len(amounts), "amount_minor": amounts},
        schema={"document_id": pl.String, "amount_minor": pl.Int64},
    )
    docs = pl.DataFrame(
        {"document_id": ["d"], "tax_rate_e6": [rate], "pricing": [pricing], "tax_level": [level]},
        schema={
            "document_id": pl.String,
            "tax_rate_e6": pl.Int64,
            "pricing": pl.String,
            "tax_level": pl.String,
        },
    )
    taxed, out = document_taxes(lines, docs, mode)
    return taxed, out.row(0, named=True)


@given(
    AMOUNTS, RATES, st.sampled_from(["exclusive", "inclusive"]), st.sampled_from(["invoice", "line"]), MODES
)
def test_totals_are_the_sum_of_lines_plus_or_within_tax(amounts, rate, pricing, level, mode) -> None:
    taxed, d = _taxes(amounts, rate, pricing, level, mode)
    s = sum(amounts)
    assert d["lines_minor"] == s
    assert d["subtotal_minor"] + d["tax_minor"] == d["total_minor"]
    assert (d["subtotal_minor"] if pricing == "exclusive" else d["total_minor"]) == s
    if level == "line":
        assert d["tax_minor"] == sum(taxed["line_tax_minor"].to_list())


@given(AMOUNTS, RATES, st.sampled_from(["exclusive", "inclusive"]), MODES)
def test_invoice_level_tax_is_within_half_a_minor_unit_of_the_exact_tax(amounts, rate, pricing, mode) -> None:
    _, d = _taxes(amounts, rate, pricing, "invoice", mode)
    s = sum(amounts)
    if pricing == "exclusive":
        assert abs(2 * (d["tax_minor"] * TAX_SCALE - s * rate)) <= TAX_SCALE
    else:
        net = d["subtotal_minor"]
        assert abs(2 * (net * (TAX_SCALE + rate) - s * TAX_SCALE)) <= TAX_SCALE + rate


@given(
    AMOUNTS, RATES, st.sampled_from(["exclusive", "inclusive"]), st.sampled_from(["invoice", "line"]), MODES
)
def test_a_credit_memo_has_exactly_the_negated_tax_of_the_invoice(
    amounts, rate, pricing, level, mode
) -> None:
    _, d = _taxes(amounts, rate, pricing, level, mode)
    _, negated = _taxes([-a for a in amounts], rate, pricing, level, mode)
    assert (negated["tax_minor"], negated["total_minor"]) == (-d["tax_minor"], -d["total_minor"])


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**6), MODES)
def test_rounding_is_idempotent(value, divisor, mode) -> None:
    once = div_round_int(value, divisor, mode)
    assert div_round_int(once * divisor, divisor, mode) == once
    scaled = pl.DataFrame({"v": [once * 10**6]}).select(rescale_expr(pl.col("v"), 8, 2, mode))["v"][0]
    assert scaled == once
    d = round_decimal(Decimal(value).scaleb(-4), "USD", mode)
    assert round_decimal(d, "USD", mode) == d


@given(st.integers(0, 10**12), st.integers(0, 1_000_000), MODES)
def test_a_percentage_share_is_within_half_a_minor_unit(amount, pct_e4, mode) -> None:
    got = share(amount, pct_e4, mode)
    assert abs(2 * (got * 1_000_000 - amount * pct_e4)) <= 1_000_000


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=10), st.integers(1, 10**12), MODES)
def test_drawing_a_balance_down_in_parts_clears_its_converted_value_exactly(parts, converted, mode) -> None:
    tx, fn = sum(parts), converted
    taken = 0
    for p in parts:
        step = prorate(p, tx, fn, mode)
        taken += step
        tx, fn = tx - p, fn - step
    assert (tx, fn, taken) == (0, 0, converted)


ITEMS = st.lists(
    st.tuples(st.integers(1, 100_000), st.integers(1, 5_000_000), st.integers(0, 3)), min_size=1, max_size=30
)


@given(ITEMS, st.sampled_from(["line", "invoice"]), MODES)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_time_lines_lose_no_cent_against_their_items(items, level, mode) -> None:
    mapping = mapping_with(rounding={"money_level": level, "money_mode": mode.value})
    frame = pl.DataFrame(
        {
            "document_id": ["d"] * len(items),
            "currency": ["USD"] * len(items),
            "billed_e4": [h for h, _, _ in items],
            "rate_e4": [r for _, r, _ in items],
            "exact_e8": [h * r for h, r, _ in items],
            "charge_minor": [div_round_int(h * r, 10**6, mode) for h, r, _ in items],
            "customer_job": [f"J{t}" for _, _, t in items],
            "project_code": [None] * len(items),
            "project_name": [f"P{t}" for _, _, t in items],
            "task_name": ["Dev"] * len(items),
            "item": ["DEV"] * len(items),
            "revenue_account": ["4000"] * len(items),
        },
        schema_overrides={"project_code": pl.String},
    )
    lines = time_lines(frame, mapping, "us")
    assert int(lines["source_count"].sum()) == len(items)
    if level == "line":
        assert int(lines["amount_minor"].sum()) == sum(frame["charge_minor"])
    else:
        for line in lines.iter_rows(named=True):
            exact = sum(h * r for h, r, t in items if f"J{t}" == line["customer_job"])
            assert abs(2 * (line["amount_minor"] * 10**6 - exact)) <= 10**6


@given(
    st.lists(st.sampled_from(["0.25", "1", "1.5", "2.75", "7.5"]), min_size=1, max_size=4),
    st.decimals(min_value=Decimal("0.5"), max_value=Decimal("60"), places=1),
    st.sampled_from(["invoice", "line"]),
    st.sampled_from(["exclusive", "inclusive"]),
)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_billing_entries_balance_and_the_receivable_is_the_amount_due(hours, pct, tax_level, pricing) -> None:
    mapping = mapping_with(
        billing={"tax_level": tax_level},
        entity_tax={"us": {"pricing": pricing}},
        discounts=[
            {
                "id": "d",
                "scope": "client",
                "client": "Acme Corporation",
                "kind": "percentage",
                "value": str(pct),
            }
        ],
        retainers=[{"id": "r", "client": "Acme Corporation", "amount": "100.00", "issue_date": "2026-03-01"}],
    )
    rows = [acme(f"e{i}", h, 2 + i, task="Design" if i % 2 else "Development") for i, h in enumerate(hours)]
    result, base = bill_month(mapping, rows, MARCH)
    docs = result.state.documents
    lines = result.state.lines
    sums = lines.group_by("document_id").agg(pl.col("amount_minor").sum().alias("s"))
    for d in docs.join(sums, on="document_id").iter_rows(named=True):
        gross = d["subtotal_minor"] if d["pricing"] == "exclusive" else d["total_minor"]
        assert gross == d["s"]
        assert d["total_minor"] == d["subtotal_minor"] + d["tax_minor"]
        assert d["amount_due_minor"] == d["total_minor"] - d["retainer_applied_minor"]
    # ledger/invoices + billing: the receivable booked equals what the documents ask for
    journal = pl.concat([base.lines, result.ledger.lines])
    ar = journal.filter(pl.col("account_role") == "accounts_receivable")
    assert int(ar["debit_minor"].sum() - ar["credit_minor"].sum()) == int(docs["amount_due_minor"].sum())
    assert date(2026, 3, 31) in set(docs["issue_date"].to_list())
