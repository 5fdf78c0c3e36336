"""The built-in general ledger target: posted entries and lines in the ledger database itself.

It behaves like an external system with a unique key on the idempotency key: a second delivery of the
same key with the same payload answers the first entry's id, with another payload it is refused.
Each delivery commits in its own transaction, separate from the outbox's bookkeeping, so a crash
between the two is recovered exactly like a lost answer from a vendor.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import polars as pl

from pm_accounting_pipeline.core.ids import stable_id
from pm_accounting_pipeline.posting.model import DocumentKind, OutboxItem, Outcome, SendResult, utcnow
from pm_accounting_pipeline.posting.outbox import DocumentView
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.base import REMOTE_SCHEMA, TargetAdapter, TargetLimits


class GeneralLedgerTarget(TargetAdapter):
    name = "general_ledger"
    limits = TargetLimits(requests=1_000_000, period_s=1.0, batch_size=500)

    def __init__(self, store: PostingStore) -> None:
        self.store = store

    def render(self, doc: DocumentView) -> dict[str, Any]:
        swap = doc.kind == DocumentKind.REVERSAL.value
        lines = []
        for p in doc.content["postings"]:
            dr, cr = int(p["debit_minor"]), int(p["credit_minor"])
            fdr, fcr = p["functional_debit"], p["functional_credit"]
            if swap:
                dr, cr, fdr, fcr = cr, dr, fcr, fdr
            lines.append(
                {
                    "line_no": int(p["line_no"]),
                    "account": p["account"],
                    "account_role": p["account_role"],
                    "debit_minor": dr,
                    "credit_minor": cr,
                    "functional_debit": Decimal(fdr),
                    "functional_credit": Decimal(fcr),
                    "customer_ref": p.get("customer_ref"),
                }
            )
        return {
            "doc_uid": doc.doc_uid,
            "document_id": doc.document_id,
            "kind": doc.kind,
            "reverses": doc.reverses_uid,
            "entity": doc.entity,
            "date": doc.posting_date.isoformat(),
            "currency": doc.currency,
            "functional_currency": doc.content["functional_currency"],
            "lines": lines,
        }

    def payload_total(self, payload: dict[str, Any]) -> tuple[str, int]:
        return payload["currency"], sum(int(x["debit_minor"]) for x in payload["lines"])

    def send(self, items: Sequence[OutboxItem], request_id: str) -> list[SendResult]:
        results: list[SendResult] = []
        with self.store.transaction():
            existing = {
                key: (gl_id, phash)
                for key, gl_id, phash in self.store.query(
                    "SELECT idempotency_key, gl_entry_id, payload_hash FROM {s}.gl_entries "
                    "WHERE idempotency_key = ANY(?)",
                    [[i.idempotency_key for i in items]],
                )
            }
            for item in items:
                if item.idempotency_key in existing:
                    gl_id, phash = existing[item.idempotency_key]
                    if phash != item.payload_hash:
                        results.append(
                            SendResult(
                                item.outbox_id,
                                Outcome.PERMANENT,
                                status_code=409,
                                error="idempotency key reused with a different payload",
                                request=item.payload,
                            )
                        )
                    else:
                        results.append(
                            SendResult(item.outbox_id, Outcome.POSTED, remote_id=gl_id, status_code=200)
                        )
                    continue
                p = item.payload
                lines = p["lines"]
                debit = sum(int(x["debit_minor"]) for x in lines)
                credit = sum(int(x["credit_minor"]) for x in lines)
                fdebit = sum((Decimal(x["functional_debit"]) for x in lines), Decimal(0))
                fcredit = sum((Decimal(x["functional_credit"]) for x in lines), Decimal(0))
                if debit != credit or fdebit != fcredit:
                    results.append(
                        SendResult(
                            item.outbox_id,
                            Outcome.PERMANENT,
                            status_code=400,
                            error=f"entry does not balance: {debit} != {credit}",
                            request=item.payload,
                        )
                    )
                    continue
                gl_id = stable_id("gl-entry", item.idempotency_key)
                self.store.execute(
                    "INSERT INTO {s}.gl_entries (idempotency_key, gl_entry_id, doc_uid, document_id, "
                    "document_kind, entity, posting_date, currency, total_debit_minor, payload_hash, posted_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        item.idempotency_key,
                        gl_id,
                        p["doc_uid"],
                        p["document_id"],
                        p["kind"],
                        p["entity"],
                        p["date"],
                        p["currency"],
                        debit,
                        item.payload_hash,
                        utcnow(),
                    ],
                )
                self.store.execute(
                    "INSERT INTO {s}.gl_lines (gl_entry_id, line_no, entity, posting_date, account, account_role, "
                    "currency, debit_minor, credit_minor, functional_currency, functional_debit, functional_credit, "
                    "customer_ref) SELECT x.gl_entry_id, x.line_no, x.entity, x.posting_date, x.account, "
                    "x.account_role, x.currency, x.debit_minor, x.credit_minor, x.functional_currency, "
                    "CAST(x.functional_debit AS DECIMAL(18, 3)), CAST(x.functional_credit AS DECIMAL(18, 3)), "
                    "x.customer_ref FROM (SELECT CAST(? AS TEXT) AS gl_entry_id, CAST(? AS TEXT) AS entity, "
                    "CAST(? AS DATE) AS posting_date, CAST(? AS TEXT) AS currency, "
                    "CAST(? AS TEXT) AS functional_currency, unnest(CAST(? AS INTEGER[])) AS line_no, "
                    "unnest(CAST(? AS TEXT[])) AS account, unnest(CAST(? AS TEXT[])) AS account_role, "
                    "unnest(CAST(? AS BIGINT[])) AS debit_minor, unnest(CAST(? AS BIGINT[])) AS credit_minor, "
                    "unnest(CAST(? AS TEXT[])) AS functional_debit, unnest(CAST(? AS TEXT[])) AS functional_credit, "
                    "unnest(CAST(? AS TEXT[])) AS customer_ref) x",
                    [
                        gl_id,
                        p["entity"],
                        p["date"],
                        p["currency"],
                        p["functional_currency"],
                        [int(x["line_no"]) for x in lines],
                        [x["account"] for x in lines],
                        [x["account_role"] for x in lines],
                        [int(x["debit_minor"]) for x in lines],
                        [int(x["credit_minor"]) for x in lines],
                        [str(x["functional_debit"]) for x in lines],
                        [str(x["functional_credit"]) for x in lines],
                        [x.get("customer_ref") for x in lines],
                    ],
                )
                results.append(SendResult(item.outbox_id, Outcome.POSTED, remote_id=gl_id, status_code=201))
        return results

    def remote_documents(self, entities: Sequence[str]) -> pl.DataFrame:
        rows = self.store.query(
            "SELECT doc_uid, gl_entry_id, document_kind, entity, posting_date, currency, total_debit_minor "
            "FROM {s}.gl_entries WHERE entity = ANY(?)",
            [list(entities)],
        )
        return pl.DataFrame([(self.name, *r) for r in rows], schema=REMOTE_SCHEMA, orient="row")


def trial_balance(store: PostingStore) -> pl.DataFrame:
    """Debits and credits per entity and currency in the built-in ledger (they must be equal)."""
    return store.query_frame(
        "SELECT entity, currency, sum(debit_minor) AS debit_minor, sum(credit_minor) AS credit_minor, "
        "functional_currency, sum(functional_debit) AS functional_debit, "
        "sum(functional_credit) AS functional_credit FROM {s}.gl_lines "
        "GROUP BY entity, currency, functional_currency ORDER BY entity, currency",
        schema={
            "entity": pl.String,
            "currency": pl.String,
            "debit_minor": pl.Int64,
            "credit_minor": pl.Int64,
            "functional_currency": pl.String,
            "functional_debit": pl.Decimal(38, 3),
            "functional_credit": pl.Decimal(38, 3),
        },
    )
