"""The outbox on DuckDB and PostgreSQL: idempotent enqueue, reversals and revisions, one transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from pm_accounting_pipeline.posting import outbox
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.model import idempotency_key
from pm_accounting_pipeline.posting.outbox import DocumentView, Scope
from pm_accounting_pipeline.posting.sample import sample_ledger
from pm_accounting_pipeline.posting.store import PostingStore

SCOPE = Scope(("acme", "beta"), date(2026, 1, 1), date(2026, 1, 31))


class Echo:
    name = "echo"

    def render(self, doc: DocumentView) -> dict[str, Any]:
        return {"kind": doc.kind, "total": doc.total_minor, "uid": doc.doc_uid}


class Boom(Echo):
    name = "boom"

    def render(self, doc: DocumentView) -> dict[str, Any]:
        raise RuntimeError("renderer crashed")


def test_enqueue_twice_is_a_no_op(store: PostingStore) -> None:
    docs = build_documents(sample_ledger(1, 4, 2))
    first = outbox.enqueue_documents(store, docs, [Echo()])
    second = outbox.enqueue_documents(store, docs, [Echo()])
    assert (first.new_documents, first.outbox_rows) == (6, 6)
    assert (second.new_documents, second.unchanged, second.outbox_rows) == (0, 6, 0)
    assert store.scalar("SELECT count(*) FROM {s}.outbox") == 6
    assert store.scalar("SELECT count(*) FROM {s}.sync_records") == 6


def test_changed_document_gets_a_reversal_and_a_linked_revision(store: PostingStore) -> None:
    outbox.enqueue_documents(store, build_documents(sample_ledger(1, 4, 2)), [Echo()])
    res = outbox.enqueue_documents(store, build_documents(sample_ledger(1, 4, 2, bump={0: 500})), [Echo()])
    assert (res.reversals, res.revisions, res.new_documents, res.unchanged) == (1, 1, 0, 5)
    rows = store.query_dicts(
        "SELECT doc_uid, kind, revision, reverses_uid, replaces_uid, document_id "
        "FROM {s}.documents ORDER BY kind, revision"
    )
    rev = next(r for r in rows if r["kind"] == "reversal")
    second = next(r for r in rows if r["revision"] == 2 and r["kind"] != "reversal")
    first = next(r for r in rows if r["doc_uid"] == rev["reverses_uid"])
    assert first["document_id"] == second["document_id"] == rev["document_id"]
    assert second["replaces_uid"] == first["doc_uid"] and first["revision"] == 1
    # nothing already enqueued was rewritten: the first revision's outbox row is untouched
    assert store.scalar("SELECT count(*) FROM {s}.outbox WHERE doc_uid = ?", [first["doc_uid"]]) == 1


def test_document_missing_from_a_complete_batch_is_reversed_and_can_come_back(store: PostingStore) -> None:
    outbox.enqueue_documents(store, build_documents(sample_ledger(2, 3, 1)), [Echo()], scope=SCOPE)
    gone = outbox.enqueue_documents(
        store, build_documents(sample_ledger(2, 3, 1, drop={1})), [Echo()], scope=SCOPE
    )
    assert (gone.reversals, gone.revisions) == (1, 0)
    again = outbox.enqueue_documents(
        store, build_documents(sample_ledger(2, 3, 1, drop={1})), [Echo()], scope=SCOPE
    )
    assert again.outbox_rows == 0  # a reversed document stays reversed
    back = outbox.enqueue_documents(store, build_documents(sample_ledger(2, 3, 1)), [Echo()], scope=SCOPE)
    assert (back.revisions, back.reversals) == (1, 0)


def test_without_a_scope_absence_means_nothing(store: PostingStore) -> None:
    outbox.enqueue_documents(store, build_documents(sample_ledger(2, 3, 1)), [Echo()])
    res = outbox.enqueue_documents(store, build_documents(sample_ledger(2, 3, 1, drop={0})), [Echo()])
    assert res.reversals == 0


def test_idempotency_key_is_deterministic_and_fits_qbo_batch_request_ids(store: PostingStore) -> None:
    outbox.enqueue_documents(store, build_documents(sample_ledger(3, 2, 1)), [Echo()])
    rows = store.query_dicts(
        "SELECT o.idempotency_key, o.doc_uid, d.content_hash FROM {s}.outbox o "
        "JOIN {s}.documents d ON d.doc_uid = o.doc_uid"
    )
    for r in rows:
        assert len(r["idempotency_key"]) == 36
        assert r["idempotency_key"] == idempotency_key("echo", r["doc_uid"], r["content_hash"])


def test_enqueue_is_one_transaction(store: PostingStore) -> None:
    docs = build_documents(sample_ledger(4, 3, 1))
    with pytest.raises(RuntimeError, match="renderer crashed"):
        outbox.enqueue_documents(store, docs, [Echo(), Boom()])
    assert store.scalar("SELECT count(*) FROM {s}.documents") == 0
    assert store.scalar("SELECT count(*) FROM {s}.outbox") == 0


def test_render_failure_goes_to_the_dead_letter_queue(store: PostingStore) -> None:
    class Picky(Echo):
        name = "picky"

        def render(self, doc: DocumentView) -> dict[str, Any]:
            if doc.kind == "journal_entry":
                raise ValueError("no account mapping for 5000")
            return super().render(doc)

    res = outbox.enqueue_documents(store, build_documents(sample_ledger(4, 2, 1)), [Picky()])
    assert res.render_failures == 1
    dead = store.query_dicts("SELECT reason, error FROM {s}.dlq")
    assert dead == [{"reason": "render", "error": "cannot render for picky: no account mapping for 5000"}]


def test_due_orders_reversals_before_the_new_revision(store: PostingStore) -> None:
    outbox.enqueue_documents(store, build_documents(sample_ledger(1, 2, 0)), [Echo()])
    store.execute("UPDATE {s}.outbox SET status = 'posted'")
    outbox.enqueue_documents(store, build_documents(sample_ledger(1, 2, 0, bump={1: 7})), [Echo()])
    due = outbox.due(store, "echo", datetime(2100, 1, 1))
    assert [d.document_kind for d in due] == ["reversal", "invoice"]


def test_a_second_run_cannot_claim_rows_another_run_holds(store: PostingStore) -> None:
    outbox.enqueue_documents(store, build_documents(sample_ledger(5, 3, 0)), [Echo()])
    items = outbox.due(store, "echo", datetime(2100, 1, 1))
    outbox.claim(store, items, "request-a", datetime(2026, 1, 1))
    with pytest.raises(outbox.ClaimConflict, match="3 of 3 rows were taken"):
        outbox.claim(store, items, "request-b", datetime(2026, 1, 1))
    # the same request may claim its rows again (recovery after a crash)
    outbox.claim(store, items, "request-a", datetime(2026, 1, 2))
    assert store.query("SELECT DISTINCT batch_key, attempts FROM {s}.outbox") == [("request-a", 2)]
