"""Delivery: effectively once under lost answers, crashes, 5xx, 429 and refusals."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from pm_accounting_pipeline.posting import dlq, outbox
from pm_accounting_pipeline.posting.delivery import Deliverer, DeliverySettings, Throttle, deliver
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.sample import SampleEntity, sample_ledger
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.base import TargetLimits
from pm_accounting_pipeline.posting.targets.gl import GeneralLedgerTarget, trial_balance
from pm_accounting_pipeline.posting.targets.qbo import QboTarget
from pm_accounting_pipeline.posting.targets.xero import XeroTarget
from pm_accounting_pipeline.sandboxes.faults import FaultConfig, RateLimit
from pm_accounting_pipeline.sandboxes.qbo_xero_http import AccountingFaults, SandboxHandle
from pm_accounting_pipeline_tests.test_posting.conftest import TOKEN

LIMITS = TargetLimits(requests=100_000, period_s=1.0, batch_size=30)
ACME = (SampleEntity("acme", "USD"),)


def _qbo(h: SandboxHandle, **kw: object) -> QboTarget:
    return QboTarget(h.url, TOKEN, limits=kw.pop("limits", LIMITS), timeout_s=kw.pop("timeout_s", 2.0), **kw)


def _notes(h: SandboxHandle) -> Counter[str]:
    return Counter(
        (d.get("PrivateNote") or d.get("Reference") or d.get("Narration") or "").split()[0]
        for d in h.documents()
    )


def test_everything_is_posted_once_to_the_general_ledger_and_it_balances(
    store: PostingStore, fast: DeliverySettings
) -> None:
    gl = GeneralLedgerTarget(store)
    outbox.enqueue_documents(store, build_documents(sample_ledger(4, 8, 4)), [gl])
    first = deliver(store, gl, fast)
    second = deliver(store, gl, fast)
    assert (first.posted, second.posted) == (12, 0)
    assert store.scalar("SELECT count(*) FROM {s}.gl_entries") == 12
    tb = trial_balance(store)
    assert (tb["debit_minor"] == tb["credit_minor"]).all()
    assert (tb["functional_debit"] == tb["functional_credit"]).all()


def test_answer_lost_after_commit_never_duplicates(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.set_faults(
        AccountingFaults(base=FaultConfig(seed=3), lost_after_commit_rate=0.6, duplicate_rate=0.3, seed=3)
    )
    target = _qbo(qbo)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(5, 40, 10)), [target])
    settings = DeliverySettings(**{**fast.__dict__, "max_attempts": 50, "in_run_attempts": 5})
    for _ in range(10):
        deliver(duck, target, settings)
        if outbox.backlog(duck) == 0:
            break
    notes = _notes(qbo)
    assert len(notes) == 50 and max(notes.values()) == 1
    assert qbo.counters["lost_after_commit"] > 0 and qbo.counters["replayed"] > 0
    assert outbox.counts_by_status(duck) == {("qbo", "posted"): 50}


def test_rows_left_in_flight_by_a_crash_are_resent_under_the_same_request_id(
    duck: PostingStore, xero: SandboxHandle, fast: DeliverySettings
) -> None:
    target = XeroTarget(xero.url, TOKEN, limits=TargetLimits(1000, 1.0, 50), timeout_s=2.0)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(6, 5, 0)), [target])
    # A run sent the request and died before recording the answer: the target holds the documents.
    items = outbox.due(duck, "xero", datetime(2100, 1, 1))
    from pm_accounting_pipeline.posting.model import batch_key

    rid = batch_key("xero", [i.idempotency_key for i in items])
    outbox.claim(duck, items, rid, datetime(2026, 1, 1))
    target.send(sorted(items, key=lambda i: i.idempotency_key), rid)
    assert len(xero.documents()) == 5
    report = deliver(duck, target, fast)
    assert report.recovered_in_flight == 5 and report.posted == 5
    assert len(xero.documents()) == 5 and xero.counters["replayed"] == 1
    assert {r[0] for r in duck.query("SELECT request_key FROM {s}.attempts")} == {rid}


def test_permanent_refusal_goes_to_the_dead_letter_queue_with_request_response_and_history(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.sandbox.accounts = {"1200", "4000", "2200", "1210"}  # 5000 and 2100 do not exist in this company
    target = _qbo(qbo)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(7, 3, 2)), [target])
    report = deliver(duck, target, fast)
    assert report.posted == 4 and report.dead == 1
    [entry] = dlq.list_entries(duck)
    assert entry["reason"] == "permanent" and "5000 does not exist" in entry["error"]
    shown = dlq.show(duck, entry["dlq_id"])
    assert shown["request"]["type"] == "JournalEntry"
    assert shown["response"]["Fault"]["type"] == "ValidationFault"
    assert [h["outcome"] for h in shown["attempt_history"]] == ["permanent"]
    assert shown["outbox"]["batch_key"] is None  # refused for sure: may be re-sent on its own


def test_transient_failures_exhaust_into_the_dead_letter_queue(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.set_faults(AccountingFaults(base=FaultConfig(error_rate=1.0, seed=1), seed=1))
    target = _qbo(qbo)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(8, 2, 0)), [target])
    reports = [deliver(duck, target, fast) for _ in range(3)]
    assert [r.transient for r in reports] == [2, 2, 0] and reports[-1].dead == 2
    entries = dlq.list_entries(duck)
    assert {e["reason"] for e in entries} == {"exhausted"}
    history = dlq.show(duck, entries[0]["dlq_id"])["attempt_history"]
    assert len(history) == 3 and {h["request_key"] for h in history} == {
        dlq.show(duck, entries[0]["dlq_id"])["outbox"]["batch_key"]
    }
    # Once the target recovers, a replay re-sends the very same request and it lands once.
    qbo.set_faults(AccountingFaults.none(1))
    dlq.replay(duck, [entries[0]["dlq_id"]], "tester")
    assert deliver(duck, target, fast).posted == 2
    assert len(qbo.documents()) == 2


def test_circuit_breaker_opens_and_gives_rows_back_unsent(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.set_faults(AccountingFaults(base=FaultConfig(error_rate=1.0, seed=2), seed=2))
    target = _qbo(qbo, limits=TargetLimits(100_000, 1.0, batch_size=1))
    outbox.enqueue_documents(duck, build_documents(sample_ledger(9, 6, 0)), [target])
    settings = DeliverySettings(
        **{
            **fast.__dict__,
            "breaker_fail_max": 2,
            "breaker_reset_s": 60.0,
            "max_attempts": 10,
            "in_run_attempts": 1,
        }
    )
    report = deliver(duck, target, settings)
    assert report.stopped_reason == "circuit breaker open for qbo"
    assert report.released >= 1 and qbo.counters["requests"] == 2
    released = duck.query_dicts(
        "SELECT attempts, batch_key FROM {s}.outbox WHERE last_error LIKE 'circuit open%'"
    )
    assert released and all(r["attempts"] == 0 and r["batch_key"] is None for r in released)


def test_retry_after_is_honoured_by_the_throttle() -> None:
    throttle = Throttle(TargetLimits(1000, 1.0), enabled=True)
    throttle.back_off(0.2)
    start = time.monotonic()
    throttle.acquire(bulk=False)
    assert time.monotonic() - start >= 0.19


def test_rate_limit_429_is_retried_after_the_wait(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.sandbox.set_rate_limit(RateLimit(2, 1.0))
    target = _qbo(qbo, limits=TargetLimits(100, 1.0, batch_size=1))
    outbox.enqueue_documents(duck, build_documents(sample_ledger(10, 4, 0, entities=ACME)), [target])
    settings = DeliverySettings(**{**fast.__dict__, "retry_after_scale": 1.0, "in_run_attempts": 5})
    report = deliver(duck, target, settings)
    assert report.posted == 4 and qbo.counters["rate_limited"] >= 1
    assert report.elapsed_s >= 0.9  # waited out the Retry-After instead of hammering


def test_client_limiter_keeps_under_the_published_limit(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.sandbox.set_rate_limit(RateLimit(3, 0.5))
    target = _qbo(qbo, limits=TargetLimits(3, 0.5, batch_size=1))
    outbox.enqueue_documents(duck, build_documents(sample_ledger(11, 7, 0, entities=ACME)), [target])
    settings = DeliverySettings(**{**fast.__dict__, "respect_rate_limits": True})
    report = deliver(duck, target, settings)
    assert report.posted == 7 and qbo.counters["rate_limited"] == 0


def test_bad_token_stops_the_run_without_blaming_documents(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    target = QboTarget(qbo.url, "wrong-token", limits=LIMITS)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(12, 3, 0)), [target])
    report = deliver(duck, target, fast)
    assert report.posted == 0 and report.dead == 0 and "HTTP 401" in (report.stopped_reason or "")
    assert dlq.list_entries(duck) == []
    # the refused request is given back unsent; the run stopped before the others
    assert {r[0] for r in duck.query("SELECT status FROM {s}.outbox")} == {"failed_transient", "pending"}
    assert {r[0] for r in duck.query("SELECT attempts FROM {s}.outbox")} == {0}


def test_batches_hold_at_most_30_documents_and_are_gzipped(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    target = _qbo(qbo, gzip_min_bytes=512)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(13, 70, 0, entities=ACME)), [target])
    report = deliver(duck, target, fast)
    assert report.posted == 70 and report.requests == 3  # 30 + 30 + 10
    assert qbo.counters["gzip_requests"] == 3


def test_backoff_is_persisted_between_runs(
    duck: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.set_faults(AccountingFaults(base=FaultConfig(error_rate=1.0, seed=4), seed=4))
    target = _qbo(qbo)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(14, 1, 0)), [target])
    now = datetime(2026, 3, 1, 12, 0)
    settings = DeliverySettings(
        **{**fast.__dict__, "persisted_backoff_base_s": 60.0, "persisted_backoff_cap_s": 60.0}
    )
    Deliverer(duck, target, settings, clock=lambda: now).run()
    [(next_at,)] = duck.query("SELECT next_attempt_at FROM {s}.outbox")
    assert now <= next_at <= now + timedelta(seconds=60)
    qbo.set_faults(AccountingFaults.none(4))
    early = Deliverer(duck, target, settings, clock=lambda: now - timedelta(seconds=1)).run()
    assert early.requests == 0
    later = Deliverer(duck, target, settings, clock=lambda: now + timedelta(seconds=61)).run()
    assert later.posted == 1


@pytest.mark.parametrize("kind", ["qbo", "xero"])
def test_reversal_reaches_vendors_as_credit_note_and_reversed_journal(
    duck: PostingStore, qbo: SandboxHandle, xero: SandboxHandle, fast: DeliverySettings, kind: str
) -> None:
    target = _qbo(qbo) if kind == "qbo" else XeroTarget(xero.url, TOKEN, limits=TargetLimits(1000, 1.0, 50))
    handle = qbo if kind == "qbo" else xero
    outbox.enqueue_documents(duck, build_documents(sample_ledger(15, 2, 1)), [target])
    deliver(duck, target, fast)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(15, 2, 1, bump={0: 100})), [target])
    deliver(duck, target, fast)
    kinds = Counter(k.split("/")[1] for k in handle.sandbox.documents)
    kinds_n = {k: len(v) for k, v in handle.sandbox.documents.items()}
    assert sum(kinds_n.values()) == 5
    if kind == "qbo":
        assert any("CreditMemo" in k for k in kinds)
    else:
        assert any("CreditNotes" in k for k in kinds)
