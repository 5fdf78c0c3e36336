"""Billing assets: the client-matching decision log per (day, entity), and billing documents per
(month, entity): invoices finalised with discounts, tax, retainers and corrections, credit memos,
settlements and the journal entries that bring ledger/invoices to what was issued. The
`bill_on_demand` job records an on-demand billing request and issues it at once; the
`bill_through` job bills a month as of a date (every document issued on or before it)."""

from datetime import date

import dagster as dg
import polars as pl

from pm_accounting_pipeline.contracts.billing import BILLING_TABLES
from pm_accounting_pipeline.contracts.layers import JournalEntry, JournalLine, LineSource
from pm_accounting_pipeline.core.billing.cycles import cycle_expr
from pm_accounting_pipeline.core.dedupe import decision_log, review_list
from pm_accounting_pipeline.core.fx import EcbOfflineProvider
from pm_accounting_pipeline.defs.ledger.assets import INVOICES
from pm_accounting_pipeline.defs.metadata import contract_check, md_table, totals_by_currency
from pm_accounting_pipeline.defs.partitions import (
    PipelinePartitions,
    context_partitions,
    daily_to_monthly,
    monthly_key,
)
from pm_accounting_pipeline.defs.raw.assets import RAW_TIME_ENTRIES
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.staging.assets import FX_BILLABLES
from pm_accounting_pipeline.lib.billing import WRITER, PartitionRun, record_request, run_partition

CLIENT_MATCHES = dg.AssetKey(["staging", "client_matches"])
BILLING_DOCUMENTS = dg.AssetKey(["ledger", "billing_documents"])
STATE_CHECKS = {
    table: f"{table.split('.')[1]}_contract" for table in BILLING_TABLES if table.startswith("ledger.")
}


def build_billing_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=CLIENT_MATCHES,
        deps=[RAW_TIME_ENTRIES],
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="staging",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=[
            dg.AssetCheckSpec("contract", asset=CLIENT_MATCHES, blocking=True),
            dg.AssetCheckSpec(
                "no_spelling_waits_for_review",
                asset=CLIENT_MATCHES,
                description="client spellings between the low and high threshold wait for a person "
                "(pm-accounting clients review); their rows stay quarantined as unknown_client",
            ),
        ],
        tags={"layer": "clean"},
    )
    def client_matches(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Decision log of client matching: one row per distinct client spelling (and client id) of
        each day, with the rule that decided it (source id, exact name, alias, review decision,
        fuzzy merge above the high threshold, review between the thresholds, kept apart below),
        the client it matched or was compared with, the rapidfuzz score and the thresholds."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        raw = lake.read("raw.time_entries", wanted, writer="raw")
        log = decision_log(raw, mapping)
        lake.write_partitions(
            "staging.client_matches", log, wanted, WRITER, pl.col("partition_date").cast(pl.String)
        )
        pending = review_list(log, mapping)
        by_rule = log.group_by("rule").agg(pl.col("rows").sum()).sort("rule")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": log.height,
                "rows_by_rule": {r: int(n) for r, n in by_rule.iter_rows()},
                "waiting_for_review": pending.height,
            },
            check_results=[
                contract_check("contract", BILLING_TABLES["staging.client_matches"], log),
                dg.AssetCheckResult(
                    check_name="no_spelling_waits_for_review",
                    passed=pending.height == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "pending": pending.height,
                        "review_list": dg.MetadataValue.md(
                            md_table(
                                pending.select("entity", "source_name", "suggested_client", "score", "rows")
                            )
                        ),
                    },
                ),
            ],
        )

    @dg.asset(
        key=BILLING_DOCUMENTS,
        deps=[
            dg.AssetDep(
                FX_BILLABLES,
                partition_mapping=daily_to_monthly(),
            ),
            INVOICES,
        ],
        partitions_def=parts.monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.eager(),
        group_name="ledger",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=[
            dg.AssetCheckSpec(
                "journal_balanced",
                asset=BILLING_DOCUMENTS,
                blocking=True,
                description="every billing entry balances in transaction, functional and reporting "
                "currency; checked before anything is stored",
            ),
            dg.AssetCheckSpec("entries_contract", asset=BILLING_DOCUMENTS, blocking=True),
            dg.AssetCheckSpec("lines_contract", asset=BILLING_DOCUMENTS, blocking=True),
            dg.AssetCheckSpec("line_sources_contract", asset=BILLING_DOCUMENTS, blocking=True),
            *[
                dg.AssetCheckSpec(name, asset=BILLING_DOCUMENTS, blocking=True)
                for name in STATE_CHECKS.values()
            ],
            dg.AssetCheckSpec(
                "issued_documents_match_ledger_invoices",
                asset=BILLING_DOCUMENTS,
                description="ledger/invoices computes the same work as what billing issued; a "
                "difference means the source changed after issue (corrected on later documents)",
            ),
            dg.AssetCheckSpec(
                "billing_inputs_accepted",
                asset=BILLING_DOCUMENTS,
                description="every manual credit and refund request of the month was usable",
            ),
        ],
        tags={"layer": "ledger"},
    )
    def billing_documents(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Billing documents per entity and month, issued once and never changed: each client's
        invoice (the ledger/invoices invoice finalised with discounts, tax per profile and level,
        retainer drawdown and next-invoice corrections), supplementary invoices, retainer invoices,
        credit memos for source changes after invoicing and manual credits, settlements (credits
        applied, retainers drawn, refunds), the credits status for the PM side, and the journal
        entries that bring the ledger from what ledger/invoices booked to what was issued."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        provider = EcbOfflineProvider()
        runs: list[PartitionRun] = []
        # Months in order: what a month issues is what the next one corrects.
        for entity, month_key in sorted(context_partitions(context), key=lambda p: (p[1], p[0])):
            runs.append(
                run_partition(
                    lake, pipeline.paths.data_dir, mapping, entity, date.fromisoformat(month_key), provider
                )
            )
        return _result(runs, mapping)

    return [client_matches, billing_documents]


class OnDemandRequest(dg.Config):
    """Bill an on-demand client's unbilled work dated up to `through` (YYYY-MM-DD)."""

    client: str
    through: str
    requested_by: str | None = None


@dg.op(
    name="issue_on_demand_request",
    description="Record an on-demand billing request (landing/<entity>/billing_requests) and bill "
    "the month that contains its date as of that date; the invoice is issued on that date.",
)
def bill_on_demand_op(
    context: dg.OpExecutionContext, config: OnDemandRequest, pipeline: PipelineResource
) -> None:
    mapping = pipeline.mapping()
    through = date.fromisoformat(config.through)
    entity, rid, new = record_request(
        pipeline.paths.data_dir, mapping, config.client, through, config.requested_by
    )
    run = run_partition(
        pipeline.lake(),
        pipeline.paths.data_dir,
        mapping,
        entity,
        through.replace(day=1),
        EcbOfflineProvider(),
        through,
    )
    result = _result([run], mapping)
    context.log.info(
        f"request {rid} ({'new' if new else 'already recorded'}): {run.result.new_documents} new document(s)"
    )
    context.log_event(
        dg.AssetMaterialization(
            asset_key=BILLING_DOCUMENTS,
            partition=monthly_key(through.replace(day=1), entity),
            metadata={**(result.metadata or {}), "request_id": rid},
        )
    )


bill_on_demand_job = dg.GraphDefinition(name="bill_on_demand", node_defs=[bill_on_demand_op]).to_job(
    description="Bill one on-demand client through a date (config: client, through, requested_by).",
)


class BillThrough(dg.Config):
    """Bill the month of `through` (YYYY-MM-DD) as of that date, for `entities` (default: all)."""

    through: str
    entities: list[str] | None = None


@dg.op(
    name="issue_documents_through",
    description="Bill the month that contains `through` as of that date: every document whose issue "
    "date is on or before it (weekly periods that have ended, on-demand requests, retainer invoices, "
    "credits); needs the days up to `through` materialised. The last day of the month is the close.",
)
def bill_through_op(context: dg.OpExecutionContext, config: BillThrough, pipeline: PipelineResource) -> None:
    mapping = pipeline.mapping()
    through = date.fromisoformat(config.through)
    entities = config.entities or mapping.entity_ids
    unknown = sorted(set(entities) - set(mapping.entity_ids))
    if unknown:
        raise dg.Failure(f"unknown entities {unknown}; known: {mapping.entity_ids}")
    lake, provider = pipeline.lake(), EcbOfflineProvider()
    for entity in entities:
        run = run_partition(
            lake, pipeline.paths.data_dir, mapping, entity, through.replace(day=1), provider, through
        )
        result = _result([run], mapping)
        context.log.info(f"{entity} through {through}: {run.result.new_documents} new document(s)")
        context.log_event(
            dg.AssetMaterialization(
                asset_key=BILLING_DOCUMENTS,
                partition=monthly_key(through.replace(day=1), entity),
                metadata={**(result.metadata or {}), "through": config.through},
            )
        )


bill_through_job = dg.GraphDefinition(name="bill_through", node_defs=[bill_through_op]).to_job(
    description="Bill a month as of a date (config: through, entities): the documents issued on or "
    "before it; later runs and the month close keep them and continue their numbering.",
)


def _result(runs: list[PartitionRun], mapping: object) -> dg.MaterializeResult:
    tables = {t: pl.concat([r.result.state.tables()[t] for r in runs], how="vertical") for t in STATE_CHECKS}
    entries = pl.concat([r.result.ledger.entries for r in runs], how="vertical")
    lines = pl.concat([r.result.ledger.lines for r in runs], how="vertical")
    sources = pl.concat([r.result.ledger.line_sources for r in runs], how="vertical")
    drift = pl.concat([r.result.drift for r in runs], how="vertical")
    docs = tables["ledger.billing_documents"]
    rejected = tables["ledger.billing_rejections"]
    by_type = docs.group_by("document_type").len().sort("document_type")
    by_cycle = (
        docs.filter(pl.col("document_type") == "invoice")
        .with_columns(_cycle=cycle_expr(mapping))  # type: ignore[arg-type]
        .group_by("_cycle")
        .len()
        .sort("_cycle")
    )
    preview = docs.sort("document_number").select(
        "document_number",
        "document_type",
        "customer_ref",
        "period_start",
        "period_end",
        "currency",
        "subtotal",
        "tax",
        "total",
        "amount_due",
    )
    checks = [
        dg.AssetCheckResult(
            check_name="journal_balanced",
            passed=True,
            metadata={"entries": entries.height, "lines": lines.height},
        ),
        contract_check("entries_contract", JournalEntry, entries),
        contract_check("lines_contract", JournalLine, lines),
        contract_check("line_sources_contract", LineSource, sources),
        *[contract_check(name, BILLING_TABLES[t], tables[t]) for t, name in STATE_CHECKS.items()],
        dg.AssetCheckResult(
            check_name="issued_documents_match_ledger_invoices",
            passed=drift.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "invoices_differing": drift.height,
                "differences": dg.MetadataValue.md(md_table(drift)),
            },
        ),
        dg.AssetCheckResult(
            check_name="billing_inputs_accepted",
            passed=rejected.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "rejected": rejected.height,
                "rejections": dg.MetadataValue.md(
                    md_table(rejected.select("input", "source_file", "source_row", "reason", "detail"))
                ),
            },
        ),
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": docs.height,
            "documents_by_type": {t: int(n) for t, n in by_type.iter_rows()},
            "invoices_by_cycle": {c: int(n) for c, n in by_cycle.iter_rows()},
            "new_documents": sum(r.result.new_documents for r in runs),
            "amount_due_by_currency": totals_by_currency(docs, "currency", "amount_due_minor"),
            "billing_entries": entries.height,
            "credits_files": ", ".join(str(r.credits_file) for r in runs if r.credits_file) or "none",
            "preview": dg.MetadataValue.md(md_table(preview)),
        },
        check_results=checks,
    )
