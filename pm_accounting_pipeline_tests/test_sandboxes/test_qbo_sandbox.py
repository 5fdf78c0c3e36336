"""The QuickBooks Online sandbox enforces the vendor's rules over real HTTP on loopback."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pm_accounting_pipeline.sandboxes import qbo
from pm_accounting_pipeline.sandboxes.faults import FaultConfig, RateLimit
from pm_accounting_pipeline.sandboxes.qbo_xero_http import AccountingFaults, SandboxHandle

TOKEN = "qbo-test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server() -> Iterator[SandboxHandle]:
    with qbo.serve(token=TOKEN, rate_limit=RateLimit(1000, 1.0), batch_limit=RateLimit(1000, 1.0)) as h:
        yield h


def _invoice(n: int = 1, amount: str = "100.00") -> dict[str, Any]:
    return {
        "CustomerRef": {"value": "58"},
        "TxnDate": "2026-01-31",
        "DocNumber": f"INV-{n}",
        "CurrencyRef": {"value": "USD"},
        "Line": [
            {
                "Amount": amount,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": amount},
            }
        ],
    }


def _journal(debit: str = "50.00", credit: str = "50.00", customer: bool = True) -> dict[str, Any]:
    ar: dict[str, Any] = {"PostingType": "Debit", "AccountRef": {"value": "1200"}}
    if customer:
        ar["Entity"] = {"Type": "Customer", "EntityRef": {"value": "58"}}
    return {
        "TxnDate": "2026-01-31",
        "Line": [
            {"Amount": debit, "DetailType": "JournalEntryLineDetail", "JournalEntryLineDetail": ar},
            {
                "Amount": credit,
                "DetailType": "JournalEntryLineDetail",
                "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": "4000"}},
            },
        ],
    }


def _post(h: SandboxHandle, path: str, body: Any, requestid: str | None = None, **kw: Any) -> httpx.Response:
    params = {"requestid": requestid} if requestid else {}
    return httpx.post(
        f"{h.url}/v3/company/9130/{path}",
        params=params,
        json=body,
        headers=kw.pop("headers", AUTH),
        timeout=5,
        **kw,
    )


def test_same_request_id_and_body_returns_the_original_response(server: SandboxHandle) -> None:
    first = _post(server, "invoice", _invoice(), "r-1")
    again = _post(server, "invoice", _invoice(), "r-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and first.json()["Invoice"]["Id"] == "1"
    assert len(server.documents(kind="Invoice")) == 1 and server.counters["replayed"] == 1


def test_same_request_id_with_another_body_is_refused(server: SandboxHandle) -> None:
    assert _post(server, "invoice", _invoice(), "r-2").status_code == 200
    clash = _post(server, "invoice", _invoice(amount="101.00"), "r-2")
    assert clash.status_code == 409 and clash.json()["Fault"]["Error"][0]["code"] == "6140"
    assert len(server.documents()) == 1


def test_bad_token_is_401(server: SandboxHandle) -> None:
    r = _post(server, "invoice", _invoice(), "r-3", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and server.documents() == []


def test_rate_limit_answers_429_with_retry_after(server: SandboxHandle) -> None:
    server.sandbox.set_rate_limit(RateLimit(2, 30.0))
    codes = [_post(server, "invoice", _invoice(i), f"rl-{i}").status_code for i in range(3)]
    assert codes == [200, 200, 429]
    r = _post(server, "invoice", _invoice(9), "rl-9")
    assert 1 <= int(r.headers["Retry-After"]) <= 30


def test_batch_holds_at_most_30_and_reports_per_item(server: SandboxHandle) -> None:
    items = [{"bId": f"b{i}", "operation": "create", "Invoice": _invoice(i)} for i in range(31)]
    assert _post(server, "batch", {"BatchItemRequest": items}, "batch-too-big").status_code == 400
    items = [
        {"bId": "ok", "operation": "create", "Invoice": _invoice(1)},
        {"bId": "bad", "operation": "create", "JournalEntry": _journal(credit="49.00")},
    ]
    r = _post(server, "batch", {"BatchItemRequest": items}, "batch-1")
    answers = {a["bId"]: a for a in r.json()["BatchItemResponse"]}
    assert "Invoice" in answers["ok"] and "not balanced" in answers["bad"]["Fault"]["Error"][0]["Detail"]


def test_batch_quota_is_separate_from_the_request_quota(server: SandboxHandle) -> None:
    server.sandbox.set_batch_limit(RateLimit(1, 30.0))
    body = {"BatchItemRequest": [{"bId": "1", "operation": "create", "Invoice": _invoice()}]}
    assert _post(server, "batch", body, "q-1").status_code == 200
    assert _post(server, "batch", body, "q-2").status_code == 429
    assert _post(server, "invoice", _invoice(), "q-3").status_code == 200


def test_journal_entry_rules(server: SandboxHandle) -> None:
    assert _post(server, "journalentry", _journal(customer=False), "j-1").status_code == 400
    assert _post(server, "journalentry", _journal(credit="40.00"), "j-2").status_code == 400
    ok = _post(server, "journalentry", _journal(), "j-3")
    assert ok.status_code == 200 and ok.json()["JournalEntry"]["TotalAmt"] == 50
    # a refused request stores nothing, so its id may be used again after a fix
    assert _post(server, "journalentry", _journal(), "j-1").status_code == 200


def test_gzip_request_bodies_are_accepted(server: SandboxHandle) -> None:
    raw = gzip.compress(json.dumps(_invoice()).encode())
    r = httpx.post(
        f"{server.url}/v3/company/9130/invoice",
        params={"requestid": "gz"},
        content=raw,
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200 and server.counters["gzip_requests"] == 1


def test_query_lists_what_was_stored(server: SandboxHandle) -> None:
    for i in range(3):
        _post(server, "invoice", _invoice(i), f"qq-{i}")
    r = httpx.get(
        f"{server.url}/v3/company/9130/query",
        params={"query": "select * from Invoice startposition 2 maxresults 5"},
        headers=AUTH,
    )
    page = r.json()["QueryResponse"]
    assert [d["DocNumber"] for d in page["Invoice"]] == ["INV-1", "INV-2"] and page["totalCount"] == 3


def test_answer_lost_after_commit_still_stores_once(server: SandboxHandle) -> None:
    server.set_faults(AccountingFaults(base=FaultConfig(seed=5), lost_after_commit_rate=1.0, seed=5))
    with pytest.raises(httpx.TransportError):
        _post(server, "invoice", _invoice(), "lost-1")
    assert len(server.documents()) == 1
    server.set_faults(AccountingFaults.none(5))
    assert _post(server, "invoice", _invoice(), "lost-1").json()["Invoice"]["Id"] == "1"
    assert len(server.documents()) == 1


def test_duplicate_delivery_is_absorbed_by_the_request_id(server: SandboxHandle) -> None:
    server.set_faults(AccountingFaults(base=FaultConfig(seed=6), duplicate_rate=1.0, seed=6))
    assert _post(server, "invoice", _invoice(), "dup-1").status_code == 200
    assert len(server.documents()) == 1 and server.counters["duplicates_delivered"] == 1
    # without a request id the vendor cannot tell: two copies (why posting always sends one)
    assert _post(server, "invoice", _invoice(2), None).status_code == 200
    assert len(server.documents()) == 3


def test_faults_are_reproducible_from_the_seed(server: SandboxHandle) -> None:
    def run() -> list[int]:
        server.reset(seed=11)
        server.set_faults(AccountingFaults(base=FaultConfig(error_rate=0.5, seed=11), seed=11))
        return [_post(server, "invoice", _invoice(i), f"s-{i}").status_code for i in range(12)]

    first = run()
    assert first == run() and max(first) >= 500 and 200 in first


def test_timeout_fault_stores_nothing(server: SandboxHandle) -> None:
    server.set_faults(AccountingFaults(base=FaultConfig(seed=7), timeout_rate=1.0, timeout_s=0.3, seed=7))
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{server.url}/v3/company/9130/invoice",
            params={"requestid": "t-1"},
            json=_invoice(),
            headers=AUTH,
            timeout=0.1,
        )
    assert server.documents() == []
