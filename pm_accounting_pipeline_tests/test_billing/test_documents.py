"""Golden tests of document composition: grouping, discounts, tax profiles, pricing, tax level,
JPY, and the journal that finalises each invoice. Expectations are computed by hand in comments."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline_tests.test_billing.helpers import (
    MARCH,
    acme,
    bill_month,
    doc,
    lines_of,
    mapping_with,
)
from pm_accounting_pipeline_tests.test_core.builders import assert_contract

# Acme bills 150.00 USD/h (client rate card); the US entity charges 8% tax.
ACME_MARCH = [
    acme("a1", "7.5", 2),  # Website / Development: 7.5 x 150 = 1125.00
    acme("a2", "2", 3, task="Design"),  # Website / Design: 2 x 150 = 300.00
]


def _ledger_by_role(result) -> dict[str, tuple[int, int]]:
    lines = result.ledger.lines.group_by("account_role").agg(
        pl.col("debit_minor").sum(), pl.col("credit_minor").sum()
    )
    return {r: (int(d), int(c)) for r, d, c in lines.iter_rows()}


def test_plain_invoice_matches_ledger_invoices_and_books_nothing_more() -> None:
    result, base = bill_month(mapping_with(), ACME_MARCH, MARCH)
    d = doc(result, customer_ref="C-ACME")
    inv = base.invoices.row(0, named=True)
    # 1425.00 + 8% = 1539.00, the same number, id and amounts as ledger.invoices
    assert (d["document_number"], d["time_minor"], d["tax_minor"], d["total_minor"]) == (
        "us-202603-0001",
        142500,
        11400,
        153900,
    )
    assert (d["document_id"], d["document_number"], d["total_minor"]) == (
        inv["invoice_id"],
        inv["invoice_number"],
        inv["total_minor"],
    )
    assert d["base_invoice_id"] == inv["invoice_id"]
    assert result.ledger.lines.height == 0
    assert result.drift.height == 0


def test_outputs_match_the_billing_contracts() -> None:
    result, _ = bill_month(mapping_with(), ACME_MARCH, MARCH)
    for table, frame in result.state.tables().items():
        assert_contract(table, frame)


def test_client_percentage_discount_is_a_line_before_tax_on_the_discounts_account() -> None:
    m = mapping_with(
        discounts=[
            {
                "id": "acme10",
                "scope": "client",
                "client": "Acme Corporation",
                "kind": "percentage",
                "value": "10",
            }
        ]
    )
    result, _ = bill_month(m, ACME_MARCH, MARCH)
    d = doc(result, customer_ref="C-ACME")
    # 1425.00 - 142.50 = 1282.50; tax 8% = 102.60; total 1385.10
    assert (d["discount_minor"], d["subtotal_minor"], d["tax_minor"], d["total_minor"]) == (
        -14250,
        128250,
        10260,
        138510,
    )
    assert lines_of(result, d["document_number"])[-1] == (
        "discount",
        "Discount acme10 (10% on all work)",
        -14250,
    )
    # On top of the ledger/invoices entry: Dr discounts 142.50, Dr tax payable 11.40 (114.00 - 102.60), Cr AR 153.90
    assert _ledger_by_role(result) == {
        "discounts": (14250, 0),
        "tax_payable": (1140, 0),
        "accounts_receivable": (0, 15390),
    }
    discount_line = result.ledger.lines.filter(pl.col("account_role") == "discounts").row(0, named=True)
    assert discount_line["account"] == "4900"


def test_project_discount_first_then_client_discount_on_the_rest() -> None:
    m = mapping_with(
        discounts=[
            {
                "id": "web-50",
                "scope": "project",
                "client": "Acme Corporation",
                "project": "ACM-1",
                "kind": "fixed",
                "value": "50.00",
            },
            {
                "id": "acme10",
                "scope": "client",
                "client": "Acme Corporation",
                "kind": "percentage",
                "value": "10",
            },
        ]
    )
    rows = [acme("a1", "7.5", 2), acme("a3", "2", 4, project="Mobile App")]  # 1125.00 Website + 300.00 Mobile
    result, _ = bill_month(m, rows, MARCH)
    d = doc(result, customer_ref="C-ACME")
    # -50.00 on Website, then 10% of (1425.00 - 50.00) = 137.50; subtotal 1237.50; tax 99.00; total 1336.50
    assert (d["discount_minor"], d["subtotal_minor"], d["tax_minor"], d["total_minor"]) == (
        -18750,
        123750,
        9900,
        133650,
    )
    discounts = [
        (desc, amt) for kind, desc, amt in lines_of(result, d["document_number"]) if kind == "discount"
    ]
    assert discounts == [
        ("Discount web-50 (fixed on project ACM-1)", -5000),
        ("Discount acme10 (10% on all work)", -13750),
    ]


def test_discounts_never_exceed_the_work_they_discount() -> None:
    m = mapping_with(
        discounts=[
            {
                "id": "free",
                "scope": "invoice",
                "client": "Acme Corporation",
                "period": "2026-03",
                "kind": "percentage",
                "value": "100",
            },
            {
                "id": "more",
                "scope": "client",
                "client": "Acme Corporation",
                "kind": "fixed",
                "value": "10.00",
            },
        ]
    )
    result, _ = bill_month(m, ACME_MARCH, MARCH)
    d = doc(result, customer_ref="C-ACME")
    assert (d["discount_minor"], d["subtotal_minor"], d["tax_minor"], d["total_minor"]) == (-142500, 0, 0, 0)


def test_invoice_discount_applies_only_to_its_period_and_validity_dates_are_honoured() -> None:
    m = mapping_with(
        discounts=[
            {
                "id": "feb",
                "scope": "invoice",
                "client": "Acme Corporation",
                "period": "2026-02",
                "kind": "fixed",
                "value": "5.00",
            },
            {
                "id": "old",
                "scope": "client",
                "client": "Acme Corporation",
                "kind": "fixed",
                "value": "5.00",
                "valid_to": "2026-03-30",
            },
            {
                "id": "new",
                "scope": "client",
                "client": "Acme Corporation",
                "kind": "fixed",
                "value": "7.00",
                "valid_from": "2026-03-01",
            },
        ]
    )
    result, _ = bill_month(m, ACME_MARCH, MARCH)
    assert doc(result, customer_ref="C-ACME")["discount_minor"] == -700


def test_jpy_invoice_with_a_discount_rounds_to_whole_yen() -> None:
    m = mapping_with(
        discounts=[
            {
                "id": "t",
                "scope": "client",
                "client": "Tokyo Trading KK",
                "kind": "percentage",
                "value": "12.5",
            }
        ]
    )
    rows = [
        {
            "source_id": "t1",
            "client": "Tokyo Trading KK",
            "project": "Import",
            "hours_raw": "3",
            "work_date": MARCH.replace(day=4),
        }
    ]
    result, base = bill_month(m, rows, MARCH)
    d = doc(result, customer_ref="C-TOKYO")
    # 3 x 12345 = 37035 JPY; 12.5% = 4629.375 -> 4629; 32406; tax 8% = 2592.48 -> 2592; total 34998
    assert (d["time_minor"], d["discount_minor"], d["subtotal_minor"], d["tax_minor"], d["total_minor"]) == (
        37035,
        -4629,
        32406,
        2592,
        34998,
    )
    assert d["total"] == Decimal("34998.000")
    # ledger/invoices booked 37035 + 2963 = 39998: the difference is Dr discounts 4629, Dr tax 371, Cr AR 5000
    assert base.invoices["total_minor"][0] == 39998
    assert _ledger_by_role(result) == {
        "discounts": (4629, 0),
        "tax_payable": (371, 0),
        "accounts_receivable": (0, 5000),
    }
    assert_balanced(pl.concat([base.lines, result.ledger.lines]))


@pytest.mark.parametrize(
    ("profile", "note"),
    [
        ("exempt", "Exempt from tax."),
        ("zero_rated", "Zero-rated supply."),
        ("reverse_charge", "Reverse charge: the customer accounts for the tax."),
    ],
)
def test_tax_profiles_other_than_standard_bill_no_tax_and_say_why(profile: str, note: str) -> None:
    m = mapping_with(
        extra_clients=[
            {
                "name": "Nordic AB",
                "customer_ref": "C-NORD",
                "entity": "us",
                "currency": "USD",
                "tax_profile": profile,
            }
        ],
        extra_projects=[{"name": "Audit", "client": "Nordic AB", "customer_job": "NORD:Audit"}],
    )
    rows = [
        {
            "source_id": "n1",
            "client": "Nordic AB",
            "project": "Audit",
            "hours_raw": "2",
            "work_date": MARCH.replace(day=5),
        }
    ]
    result, _ = bill_month(m, rows, MARCH)
    d = doc(result, customer_ref="C-NORD")
    # default card 100.00/h: 200.00, no tax
    assert (d["subtotal_minor"], d["tax_minor"], d["total_minor"], d["tax_profile"], d["note"]) == (
        20000,
        0,
        20000,
        profile,
        note,
    )


def test_standard_profile_has_no_note() -> None:
    result, _ = bill_month(mapping_with(), ACME_MARCH, MARCH)
    assert doc(result, customer_ref="C-ACME")["note"] is None


def test_inclusive_pricing_carves_tax_out_of_the_gross_lines() -> None:
    m = mapping_with(entity_tax={"uk": {"pricing": "inclusive"}})
    rows = [
        {
            "source_id": "b1",
            "entity": "uk",
            "client": "Britannia Ltd",
            "project": "Migration",
            "hours_raw": "1",
            "work_date": MARCH.replace(day=6),
        },
        {
            "source_id": "b2",
            "entity": "uk",
            "client": "Britannia Ltd",
            "project": "Migration",
            "hours_raw": "0.25",
            "work_date": MARCH.replace(day=9),
        },
    ]
    result, base = bill_month(m, rows, MARCH, entity="uk")
    d = doc(result, customer_ref="C-BRIT")
    # gross 1.25 x 120.00 = 150.00; net = 150.00 / 1.20 = 125.00; tax 25.00
    assert (d["pricing"], d["subtotal_minor"], d["tax_minor"], d["total_minor"]) == (
        "inclusive",
        12500,
        2500,
        15000,
    )
    assert result.ledger.lines.height == 0  # the same as ledger/invoices computes
    assert base.invoices["tax_minor"][0] == 2500


def test_line_level_tax_sums_the_tax_rounded_per_line() -> None:
    # Two lines of 0.75 h x 0.07 USD: 0.0525 -> 0.05 each; 8% of 0.05 = 0.004 -> 0.00 per line, but 8% of 0.10 = 0.008 -> 0.01
    cards = [
        {"id": "tiny", "client": "Acme Corporation", "bill_rate": "0.07", "currency": "USD", "task": "Design"}
    ]
    rows = [acme("x1", "0.75", 2, task="Design"), acme("x2", "0.75", 3, task="Design", project="Mobile App")]
    invoice_level, _ = bill_month(mapping_with(extra_cards=cards), rows, MARCH)
    line_level, _ = bill_month(mapping_with(extra_cards=cards, billing={"tax_level": "line"}), rows, MARCH)
    inv = doc(invoice_level, customer_ref="C-ACME")
    per_line = doc(line_level, customer_ref="C-ACME")
    assert (inv["subtotal_minor"], inv["tax_minor"], inv["total_minor"]) == (10, 1, 11)
    assert (
        per_line["subtotal_minor"],
        per_line["tax_minor"],
        per_line["total_minor"],
        per_line["tax_level"],
    ) == (10, 0, 10, "line")
    taxes = line_level.state.lines.filter(pl.col("document_id") == per_line["document_id"])[
        "tax_minor"
    ].to_list()
    assert taxes == [0, 0]
    # The line-level invoice books 0.01 less tax and receivable than ledger/invoices did.
    assert _ledger_by_role(line_level) == {"tax_payable": (1, 0), "accounts_receivable": (0, 1)}


def test_bill_by_person_makes_one_line_per_person() -> None:
    rows = [
        acme("p1", "2", 2, person="Ada Lovelace"),
        acme("p2", "1", 3, person="Grace Hopper", task="Design"),
        acme("p3", "3", 4, person="Ada Lovelace", project="Mobile App"),
    ]
    result, _ = bill_month(mapping_with(billing={"bill_by": "person"}), rows, MARCH)
    d = doc(result, customer_ref="C-ACME")
    assert lines_of(result, d["document_number"]) == [
        ("time", "Ada Lovelace", 75000),  # 5 h x 150.00
        ("time", "Grace Hopper", 15000),
    ]
    assert d["total_minor"] == 97200  # 900.00 + 8%
    assert result.ledger.lines.height == 0  # same total as ledger/invoices (grouped by project and task)


def test_invoice_level_money_rounding_rounds_each_line_once() -> None:
    # 3 entries of 0.1 h at 0.55 USD: 0.055 -> 0.06 each (line level: 0.18); summed exactly 0.165 -> 0.17
    cards = [{"id": "odd", "task": "Development", "bill_rate": "0.55", "currency": "USD"}]
    rows = [acme(f"r{i}", "0.1", 2 + i) for i in range(3)]
    by_line, _ = bill_month(mapping_with(extra_cards=cards), rows, MARCH)
    by_invoice, base = bill_month(
        mapping_with(extra_cards=cards, rounding={"money_level": "invoice"}), rows, MARCH
    )
    assert doc(by_line, customer_ref="C-ACME")["time_minor"] == 18
    assert doc(by_invoice, customer_ref="C-ACME")["time_minor"] == 17
    assert base.invoices["subtotal_minor"][0] == 17
    assert by_invoice.ledger.lines.height == 0


def test_partially_billable_task_bills_its_share_of_the_hours_and_costs_all_of_them() -> None:
    m = mapping_with(
        billable_percentages=[
            {"task": "Design", "percent": "50"},
            {"person": "Grace Hopper", "task": "Design", "percent": "25"},
        ]
    )
    rows = [
        acme("d1", "3", 2, task="Design"),
        acme("d2", "4", 3, task="Design", person="Grace Hopper"),
        acme("v1", "1", 4),
    ]
    result, _ = bill_month(m, rows, MARCH)
    items = result.state.sources.sort("source_id").select("source_id", "billed_hours", "charge_minor").rows()
    # 50% of 3 h = 1.5 h (225.00); Grace on Design 25% of 4 h = 1 h (150.00); Development in full
    assert items == [
        ("d1", Decimal("1.5000"), 22500),
        ("d2", Decimal("1.0000"), 15000),
        ("v1", Decimal("1.0000"), 15000),
    ]
