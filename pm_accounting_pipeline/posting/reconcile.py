"""Reconciliation between the local outbox and what each target actually holds.

Per target: counts and totals per entity, day and currency on both sides; documents posted locally
but missing remotely; documents remote but unknown locally (or held twice); documents whose amount
differs. Documents are matched on the `pm:<document uid>` reference every payload carries; amounts
are compared as each target measures them (`TargetAdapter.payload_total`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.base import TargetAdapter

LOCAL_SCHEMA = pl.Schema(
    {
        "target": pl.String,
        "doc_uid": pl.String,
        "document_id": pl.String,
        "document_kind": pl.String,
        "entity": pl.String,
        "posting_date": pl.Date,
        "status": pl.String,
        "remote_id": pl.String,
        "currency": pl.String,
        "total_minor": pl.Int64,
    }
)


@dataclass
class ReconciliationReport:
    summary: pl.DataFrame
    missing_remote: pl.DataFrame
    missing_local: pl.DataFrame
    duplicates_remote: pl.DataFrame
    amount_mismatches: pl.DataFrame
    not_yet_posted: pl.DataFrame

    @property
    def ok(self) -> bool:
        return not (
            self.missing_remote.height
            or self.missing_local.height
            or self.duplicates_remote.height
            or self.amount_mismatches.height
        )

    def counts(self) -> dict[str, int]:
        return {
            "missing_remote": self.missing_remote.height,
            "missing_local": self.missing_local.height,
            "duplicates_remote": self.duplicates_remote.height,
            "amount_mismatches": self.amount_mismatches.height,
            "not_yet_posted": self.not_yet_posted.height,
        }


def local_documents(store: PostingStore, adapter: TargetAdapter) -> pl.DataFrame:
    rows = store.query(
        "SELECT target, doc_uid, document_id, document_kind, entity, posting_date, status, remote_id, payload "
        "FROM {s}.outbox WHERE target = ? ORDER BY entity, posting_date, doc_uid",
        [adapter.name],
    )
    out = []
    for *head, payload in rows:
        data = jsonutil.loads(payload)
        currency, total = ("", 0) if "render_error" in data else adapter.payload_total(data)
        out.append((*head, currency, total))
    return pl.DataFrame(out, schema=LOCAL_SCHEMA, orient="row")


def reconcile_targets(
    store: PostingStore, targets: Sequence[TargetAdapter], entities: Sequence[str] | None = None
) -> ReconciliationReport:
    """Compare every target with the outbox (all entities with outbox rows unless `entities` is given)."""
    summaries, missing_r, missing_l, dups, mismatches, pending = [], [], [], [], [], []
    for adapter in targets:
        local = local_documents(store, adapter)
        ents = list(entities) if entities is not None else sorted(set(local["entity"].to_list()))
        if entities is not None:
            local = local.filter(pl.col("entity").is_in(ents))
        remote = adapter.remote_documents(ents) if ents else adapter.remote_documents([])
        posted = local.filter(pl.col("status") == "posted")
        pending.append(local.filter(pl.col("status") != "posted"))
        remote_known = remote.filter(pl.col("doc_uid").is_not_null())
        missing_r.append(posted.join(remote_known.select("doc_uid"), on="doc_uid", how="anti"))
        missing_l.append(
            pl.concat(
                [
                    remote.filter(pl.col("doc_uid").is_null()),
                    remote_known.join(local.select("doc_uid"), on="doc_uid", how="anti"),
                ]
            )
        )
        dups.append(remote_known.filter(pl.col("doc_uid").is_duplicated()).sort("doc_uid"))
        matched = posted.join(
            remote_known.unique("doc_uid", keep="first"), on="doc_uid", how="inner", suffix="_remote"
        )
        mismatches.append(
            matched.filter(
                (pl.col("currency") != pl.col("currency_remote"))
                | (pl.col("total_minor") != pl.col("total_minor_remote"))
            ).select(
                "target",
                "doc_uid",
                "document_id",
                "entity",
                "posting_date",
                "currency",
                "total_minor",
                "currency_remote",
                "total_minor_remote",
            )
        )
        keys = ["target", "entity", "posting_date", "currency"]
        left = posted.group_by(keys).agg(
            pl.len().cast(pl.Int64).alias("local_count"),
            pl.col("total_minor").sum().alias("local_total_minor"),
        )
        right = (
            remote.with_columns(pl.lit(adapter.name).alias("target"))
            .group_by(keys)
            .agg(
                pl.len().cast(pl.Int64).alias("remote_count"),
                pl.col("total_minor").sum().alias("remote_total_minor"),
            )
        )
        summaries.append(
            left.join(right, on=keys, how="full", coalesce=True)
            .with_columns(
                pl.col("local_count", "remote_count", "local_total_minor", "remote_total_minor").fill_null(0)
            )
            .sort(keys)
        )
    return ReconciliationReport(
        summary=pl.concat(summaries) if summaries else pl.DataFrame(),
        missing_remote=pl.concat(missing_r) if missing_r else pl.DataFrame(schema=LOCAL_SCHEMA),
        missing_local=pl.concat(missing_l) if missing_l else pl.DataFrame(),
        duplicates_remote=pl.concat(dups) if dups else pl.DataFrame(),
        amount_mismatches=pl.concat(mismatches) if mismatches else pl.DataFrame(),
        not_yet_posted=pl.concat(pending) if pending else pl.DataFrame(schema=LOCAL_SCHEMA),
    )
