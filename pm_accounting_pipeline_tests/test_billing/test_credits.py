"""Manual credit memos and refunds: they reference the invoice they correct, book the reverse,
settle what is open, and bad requests are rejected with a reason, never dropped."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pm_accounting_pipeline_tests.test_billing.helpers import (
    APRIL,
    MARCH,
    acme,
    bill_month,
    doc,
    lines_of,
    mapping_with,
)

ROWS = [
    acme("a1", "7.5", 2),
    acme("a2", "2", 3, task="Design"),
]  # 1125.00 (4000) + 300.00 (4010) + 8% = 1539.00


@pytest.fixture(scope="module")
def march():
    result, _ = bill_month(mapping_with(), ROWS, MARCH)
    return result


def _april(march, credits=None, refunds=None, payments=None, mapping=None):
    result, _ = bill_month(
        mapping or mapping_with(),
        ROWS,
        APRIL,
        prior=march.state,
        credits=credits,
        refunds=refunds,
        payments=payments,
    )
    return result


def _by_account(result) -> dict[str, tuple[int, int]]:
    sums = result.ledger.lines.group_by("account").agg(
        pl.col("debit_minor").sum(), pl.col("credit_minor").sum()
    )
    return {a: (int(d), int(c)) for a, d, c in sums.iter_rows()}


def test_full_credit_reverses_every_line_of_the_invoice(march) -> None:
    april = _april(
        march,
        credits=[
            {
                "credit_id": "c1",
                "document_number": "us-202603-0001",
                "date": date(2026, 4, 10),
                "reason": "dispute",
            }
        ],
    )
    cm = doc(april, document_type="credit_memo")
    assert (cm["document_number"], cm["corrects_document_number"], cm["issue_date"]) == (
        "us-CN-202604-0001",
        "us-202603-0001",
        date(2026, 4, 10),
    )
    assert (cm["subtotal_minor"], cm["tax_minor"], cm["total_minor"]) == (-142500, -11400, -153900)
    assert cm["reason"] == "manual c1: dispute"
    assert lines_of(april, cm["document_number"]) == [
        ("credit", "Credit: Website - Design", -30000),
        ("credit", "Credit: Website - Development", -112500),
    ]
    # the reverse of the invoice: Dr revenue per account, Dr tax payable, Cr receivable
    assert _by_account(april) == {
        "4000": (112500, 0),
        "4010": (30000, 0),
        "2200": (11400, 0),
        "1200": (0, 153900),
    }
    status = april.state.credit_status.sort("source_id")
    assert status.select("source_id", "change", "credited_minor", "original_document_number").rows() == [
        ("a1", "manual_credit", 112500, "us-202603-0001"),
        ("a2", "manual_credit", 30000, "us-202603-0001"),
    ]
    applied = april.state.settlements.filter(pl.col("kind") == "credit_applied").sort("amount_minor")
    assert applied.select("document_number", "amount_minor").rows() == [
        ("us-202603-0001", -153900),
        ("us-CN-202604-0001", 153900),
    ]


def test_partial_credit_adds_tax_at_the_invoice_rate(march) -> None:
    april = _april(
        march,
        credits=[
            {
                "credit_id": "c2",
                "document_number": "us-202603-0001",
                "date": date(2026, 4, 10),
                "amount": "100.00",
                "reason": "goodwill",
            }
        ],
    )
    cm = doc(april, document_type="credit_memo")
    # 100.00 + 8% = 108.00 credited
    assert (cm["subtotal_minor"], cm["tax_minor"], cm["total_minor"]) == (-10000, -800, -10800)
    assert _by_account(april) == {"4000": (10000, 0), "2200": (800, 0), "1200": (0, 10800)}
    assert april.state.credit_status.height == 0  # no source entry was credited


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"document_number": "us-202603-0001", "amount": "1425.01"}, "over_credit"),
        ({"document_number": "us-209901-0001"}, "unknown_document"),
        ({"document_number": "us-202603-0001", "amount": "10.001"}, "bad_rate"),
    ],
)
def test_bad_credit_requests_are_rejected_with_a_reason(march, request_, reason) -> None:
    april = _april(
        march, credits=[{"credit_id": "bad", "date": date(2026, 4, 10), "reason": "x", **request_}]
    )
    assert april.state.documents.filter(pl.col("document_type") == "credit_memo").height == 0
    rejected = april.state.rejections
    assert rejected.select("input", "reason").rows() == [("credits", reason)]


def test_only_invoices_can_be_credited() -> None:
    m = mapping_with(
        retainers=[{"id": "r", "client": "Acme Corporation", "amount": "50.00", "issue_date": "2026-03-05"}]
    )
    march, _ = bill_month(m, ROWS, MARCH)
    april = _april(
        march,
        mapping=m,
        credits=[
            {"credit_id": "c", "document_number": "us-202603-0002", "date": date(2026, 4, 1), "reason": "x"}
        ],
    )
    assert april.state.rejections["reason"].to_list() == ["not_creditable"]


def test_credit_requests_are_issued_once(march) -> None:
    credit = [
        {
            "credit_id": "c2",
            "document_number": "us-202603-0001",
            "date": date(2026, 4, 10),
            "amount": "100.00",
            "reason": "goodwill",
        }
    ]
    first = _april(march, credits=credit)
    again, _ = bill_month(mapping_with(), ROWS, APRIL, prior=march.state, frozen=first.state, credits=credit)
    assert again.new_documents == 0
    assert again.state.documents.equals(first.state.documents)


def test_refund_of_a_credit_on_a_paid_invoice(march) -> None:
    invoice = doc(march, document_number="us-202603-0001")
    payments = pl.DataFrame(
        {"invoice_id": [invoice["document_id"]], "payment_date": [date(2026, 4, 5)], "amount_minor": [153900]}
    )
    credit = [
        {
            "credit_id": "c2",
            "document_number": "us-202603-0001",
            "date": date(2026, 4, 10),
            "amount": "100.00",
            "reason": "goodwill",
        }
    ]
    refund = [
        {
            "refund_id": "r1",
            "document_number": "us-CN-202604-0001",
            "date": date(2026, 4, 20),
            "amount": "108.00",
            "currency": "USD",
            "reference": "wire 77",
        }
    ]
    april = _april(march, credits=credit, refunds=refund, payments=payments)
    settlements = april.state.settlements.sort("settlement_date")
    # the invoice was paid before the credit, so the credit stays open until it is refunded
    assert settlements.select("document_number", "kind", "amount_minor", "reference").rows() == [
        ("us-CN-202604-0001", "refund", 10800, "wire 77")
    ]
    refund_lines = april.ledger.lines.filter(pl.col("entry_type") == "refund")
    assert sorted(refund_lines.select("account", "debit_minor", "credit_minor").rows()) == [
        ("1000", 0, 10800),
        ("1200", 10800, 0),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": "200.00"}, "over_refund"),
        ({"currency": "EUR"}, "currency_mismatch"),
        ({"document_number": "us-202603-0001"}, "over_refund"),
        ({"document_number": "nope"}, "unknown_document"),
    ],
)
def test_bad_refunds_are_rejected_with_a_reason(march, change, reason) -> None:
    credit = [
        {
            "credit_id": "c2",
            "document_number": "us-202603-0001",
            "date": date(2026, 4, 10),
            "amount": "100.00",
            "reason": "goodwill",
        }
    ]
    refund = [
        {
            "refund_id": "r1",
            "document_number": "us-CN-202604-0001",
            "date": date(2026, 4, 20),
            "amount": "108.00",
            "currency": "USD",
            **change,
        }
    ]
    april = _april(march, credits=credit, refunds=refund)
    assert april.state.settlements.filter(pl.col("kind") == "refund").height == 0
    assert april.state.rejections.select("input", "reason").rows() == [("refunds", reason)]


def test_credit_and_refund_files_are_parsed_and_bad_rows_rejected(tmp_path) -> None:
    from pm_accounting_pipeline.core.billing.inputs import read_requests

    folder = tmp_path / "credits"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "credit_id,document_number,date,amount,reason\n"
        "c1,us-202603-0001,2026-04-10,100.00,goodwill\n"
        "c2,us-202603-0001,10/04/2026,,x\n"
        "c3,,2026-04-01,,x\n"
        "c1,us-202603-0001,2026-04-10,100.00,goodwill\n"
        "c4,us-202603-0001,2026-04-01,-5,x\n"
    )
    (folder / "b.csv").write_text("id,amount\n1,2\n")
    parsed = read_requests(folder, "credits")
    assert parsed.rows.select("credit_id", "amount").rows() == [("c1", "100.00")]
    assert parsed.rejected.select("source_file", "source_row", "reason").rows() == [
        ("a.csv", 2, "bad_date"),
        ("a.csv", 3, "missing_required"),
        ("a.csv", 4, "duplicate_exact"),
        ("a.csv", 5, "bad_rate"),
        ("b.csv", 1, "missing_required"),
    ]
    assert (
        "the file has no column(s) ['credit_id', 'document_number', 'date', 'reason']"
        in parsed.rejected["detail"][4]
    )


def test_a_rerun_reports_a_rejected_request_once(march) -> None:
    bad = [{"credit_id": "x", "document_number": "nope", "date": date(2026, 4, 10), "reason": "x"}]
    first = _april(march, credits=bad)
    again, _ = bill_month(mapping_with(), ROWS, APRIL, prior=march.state, frozen=first.state, credits=bad)
    assert again.state.rejections["reason"].to_list() == ["unknown_document"]
