"""Properties over random inputs: nothing is lost and every entry balances in three currencies."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pm_accounting_pipeline.core.checks import trial_balance, unbalanced_entries
from pm_accounting_pipeline.core.invoicing import build_invoices
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline_tests.test_core.builders import make_mapping, make_raw

CLIENTS = {
    "us": [
        ("Acme Corporation", "Website"),
        ("acme corp", "Mobile App"),
        ("Tokyo Trading KK", "Import"),
        ("Exempt Foundation", "Grant"),
        ("Trusted Client", "Retainer"),
        ("Gulf Partners", "Audit"),
        ("Acme Corporation", "Internal Training"),
        ("Nobody", "Nothing"),
    ],
    "uk": [("Britannia Ltd", "Migration"), ("Euro Client GmbH", "Rollout"), ("Acme Corporation", "Website")],
}

hours = st.one_of(
    st.decimals(min_value=0, max_value=12, places=2).map(str),
    st.sampled_from(["0.1", "1:45", "abc", "-2", "30", "", "0"]),
)


@st.composite
def raw_rows(draw):
    n = draw(st.integers(1, 25))
    rows = []
    for i in range(n):
        entity = draw(st.sampled_from(["us", "uk"]))
        client, project = draw(st.sampled_from(CLIENTS[entity]))
        rows.append(
            {
                "entity": entity,
                "source_id": draw(st.sampled_from([f"s{i}", "dup"])),
                "work_date": date(2026, 3, 1) + timedelta(days=draw(st.integers(0, 30))),
                "client": client,
                "project": project,
                "task": draw(st.sampled_from(["Development", "Design", "Admin", "Other"])),
                "person": draw(st.sampled_from(["Ada", "Grace", "Alan"])),
                "hours_raw": draw(hours),
                "approved_raw": draw(st.sampled_from(["Yes", "No", None])),
                "billable_raw": draw(st.sampled_from(["Yes", "No", None])),
            }
        )
    return rows


MAPPINGS = [
    make_mapping(),
    make_mapping(rounding={"time_increment_minutes": 15, "time_mode": "up", "money_mode": "half_even"}),
    make_mapping(rounding={"money_level": "invoice", "minimum_minutes": 30}),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_rows(), st.sampled_from(range(len(MAPPINGS))))
def test_random_inputs_lose_nothing_and_every_entry_balances(ecb, rows, which):
    mapping = MAPPINGS[which]
    raw = make_raw(rows)
    daily = run_daily(raw, mapping, ecb)  # raises on a lost row or an unbalanced entry
    assert raw.height == daily.fx.height + daily.quarantine.height
    assert unbalanced_entries(daily.ledger.lines).height == 0
    lines = [daily.ledger.lines]
    for entity in ("us", "uk"):
        batch = build_invoices(daily.fx, mapping, entity, date(2026, 3, 1), date(2026, 3, 31))
        assert unbalanced_entries(batch.lines).height == 0
        inv = batch.invoices
        assert (inv["total_minor"] >= inv["subtotal_minor"]).all()
        lines.append(batch.lines)
    # After a full month is invoiced, unbilled receivables are cleared in every currency basis.
    everything = pl.concat(lines)
    for basis in ("transaction", "functional", "reporting"):
        unbilled = trial_balance(everything, basis).filter(pl.col("account") == "1210")
        assert (unbilled["balance"] == 0).all()
