"""Intercompany recharges (cost, cost-plus, transfer rate), the counterparty on both sides,
eliminations netting to zero in a consolidated trial balance, against hand-computed figures.

Grace Hopper is employed by uk (GBP) and works 10 h on Acme's website, billed by us (USD), on
2 Mar 2026; us rates her at cost 40 USD/h = 400.00 USD. Month-end rates (EUR legs 31 Mar):
USD 1.12, GBP 0.86, so USD->GBP = 0.767857142857 and GBP->USD = 1.302325581395.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.intercompany import (
    IC_ROLES,
    MissingAgreementError,
    build_recharges,
    consolidated_trial_balance,
    eliminate,
)
from pm_accounting_pipeline.core.revaluation import revalue
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, one
from pm_accounting_pipeline_tests.test_group.builders import daily, group_mapping, hand_rates

MAR, APR = (date(2026, 3, 1), date(2026, 3, 31)), (date(2026, 4, 1), date(2026, 4, 30))
ROWS = [
    {"entity": "us", "person": "Grace Hopper", "hours_raw": "10"},
    {"entity": "us", "person": "Ada Lovelace", "hours_raw": "2"},
]


def _setup(agreement: dict[str, object]):
    m = group_mapping(
        group={
            "people": [{"person": "Grace Hopper", "employer": "uk"}],
            "intercompany": [{"id": "uk-us", "provider": "uk", "recipient": "us", **agreement}],
        }
    )
    p = hand_rates()
    d = daily(ROWS, m, p)
    return m, p, d, build_recharges(d.fx, m, "us", *MAR, p)


def _amounts(lines: pl.DataFrame, entity: str, role: str) -> tuple[str, str, str, str, str, str]:
    r = one(lines, entity=entity, account_role=role)
    return tuple(
        str(r[c])
        for c in (
            "debit",
            "credit",
            "functional_debit",
            "functional_credit",
            "reporting_debit",
            "reporting_credit",
        )
    )  # type: ignore[return-value]


def test_cost_plus_recharge_books_both_sides_with_the_counterparty():
    _, _, _, res = _setup({"basis": "cost_plus", "markup": "0.10"})
    rc = res.recharges.row(0, named=True)
    assert (rc["provider"], rc["recipient"], rc["cost_minor"], rc["recharge_minor"], rc["currency"]) == (
        "uk",
        "us",
        40000,
        44000,
        "USD",
    )
    assert str(rc["hours"]) == "10.0000" and rc["work_items"] == 1
    lines = res.journal.lines
    # us: Dr intercompany cost 440.00 / Cr intercompany payable 440.00 (USD throughout).
    assert _amounts(lines, "us", "intercompany_cost") == (
        "440.000",
        "0.000",
        "440.000",
        "0.000",
        "440.000",
        "0.000",
    )
    assert _amounts(lines, "us", "intercompany_payable") == (
        "0.000",
        "440.000",
        "0.000",
        "440.000",
        "0.000",
        "440.000",
    )
    # uk: 440.00 USD x 0.767857142857 = 337.86 GBP.
    assert _amounts(lines, "uk", "intercompany_receivable") == (
        "440.000",
        "0.000",
        "337.860",
        "0.000",
        "440.000",
        "0.000",
    )
    assert _amounts(lines, "uk", "intercompany_revenue") == (
        "0.000",
        "440.000",
        "0.000",
        "337.860",
        "0.000",
        "440.000",
    )
    # The cost of Grace's time leaves us (400.00 USD) and becomes uk's payroll cost (307.14 GBP).
    cost = lines.filter(pl.col("account_role") == "cost_of_services")
    assert _amounts(cost, "us", "cost_of_services") == (
        "0.000",
        "400.000",
        "0.000",
        "400.000",
        "0.000",
        "400.000",
    )
    assert _amounts(cost, "uk", "cost_of_services") == (
        "307.140",
        "0.000",
        "307.140",
        "0.000",
        "400.000",
        "0.000",
    )
    assert one(cost, entity="uk")["customer_job"] == "ACME:Website"
    links = res.ic_links.sort("entity", "account_role")
    assert links.select("entity", "counterparty_entity", "account_role").rows() == [
        ("uk", "us", "intercompany_receivable"),
        ("uk", "us", "intercompany_revenue"),
        ("us", "uk", "intercompany_cost"),
        ("us", "uk", "intercompany_payable"),
    ]
    assert set(links["agreement_id"]) == {"uk-us"}
    assert_balanced(lines)
    assert_contract("ledger.intercompany_recharges", res.recharges)
    assert_contract("ledger.intercompany_links", res.ic_links)


def test_cost_basis_recharges_the_rated_cost():
    _, _, _, res = _setup({"basis": "cost"})
    assert res.recharges["recharge_minor"].to_list() == [40000]


def test_transfer_rate_recharge_is_hours_times_rate_in_the_agreed_currency():
    _, _, _, res = _setup({"basis": "transfer_rate", "transfer_rate": "30", "currency": "GBP"})
    assert res.recharges.select("currency", "recharge_minor").row(0) == ("GBP", 30000)
    # 300.00 GBP x 1.302325581395 = 390.70 USD on the recipient's side.
    assert _amounts(res.journal.lines, "us", "intercompany_payable") == (
        "0.000",
        "300.000",
        "0.000",
        "390.700",
        "0.000",
        "390.700",
    )


def test_eliminations_net_intercompany_to_zero_in_the_consolidated_trial_balance():
    m, _, d, res = _setup({"basis": "cost_plus", "markup": "0.10"})
    lines = pl.concat([d.ledger.lines, res.journal.lines])
    elim = pl.concat([eliminate(lines, res.ic_links, m, e, *MAR).lines for e in ("uk", "us")])
    assert set(elim["entity"]) == {"group"} and set(elim["entry_type"]) == {"ic_elimination"}
    assert_balanced(elim)
    tb = dict(consolidated_trial_balance(lines, elim).select("account_role", "balance_minor").iter_rows())
    assert {r: tb[r] for r in IC_ROLES} == dict.fromkeys(IC_ROLES, 0)
    # Outside intercompany the group keeps its real figures: 12 h x 150 USD revenue, and the
    # cost of all 12 h at 40 USD.
    assert (tb["service_revenue"], tb["cost_of_services"]) == (-180000, 48000)
    assert "consolidation_difference" not in tb
    before = dict(
        consolidated_trial_balance(lines, lines.clear()).select("account_role", "balance_minor").iter_rows()
    )
    assert (before["intercompany_revenue"], before["intercompany_cost"]) == (-44000, 44000)


def test_revalued_intercompany_balance_is_eliminated_with_the_difference_to_consolidation():
    m, p, d, res = _setup({"basis": "transfer_rate", "transfer_rate": "30", "currency": "GBP"})
    lines = pl.concat([d.ledger.lines, res.journal.lines])
    april = revalue(lines, res.ic_links, m, "us", APR[1], p)
    # us owes 300.00 GBP, carried at 390.70 USD; at 30 Apr GBP->USD = 1.13 / 0.87: 389.66 USD.
    item = one(april.revaluations, account_role="intercompany_payable")
    assert (
        item["counterparty_entity"],
        item["carrying_functional_minor"],
        item["revalued_functional_minor"],
    ) == ("uk", -39070, -38966)
    assert item["unrealised_functional_minor"] == 104
    ledger = pl.concat([lines, april.journal.lines])
    links = pl.concat([res.ic_links, april.ic_links])
    elim = pl.concat(
        [eliminate(ledger, links, m, e, *period).lines for e in ("uk", "us") for period in (MAR, APR)]
    )
    tb = dict(
        consolidated_trial_balance(ledger.filter(pl.col("posting_date") <= APR[1]), elim)
        .select("account_role", "balance_minor")
        .iter_rows()
    )
    assert {r: tb[r] for r in IC_ROLES} == dict.fromkeys(IC_ROLES, 0)
    assert (tb["unrealised_fx_gain_loss"], tb["consolidation_difference"]) == (-104, 104)


def test_work_without_an_agreement_is_an_error_naming_the_pair():
    m = group_mapping(group={"people": [{"person": "Grace Hopper", "employer": "uk"}]})
    p = hand_rates()
    d = daily(ROWS, m, p)
    with pytest.raises(MissingAgreementError, match=r"uk employs 'Grace Hopper', billed by us on 2026-03-02"):
        build_recharges(d.fx, m, "us", *MAR, p)


def test_people_of_the_billing_entity_are_not_recharged():
    m = group_mapping(group={"people": [{"person": "Grace Hopper", "employer": "us"}]})
    p = hand_rates()
    d = daily(ROWS, m, p)
    res = build_recharges(d.fx, m, "us", *MAR, p)
    assert res.recharges.height == 0 and res.journal.lines.height == 0
