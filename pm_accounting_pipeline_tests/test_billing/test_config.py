"""Every problem the billing sections of the mapping document can have is reported with its
location and what is wrong (one case per message)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pm_accounting_pipeline.config.schema import MappingDocumentError, parse_mapping
from pm_accounting_pipeline_tests.test_core.builders import mapping_dict

# A valid discount and retainer; each case changes the fields its problem needs.
DISCOUNT = {"id": "d", "scope": "client", "client": "Acme Corporation", "kind": "fixed", "value": "1"}
RETAINER = {"id": "r", "client": "Acme Corporation", "amount": "1", "issue_date": "2026-03-01"}


def _discount(**fields: str) -> dict[str, str]:
    return {**DISCOUNT, **fields}


def _retainer(**fields: str) -> dict[str, str]:
    return {**RETAINER, **fields}


CASES = [
    pytest.param(
        {"client_matching": {"low_threshold": 95, "high_threshold": 90}},
        "client_matching: low_threshold 95.0 is above high_threshold 90.0",
        id="cm_thresholds",
    ),
    pytest.param(
        {
            "client_matching": {
                "decisions": [
                    {"name": "Acme  Inc", "decision": "keep_apart"},
                    {"name": "acme inc", "decision": "keep_apart"},
                ]
            }
        },
        "client_matching: decisions: spelling(s) ['acme inc'] decided more than once",
        id="cm_dup",
    ),
    pytest.param(
        {"client_matching": {"decisions": [{"name": "X", "decision": "merge"}]}},
        "client_matching.decisions[0]: a merge decision names the client the spelling belongs to (client: ...)",
        id="cm_merge_client",
    ),
    pytest.param(
        {"client_matching": {"decisions": [{"name": "X", "decision": "merge", "client": "Nope"}]}},
        "client_matching: decisions[0].client: unknown client 'Nope'",
        id="cm_unknown",
    ),
    pytest.param(
        {"client_matching": {"scorer": "levenshtein"}},
        "client_matching.scorer: Input should be 'token_sort_ratio', 'token_set_ratio', 'ratio' or 'WRatio'",
        id="cm_scorer",
    ),
    pytest.param(
        {"billing": {"credit_memo_number_format": "{entity}-{nope}-{seq}"}},
        "billing: credit_memo_number_format '{entity}-{nope}-{seq}' may use only {entity}, {period}, {year}, {month}, {seq}: 'nope'",
        id="b_fmt",
    ),
    pytest.param(
        {"billing": {"credit_memo_number_format": "{entity}-CN"}},
        "billing: credit_memo_number_format must contain {seq} so numbers are unique",
        id="b_seq",
    ),
    pytest.param(
        {"billing": {"tax_notes": {"luxury": "x"}}},
        "billing: tax_notes: unknown tax profile(s) ['luxury']; known: ['standard', 'exempt', 'zero_rated', 'reverse_charge']",
        id="b_notes",
    ),
    pytest.param(
        {"billing": {"bill_by": "client"}},
        "billing.bill_by: Input should be 'project_task', 'project', 'task' or 'person'",
        id="b_bill_by",
    ),
    pytest.param(
        {"billable_percentages": [{"percent": "50"}]},
        "billable_percentages[0]: a billable percentage applies to a task, a person or both",
        id="bp_none",
    ),
    pytest.param(
        {"billable_percentages": [{"task": "Design", "percent": "150"}]},
        "billable_percentages[0]: percent is a percentage between 0 and 100 (50 for half the hours)",
        id="bp_range",
    ),
    pytest.param(
        {"billable_percentages": [{"task": "Design", "percent": "33.333"}]},
        "billable_percentages[0]: percent has at most two decimals (33.33)",
        id="bp_dec",
    ),
    pytest.param(
        {"billable_percentages": [{"task": "Nope", "percent": "50"}]},
        "billable_percentages: [0].task: unknown task 'Nope'",
        id="bp_task",
    ),
    pytest.param(
        {"billable_percentages": [{"task": "Design", "percent": "50"}, {"task": "Design", "percent": "40"}]},
        "billable_percentages: task 'Design' and person None are listed twice from the start: keep one entry",
        id="bp_dup",
    ),
    pytest.param(
        {
            "billable_percentages": [
                {"task": "Design", "percent": "50", "valid_from": "2026-02-01", "valid_to": "2026-01-01"}
            ]
        },
        "billable_percentages[0]: valid_to is before valid_from",
        id="bp_dates",
    ),
    pytest.param({"discounts": [_discount(value="0")]}, "discounts[0]: value must be positive", id="d_pos"),
    pytest.param(
        {"discounts": [_discount(kind="percentage", value="101")]},
        "discounts[0]: a percentage discount is at most 100",
        id="d_pct",
    ),
    pytest.param(
        {"discounts": [_discount(kind="percentage", value="1.23456")]},
        "discounts[0]: a percentage discount has at most four decimals",
        id="d_pctdec",
    ),
    pytest.param(
        {"discounts": [_discount(scope="project")]},
        "discounts[0]: scope project needs project (a customer_job or project code)",
        id="d_needproj",
    ),
    pytest.param(
        {"discounts": [_discount(project="ACM-1")]},
        "discounts[0]: project applies only to scope project, not client",
        id="d_projscope",
    ),
    pytest.param(
        {"discounts": [_discount(scope="invoice")]},
        "discounts[0]: scope invoice needs period (YYYY-MM) naming the billing period",
        id="d_needperiod",
    ),
    pytest.param(
        {"discounts": [_discount(period="2026-03")]},
        "discounts[0]: period applies only to scope invoice, not client",
        id="d_periodscope",
    ),
    pytest.param(
        {"discounts": [_discount(scope="invoice", period="2026-13")]},
        "discounts[0].period: String should match pattern '^\\d{4}-(0[1-9]|1[0-2])$'",
        id="d_periodfmt",
    ),
    pytest.param({"discounts": [_discount()] * 2}, "discounts: duplicate discount id 'd'", id="d_dup"),
    pytest.param(
        {"discounts": [_discount(client="Nope")]},
        "discounts: [0].client: unknown client 'Nope'",
        id="d_client",
    ),
    pytest.param(
        {"discounts": [_discount(client="Tokyo Trading KK", value="1.5")]},
        "discounts: [0].value: 1.5 has more decimals than JPY allows (0)",
        id="d_jpy",
    ),
    pytest.param(
        {"discounts": [_discount(scope="project", project="NOPE-1")]},
        "discounts: [0].project: unknown project 'NOPE-1' (use a customer_job or code)",
        id="d_proj",
    ),
    pytest.param(
        {"discounts": [_discount(scope="project", project="TOKYO:Import")]},
        "discounts: [0].project: 'TOKYO:Import' belongs to client 'Tokyo Trading KK', not 'Acme Corporation'",
        id="d_projowner",
    ),
    pytest.param(
        {"discounts": [_discount(valid_from="2026-02-01", valid_to="2026-01-01")]},
        "discounts[0]: valid_to is before valid_from",
        id="d_dates",
    ),
    pytest.param(
        {"retainers": [_retainer(amount="-1")]}, "retainers[0]: amount must be positive", id="r_pos"
    ),
    pytest.param(
        {"retainers": [_retainer(end_date="2026-04-01")]},
        "retainers[0]: end_date applies only to recurrence monthly",
        id="r_end_once",
    ),
    pytest.param(
        {"retainers": [_retainer(recurrence="monthly", end_date="2026-02-01")]},
        "retainers[0]: end_date is before issue_date",
        id="r_end_before",
    ),
    pytest.param({"retainers": [_retainer()] * 2}, "retainers: duplicate retainer id 'r'", id="r_dup"),
    pytest.param(
        {"retainers": [_retainer(client="Nope")]},
        "retainers: [0].client: unknown client 'Nope'",
        id="r_client",
    ),
    pytest.param(
        {"retainers": [_retainer(client="Tokyo Trading KK", amount="100.5")]},
        "retainers: [0].amount: 100.5 has more decimals than JPY allows (0)",
        id="r_jpy",
    ),
    pytest.param(
        {"retainers": [_retainer(id="bad id!")]},
        "retainers[0].id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'",
        id="r_id",
    ),
]


@pytest.mark.parametrize(("patch", "problem"), CASES)
def test_billing_sections_report_each_problem_at_its_location(patch: dict[str, Any], problem: str) -> None:
    data = copy.deepcopy(mapping_dict())
    data.update(patch)
    with pytest.raises(MappingDocumentError) as exc:
        parse_mapping(data, "mapping.yaml")
    assert exc.value.problems == [problem]


def test_documents_without_billing_sections_keep_their_rule_version() -> None:
    plain = parse_mapping(copy.deepcopy(mapping_dict()))
    dumped = plain.model_dump(mode="json")
    assert not {"client_matching", "billing", "billable_percentages", "discounts", "retainers"} & set(dumped)


def test_a_complete_billing_configuration_is_valid() -> None:
    data = copy.deepcopy(mapping_dict())
    data.update(
        client_matching={
            "scorer": "WRatio",
            "high_threshold": 95,
            "low_threshold": 85,
            "decisions": [
                {"name": "ACME Corp.", "decision": "merge", "client": "Acme Corporation", "score": 88.5}
            ],
        },
        billing={
            "bill_by": "task",
            "tax_level": "line",
            "corrections": "next_invoice",
            "bank_account": "1010",
        },
        billable_percentages=[
            {"task": "Design", "percent": "50"},
            {"person": "Ada Lovelace", "percent": "80", "valid_from": "2026-01-01"},
        ],
        discounts=[
            {
                "id": "web",
                "scope": "project",
                "client": "Acme Corporation",
                "project": "ACM-1",
                "kind": "percentage",
                "value": "5",
            }
        ],
        retainers=[
            {
                "id": "r",
                "client": "Tokyo Trading KK",
                "amount": "100000",
                "issue_date": "2026-03-01",
                "recurrence": "monthly",
            }
        ],
    )
    doc = parse_mapping(data)
    assert doc.billing.corrections == "next_invoice"
    assert doc.client_matching.decisions[0].client == "Acme Corporation"
    assert [d.id for d in doc.discounts] == ["web"]


def test_the_annotated_billing_example_of_the_reference_is_valid() -> None:
    from pathlib import Path

    import yaml

    from pm_accounting_pipeline.lib.settings import EXAMPLE_MAPPING, PACKAGE_DIR

    text = (PACKAGE_DIR.parent / "docs" / "mapping-document.md").read_text(encoding="utf-8")
    block = text[text.index("```yaml\nclient_matching:") + len("```yaml\n") :]
    data = yaml.safe_load(Path(EXAMPLE_MAPPING).read_text(encoding="utf-8"))
    data.update(yaml.safe_load(block[: block.index("```")]))
    doc = parse_mapping(data)
    assert doc.billing.bill_by == "project_task"
    assert [r.id for r in doc.retainers] == ["wy-support"]
