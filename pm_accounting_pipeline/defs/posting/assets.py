"""The "posted ledger entries" asset: enqueue the ledger's documents, then post to each target in turn.

A graph-backed asset: one op enqueues (document registry and outbox in one transaction), then one op
per target posts, each holding that target's concurrency pool (`posting_<target>`) so two runs never
post to the same target at once, and the chain makes it one target at a time.
"""

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from pm_accounting_pipeline.posting import dlq, outbox, service
from pm_accounting_pipeline.posting.documents import build_documents, read_ledger
from pm_accounting_pipeline.posting.outbox import Scope

POSTED_LEDGER_ENTRIES = dg.AssetKey(["posting", "posted_ledger_entries"])


def _scope(docs: Any, mapping: Any) -> Scope | None:
    if docs.height == 0:
        return None
    entities = (
        tuple(mapping.entity_ids) if mapping is not None else tuple(sorted(set(docs["entity"].to_list())))
    )
    return Scope(entities, docs["posting_date"].min(), docs["posting_date"].max())


def _enqueue_op(dep_names: list[str]) -> dg.OpDefinition:
    @dg.op(
        name="posting_enqueue",
        ins={name: dg.In(dg.Nothing) for name in dep_names},
        out=dg.Out(dict),
        description="Register the ledger's documents and enqueue them for every target (one transaction).",
        required_resource_keys={"posting"},
    )
    def posting_enqueue(context: dg.OpExecutionContext) -> dict[str, Any]:
        posting = context.resources.posting
        mapping = posting.mapping()
        ledger = read_ledger(posting.lake_root())
        docs = build_documents(ledger)
        with posting.open() as store:
            targets = service.build_targets(store, mapping)
            try:
                scope = _scope(docs, mapping) if posting.reverse_missing_documents else None
                result = outbox.enqueue_documents(store, docs, targets, scope=scope)
            finally:
                for t in targets:
                    t.close()
        counts = result.as_dict()
        context.log.info(f"enqueued: {counts}")
        return {"enqueue": counts, "documents_in_ledger": docs.height}

    return posting_enqueue


def _post_op(target: str) -> dg.OpDefinition:
    @dg.op(
        name=f"post_to_{target}",
        pool=f"posting_{target}",
        ins={"upstream": dg.In(dict)},
        out=dg.Out(dict),
        description=f"Deliver due outbox rows to {target} (stops at once when the kill switch is on).",
        required_resource_keys={"posting"},
    )
    def post_to_target(context: dg.OpExecutionContext, upstream: dict[str, Any]) -> dict[str, Any]:
        posting = context.resources.posting
        mapping = posting.mapping()
        with posting.open() as store:
            adapters = service.build_targets(store, mapping, only=[target])
            try:
                reports = service.post_pending(
                    store, adapters, data_dir=Path(posting.data_dir), mapping=mapping
                )
            finally:
                for a in adapters:
                    a.close()
        out = dict(upstream)
        out.setdefault("delivery", {})
        for r in reports:
            out["delivery"][r.target] = {k: v for k, v in r.as_dict().items() if k != "errors"}
            if r.skipped_reason:
                context.log.warning(f"{r.target}: posting skipped: {r.skipped_reason}")
            for e in r.errors[:5]:
                context.log.warning(f"{r.target}: {e}")
        return out

    return post_to_target


def _summary_op() -> dg.OpDefinition:
    @dg.op(
        name="posting_summary",
        ins={"upstream": dg.In(dict)},
        out=dg.Out(dict),
        required_resource_keys={"posting"},
    )
    def posting_summary(context: dg.OpExecutionContext, upstream: dict[str, Any]) -> dict[str, Any]:
        posting = context.resources.posting
        with posting.open() as store:
            status = {f"{t}/{s}": n for (t, s), n in sorted(outbox.counts_by_status(store).items())}
            open_dlq = dlq.open_count(store)
            backlog = outbox.backlog(store)
        enq = upstream.get("enqueue", {})
        context.add_output_metadata(
            {
                "documents_in_ledger": upstream.get("documents_in_ledger", 0),
                "new_documents": enq.get("new_documents", 0),
                "revisions": enq.get("revisions", 0),
                "reversals": enq.get("reversals", 0),
                "outbox_by_target_status": dg.MetadataValue.json(status),
                "delivery": dg.MetadataValue.json(upstream.get("delivery", {})),
                "backlog": backlog,
                "dead_letters_open": open_dlq,
            }
        )
        return {**upstream, "backlog": backlog, "dead_letters_open": open_dlq}

    return posting_summary


def build_posted_ledger_entries(
    ledger_asset_keys: Sequence[dg.AssetKey], targets: Sequence[str]
) -> dg.AssetsDefinition:
    """The asset `posting/posted_ledger_entries`, depending (without loading) on the ledger assets."""
    dep_names = [f"ledger_{i}" for i in range(len(ledger_asset_keys))]
    enqueue = _enqueue_op(dep_names)
    posters = [_post_op(t) for t in targets]
    summary = _summary_op()

    def body(**deps: Any) -> Any:
        state = enqueue(**deps)
        for poster in posters:
            state = poster(state)
        return summary(state)

    # dagster reads the graph's inputs from the function signature; give it one per ledger asset.
    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in dep_names]
    )
    body.__name__ = "posted_ledger_entries"
    return dg.graph_asset(
        key=POSTED_LEDGER_ENTRIES,
        group_name="posting",
        ins={
            n: dg.AssetIn(key=k, dagster_type=dg.Nothing)
            for n, k in zip(dep_names, ledger_asset_keys, strict=True)
        },
        kinds={"duckdb", "postgres"},
        description=(
            "Ledger documents posted to every configured accounting target, effectively once: enqueued "
            "with a deterministic idempotency key per document and target, delivered with retries, a "
            "circuit breaker and the targets' rate limits, failures dead-lettered. One target at a time, "
            "one run per target at a time (pool posting_<target>)."
        ),
    )(body)
