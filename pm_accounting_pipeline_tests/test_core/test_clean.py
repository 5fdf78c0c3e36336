"""Cleaning and mapping: quarantine reasons, matching, parsing and billing status."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import QUARANTINE_REASONS
from pm_accounting_pipeline.core.clean import (
    CLEAN_REASONS,
    MappingAmbiguityError,
    clean_and_map,
    normalise_text,
)
from pm_accounting_pipeline_tests.test_core.builders import (
    assert_contract,
    make_mapping,
    make_raw,
    mapping_dict,
    one,
)


def _clean(rows: list[dict], mapping: MappingDocument):
    raw = make_raw(rows)
    result = clean_and_map(raw, mapping)
    assert raw.height == result.work_items.height + result.quarantine.height
    assert_contract("staging.work_items", result.work_items)
    assert_contract("staging.quarantine", result.quarantine)
    return result


QUARANTINE_CASES = {
    "missing_required": ([{"task": "  "}], "required field(s) empty: task"),
    "bad_hours": ([{"hours_raw": "seven"}], "hours 'seven' is not a number"),
    "negative_hours": ([{"hours_raw": "-1.5"}], "hours '-1.5' are negative"),
    "absurd_hours": ([{"hours_raw": "25"}], "hours '25' exceed the maximum of 24 per entry"),
    "bad_rate": ([{"bill_rate_raw": "-5"}], "bill rate '-5' is not a non-negative number"),
    "bad_flag": ([{"billable_raw": "maybe"}], "billable 'maybe' is not a yes/no value"),
    "unknown_currency": ([{"currency_raw": "XYZ"}], "currency 'XYZ' is not an ISO 4217 code"),
    "currency_mismatch": (
        [{"currency_raw": "Euro - EUR"}],
        "row currency EUR differs from the billing currency USD of client 'Acme Corporation'",
    ),
    "unknown_client": ([{"client": "Nobody Ltd"}], "client 'Nobody Ltd' has no mapping to a customer"),
    "unknown_project": ([{"project": "Moonshot"}], "project 'Moonshot'"),
    "wrong_entity": (
        [{"client": "Britannia Ltd", "project": "Migration"}],
        "client 'Britannia Ltd' is mapped to entity 'uk', not to this partition's entity 'us'",
    ),
    "duplicate_conflict": (
        [{"source_id": "T-1", "hours_raw": "1"}, {"source_id": "T-1", "hours_raw": "2"}],
        "source id 'T-1' appears 2 times with 2 different contents",
    ),
    "duplicate_exact": (
        [{"source_id": "T-1"}, {"source_id": "T-1", "source_row": 7}],
        "source id 'T-1' already accepted from drop/2026-03-02.csv row 2",
    ),
}


def test_every_clean_reason_has_a_case_and_is_a_contract_code():
    assert set(QUARANTINE_CASES) == set(CLEAN_REASONS)
    assert set(CLEAN_REASONS) <= set(QUARANTINE_REASONS)


@pytest.mark.parametrize("reason", list(QUARANTINE_CASES))
def test_bad_row_is_quarantined_with_its_reason_and_nothing_is_lost(reason, mapping):
    bad_rows, detail = QUARANTINE_CASES[reason]
    good = {"source_id": "good-1", "source_row": 100}
    result = _clean([good, *bad_rows], mapping)
    q = result.quarantine
    assert set(q["reason"]) == {reason}
    assert all(detail in d for d in q["detail"]), q["detail"].to_list()
    assert q["layer"].to_list() == ["clean"] * q.height
    expected_quarantined = 2 if reason == "duplicate_conflict" else 1
    assert q.height == expected_quarantined
    assert "good-1" in result.work_items["source_id"].to_list()
    if reason == "duplicate_exact":
        assert one(result.work_items, source_id="T-1")["source_row"] == 2
    # The verbatim source record travels with the quarantined row for a human to look at.
    assert q["source_record"].null_count() == 0


def test_first_failing_reason_in_priority_order_wins(mapping):
    # Bad hours and an unknown client: hours come first in the order.
    result = _clean([{"hours_raw": "abc", "client": "Nobody Ltd"}], mapping)
    assert result.quarantine["reason"].to_list() == ["bad_hours"]


def test_conflicting_duplicate_holds_back_even_the_copy_that_is_otherwise_fine(mapping):
    result = _clean([{"source_id": "X"}, {"source_id": "X", "hours_raw": "oops"}], mapping)
    assert sorted(result.quarantine["reason"].to_list()) == ["bad_hours", "duplicate_conflict"]
    assert result.work_items.height == 0


@pytest.mark.parametrize(
    "spelling",
    ["Acme Corporation", "ACME CORPORATION.", "  acme   corporation ", "Acmé Corporation", "ACME Corp"],
)
def test_near_duplicate_client_names_map_to_one_customer(spelling, mapping):
    result = _clean([{"client": spelling}], mapping)
    item = result.work_items.row(0, named=True)
    assert (item["customer_ref"], item["client_name"]) == ("C-ACME", "Acme Corporation")


def test_client_source_id_wins_over_the_name(mapping):
    result = _clean([{"client_id": "1001", "client": "Some Old Name"}], mapping)
    assert result.work_items["customer_ref"].to_list() == ["C-ACME"]


def test_project_matches_by_code_before_name(mapping):
    result = _clean([{"project_code": "ACM-1", "project": "Renamed In Source"}], mapping)
    item = result.work_items.row(0, named=True)
    assert (item["customer_job"], item["project_code"], item["project_name"]) == (
        "ACME:Website",
        "ACM-1",
        "Website",
    )


def test_project_code_of_another_client_is_unknown_project(mapping):
    result = _clean([{"client": "Tokyo Trading KK", "project_code": "ACM-1", "project": ""}], mapping)
    assert result.quarantine["reason"].to_list() == ["unknown_project"]
    assert "belongs to another client" in result.quarantine["detail"][0]


def test_unknown_task_becomes_its_own_item_on_the_service_revenue_account(mapping):
    result = _clean([{"task": "Workshop facilitation"}], mapping)
    item = result.work_items.row(0, named=True)
    assert (item["task_name"], item["item"], item["revenue_account"]) == (
        "Workshop facilitation",
        "Workshop facilitation",
        "4000",
    )


def test_task_mapping_supplies_item_and_revenue_account(mapping):
    result = _clean([{"task": "design"}], mapping)
    item = result.work_items.row(0, named=True)
    assert (item["task_name"], item["item"], item["revenue_account"]) == ("Design", "DES", "4010")


@pytest.mark.parametrize(
    ("row", "status", "is_billable"),
    [
        ({}, "billable", True),
        ({"approved_raw": "No"}, "held_unapproved", True),
        ({"approved_raw": None}, "held_unapproved", True),
        ({"approved_raw": "submitted"}, "held_unapproved", True),
        ({"billable_raw": "No"}, "non_billable", False),
        ({"task": "Admin", "billable_raw": None}, "non_billable", False),
        ({"task": "Admin", "billable_raw": "Yes"}, "billable", True),
        ({"project": "Internal Training", "billable_raw": "Yes"}, "internal", False),
        ({"client": "Trusted Client", "project": "Retainer", "approved_raw": "No"}, "billable", True),
    ],
)
def test_billing_status(row, status, is_billable, mapping):
    item = _clean([row], mapping).work_items.row(0, named=True)
    assert (item["billing_status"], item["is_billable"]) == (status, is_billable)


def test_approval_can_be_switched_off_for_the_whole_deployment():
    mapping = make_mapping(approval={"require_approval": False})
    item = _clean([{"approved_raw": "No"}], mapping).work_items.row(0, named=True)
    assert (item["billing_status"], item["is_approved"]) == ("billable", False)


@pytest.mark.parametrize(
    ("row", "hours"),
    [
        ({"hours_raw": "7.5"}, Decimal("7.5")),
        ({"hours_raw": " 0.25 "}, Decimal("0.25")),
        ({"hours_raw": "1:30"}, Decimal("1.5")),
        ({"hours_raw": "0:20:00"}, Decimal("0.3333")),
        ({"hours_raw": "1.23456"}, Decimal("1.2346")),
        (
            {
                "entity": "uk",
                "client": "Britannia Ltd",
                "project": "Migration",
                "source_system": "harvest_csv",
                "hours_raw": "7,5",
            },
            Decimal("7.5"),
        ),
    ],
)
def test_hours_parse_with_the_configured_separator_and_formats(row, hours, mapping):
    item = _clean([row], mapping).work_items.row(0, named=True)
    assert item["hours"] == hours


def test_rates_tolerate_thousands_separators(mapping):
    rows = [
        {"bill_rate_raw": "1,234.50"},
        {
            "entity": "uk",
            "client": "Britannia Ltd",
            "project": "Migration",
            "source_system": "harvest_csv",
            "bill_rate_raw": "1.234,50",
            "cost_rate_raw": "80,25",
        },
    ]
    items = _clean(rows, mapping).work_items
    assert items["source_bill_rate"].to_list() == [Decimal("1234.5"), Decimal("1234.5")]
    assert items["source_cost_rate"].to_list() == [None, Decimal("80.25")]


def test_a_dot_in_a_comma_decimal_file_is_not_silently_read_as_thousands(mapping):
    row = {
        "entity": "uk",
        "client": "Britannia Ltd",
        "project": "Migration",
        "source_system": "harvest_csv",
        "hours_raw": "1.5",
    }
    result = _clean([row], mapping)
    assert result.quarantine["reason"].to_list() == ["bad_hours"]


def test_currency_code_is_read_from_harvest_currency_names(mapping):
    result = _clean([{"currency_raw": "US Dollar - USD"}, {"currency_raw": "usd"}], mapping)
    assert result.work_items["currency"].to_list() == ["USD", "USD"]
    assert result.quarantine.height == 0


def test_person_id_comes_from_the_source_or_a_stable_hash_of_the_name(mapping):
    result = _clean(
        [
            {"person": "Grace Hopper", "person_id": "E-7"},
            {"person": "Ada Lovelace"},
            {"person": "  ADA   LOVELACE "},
        ],
        mapping,
    )
    ids = result.work_items["person_id"].to_list()
    assert ids[0] == "E-7"
    assert ids[1] == ids[2] and len(ids[1]) == 36


def test_work_item_ids_are_deterministic_and_depend_on_the_rule_version(mapping):
    rows = [{}, {"source_id": "other"}]
    first = _clean(rows, mapping).work_items["work_item_id"]
    again = _clean(rows, mapping).work_items["work_item_id"]
    assert first.to_list() == again.to_list()
    assert first.n_unique() == 2
    changed = make_mapping(limits={"max_hours_per_entry": "20"})
    assert _clean(rows, changed).work_items["work_item_id"].to_list() != first.to_list()


def test_clients_whose_names_collide_after_normalisation_are_a_mapping_error():
    data = mapping_dict()
    data["clients"].append(
        {"name": "ACME CORPORATION Inc.", "customer_ref": "C-2", "entity": "us", "currency": "USD"}
    )
    mapping = make_mapping(clients=data["clients"])
    with pytest.raises(MappingAmbiguityError, match="acme corporation"):
        clean_and_map(make_raw([{}]), mapping)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme, Inc.", "acme"),
        ("ACME Ltd", "acme"),
        ("Müller GmbH", "muller"),
        ("Smith & Jones LLP", "smith and jones"),
        ("O'Brien Pty Ltd", "obrien"),
        ("Acme Corporation", "acme corporation"),
        ("AG", "ag"),
    ],
)
def test_normalise_name(name, key):
    assert normalise_text(name) == key


def test_empty_input_gives_empty_outputs(mapping):
    result = clean_and_map(make_raw([]), mapping)
    assert result.work_items.height == 0 and result.quarantine.height == 0
    assert_contract("staging.work_items", result.work_items)


def test_raw_rows_of_an_entity_missing_from_the_mapping_are_an_error(mapping):
    with pytest.raises(ValueError, match="not in the mapping"):
        clean_and_map(make_raw([{"entity": "de"}]), mapping)


def test_output_keeps_the_input_row_order(mapping):
    rows = [
        {"source_id": f"s{i}", "client": c} for i, c in enumerate(["Acme Corporation", "Trusted Client"] * 3)
    ]
    for r in rows:
        if r["client"] == "Trusted Client":
            r["project"] = "Retainer"
    result = _clean(rows, mapping)
    assert result.work_items["source_id"].to_list() == [f"s{i}" for i in range(6)]
    assert result.work_items.select(pl.col("source_row").is_sorted()).item()
