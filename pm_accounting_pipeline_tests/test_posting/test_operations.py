"""What a person does: dead-letter replay and discard, the kill switch, manual posting, reconciliation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pm_accounting_pipeline.config.schema import parse_mapping
from pm_accounting_pipeline.posting import dlq, killswitch, outbox, service
from pm_accounting_pipeline.posting.delivery import DeliverySettings, deliver
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.reconcile import reconcile_targets
from pm_accounting_pipeline.posting.sample import sample_ledger
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.base import TargetLimits
from pm_accounting_pipeline.posting.targets.gl import GeneralLedgerTarget
from pm_accounting_pipeline.posting.targets.qbo import QboTarget
from pm_accounting_pipeline.posting.targets.xero import XeroTarget
from pm_accounting_pipeline.sandboxes.qbo_xero_http import SandboxHandle
from pm_accounting_pipeline_tests.test_posting.conftest import TOKEN

LIMITS = TargetLimits(100_000, 1.0, 30)


def _mapping(**posting: object) -> object:
    return parse_mapping(
        {
            "version": 1,
            "start_date": "2026-01-01",
            "entities": [
                {"id": "acme", "name": "Acme", "functional_currency": "USD"},
                {"id": "beta", "name": "Beta", "functional_currency": "EUR"},
            ],
            "posting": posting,
        }
    )


def test_replay_after_a_mapping_fix_posts_with_the_same_key(
    store: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.sandbox.accounts = {"1200", "4000", "2200", "1210", "4010", "QB-5000", "QB-2100"}
    broken = QboTarget(qbo.url, TOKEN, limits=LIMITS)
    outbox.enqueue_documents(store, build_documents(sample_ledger(31, 1, 2)), [broken])
    deliver(store, broken, fast)
    [entry] = dlq.list_entries(store)
    key = store.scalar("SELECT idempotency_key FROM {s}.outbox WHERE outbox_id = ?", [entry["outbox_id"]])
    fixed = QboTarget(qbo.url, TOKEN, limits=LIMITS, accounts={"5000": "QB-5000", "2100": "QB-2100"})
    queued = dlq.replay(store, [entry["dlq_id"]], "accountant", renderers=[fixed], rerender=True)
    assert queued == [entry["outbox_id"]]
    assert deliver(store, fixed, fast).posted == 1
    row = store.query_dicts(
        "SELECT status, idempotency_key, payload FROM {s}.outbox WHERE outbox_id = ?", [entry["outbox_id"]]
    )[0]
    assert row["status"] == "posted" and row["idempotency_key"] == key and "QB-5000" in row["payload"]
    assert dlq.list_entries(store) == []
    [resolved] = dlq.list_entries(store, open_only=False)
    assert (resolved["resolution"], resolved["resolved_by"]) == ("replayed", "accountant")
    assert store.scalar("SELECT count(*) FROM {s}.events WHERE kind = 'dlq.replayed'") == 1
    with pytest.raises(dlq.DlqError, match="already replayed"):
        dlq.replay(store, [entry["dlq_id"]], "accountant")


def test_discard_needs_a_reason_and_is_recorded(
    store: PostingStore, qbo: SandboxHandle, fast: DeliverySettings
) -> None:
    qbo.sandbox.accounts = {"1200", "4000", "2200"}
    target = QboTarget(qbo.url, TOKEN, limits=LIMITS)
    outbox.enqueue_documents(store, build_documents(sample_ledger(32, 0, 1)), [target])
    deliver(store, target, fast)
    [entry] = dlq.list_entries(store)
    with pytest.raises(dlq.DlqError, match="needs a reason"):
        dlq.discard(store, entry["dlq_id"], "  ", "accountant")
    dlq.discard(store, entry["dlq_id"], "booked by hand in QBO", "accountant")
    [closed] = dlq.list_entries(store, open_only=False)
    assert (closed["resolution"], closed["resolution_reason"]) == ("discarded", "booked by hand in QBO")
    [event] = store.query_dicts("SELECT kind, actor, detail FROM {s}.events")
    assert (
        event["kind"] == "dlq.discarded" and event["actor"] == "accountant" and "by hand" in event["detail"]
    )


def test_kill_switch_stops_automated_posting_but_not_manual_posting(
    store: PostingStore, tmp_path: Path, fast: DeliverySettings
) -> None:
    gl = GeneralLedgerTarget(store)
    led = sample_ledger(33, 3, 1)
    outbox.enqueue_documents(store, build_documents(led), [gl])
    killswitch.engage(store, "auditor asked", "ops")
    [report] = service.post_pending(store, [gl], data_dir=tmp_path, settings=fast)
    assert report.posted == 0 and "auditor asked" in (report.skipped_reason or "")
    invoice_id = led.invoices["invoice_id"][0]
    [manual] = service.post_documents(store, [gl], [invoice_id], settings=fast)
    assert manual.posted == 1
    assert store.scalar("SELECT document_id FROM {s}.gl_entries") == invoice_id
    killswitch.release(store, "audit done", "ops")
    [rest] = service.post_pending(store, [gl], data_dir=tmp_path, settings=fast)
    assert rest.posted == 3
    kinds = [r[0] for r in store.query("SELECT kind FROM {s}.events ORDER BY event_at")]
    assert kinds == ["killswitch.engaged", "killswitch.released"]


def test_every_switch_can_stop_posting(store: PostingStore, tmp_path: Path) -> None:
    assert killswitch.posting_state(store, "qbo", data_dir=tmp_path).enabled
    off_doc = _mapping(enabled=False)
    assert "posting.enabled is false" in killswitch.posting_state(store, "qbo", mapping=off_doc).reasons[0]
    target_off = _mapping(targets=[{"name": "qbo", "enabled": False}])
    assert not killswitch.posting_state(store, "qbo", mapping=target_off).enabled
    assert killswitch.posting_state(store, "xero", mapping=target_off).enabled
    killswitch.engage(store, "qbo only", "ops", target="qbo")
    assert (
        not killswitch.posting_state(store, "qbo").enabled and killswitch.posting_state(store, "xero").enabled
    )
    killswitch.release(store, "ok", "ops", target="qbo")
    killswitch.switch_file(tmp_path).parent.mkdir(parents=True)
    killswitch.switch_file(tmp_path).write_text("bank holiday freeze")
    state = killswitch.posting_state(store, "xero", data_dir=tmp_path)
    assert not state.enabled and "bank holiday freeze" in state.reasons[0]


def test_kill_switch_flipped_mid_run_stops_before_the_next_request(
    store: PostingStore, fast: DeliverySettings, tmp_path: Path
) -> None:
    gl = GeneralLedgerTarget(store)
    gl.limits = TargetLimits(1000, 1.0, batch_size=1)
    outbox.enqueue_documents(store, build_documents(sample_ledger(34, 4, 0)), [gl])
    calls = {"n": 0}

    def switch() -> killswitch.SwitchState:
        calls["n"] += 1
        return killswitch.SwitchState(enabled=calls["n"] <= 3)

    report = deliver(store, gl, fast, switch=switch)
    assert report.posted == 2 and report.stopped_reason and "kill switch" in report.stopped_reason


def test_reconciliation_finds_missing_duplicate_and_unknown_documents(
    duck: PostingStore, xero: SandboxHandle, fast: DeliverySettings
) -> None:
    target = XeroTarget(xero.url, TOKEN, limits=TargetLimits(1000, 1.0, 50))
    outbox.enqueue_documents(duck, build_documents(sample_ledger(35, 4, 2)), [target])
    deliver(duck, target, fast)
    clean = reconcile_targets(duck, [target])
    assert (
        clean.ok and int(clean.summary["local_count"].sum()) == int(clean.summary["remote_count"].sum()) == 6
    )
    assert (clean.summary["local_total_minor"] == clean.summary["remote_total_minor"]).all()
    # A second copy of one invoice appears at the target, one disappears, one nobody knows.
    docs = xero.sandbox.documents
    key = next(k for k in docs if k.endswith("/Invoices"))
    docs[key].append(dict(docs[key][0]))
    journals = next(k for k in docs if k.endswith("/ManualJournals"))
    lost = docs[journals].pop(0)
    docs[key].append({**docs[key][0], "Reference": "typed by hand", "InvoiceID": "x"})
    report = reconcile_targets(duck, [target])
    assert not report.ok
    assert report.duplicates_remote.height == 2
    assert report.missing_remote["doc_uid"].to_list() == [lost["Narration"].split("pm:")[1].rstrip("]")]
    assert report.missing_local.height == 1


def test_targets_are_built_from_the_mapping_document_with_tokens_from_the_environment(
    duck: PostingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping = _mapping(
        targets=[
            {"name": "general_ledger"},
            {
                "name": "qbo",
                "base_url": "http://127.0.0.1:9",
                "token_env": "QBO_TOKEN_FOR_TEST",
                "companies": {"acme": "9130"},
                "requests_per_minute": 100,
                "batch_size": 10,
            },
        ]
    )
    with pytest.raises(ValueError, match="set the environment variable QBO_TOKEN_FOR_TEST"):
        service.build_targets(duck, mapping)
    monkeypatch.setenv("QBO_TOKEN_FOR_TEST", "secret")
    gl, qbo_target = service.build_targets(duck, mapping)
    assert isinstance(gl, GeneralLedgerTarget) and isinstance(qbo_target, QboTarget)
    assert qbo_target.realm("acme") == "9130"
    assert (qbo_target.limits.requests, qbo_target.limits.batch_size, qbo_target.limits.batch_requests) == (
        100,
        10,
        40,
    )
    for t in (gl, qbo_target):
        t.close()


def test_mapping_document_refuses_a_target_listed_twice() -> None:
    from pm_accounting_pipeline.config.schema import MappingDocumentError

    with pytest.raises(MappingDocumentError, match="duplicate posting target"):
        _mapping(targets=[{"name": "xero"}, {"name": "xero"}])
