"""Rating: hand-computed amounts, rate precedence, effective dating, rounding and tax."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.rating import rate
from pm_accounting_pipeline.core.rounding import round_to_minor
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, make_mapping, make_raw, one


def _rate(rows: list[dict[str, Any]], mapping: MappingDocument):
    raw = make_raw(rows)
    cleaned = clean_and_map(raw, mapping)
    assert cleaned.quarantine.height == 0, cleaned.quarantine["detail"].to_list()
    result = rate(cleaned.work_items, mapping)
    assert cleaned.work_items.height == result.rated.height + result.quarantine.height
    assert_contract("staging.rated_billables", result.rated)
    assert_contract("staging.quarantine", result.quarantine)
    return result


def _one_rated(row: dict[str, Any], mapping: MappingDocument) -> dict[str, Any]:
    return _rate([row], mapping).rated.row(0, named=True)


def test_seven_and_a_half_hours_at_150_is_1125(mapping):
    r = _one_rated({"hours_raw": "7.5"}, mapping)
    assert (r["bill_rate"], r["bill_rate_source"], r["amount_minor"]) == (
        Decimal("150"),
        "rate_card:acme-2026",
        112500,
    )


def test_quarter_hour_at_99_99_rounds_half_up_to_25_00(mapping):
    # 0.25 x 99.99 = 24.9975 -> 25.00
    r = _one_rated({"client": "Exempt Foundation", "project": "Grant", "hours_raw": "0.25"}, mapping)
    assert (r["bill_rate"], r["amount_minor"]) == (Decimal("99.99"), 2500)


def test_yen_client_is_billed_in_whole_yen(mapping):
    # 3 h x 12,345 JPY = 37,035 JPY; JPY has no minor unit.
    r = _one_rated({"client": "Tokyo Trading KK", "project": "Import", "hours_raw": "3"}, mapping)
    assert (r["currency"], r["amount_minor"]) == ("JPY", 37035)


def test_dinar_client_is_billed_in_fils(mapping):
    # 1.5 h x 45.125 KWD = 67.6875 -> 67.688 KWD (3 decimals) = 67,688 fils.
    r = _one_rated({"client": "Gulf Partners", "project": "Audit", "hours_raw": "1.5"}, mapping)
    assert (r["currency"], r["amount_minor"]) == ("KWD", 67688)


@pytest.mark.parametrize(("mode", "minor"), [("half_up", 513), ("half_even", 512)])
def test_money_rounding_mode_decides_ties(mode, minor):
    # 0.5 h x 10.25 = 5.125 exactly: a tie.
    mapping = make_mapping(
        rate_cards=[{"id": "tie", "bill_rate": "10.25", "currency": "USD"}], rounding={"money_mode": mode}
    )
    r = _one_rated({"client": "Trusted Client", "project": "Retainer", "hours_raw": "0.5"}, mapping)
    assert r["amount_minor"] == minor


def test_effective_dated_rate_card_switches_on_its_start_date():
    cards = [
        {
            "id": "old",
            "client": "Acme Corporation",
            "bill_rate": "150",
            "currency": "USD",
            "valid_to": "2026-03-15",
        },
        {
            "id": "new",
            "client": "Acme Corporation",
            "bill_rate": "165",
            "currency": "USD",
            "valid_from": "2026-03-16",
        },
    ]
    mapping = make_mapping(rate_cards=cards)
    rated = _rate(
        [
            {"work_date": date(2026, 3, 15), "source_id": "a"},
            {"work_date": date(2026, 3, 16), "source_id": "b"},
        ],
        mapping,
    ).rated
    assert one(rated, source_id="a")["bill_rate_source"] == "rate_card:old"
    assert one(rated, source_id="a")["amount_minor"] == 15000
    assert one(rated, source_id="b")["bill_rate_source"] == "rate_card:new"
    assert one(rated, source_id="b")["amount_minor"] == 16500


PRECEDENCE_CARDS = [
    {"id": "default", "bill_rate": "10", "currency": "USD"},
    {"id": "client", "client": "Acme Corporation", "bill_rate": "20", "currency": "USD"},
    {"id": "project", "project": "ACM-1", "bill_rate": "30", "currency": "USD"},
    {"id": "task", "task": "Design", "bill_rate": "40", "currency": "USD"},
    {"id": "person", "person": "Ada Lovelace", "bill_rate": "50", "currency": "USD"},
    {"id": "person-task", "person": "E-1", "task": "Design", "bill_rate": "60", "currency": "USD"},
]


@pytest.mark.parametrize(
    ("row", "winner"),
    [
        ({"person": "Ada Lovelace", "person_id": "E-1", "task": "Design"}, "person-task"),
        ({"person": "Ada Lovelace", "task": "Development"}, "person"),
        ({"person": "Charles Babbage", "task": "Design"}, "task"),
        ({"person": "Charles Babbage", "task": "Development"}, "project"),
        ({"person": "Charles Babbage", "project": "Mobile App"}, "client"),
    ],
)
def test_most_specific_rate_card_wins(row, winner):
    mapping = make_mapping(rate_cards=PRECEDENCE_CARDS)
    assert _one_rated(row, mapping)["bill_rate_source"] == f"rate_card:{winner}"


def test_source_rate_beats_only_the_default_card():
    mapping = make_mapping(rate_cards=PRECEDENCE_CARDS[:1])
    r = _one_rated({"client": "Trusted Client", "project": "Retainer", "bill_rate_raw": "77"}, mapping)
    assert (r["bill_rate_source"], r["bill_rate"], r["amount_minor"]) == ("source_row", Decimal("77"), 7700)
    mapping = make_mapping(rate_cards=PRECEDENCE_CARDS[:2])
    r = _one_rated({"bill_rate_raw": "77"}, mapping)
    assert r["bill_rate_source"] == "rate_card:client"


def test_a_card_in_another_currency_does_not_apply():
    cards = [
        {"id": "acme-eur", "client": "Acme Corporation", "bill_rate": "140", "currency": "EUR"},
        {"id": "default-usd", "bill_rate": "100", "currency": "USD"},
    ]
    r = _one_rated({}, make_mapping(rate_cards=cards))
    assert r["bill_rate_source"] == "rate_card:default-usd"


def test_billable_row_without_any_rate_is_quarantined_as_missing_rate():
    mapping = make_mapping(rate_cards=[{"id": "cost-only", "cost_rate": "40", "currency": "USD"}])
    result = _rate([{"source_id": "billable"}, {"source_id": "held", "approved_raw": "No"}], mapping)
    assert result.quarantine["reason"].to_list() == ["missing_rate"]
    assert result.quarantine["layer"].to_list() == ["rate"]
    assert result.quarantine["source_id"].to_list() == ["billable"]
    assert "no USD bill rate for client 'Acme Corporation'" in result.quarantine["detail"][0]
    # The held row is not billed yet, so it needs no rate and is not lost.
    held = one(result.rated, source_id="held")
    assert (held["bill_rate"], held["bill_rate_source"], held["amount_minor"]) == (None, "held", 0)


def test_held_and_non_billable_rows_carry_cost_but_no_revenue(mapping):
    rated = _rate(
        [
            {"source_id": "held", "approved_raw": "No", "hours_raw": "2"},
            {"source_id": "internal", "project": "Internal Training", "hours_raw": "2"},
            {"source_id": "nb", "billable_raw": "No", "hours_raw": "2"},
        ],
        mapping,
    ).rated
    held = one(rated, source_id="held")
    assert (held["bill_rate"], held["bill_rate_source"], held["amount_minor"]) == (Decimal("150"), "held", 0)
    for sid in ("internal", "nb"):
        r = one(rated, source_id=sid)
        assert (r["bill_rate"], r["bill_rate_source"], r["amount_minor"]) == (None, "not_billable", 0)
    # Cost 2 h x 40.00 USD (default card) on every row.
    assert rated["cost_minor"].to_list() == [8000, 8000, 8000]
    assert set(rated["cost_rate_source"]) == {"rate_card:default-usd"}


def test_cost_rate_is_in_the_functional_currency_whatever_the_billing_currency(mapping):
    row = {"entity": "uk", "client": "Euro Client GmbH", "project": "Rollout", "hours_raw": "2"}
    r = _one_rated(row, mapping)
    assert (r["currency"], r["amount_minor"]) == ("EUR", 22000)
    assert (r["cost_rate"], r["cost_rate_source"], r["cost_minor"]) == (
        Decimal("45"),
        "rate_card:uk-cost",
        9000,
    )


def test_no_cost_rate_means_zero_cost_labelled_none():
    mapping = make_mapping(rate_cards=[{"id": "bill", "bill_rate": "100", "currency": "USD"}])
    r = _one_rated({"client": "Trusted Client", "project": "Retainer"}, mapping)
    assert (r["cost_rate"], r["cost_rate_source"], r["cost_minor"]) == (Decimal("0"), "none", 0)


def test_source_cost_rate_is_used_when_no_specific_card_applies():
    mapping = make_mapping(rate_cards=[{"id": "bill", "bill_rate": "100", "currency": "USD"}])
    r = _one_rated({"cost_rate_raw": "55.5", "hours_raw": "2"}, mapping)
    assert (r["cost_rate_source"], r["cost_minor"]) == ("source_row", 11100)


@pytest.mark.parametrize(
    ("rounding", "hours", "billed"),
    [
        ({"time_increment_minutes": 15, "time_mode": "up"}, "0.1", Decimal("0.25")),
        ({"time_increment_minutes": 15, "time_mode": "nearest"}, "0.1", Decimal("0")),
        ({"time_increment_minutes": 6, "time_mode": "nearest"}, "1.26", Decimal("1.3")),
        ({"time_increment_minutes": 6, "time_mode": "down"}, "1.29", Decimal("1.2")),
        ({"minimum_minutes": 30}, "0.2501", Decimal("0.5")),
        ({"time_increment_minutes": 60, "time_mode": "down", "minimum_minutes": 15}, "0.75", Decimal("0.25")),
        ({}, "0.2501", Decimal("0.2501")),
        # Already on a 5-minute grid (70 and 35 minutes): re-rounding must not move them.
        ({"time_increment_minutes": 5, "time_mode": "up"}, "1.1667", Decimal("1.1667")),
        ({"time_increment_minutes": 5, "time_mode": "down"}, "0.5833", Decimal("0.5833")),
    ],
)
def test_time_rounding(rounding, hours, billed):
    mapping = make_mapping(rounding=rounding)
    r = _one_rated({"hours_raw": hours}, mapping)
    assert r["billed_hours"] == billed
    assert r["amount_minor"] == round_to_minor(billed * 150, "USD")


def test_source_rounded_hours_are_billed_when_configured():
    row = {"hours_raw": "1.1", "rounded_hours_raw": "1.25"}
    assert _one_rated(row, make_mapping())["billed_hours"] == Decimal("1.25")
    assert _one_rated(row, make_mapping(rounding={"use_source_rounded_hours": False}))[
        "billed_hours"
    ] == Decimal("1.1")


def test_tax_rate_is_the_entitys_unless_the_client_is_exempt(mapping):
    rated = _rate(
        [{"source_id": "std"}, {"source_id": "ex", "client": "Exempt Foundation", "project": "Grant"}],
        mapping,
    ).rated
    assert one(rated, source_id="std")["tax_rate"] == Decimal("0.08")
    assert one(rated, source_id="ex")["tax_rate"] == Decimal("0")


def test_unknown_project_reference_in_a_rate_card_is_a_mapping_error():
    mapping = make_mapping(rate_cards=[{"id": "x", "project": "Nope", "bill_rate": "1", "currency": "USD"}])
    with pytest.raises(ValueError, match=r"rate_cards\[0\]\.project"):
        _rate([{}], mapping)
