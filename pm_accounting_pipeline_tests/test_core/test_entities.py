"""Entity assignment: rules, precedence, quarantine reasons, and what the later layers make of it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import MappingDocumentError, parse_mapping
from pm_accounting_pipeline.core.checks import trial_balance, unbalanced_entries
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.entities import assign_entities, rerouted, rows_by_rule
from pm_accounting_pipeline.core.intercompany import build_recharges
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline_tests.test_core.builders import (
    assert_contract,
    make_mapping,
    make_raw,
    mapping_dict,
    one,
)
from pm_accounting_pipeline_tests.test_group.builders import group_mapping, hand_rates

ACME = {"client": "Acme Corporation", "project": "Website"}  # billed by us
BRIT = {"client": "Britannia Ltd", "project": "Migration"}  # billed by uk
NOBODY = {"client": "Nobody Ltd", "project": "Moonshot"}  # not in the mapping
PEOPLE = {"people": [{"person": "Grace Hopper", "employer": "uk"}]}


def _assign(rows: list[dict], mapping):
    raw = make_raw(rows)
    res = assign_entities(raw, mapping)
    assert raw.height == res.rows.height + res.quarantine.height
    assert res.rows.columns == raw.columns
    assert_contract("raw.time_entries", res.rows)
    assert_contract("staging.quarantine", res.quarantine)
    return res


def _placed(res) -> dict[str, tuple[str, str, str]]:
    return {
        r["source_id"]: (r["entity"], r["entity_rule"], r["landing_entity"])
        for r in res.rows.iter_rows(named=True)
    }


def test_a_row_landed_for_us_for_a_client_of_uk_belongs_to_uk_by_the_client_rule():
    res = _assign([{**ACME}, {**BRIT}], make_mapping())
    assert _placed(res) == {"e1": ("us", "client", "us"), "e2": ("uk", "client", "us")}
    assert rows_by_rule(res.rows) == {"client": 2}
    assert rerouted(res.rows).rows() == [("us", "uk", "client", 1)]


def test_default_precedence_project_then_client_then_person_then_pm_account():
    m = make_mapping(group=PEOPLE, entity_assignment={"projects": {"ACME:Website": "uk"}})
    res = _assign(
        [
            {**ACME},  # project override beats the client's us
            {"client": "Acme Corporation", "project": "Mobile App"},  # no override: client
            {**NOBODY, "person": "Grace Hopper"},  # unknown client: the employer
            {**NOBODY, "person": "Ada Lovelace"},  # unknown client, unlisted person: the PM account
        ],
        m,
    )
    assert _placed(res) == {
        "e1": ("uk", "project", "us"),
        "e2": ("us", "client", "us"),
        "e3": ("uk", "person", "us"),
        "e4": ("us", "pm_account", "us"),
    }


def test_project_override_matches_by_project_code_too():
    m = make_mapping(entity_assignment={"projects": {"ACM-1": "uk"}})
    res = _assign([{"client": "Acme Corporation", "project_code": "ACM-1", "project": "Renamed"}], m)
    assert _placed(res) == {"e1": ("uk", "project", "us")}


def test_person_rule_places_internal_time_without_a_client_in_the_employers_books():
    # Time logged without a client (a Toggl entry on no client) follows the person's employer, so
    # the cleaning layer quarantines it in the employer's partition, not in the PM account's.
    m = make_mapping(group=PEOPLE)
    res = _assign([{"client": None, "project": "Internal", "person": "grace  HOPPER"}], m)
    assert _placed(res) == {"e1": ("uk", "person", "us")}
    cleaned = clean_and_map(res.rows, m)
    assert cleaned.quarantine.select("entity", "reason").rows() == [("uk", "missing_required")]


def test_person_matched_by_id_before_name():
    m = make_mapping(group={"people": [{"person": "Someone Else", "person_id": "77", "employer": "uk"}]})
    res = _assign([{**NOBODY, "person": "Ada Lovelace", "person_id": "77"}], m)
    assert _placed(res) == {"e1": ("uk", "person", "us")}


def test_pm_account_first_keeps_rows_in_their_folder_and_holds_back_other_entities_clients():
    m = make_mapping(entity_assignment={"precedence": ["pm_account"]})
    res = _assign([{**ACME}, {**BRIT}, {**NOBODY}], m)
    assert _placed(res) == {"e1": ("us", "pm_account", "us"), "e3": ("us", "pm_account", "us")}
    q = one(res.quarantine, source_id="e2")
    assert (q["entity"], q["layer"], q["reason"], q["partition_date"]) == (
        "us",
        "raw",
        "wrong_entity",
        date(2026, 3, 2),
    )
    assert q["detail"] == (
        "client 'Britannia Ltd' is billed by entity 'uk', but rule 'pm_account' of "
        "entity_assignment.precedence ['pm_account'] assigns it to 'us' (landed for 'us')"
    )
    assert q["source_record"] is not None


def test_person_ranked_above_client_is_an_explicit_conflict_for_cross_entity_work():
    m = make_mapping(group=PEOPLE, entity_assignment={"precedence": ["person", "client", "pm_account"]})
    res = _assign([{**ACME, "person": "Grace Hopper"}, {**ACME}], m)
    assert _placed(res) == {"e2": ("us", "client", "us")}
    q = one(res.quarantine, source_id="e1")
    assert q["reason"] == "wrong_entity"
    assert q["detail"].startswith("client 'Acme Corporation' is billed by entity 'us', but rule 'person'")


def test_no_rule_deciding_is_quarantined_as_no_entity():
    m = make_mapping(entity_assignment={"precedence": ["project", "client"]})
    res = _assign([{**ACME}, {**NOBODY}], m)
    assert _placed(res) == {"e1": ("us", "client", "us")}
    q = one(res.quarantine, source_id="e2")
    assert (q["entity"], q["reason"]) == ("us", "no_entity")
    assert q["detail"] == (
        "no rule of entity_assignment.precedence ['project', 'client'] applies: client 'Nobody Ltd' "
        "has no mapping, person 'Ada Lovelace' is not in group.people"
    )


def test_a_pm_account_of_an_entity_the_mapping_does_not_list_is_quarantined():
    res = _assign([{**NOBODY, "entity": "fr"}, {**BRIT, "entity": "fr"}], make_mapping())
    assert _placed(res) == {"e2": ("uk", "client", "fr")}
    q = one(res.quarantine, source_id="e1")
    assert (q["entity"], q["reason"]) == ("fr", "unknown_entity")
    assert (
        "assigned by rule 'pm_account' to entity 'fr', which the mapping document does not list"
        in q["detail"]
    )


def test_assigning_twice_changes_nothing():
    m = make_mapping(group=PEOPLE)
    once = _assign([{**ACME}, {**BRIT}, {**NOBODY, "person": "Grace Hopper"}], m).rows
    twice = assign_entities(once, m).rows
    assert twice.equals(once)


def test_cleaning_reads_numbers_with_the_landing_accounts_separator_after_rerouting():
    # A Harvest CSV row of the uk account (decimal comma) for a us client: 7,5 hours are 7.5 hours.
    raw = make_raw([{**ACME, "entity": "uk", "source_system": "harvest_csv", "hours_raw": "7,5"}])
    res = assign_entities(raw, make_mapping())
    assert _placed(res) == {"e1": ("us", "client", "uk")}
    item = one(clean_and_map(res.rows, make_mapping()).work_items, source_id="e1")
    assert (item["entity"], item["hours"]) == ("us", Decimal("7.5000"))


def test_cleaning_holds_back_a_row_whose_entity_is_not_its_projects_billing_entity():
    # Raw written before the project was assigned to uk (a stale us partition): not booked twice.
    m = make_mapping(entity_assignment={"projects": {"ACME:Website": "uk"}})
    cleaned = clean_and_map(make_raw([{**ACME}]), m)
    (detail,) = cleaned.quarantine.filter(pl.col("reason") == "wrong_entity")["detail"].to_list()
    assert detail == (
        "project 'ACME:Website' is assigned to entity 'uk', not to this partition's entity 'us' "
        "(assigned by rule 'pm_account', landed for 'us')"
    )
    assigned = assign_entities(make_raw([{**ACME}]), m).rows
    assert clean_and_map(assigned, m).work_items.select("entity", "customer_job").rows() == [
        ("uk", "ACME:Website")
    ]


def test_rerouted_work_is_booked_by_its_entity_and_each_entitys_trial_balance_balances(ecb):
    m = make_mapping()
    rows = [{**ACME, "hours_raw": "2"}, {**BRIT, "hours_raw": "2"}]  # both landed for us
    daily = run_daily(assign_entities(make_raw(rows), m).rows, m, ecb)
    lines = daily.ledger.lines
    assert unbalanced_entries(lines).height == 0
    assert set(daily.ledger.entries["entity"]) == {"us", "uk"}
    # uk accrues Britannia's 2 h x GBP 120 (card "brit") and its cost 2 h x GBP 50; us only Acme's.
    uk_revenue = lines.filter((pl.col("entity") == "uk") & (pl.col("account") == "4000"))
    assert uk_revenue.select("currency", "credit_minor").rows() == [("GBP", 24000)]
    uk_cost = lines.filter((pl.col("entity") == "uk") & (pl.col("account") == "5000"))
    assert uk_cost.select("functional_currency", "functional_debit").rows() == [("GBP", Decimal("100.000"))]
    us_jobs = set(lines.filter(pl.col("entity") == "us")["customer_job"].drop_nulls())
    assert us_jobs == {"ACME:Website"}
    for basis in ("transaction", "functional", "reporting"):
        tb = trial_balance(lines, basis)  # type: ignore[arg-type]
        per_entity = tb.group_by("entity", "currency").agg(pl.col("balance").sum())
        assert set(per_entity["entity"]) == {"us", "uk"}
        assert (per_entity["balance"] == 0).all(), (basis, per_entity)


def test_intercompany_recharge_for_a_us_employee_on_uk_work_landed_in_the_us_account():
    m = group_mapping(
        group={
            "people": [{"person": "Grace Hopper", "employer": "us"}],
            "intercompany": [{"id": "us-uk", "provider": "us", "recipient": "uk", "basis": "cost"}],
        }
    )
    p = hand_rates()
    raw = make_raw([{**BRIT, "person": "Grace Hopper", "hours_raw": "10"}])
    assigned = assign_entities(raw, m).rows
    assert assigned.select("entity", "entity_rule", "landing_entity").rows() == [("uk", "client", "us")]
    d = run_daily(assigned, m, p)
    res = build_recharges(d.fx, m, "uk", date(2026, 3, 1), date(2026, 3, 31), p)
    r = one(res.recharges, recipient="uk")
    # Cost basis: 10 h at the Britannia card's GBP 50 cost rate = GBP 500.00, charged by us.
    assert (r["provider"], r["entity"], r["currency"], r["recharge_minor"]) == ("us", "uk", "GBP", 50000)
    assert unbalanced_entries(res.journal.lines).height == 0
    assert set(res.journal.lines["entity"]) == {"us", "uk"}


# --- the mapping-document section -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"precedence": ["client", "client"]},
            "entity_assignment: precedence lists ['client'] more than once",
        ),
        (
            {"precedence": ["client", "project", "pm_account"]},
            "entity_assignment: precedence: project must come before client",
        ),
        ({"precedence": []}, "entity_assignment: precedence needs at least one rule"),
        ({"precedence": ["landing"]}, "entity_assignment.precedence[0]: Input should be"),
        (
            {"precedence": ["client", "pm_account"], "projects": {"ACME:Website": "uk"}},
            "entity_assignment: projects are listed but precedence has no project rule",
        ),
        (
            {"projects": {"NOPE": "uk"}},
            "entity_assignment: projects.NOPE: unknown project (use a customer_job or project code)",
        ),
        (
            {"projects": {"ACME:Website": "fr"}},
            "entity_assignment: projects.ACME:Website: unknown entity 'fr' (known: ['uk', 'us'])",
        ),
        (
            {"projects": {"ACME:Website": "uk", "ACM-1": "us"}},
            "entity_assignment: projects.ACM-1: project 'ACME:Website' is already assigned to 'uk'",
        ),
        ({"rules": ["client"]}, "entity_assignment.rules: unknown key"),
    ],
)
def test_section_problems_name_their_location(section, problem):
    with pytest.raises(MappingDocumentError) as exc:
        parse_mapping({**mapping_dict(), "entity_assignment": section})
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_a_harvest_account_under_two_entities_is_rejected():
    data = mapping_dict()
    data["entities"][0]["harvest_account_ids"] = ["42"]
    data["entities"][1]["harvest_account_ids"] = ["42", "43"]
    with pytest.raises(MappingDocumentError) as exc:
        parse_mapping(data)
    assert exc.value.problems == [
        "entities: Harvest account '42' is listed under more than one entity ['uk', 'us']"
    ]


def test_the_default_section_leaves_the_rule_version_unchanged():
    explicit = {"precedence": ["project", "client", "person", "pm_account"], "projects": {}}
    assert parse_mapping({**mapping_dict(), "entity_assignment": explicit}).rule_version == (
        make_mapping().rule_version
    )
    changed = parse_mapping({**mapping_dict(), "entity_assignment": {"precedence": ["pm_account"]}})
    assert changed.rule_version != make_mapping().rule_version
