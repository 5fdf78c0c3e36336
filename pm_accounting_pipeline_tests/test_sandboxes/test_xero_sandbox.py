"""The Xero sandbox enforces the vendor's rules over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pm_accounting_pipeline.sandboxes import xero
from pm_accounting_pipeline.sandboxes.faults import FaultConfig, RateLimit
from pm_accounting_pipeline.sandboxes.qbo_xero_http import AccountingFaults, SandboxHandle

TOKEN = "xero-test"


@pytest.fixture
def server() -> Iterator[SandboxHandle]:
    with xero.serve(token=TOKEN, rate_limit=RateLimit(1000, 1.0)) as h:
        yield h


def _headers(key: str | None = None, tenant: str = "t-1") -> dict[str, str]:
    h = {"Authorization": f"Bearer {TOKEN}", "Xero-tenant-id": tenant}
    if key:
        h["Idempotency-Key"] = key
    return h


def _invoice(n: int = 1, amount: str = "100.00") -> dict[str, Any]:
    return {
        "Type": "ACCREC",
        "Contact": {"Name": "Client"},
        "InvoiceNumber": f"INV-{n}",
        "Date": "/Date(1767571200000)/",
        "CurrencyCode": "EUR",
        "CurrencyRate": "0.92",
        "Status": "AUTHORISED",
        "LineAmountTypes": "NoTax",
        "LineItems": [
            {
                "Description": "x",
                "Quantity": 1,
                "UnitAmount": amount,
                "AccountCode": "4000",
                "LineAmount": amount,
            }
        ],
    }


def _journal(a: str = "10.00", b: str = "-10.00") -> dict[str, Any]:
    return {
        "Narration": "accrual",
        "Date": "2026-01-31",
        "Status": "POSTED",
        "JournalLines": [{"LineAmount": a, "AccountCode": "1210"}, {"LineAmount": b, "AccountCode": "4000"}],
    }


def _post(h: SandboxHandle, collection: str, body: Any, key: str | None, **params: str) -> httpx.Response:
    return httpx.post(
        f"{h.url}/api.xro/2.0/{collection}", json=body, headers=_headers(key), params=params, timeout=5
    )


def test_idempotency_key_replays_the_original_and_refuses_another_body(server: SandboxHandle) -> None:
    first = _post(server, "Invoices", {"Invoices": [_invoice()]}, "k-1")
    again = _post(server, "Invoices", {"Invoices": [_invoice()]}, "k-1")
    assert first.json() == again.json()
    assert len(server.documents(kind="Invoices")) == 1
    clash = _post(server, "Invoices", {"Invoices": [_invoice(amount="5.00")]}, "k-1")
    assert clash.status_code == 409


def test_manual_journal_must_net_to_zero(server: SandboxHandle) -> None:
    bad = _post(server, "ManualJournals", {"ManualJournals": [_journal(b="-9.99")]}, "mj-1")
    assert bad.status_code == 400 and "debits and credits must be equal" in bad.text
    ok = _post(server, "ManualJournals", {"ManualJournals": [_journal()]}, "mj-2")
    assert ok.status_code == 200 and ok.json()["ManualJournals"][0]["ManualJournalID"]


def test_summarize_errors_false_answers_each_element(server: SandboxHandle) -> None:
    body = {"Invoices": [_invoice(1), {**_invoice(2), "Type": "ACCPAY"}]}
    r = _post(server, "Invoices", body, "se-1", summarizeErrors="false")
    statuses = [e["StatusAttributeString"] for e in r.json()["Invoices"]]
    assert r.status_code == 200 and statuses == ["OK", "ERROR"]
    assert len(server.documents()) == 1


def test_rate_limit_429_carries_retry_after_and_the_problem(server: SandboxHandle) -> None:
    server.sandbox.set_rate_limit(RateLimit(1, 60.0))
    assert (
        _post(
            server, "CreditNotes", {"CreditNotes": [{**_invoice(), "Type": "ACCRECCREDIT"}]}, "c-1"
        ).status_code
        == 200
    )
    r = _post(server, "CreditNotes", {"CreditNotes": [{**_invoice(2), "Type": "ACCRECCREDIT"}]}, "c-2")
    assert r.status_code == 429 and r.headers["X-Rate-Limit-Problem"] == "minute"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_missing_tenant_and_bad_token_are_refused(server: SandboxHandle) -> None:
    r = httpx.post(
        f"{server.url}/api.xro/2.0/Invoices",
        json={"Invoices": [_invoice()]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 403
    r = httpx.post(
        f"{server.url}/api.xro/2.0/Invoices",
        json={"Invoices": [_invoice()]},
        headers={"Authorization": "Bearer wrong", "Xero-tenant-id": "t-1"},
    )
    assert r.status_code == 401 and server.documents() == []


def test_idempotency_key_longer_than_128_is_refused(server: SandboxHandle) -> None:
    assert _post(server, "Invoices", {"Invoices": [_invoice()]}, "k" * 129).status_code == 400


def test_pages_of_100(server: SandboxHandle) -> None:
    _post(server, "Invoices", {"Invoices": [_invoice(i) for i in range(120)]}, "many")
    p1 = httpx.get(f"{server.url}/api.xro/2.0/Invoices", params={"page": "1"}, headers=_headers()).json()
    p2 = httpx.get(f"{server.url}/api.xro/2.0/Invoices", params={"page": "2"}, headers=_headers()).json()
    assert (len(p1["Invoices"]), len(p2["Invoices"])) == (100, 20)


def test_5xx_fault_stores_nothing(server: SandboxHandle) -> None:
    server.set_faults(AccountingFaults(base=FaultConfig(error_rate=1.0, seed=3), seed=3))
    r = _post(server, "Invoices", {"Invoices": [_invoice()]}, "e-1")
    assert r.status_code >= 500 and server.documents() == []
