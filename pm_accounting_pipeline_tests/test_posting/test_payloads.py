"""Target payloads: QuickBooks and Xero shapes, FX conventions, and Xero's official SDK models."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from xero_python.accounting import models as xero_models
from xero_python.api_client import ModelFinder
from xero_python.api_client.deserializer import deserialize
from xero_python.api_client.serializer import serialize

from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.outbox import DocumentView, view_from_row
from pm_accounting_pipeline.posting.sample import sample_ledger
from pm_accounting_pipeline.posting.targets.base import functional_rate
from pm_accounting_pipeline.posting.targets.qbo import QboTarget
from pm_accounting_pipeline.posting.targets.xero import XeroTarget, currency_rate, ms_date, parse_ms_date


def _views(seed: int = 11, n_inv: int = 6, n_ent: int = 3, **kw: Any) -> list[DocumentView]:
    docs = build_documents(sample_ledger(seed, n_inv, n_ent, **kw))
    return [
        view_from_row({**r, "doc_uid": f"00000000-0000-0000-0000-{i:012d}", "revision": 1})
        for i, r in enumerate(docs.iter_rows(named=True))
    ]


def _reversal(v: DocumentView) -> DocumentView:
    return DocumentView(
        v.doc_uid.replace("0000-0000-0000", "0000-0000-1111"),
        v.document_id,
        "reversal",
        1,
        v.entity,
        v.posting_date,
        v.currency,
        v.total_minor,
        v.content,
        "r" + v.content_hash,
        reverses_uid=v.doc_uid,
        original_kind=v.kind,
    )


QBO = QboTarget(
    "http://127.0.0.1:1",
    "t",
    companies={"acme": "9130", "beta": "9140"},
    accounts={"1200": "AR-1"},
    customers={"C001": "58"},
)
XERO = XeroTarget("http://127.0.0.1:1", "t", companies={"acme": "tenant-a"})


def test_qbo_exchange_rate_is_home_currency_per_foreign_unit() -> None:
    views = [
        v for v in _views(n_ent=0, currencies=("EUR",)) if v.entity == "acme"
    ]  # USD company, EUR invoice
    v = views[0]
    body = QBO.render(v)["body"]
    tx = sum(Decimal(p["debit"]) for p in v.content["postings"])
    fn = sum(Decimal(p["functional_debit"]) for p in v.content["postings"])
    assert body["ExchangeRate"] == functional_rate(v.content)
    assert abs(body["ExchangeRate"] - fn / tx) < Decimal("1e-9")
    assert Decimal("1.08") < body["ExchangeRate"] < Decimal("1.09")  # USD per EUR


def test_xero_currency_rate_is_the_inverse_foreign_per_base_unit() -> None:
    v = next(v for v in _views(n_ent=0, currencies=("EUR",)) if v.entity == "acme")
    rate = XERO.render(v)["body"]["CurrencyRate"]
    assert rate == currency_rate(v.content)
    assert abs(rate * functional_rate(v.content) - 1) < Decimal("1e-8")


def test_home_currency_documents_carry_no_rate() -> None:
    v = next(v for v in _views(n_ent=0, currencies=("USD",)) if v.entity == "acme")
    assert "ExchangeRate" not in QBO.render(v)["body"]
    assert "CurrencyRate" not in XERO.render(v)["body"]


def test_qbo_invoice_shape_and_references() -> None:
    v = next(v for v in _views() if v.kind == "invoice")
    p = QBO.render(v)
    assert p["type"] == "Invoice" and p["realm"] in ("9130", "9140")
    body = p["body"]
    assert body["PrivateNote"] == f"pm:{v.doc_uid}"
    assert body["TxnDate"] == v.posting_date.isoformat() and len(body["DocNumber"]) <= 21
    lines = body["Line"]
    assert all(line["DetailType"] == "SalesItemLineDetail" for line in lines)
    total = sum(line["Amount"] for line in lines) + body.get("TxnTaxDetail", {}).get("TotalTax", 0)
    assert QBO.payload_total(p) == (v.currency, v.total_minor)
    assert total > 0


def test_qbo_journal_entry_balances_and_ar_lines_name_the_customer() -> None:
    inv = next(v for v in _views() if v.kind == "invoice")
    p = QBO.render(_reversal(inv))
    assert p["type"] == "CreditMemo"  # an invoice is reversed by a credit memo
    je = next(v for v in _views() if v.kind == "journal_entry")
    body = QBO.render(je)["body"]
    debit = sum(x["Amount"] for x in body["Line"] if x["JournalEntryLineDetail"]["PostingType"] == "Debit")
    credit = sum(x["Amount"] for x in body["Line"] if x["JournalEntryLineDetail"]["PostingType"] == "Credit")
    assert debit == credit > 0
    rev = QBO.render(_reversal(je))["body"]
    assert [x["JournalEntryLineDetail"]["PostingType"] for x in rev["Line"]] == [
        {"Debit": "Credit", "Credit": "Debit"}[x["JournalEntryLineDetail"]["PostingType"]]
        for x in body["Line"]
    ]
    v = _views(seed=3, n_inv=3, n_ent=0)[0]
    content = dict(v.content, postings=[dict(pp) for pp in v.content["postings"]])
    ar_view = DocumentView(
        v.doc_uid,
        v.document_id,
        "journal_entry",
        1,
        v.entity,
        v.posting_date,
        v.currency,
        v.total_minor,
        {**content, "number": "X"},
        v.content_hash,
    )
    lines = QBO.render(ar_view)["body"]["Line"]
    ar = [x for x in lines if x["JournalEntryLineDetail"]["AccountRef"]["value"] in ("AR-1", "1200")]
    assert ar and all(x["JournalEntryLineDetail"]["Entity"]["Type"] == "Customer" for x in ar)


def _strict_xero(model: str, data: dict[str, Any]) -> Any:
    """Deserialize with the official SDK, refusing keys its model does not know."""
    cls = getattr(xero_models, model)
    reverse = {v: k for k, v in cls.attribute_map.items()}
    for key, value in data.items():
        assert key in reverse, f"{model} has no field {key}"
        sub = cls.openapi_types[reverse[key]]
        if sub.startswith("list[") and sub[5:-1] in dir(xero_models) and isinstance(value, list):
            for item in value:
                _strict_xero(sub[5:-1], item)
        elif sub in dir(xero_models) and isinstance(value, dict):
            _strict_xero(sub, value)
    return deserialize(model, data, ModelFinder(xero_models))


@pytest.mark.parametrize("kind", ["invoice", "credit_note", "manual_journal"])
def test_xero_payloads_validate_against_the_official_sdk_models(kind: str) -> None:
    views = _views(seed=21, n_inv=4, n_ent=2)
    if kind == "invoice":
        v, model = next(x for x in views if x.kind == "invoice"), "Invoice"
    elif kind == "credit_note":
        v, model = _reversal(next(x for x in views if x.kind == "invoice")), "CreditNote"
    else:
        v, model = next(x for x in views if x.kind == "journal_entry"), "ManualJournal"
    payload = XERO.render(v)
    # What goes over the wire, parsed back exactly as the SDK would receive it.
    wire = jsonutil.loads(jsonutil.dumps(payload["body"], canonical=False))
    obj = _strict_xero(model, wire)
    again = serialize(obj)
    assert set(wire) <= set(again)  # the SDK adds its own defaults (HasErrors, HasAttachments)
    if model == "ManualJournal":
        assert sum(Decimal(str(x["LineAmount"])) for x in wire["JournalLines"]) == 0
        assert obj.status == "POSTED" and len(obj.journal_lines) >= 2
    else:
        assert obj.type == ("ACCREC" if model == "Invoice" else "ACCRECCREDIT")
        assert obj.reference == f"pm:{v.doc_uid}"
        assert obj.date == v.posting_date
        total = sum(Decimal(str(x["LineAmount"])) + Decimal(str(x["TaxAmount"])) for x in wire["LineItems"])
        assert XERO.payload_total(payload) == (v.currency, int(total.scaleb(_digits(v.currency))))


def _digits(currency: str) -> int:
    from pm_accounting_pipeline.core.money import minor_digits

    return minor_digits(currency)


def test_xero_dates_use_the_sdk_ms_format() -> None:
    assert ms_date(date(2026, 1, 5)) == "/Date(1767571200000)/"
    assert parse_ms_date("/Date(1767571200000+0000)/") == date(2026, 1, 5)


def test_json_keeps_decimals_exact() -> None:
    text = jsonutil.dumps({"a": Decimal("0.1"), "b": [Decimal("123456789012345.678")], "c": 1})
    assert text == '{"a":0.1,"b":[123456789012345.678],"c":1}'
    assert jsonutil.loads(text)["a"] == Decimal("0.1")
