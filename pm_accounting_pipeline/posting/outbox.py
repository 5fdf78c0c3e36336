"""The outbox: documents to post, one row per document revision and target, and its state changes.

`enqueue_documents` writes the document registry and the outbox rows of a ledger batch in one
transaction. It is idempotent: the same document with the same content is a no-op; changed content
produces a reversal of the current revision plus a new revision, linked; a document that vanished
from a batch declared complete for its scope (a tombstoned source) produces a reversal. Nothing that
was enqueued is ever rewritten: corrections are new rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import polars as pl

from pm_accounting_pipeline.core.ids import stable_id
from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.model import (
    DocumentKind,
    OutboxItem,
    OutboxStatus,
    SendResult,
    document_uid,
    idempotency_key,
    utcnow,
)
from pm_accounting_pipeline.posting.store import PostingStore


class ClaimConflict(RuntimeError):
    """Rows changed under us between reading and claiming them (another posting run)."""


@dataclass(frozen=True)
class DocumentView:
    """One registry row as renderers see it (content parsed, Decimals exact)."""

    doc_uid: str
    document_id: str
    kind: str
    revision: int
    entity: str
    posting_date: date
    currency: str
    total_minor: int
    content: dict[str, Any]
    content_hash: str
    reverses_uid: str | None = None
    original_kind: str | None = None

    @property
    def effective_kind(self) -> str:
        """What the target records: a reversal of an invoice is a credit memo and vice versa."""
        if self.kind != DocumentKind.REVERSAL.value:
            return self.kind
        return {
            DocumentKind.INVOICE.value: DocumentKind.CREDIT_MEMO.value,
            DocumentKind.CREDIT_MEMO.value: DocumentKind.INVOICE.value,
        }.get(self.original_kind or "", DocumentKind.JOURNAL_ENTRY.value)


class Renderer(Protocol):
    name: str

    def render(self, doc: DocumentView) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Scope:
    """The entities and dates a ledger batch covers completely (absent documents were deleted)."""

    entities: tuple[str, ...]
    start: date
    end: date


@dataclass
class EnqueueResult:
    new_documents: int = 0
    unchanged: int = 0
    revisions: int = 0
    reversals: int = 0
    outbox_rows: int = 0
    render_failures: int = 0
    doc_uids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


REGISTRY_SCHEMA = pl.Schema(
    {
        "doc_uid": pl.String,
        "document_id": pl.String,
        "kind": pl.String,
        "revision": pl.Int32,
        "entity": pl.String,
        "posting_date": pl.Date,
        "currency": pl.String,
        "total_minor": pl.Int64,
        "content": pl.String,
        "content_hash": pl.String,
        "reverses_uid": pl.String,
        "original_kind": pl.String,
        "replaces_uid": pl.String,
        "ledger_batch": pl.String,
        "created_at": pl.Datetime("us"),
    }
)

_CURRENT_SCHEMA = pl.Schema(
    {
        "document_id": pl.String,
        "cur_uid": pl.String,
        "cur_kind": pl.String,
        "cur_revision": pl.Int32,
        "cur_hash": pl.String,
        "cur_content": pl.String,
        "cur_entity": pl.String,
        "cur_date": pl.Date,
        "cur_currency": pl.String,
        "cur_total": pl.Int64,
        "cur_reversed": pl.Boolean,
    }
)

_CURRENT_SQL = """
SELECT d.document_id, d.doc_uid, d.kind, d.revision, d.content_hash, d.content, d.entity, d.posting_date,
       d.currency, d.total_minor,
       EXISTS (SELECT 1 FROM {s}.documents r WHERE r.reverses_uid = d.doc_uid) AS reversed
FROM {s}.documents d
WHERE d.kind <> 'reversal' AND ({where})
  AND d.revision = (SELECT max(x.revision) FROM {s}.documents x
                    WHERE x.document_id = d.document_id AND x.kind <> 'reversal')
"""


def _current(store: PostingStore, document_ids: list[str], scope: Scope | None) -> pl.DataFrame:
    frames = []
    if document_ids:
        frames.append(
            store.query_frame(
                _CURRENT_SQL.replace("{where}", "d.document_id = ANY(?)"), [document_ids], _CURRENT_SCHEMA
            )
        )
    if scope is not None:
        frames.append(
            store.query_frame(
                _CURRENT_SQL.replace("{where}", "d.entity = ANY(?) AND d.posting_date BETWEEN ? AND ?"),
                [list(scope.entities), scope.start, scope.end],
                _CURRENT_SCHEMA,
            )
        )
    if not frames:
        return pl.DataFrame(schema=_CURRENT_SCHEMA)
    return pl.concat(frames).unique("document_id", keep="first", maintain_order=True)


def _reversal_rows(cur: pl.DataFrame, dates: pl.Expr, batch: str, now: datetime) -> pl.DataFrame:
    if cur.height == 0:
        return pl.DataFrame(schema=REGISTRY_SCHEMA)
    uids = [
        document_uid(DocumentKind.REVERSAL.value, d, r)
        for d, r in zip(cur["document_id"], cur["cur_revision"], strict=True)
    ]
    hashes = [jsonutil.sha256_hex(f"reversal:{h}") for h in cur["cur_hash"]]
    return cur.select(
        pl.Series("doc_uid", uids, dtype=pl.String),
        "document_id",
        pl.lit(DocumentKind.REVERSAL.value).alias("kind"),
        pl.col("cur_revision").alias("revision"),
        pl.col("cur_entity").alias("entity"),
        dates.alias("posting_date"),
        pl.col("cur_currency").alias("currency"),
        pl.col("cur_total").alias("total_minor"),
        pl.col("cur_content").alias("content"),
        pl.Series("content_hash", hashes, dtype=pl.String),
        pl.col("cur_uid").alias("reverses_uid"),
        pl.col("cur_kind").alias("original_kind"),
        pl.lit(None, dtype=pl.String).alias("replaces_uid"),
        pl.lit(batch).alias("ledger_batch"),
        pl.lit(now, dtype=pl.Datetime("us")).alias("created_at"),
    ).cast(REGISTRY_SCHEMA)  # type: ignore[arg-type]


def enqueue_documents(
    store: PostingStore,
    docs: pl.DataFrame,
    renderers: Sequence[Renderer],
    *,
    scope: Scope | None = None,
    ledger_batch: str | None = None,
    now: datetime | None = None,
) -> EnqueueResult:
    """Register a batch of documents (from `documents.build_documents`) and enqueue them per target.

    Runs in one transaction together with whatever the caller does inside its own
    `store.transaction()` block (e.g. writing the ledger rows), so either all of it lands or none.
    """
    now = now or utcnow()
    if ledger_batch is None:
        ledger_batch = stable_id("ledger-batch", *sorted(docs["content_hash"].to_list()))
    result = EnqueueResult()
    with store.transaction():
        if store.dialect == "postgres":
            # Serialise concurrent enqueues of the same ledger so revision numbers cannot collide.
            store.execute("SELECT pg_advisory_xact_lock(?)", [0x504F5354])
        cur = _current(store, docs["document_id"].to_list(), scope)
        joined = docs.join(cur, on="document_id", how="left")
        is_new = pl.col("cur_uid").is_null()
        active = pl.col("cur_uid").is_not_null() & ~pl.col("cur_reversed")
        unchanged = joined.filter(active & (pl.col("cur_hash") == pl.col("content_hash")))
        changed = joined.filter(active & (pl.col("cur_hash") != pl.col("content_hash")))
        reappeared = joined.filter(pl.col("cur_uid").is_not_null() & pl.col("cur_reversed"))
        fresh = joined.filter(is_new)
        result.unchanged = unchanged.height

        tomb = pl.DataFrame(schema=_CURRENT_SCHEMA)
        if scope is not None:
            tomb = cur.filter(
                ~pl.col("cur_reversed")
                & pl.col("cur_entity").is_in(list(scope.entities))
                & pl.col("cur_date").is_between(scope.start, scope.end)
            ).join(docs.select("document_id"), on="document_id", how="anti")

        # Reversals: of changed documents (dated like their replacement) and of tombstoned ones.
        rev_changed = _reversal_rows(
            changed.select([*list(_CURRENT_SCHEMA), "posting_date"]),
            pl.col("posting_date"),
            ledger_batch,
            now,
        )
        rev_tomb = _reversal_rows(tomb, pl.col("cur_date"), ledger_batch, now)
        reversals = pl.concat([rev_changed, rev_tomb])
        result.reversals = reversals.height

        revised = pl.concat([changed, reappeared], how="vertical")
        new_rows = pl.concat(
            [
                fresh.with_columns(
                    pl.lit(1, dtype=pl.Int32).alias("revision"),
                    pl.lit(None, dtype=pl.String).alias("replaces_uid"),
                ),
                revised.with_columns(
                    (pl.col("cur_revision") + 1).cast(pl.Int32).alias("revision"),
                    pl.col("cur_uid").alias("replaces_uid"),
                ),
            ],
            how="vertical",
        )
        result.new_documents = fresh.height
        result.revisions = revised.height
        uids = [
            document_uid(k, d, r)
            for k, d, r in zip(new_rows["kind"], new_rows["document_id"], new_rows["revision"], strict=True)
        ]
        registry_new = new_rows.select(
            pl.Series("doc_uid", uids, dtype=pl.String),
            "document_id",
            "kind",
            "revision",
            "entity",
            "posting_date",
            "currency",
            "total_minor",
            "content",
            "content_hash",
            pl.lit(None, dtype=pl.String).alias("reverses_uid"),
            pl.lit(None, dtype=pl.String).alias("original_kind"),
            "replaces_uid",
            pl.lit(ledger_batch).alias("ledger_batch"),
            pl.lit(now, dtype=pl.Datetime("us")).alias("created_at"),
        ).cast(REGISTRY_SCHEMA)  # type: ignore[arg-type]
        # Reversals first: a target must see the old revision undone before the new one lands.
        registry = pl.concat([reversals, registry_new]).sort(
            pl.col("kind") != DocumentKind.REVERSAL.value,
            "entity",
            "posting_date",
            "document_id",
            maintain_order=True,
        )
        store.insert_frame("documents", registry)
        outbox, failures = _outbox_rows(registry, renderers, now)
        store.insert_frame("outbox", outbox)
        store.insert_frame(
            "sync_records",
            outbox.select(
                "doc_uid",
                "target",
                "document_id",
                "document_kind",
                "entity",
                pl.lit(None, dtype=pl.String).alias("remote_id"),
                pl.lit(0, dtype=pl.Int32).alias("attempts"),
                *[
                    pl.lit(None, dtype=pl.Datetime("us")).alias(c)
                    for c in ("first_attempt_at", "last_attempt_at", "posted_at")
                ],
            ),
        )
        for row, error in failures:
            _dead_letter(store, row, "render", error, request=None, response=None, now=now)
        result.render_failures = len(failures)
        result.outbox_rows = outbox.height
        result.doc_uids = registry["doc_uid"].to_list()
    return result


OUTBOX_SCHEMA = pl.Schema(
    {
        "outbox_id": pl.String,
        "doc_uid": pl.String,
        "document_kind": pl.String,
        "document_id": pl.String,
        "revision": pl.Int32,
        "entity": pl.String,
        "posting_date": pl.Date,
        "target": pl.String,
        "idempotency_key": pl.String,
        "payload": pl.String,
        "payload_hash": pl.String,
        "status": pl.String,
        "attempts": pl.Int32,
        "attempts_base": pl.Int32,
        "next_attempt_at": pl.Datetime("us"),
        "last_error": pl.String,
        "batch_key": pl.String,
        "remote_id": pl.String,
        "created_at": pl.Datetime("us"),
        "updated_at": pl.Datetime("us"),
    }
)


def view_from_row(row: dict[str, Any]) -> DocumentView:
    return DocumentView(
        doc_uid=row["doc_uid"],
        document_id=row["document_id"],
        kind=row["kind"],
        revision=int(row["revision"]),
        entity=row["entity"],
        posting_date=row["posting_date"],
        currency=row["currency"],
        total_minor=int(row["total_minor"]),
        content=jsonutil.loads(row["content"]),
        content_hash=row["content_hash"],
        reverses_uid=row.get("reverses_uid"),
        original_kind=row.get("original_kind"),
    )


def _outbox_rows(
    registry: pl.DataFrame, renderers: Sequence[Renderer], now: datetime
) -> tuple[pl.DataFrame, list[tuple[dict[str, Any], str]]]:
    rows: list[dict[str, Any]] = []
    failures: list[tuple[dict[str, Any], str]] = []
    views = [view_from_row(r) for r in registry.iter_rows(named=True)]
    for renderer in renderers:
        for view in views:
            status = OutboxStatus.PENDING.value
            error = None
            try:
                payload = renderer.render(view)
            except (ValueError, KeyError) as exc:
                payload = {"render_error": str(exc)}
                status = OutboxStatus.DEAD.value
                error = f"cannot render for {renderer.name}: {exc}"
            text = jsonutil.dumps(payload)
            row = {
                "outbox_id": stable_id("outbox", renderer.name, view.doc_uid),
                "doc_uid": view.doc_uid,
                "document_kind": view.kind,
                "document_id": view.document_id,
                "revision": view.revision,
                "entity": view.entity,
                "posting_date": view.posting_date,
                "target": renderer.name,
                "idempotency_key": idempotency_key(renderer.name, view.doc_uid, view.content_hash),
                "payload": text,
                "payload_hash": jsonutil.sha256_hex(text),
                "status": status,
                "attempts": 0,
                "attempts_base": 0,
                "next_attempt_at": now,
                "last_error": error,
                "batch_key": None,
                "remote_id": None,
                "created_at": now,
                "updated_at": now,
            }
            rows.append(row)
            if error:
                failures.append((row, error))
    return pl.DataFrame(rows, schema=OUTBOX_SCHEMA, orient="row"), failures


# --- reading ------------------------------------------------------------------------------------------

_ITEM_COLS = (
    "outbox_id, doc_uid, document_kind, document_id, revision, entity, target, idempotency_key, "
    "payload, payload_hash, attempts, batch_key, status, attempts_base, created_at"
)


def _items(rows: list[dict[str, Any]]) -> list[OutboxItem]:
    return [
        OutboxItem(
            outbox_id=r["outbox_id"],
            doc_uid=r["doc_uid"],
            document_kind=r["document_kind"],
            document_id=r["document_id"],
            revision=int(r["revision"]),
            entity=r["entity"],
            target=r["target"],
            idempotency_key=r["idempotency_key"],
            payload=jsonutil.loads(r["payload"]),
            payload_hash=r["payload_hash"],
            attempts=int(r["attempts"]) - int(r["attempts_base"]),
            batch_key=r["batch_key"],
            status=r["status"],
        )
        for r in rows
    ]


def in_flight(store: PostingStore, target: str) -> list[OutboxItem]:
    """Rows a previous run marked in flight and never settled (it crashed or lost the answer)."""
    return _items(
        store.query_dicts(
            f"SELECT {_ITEM_COLS} FROM {{s}}.outbox WHERE target = ? AND status = 'in_flight' "
            "ORDER BY created_at, outbox_id",
            [target],
        )
    )


def due(
    store: PostingStore,
    target: str,
    now: datetime,
    limit: int | None = None,
    outbox_ids: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> list[OutboxItem]:
    """Pending rows and transient failures whose back-off has elapsed, oldest first."""
    sql = (
        f"SELECT {_ITEM_COLS} FROM {{s}}.outbox WHERE target = ? AND "
        "(status = 'pending' OR (status = 'failed_transient' AND next_attempt_at <= ?))"
    )
    params: list[Any] = [target, now]
    if outbox_ids is not None:
        sql += " AND outbox_id = ANY(?)"
        params.append(list(outbox_ids))
    if exclude:
        sql += " AND NOT (outbox_id = ANY(?))"
        params.append(list(exclude))
    sql += " ORDER BY created_at, (document_kind <> 'reversal'), entity, posting_date, outbox_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return _items(store.query_dicts(sql, params))


def find_outbox_ids(store: PostingStore, document_ids: Sequence[str], target: str | None = None) -> list[str]:
    """Outbox rows of the given ledger document ids (any revision, reversals included)."""
    sql = "SELECT outbox_id FROM {s}.outbox WHERE document_id = ANY(?)"
    params: list[Any] = [list(document_ids)]
    if target:
        sql += " AND target = ?"
        params.append(target)
    return [r[0] for r in store.query(sql + " ORDER BY created_at, outbox_id", params)]


def counts_by_status(store: PostingStore) -> dict[tuple[str, str], int]:
    rows = store.query("SELECT target, status, count(*) FROM {s}.outbox GROUP BY target, status")
    return {(t, s): int(n) for t, s, n in rows}


def backlog(store: PostingStore, target: str | None = None) -> int:
    sql = "SELECT count(*) FROM {s}.outbox WHERE status IN ('pending', 'in_flight', 'failed_transient')"
    params: list[Any] = []
    if target:
        sql += " AND target = ?"
        params.append(target)
    return int(store.scalar(sql, params) or 0)


def oldest_backlog_age_seconds(store: PostingStore, now: datetime | None = None) -> float:
    now = now or utcnow()
    oldest = store.scalar(
        "SELECT min(created_at) FROM {s}.outbox WHERE status IN ('pending', 'in_flight', 'failed_transient')"
    )
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


# --- state changes (each one committed before the next network call) ------------------------------


def claim(store: PostingStore, items: Sequence[OutboxItem], request_id: str, now: datetime) -> None:
    """Mark rows in flight, count the attempt and pin the request id, in one committed step.

    `batch_key` holds the request id a row was sent under (its own key for a single request) until
    the target answers for it; until then the row is only ever re-sent within that same request.
    """
    batch = request_id
    ids = [i.outbox_id for i in items]
    with store.transaction():
        # Compare-and-set: only rows still waiting, or already pinned to this very request, are
        # taken; if another run got there first the whole claim is rolled back.
        taken = store.execute(
            "UPDATE {s}.outbox SET status = 'in_flight', attempts = attempts + 1, batch_key = ?, "
            "updated_at = ? WHERE outbox_id = ANY(?) AND (batch_key IS NULL OR batch_key = ?) "
            "AND status IN ('pending', 'failed_transient', 'in_flight')",
            [batch, now, ids, batch],
        )
        if taken != len(ids):
            raise ClaimConflict(f"{len(ids) - taken} of {len(ids)} rows were taken by another run")
        store.execute(
            "INSERT INTO {s}.attempts (outbox_id, attempt_no, attempted_at, request_key) "
            "SELECT outbox_id, attempts, ?, ? FROM {s}.outbox WHERE outbox_id = ANY(?)",
            [now, batch, ids],
        )
        store.execute(
            "UPDATE {s}.sync_records SET attempts = {s}.sync_records.attempts + 1, "
            "first_attempt_at = coalesce({s}.sync_records.first_attempt_at, o.updated_at), "
            "last_attempt_at = o.updated_at FROM {s}.outbox o WHERE o.outbox_id = ANY(?) "
            "AND {s}.sync_records.doc_uid = o.doc_uid AND {s}.sync_records.target = o.target",
            [ids],
        )


def record_attempt_keys(
    store: PostingStore, items: Sequence[OutboxItem], request_keys: dict[str, str]
) -> None:
    """Note the per-item request id used for each claimed row (single-document requests)."""
    for item in items:
        key = request_keys.get(item.outbox_id)
        if key:
            store.execute(
                "UPDATE {s}.attempts SET request_key = ? WHERE outbox_id = ? AND attempt_no = "
                "(SELECT attempts FROM {s}.outbox WHERE outbox_id = ?)",
                [key, item.outbox_id, item.outbox_id],
            )


def _finish_attempts(store: PostingStore, results: Sequence[SendResult], now: datetime) -> None:
    if not results:
        return
    store.execute(
        "UPDATE {s}.attempts SET outcome = x.outcome, status_code = x.status_code, error = x.error, "
        "finished_at = x.finished_at FROM (SELECT CAST(? AS TIMESTAMP) AS finished_at, "
        "unnest(CAST(? AS TEXT[])) AS outbox_id, unnest(CAST(? AS TEXT[])) AS outcome, "
        "unnest(CAST(? AS INTEGER[])) AS status_code, unnest(CAST(? AS TEXT[])) AS error) x, {s}.outbox o "
        "WHERE {s}.attempts.outbox_id = x.outbox_id AND o.outbox_id = x.outbox_id "
        "AND {s}.attempts.attempt_no = o.attempts",
        [
            now,
            [r.outbox_id for r in results],
            [r.outcome.value for r in results],
            [r.status_code for r in results],
            [r.error for r in results],
        ],
    )


def mark_posted(store: PostingStore, results: Sequence[SendResult], now: datetime) -> None:
    if not results:
        return
    ids = [r.outbox_id for r in results]
    remote = [r.remote_id for r in results]
    with store.transaction():
        _finish_attempts(store, results, now)
        store.execute(
            "UPDATE {s}.outbox SET status = 'posted', remote_id = x.remote_id, last_error = NULL, "
            "next_attempt_at = NULL, updated_at = x.at FROM (SELECT CAST(? AS TIMESTAMP) AS at, "
            "unnest(CAST(? AS TEXT[])) AS outbox_id, "
            "unnest(CAST(? AS TEXT[])) AS remote_id) x WHERE {s}.outbox.outbox_id = x.outbox_id",
            [now, ids, remote],
        )
        store.execute(
            "UPDATE {s}.sync_records SET remote_id = o.remote_id, posted_at = o.updated_at, "
            "last_attempt_at = o.updated_at FROM {s}.outbox o WHERE o.outbox_id = ANY(?) "
            "AND {s}.sync_records.doc_uid = o.doc_uid AND {s}.sync_records.target = o.target",
            [ids],
        )


def mark_transient(
    store: PostingStore, results: Sequence[SendResult], next_attempt_at: dict[str, datetime], now: datetime
) -> None:
    if not results:
        return
    with store.transaction():
        _finish_attempts(store, results, now)
        store.execute(
            "UPDATE {s}.outbox SET status = 'failed_transient', last_error = x.error, "
            "next_attempt_at = x.next_at, updated_at = x.at FROM (SELECT CAST(? AS TIMESTAMP) AS at, "
            "unnest(CAST(? AS TEXT[])) AS outbox_id, "
            "unnest(CAST(? AS TEXT[])) AS error, unnest(CAST(? AS TIMESTAMP[])) AS next_at) x "
            "WHERE {s}.outbox.outbox_id = x.outbox_id",
            [
                now,
                [r.outbox_id for r in results],
                [r.error for r in results],
                [next_attempt_at[r.outbox_id] for r in results],
            ],
        )


def release(
    store: PostingStore, items: Sequence[OutboxItem], error: str, retry_at: datetime, now: datetime
) -> None:
    """Give claimed rows back without having sent them (circuit open, target refusing us).

    The claim is undone: the attempt is forgotten and each row gets back the request id it had before
    (none for rows that were never sent), so nothing pins it to a request that never went out.
    """
    if not items:
        return
    ids = [i.outbox_id for i in items]
    with store.transaction():
        store.execute(
            "UPDATE {s}.outbox SET status = 'failed_transient', attempts = attempts - 1, last_error = x.error, "
            "next_attempt_at = x.retry_at, updated_at = x.at, batch_key = x.prev FROM (SELECT "
            "CAST(? AS TEXT) AS error, CAST(? AS TIMESTAMP) AS retry_at, CAST(? AS TIMESTAMP) AS at, "
            "unnest(CAST(? AS TEXT[])) AS outbox_id, unnest(CAST(? AS TEXT[])) AS prev) x "
            "WHERE {s}.outbox.outbox_id = x.outbox_id AND {s}.outbox.status = 'in_flight'",
            [error, retry_at, now, ids, [i.batch_key for i in items]],
        )
        store.execute(
            "DELETE FROM {s}.attempts WHERE outcome IS NULL AND outbox_id = ANY(?) AND attempt_no > "
            "(SELECT o.attempts FROM {s}.outbox o WHERE o.outbox_id = {s}.attempts.outbox_id)",
            [ids],
        )
        store.execute(
            "UPDATE {s}.sync_records SET attempts = {s}.sync_records.attempts - 1 FROM {s}.outbox o "
            "WHERE o.outbox_id = ANY(?) AND {s}.sync_records.doc_uid = o.doc_uid "
            "AND {s}.sync_records.target = o.target",
            [ids],
        )


def mark_dead(
    store: PostingStore, results: Sequence[SendResult], reason: str, now: datetime, clear_batch: bool
) -> None:
    """Move rows to the dead-letter queue with their request, response and attempt history.

    `clear_batch` is set when the target answered for the item (so it was certainly not stored):
    a replay may then be sent on its own. Otherwise the row keeps its batch request id.
    """
    with store.transaction():
        _finish_attempts(store, results, now)
        for r in results:
            store.execute(
                "UPDATE {s}.outbox SET status = 'dead', last_error = ?, next_attempt_at = NULL, updated_at = ?"
                + (", batch_key = NULL" if clear_batch else "")
                + " WHERE outbox_id = ?",
                [r.error, now, r.outbox_id],
            )
            row = store.query_dicts(
                "SELECT outbox_id, doc_uid, document_id, document_kind, entity, target, attempts "
                "FROM {s}.outbox WHERE outbox_id = ?",
                [r.outbox_id],
            )[0]
            _dead_letter(store, row, reason, r.error or "", r.request, r.response, now)


def _dead_letter(
    store: PostingStore,
    row: dict[str, Any],
    reason: str,
    error: str,
    request: Any,
    response: Any,
    now: datetime,
) -> None:
    history = store.query_dicts(
        "SELECT attempt_no, attempted_at, request_key, outcome, status_code, error FROM {s}.attempts "
        "WHERE outbox_id = ? ORDER BY attempt_no",
        [row["outbox_id"]],
    )
    dlq_id = stable_id("dlq", row["outbox_id"], len(history), reason, now.isoformat())
    store.execute(
        "INSERT INTO {s}.dlq (dlq_id, outbox_id, target, doc_uid, document_id, document_kind, entity, reason, "
        "error, request, response, attempt_history, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            dlq_id,
            row["outbox_id"],
            row["target"],
            row["doc_uid"],
            row["document_id"],
            row["document_kind"],
            row["entity"],
            reason,
            error,
            None if request is None else jsonutil.dumps(request),
            None if response is None else jsonutil.dumps(response),
            jsonutil.dumps(history),
            now,
        ],
    )


def record_event(
    store: PostingStore,
    kind: str,
    subject: str,
    actor: str | None,
    detail: dict[str, Any],
    now: datetime | None = None,
) -> str:
    """Append an audit event (kept in a table that can later be hash-chained)."""
    now = now or utcnow()
    event_id = stable_id("posting-event", kind, subject, actor, now.isoformat(), jsonutil.dumps(detail))
    store.execute(
        "INSERT INTO {s}.events (event_id, event_at, kind, subject, actor, detail) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT (event_id) DO NOTHING",
        [event_id, now, kind, subject, actor, jsonutil.dumps(detail)],
    )
    return event_id


def registry_view(store: PostingStore, doc_uids: Sequence[str]) -> dict[str, DocumentView]:
    rows = store.query_dicts("SELECT * FROM {s}.documents WHERE doc_uid = ANY(?)", [list(doc_uids)])
    return {r["doc_uid"]: view_from_row(r) for r in rows}
