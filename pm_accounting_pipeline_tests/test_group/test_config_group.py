"""The group sections of the mapping document: defaults keep existing documents valid (and their
rule version unchanged), and every error message of the new sections, with its location."""

from __future__ import annotations

from typing import Any

import pytest

from pm_accounting_pipeline.config.schema import MappingDocumentError, parse_mapping
from pm_accounting_pipeline_tests.test_core.builders import mapping_dict
from pm_accounting_pipeline_tests.test_group.builders import group_mapping_dict


def _problems(**sections: Any) -> list[str]:
    with pytest.raises(MappingDocumentError) as err:
        parse_mapping(group_mapping_dict(**sections))
    return err.value.problems


def test_documents_without_group_sections_keep_their_rule_version():
    plain = parse_mapping(mapping_dict())
    explicit = parse_mapping(
        {**mapping_dict(), "exchange_rates": {}, "group": {}, "allocations": {}, "capex": {}}
    )
    assert plain.rule_version == explicit.rule_version
    assert plain.exchange_rates.precedence == ["contract", "manual", "ecb_offline"]
    assert (plain.group.consolidation_entity, plain.group.accounts.unrealised_fx_gain_loss) == (
        "group",
        "7910",
    )
    changed = parse_mapping({**mapping_dict(), "capex": {"useful_life_months": 24}})
    assert changed.rule_version != plain.rule_version


def test_allocation_rule_version_follows_the_allocation_section_only():
    a = parse_mapping(group_mapping_dict(allocations={"version": "1"}))
    b = parse_mapping(group_mapping_dict(allocations={"version": "2"}))
    c = parse_mapping({**group_mapping_dict(allocations={"version": "1"}), "name": "renamed"})
    assert a.allocations.rule_version.startswith("alloc-1-")
    assert a.allocations.rule_version != b.allocations.rule_version
    assert a.allocations.rule_version == c.allocations.rule_version


CONTRACT = {
    "id": "c1",
    "client": "Gulf Partners",
    "from_currency": "KWD",
    "to_currency": "USD",
    "rate": "3.25",
}
AGREEMENT = {"id": "a1", "provider": "uk", "recipient": "us", "basis": "cost"}
POOL = {"id": "rent", "entity": "us", "driver": "hours"}

CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "empty precedence",
        {"exchange_rates": {"precedence": []}},
        "exchange_rates: precedence needs at least one rate source",
    ),
    (
        "repeated source",
        {"exchange_rates": {"precedence": ["manual", "manual"]}},
        "precedence lists ['manual'] more than once",
    ),
    ("contract only", {"exchange_rates": {"precedence": ["contract"]}}, "precedence needs a market source"),
    ("unknown source", {"exchange_rates": {"precedence": ["oanda"]}}, "exchange_rates.precedence[0]"),
    (
        "duplicate contract",
        {"exchange_rates": {"contracts": [CONTRACT, CONTRACT]}},
        "duplicate contract rate id(s) ['c1']",
    ),
    (
        "contract rate",
        {"exchange_rates": {"contracts": [{**CONTRACT, "rate": "0"}]}},
        "a contract rate must be positive",
    ),
    (
        "contract pair",
        {"exchange_rates": {"contracts": [{**CONTRACT, "to_currency": "KWD"}]}},
        "a contract rate needs two different currencies",
    ),
    (
        "contract currency",
        {"exchange_rates": {"contracts": [{**CONTRACT, "from_currency": "ABC"}]}},
        "unknown currency 'ABC'",
    ),
    (
        "contract dates",
        {
            "exchange_rates": {
                "contracts": [{**CONTRACT, "valid_from": "2026-02-01", "valid_to": "2026-01-01"}]
            }
        },
        "valid_to is before valid_from",
    ),
    (
        "contract client",
        {"exchange_rates": {"contracts": [{**CONTRACT, "client": "Nobody"}]}},
        "exchange_rates: contracts[0].client: unknown client 'Nobody'",
    ),
    ("staleness", {"exchange_rates": {"max_staleness_days": 40}}, "exchange_rates.max_staleness_days"),
    (
        "group role",
        {"group": {"entity_accounts": {"us": {"cash_box": "1001"}}}},
        "entity_accounts.us: unknown group account role(s) ['cash_box']",
    ),
    (
        "group entity accounts",
        {"group": {"entity_accounts": {"fr": {"cash": "1001"}}}},
        "group: entity_accounts.fr: unknown entity",
    ),
    (
        "consolidation id",
        {"group": {"consolidation_entity": "us"}},
        "consolidation_entity: 'us' is a legal entity",
    ),
    (
        "employer",
        {"group": {"people": [{"person": "Ada", "employer": "fr"}]}},
        "group: people[0].employer: unknown entity 'fr'",
    ),
    (
        "people twice",
        {"group": {"people": [{"person": "Ada", "employer": "us"}] * 2}},
        "people: ['Ada'] listed more than once",
    ),
    (
        "same entity",
        {"group": {"intercompany": [{**AGREEMENT, "recipient": "uk"}]}},
        "provider and recipient must be different entities",
    ),
    (
        "markup missing",
        {"group": {"intercompany": [{**AGREEMENT, "basis": "cost_plus"}]}},
        "basis cost_plus needs markup",
    ),
    (
        "markup on cost",
        {"group": {"intercompany": [{**AGREEMENT, "markup": "0.1"}]}},
        "markup applies only to basis cost_plus, not cost",
    ),
    (
        "transfer rate",
        {"group": {"intercompany": [{**AGREEMENT, "basis": "transfer_rate"}]}},
        "basis transfer_rate needs a positive transfer_rate and its currency",
    ),
    (
        "transfer on cost",
        {"group": {"intercompany": [{**AGREEMENT, "currency": "GBP"}]}},
        "transfer_rate and currency apply only to basis transfer_rate",
    ),
    (
        "agreement ids",
        {"group": {"intercompany": [AGREEMENT, AGREEMENT]}},
        "intercompany: duplicate agreement id(s) ['a1']",
    ),
    (
        "agreement entity",
        {"group": {"intercompany": [{**AGREEMENT, "provider": "fr"}]}},
        "group: intercompany[0].provider: unknown entity 'fr'",
    ),
    (
        "agreement dates",
        {"group": {"intercompany": [{**AGREEMENT, "valid_from": "2026-02-01", "valid_to": "2026-01-01"}]}},
        "valid_to is before valid_from",
    ),
    (
        "fixed without split",
        {"allocations": {"pools": [{**POOL, "driver": "fixed"}]}},
        "driver fixed needs fixed_split",
    ),
    (
        "split weights",
        {"allocations": {"pools": [{**POOL, "driver": "fixed", "fixed_split": {"ACM-1": "0"}}]}},
        "fixed_split weights must be positive: ['ACM-1']",
    ),
    (
        "split on hours",
        {"allocations": {"pools": [{**POOL, "fixed_split": {"ACM-1": "1"}}]}},
        "fixed_split applies only to driver fixed, not hours",
    ),
    ("pool ids", {"allocations": {"pools": [POOL, POOL]}}, "pools: duplicate pool id(s) ['rent']"),
    (
        "pool accounts",
        {
            "allocations": {
                "pools": [{**POOL, "accounts": ["6100"]}, {**POOL, "id": "r2", "accounts": ["6100"]}]
            }
        },
        "account(s) ['us:6100'] claimed by more than one pool",
    ),
    (
        "pool entity",
        {"allocations": {"pools": [{**POOL, "entity": "fr"}]}},
        "allocations: pools[0].entity: unknown entity 'fr'",
    ),
    (
        "pool project",
        {"allocations": {"pools": [{**POOL, "projects": ["NOPE"]}]}},
        "pools[0]: unknown project 'NOPE' (use a customer_job or project code)",
    ),
    ("pool id pattern", {"allocations": {"pools": [{**POOL, "id": "Rent Pool"}]}}, "allocations.pools[0].id"),
    ("capex project", {"capex": {"projects": ["NOPE"]}}, "capex: projects: unknown project 'NOPE'"),
    ("capex task", {"capex": {"tasks": ["Knitting"]}}, "capex: tasks: unknown task 'Knitting'"),
    ("capex life", {"capex": {"useful_life_months": 0}}, "capex.useful_life_months"),
]


@pytest.mark.parametrize(("case", "sections", "expected"), CASES, ids=[c[0] for c in CASES])
def test_group_section_errors_name_the_problem_and_its_location(
    case: str, sections: dict[str, Any], expected: str
):
    problems = _problems(**sections)
    assert any(expected in p for p in problems), problems
