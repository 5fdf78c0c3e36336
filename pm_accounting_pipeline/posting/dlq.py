"""The dead-letter queue: what a person must look at, and the two things they can do about it.

An entry holds the document, the reason (`permanent` refusal, `exhausted` retries, `conflict` on
the idempotency key, `render` failure), the last request and response and the whole attempt
history. `replay` puts the outbox row back in the queue with the same idempotency key (after a
mapping fix, `rerender=True` rebuilds the payload first); `discard` closes the entry with a
mandatory reason. Both are recorded as events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.model import utcnow
from pm_accounting_pipeline.posting.outbox import Renderer, record_event, registry_view
from pm_accounting_pipeline.posting.store import PostingStore

_LIST_COLS = (
    "dlq_id, target, document_kind, document_id, entity, reason, error, created_at, resolution, "
    "resolution_reason, resolved_by, resolved_at, outbox_id"
)


class DlqError(ValueError):
    """A DLQ action that cannot be done as asked (unknown id, already resolved, missing reason)."""


def list_entries(
    store: PostingStore, *, open_only: bool = True, target: str | None = None
) -> list[dict[str, Any]]:
    sql = f"SELECT {_LIST_COLS} FROM {{s}}.dlq WHERE 1 = 1"
    params: list[Any] = []
    if open_only:
        sql += " AND resolved_at IS NULL"
    if target:
        sql += " AND target = ?"
        params.append(target)
    return store.query_dicts(sql + " ORDER BY created_at, dlq_id", params)


def open_count(store: PostingStore, target: str | None = None) -> int:
    return len(list_entries(store, open_only=True, target=target))


def show(store: PostingStore, dlq_id: str) -> dict[str, Any]:
    rows = store.query_dicts("SELECT * FROM {s}.dlq WHERE dlq_id = ?", [dlq_id])
    if not rows:
        raise DlqError(f"no dead-letter entry {dlq_id!r}")
    row = rows[0]
    for col in ("request", "response", "attempt_history"):
        if row.get(col):
            row[col] = jsonutil.loads(row[col])
    outbox_row = store.query_dicts(
        "SELECT status, attempts, idempotency_key, batch_key, payload FROM {s}.outbox WHERE outbox_id = ?",
        [row["outbox_id"]],
    )
    if outbox_row:
        o = outbox_row[0]
        o["payload"] = jsonutil.loads(o["payload"])
        row["outbox"] = o
    return row


def _entry(store: PostingStore, dlq_id: str) -> dict[str, Any]:
    rows = store.query_dicts("SELECT * FROM {s}.dlq WHERE dlq_id = ?", [dlq_id])
    if not rows:
        raise DlqError(f"no dead-letter entry {dlq_id!r}")
    if rows[0]["resolved_at"] is not None:
        raise DlqError(f"dead-letter entry {dlq_id} was already {rows[0]['resolution']}")
    return rows[0]


def replay(
    store: PostingStore,
    dlq_ids: Sequence[str],
    actor: str,
    *,
    renderers: Sequence[Renderer] = (),
    rerender: bool = False,
) -> list[str]:
    """Queue the rows behind the entries again (same idempotency key); returns the outbox ids queued.

    A row that travelled in a bulk request whose outcome is unknown is replayed together with every
    dead row of that request, unchanged, so the target sees the very same request again.
    """
    now = utcnow()
    by_target = {r.name: r for r in renderers}
    queued: list[str] = []
    with store.transaction():
        for dlq_id in dlq_ids:
            done = store.query("SELECT outbox_id FROM {s}.dlq WHERE dlq_id = ?", [dlq_id])
            if done and done[0][0] in queued:
                continue  # already queued with its bulk-request siblings by this call
            entry = _entry(store, dlq_id)
            row = store.query_dicts("SELECT * FROM {s}.outbox WHERE outbox_id = ?", [entry["outbox_id"]])[0]
            if row["status"] != "dead":
                raise DlqError(f"outbox row {row['outbox_id']} is {row['status']}, not dead")
            members = [row]
            if row["batch_key"] is not None:
                members = store.query_dicts(
                    "SELECT * FROM {s}.outbox WHERE batch_key = ? AND status = 'dead'", [row["batch_key"]]
                )
                if rerender:
                    raise DlqError(
                        f"{dlq_id}: the document travelled in bulk request {row['batch_key']} whose outcome is "
                        "unknown; replay it unchanged (without rerender) so the target can recognise it"
                    )
            if rerender:
                renderer = by_target.get(row["target"])
                if renderer is None:
                    raise DlqError(f"no renderer for target {row['target']} to rebuild the payload")
                view = registry_view(store, [row["doc_uid"]])[row["doc_uid"]]
                text = jsonutil.dumps(renderer.render(view))
                store.execute(
                    "UPDATE {s}.outbox SET payload = ?, payload_hash = ? WHERE outbox_id = ?",
                    [text, jsonutil.sha256_hex(text), row["outbox_id"]],
                )
            ids = [m["outbox_id"] for m in members]
            store.execute(
                "UPDATE {s}.outbox SET status = 'pending', attempts_base = attempts, next_attempt_at = ?, "
                "last_error = NULL, updated_at = ? WHERE outbox_id = ANY(?)",
                [now, now, ids],
            )
            store.execute(
                "UPDATE {s}.dlq SET resolved_at = ?, resolution = 'replayed', resolved_by = ?, "
                "resolution_reason = ? WHERE outbox_id = ANY(?) AND resolved_at IS NULL",
                [now, actor, "rerendered and replayed" if rerender else "replayed", ids],
            )
            record_event(store, "dlq.replayed", dlq_id, actor, {"outbox_ids": ids, "rerender": rerender}, now)
            queued.extend(ids)
    return queued


def discard(store: PostingStore, dlq_id: str, reason: str, actor: str) -> None:
    """Close an entry without posting; the reason is mandatory and recorded."""
    if not reason or not reason.strip():
        raise DlqError("discarding a dead-letter entry needs a reason")
    now = utcnow()
    with store.transaction():
        entry = _entry(store, dlq_id)
        store.execute(
            "UPDATE {s}.dlq SET resolved_at = ?, resolution = 'discarded', resolution_reason = ?, resolved_by = ? "
            "WHERE dlq_id = ?",
            [now, reason.strip(), actor, dlq_id],
        )
        record_event(
            store,
            "dlq.discarded",
            dlq_id,
            actor,
            {"reason": reason.strip(), "outbox_id": entry["outbox_id"], "document_id": entry["document_id"]},
            now,
        )
