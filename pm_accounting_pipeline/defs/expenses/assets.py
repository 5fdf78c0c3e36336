"""The daily expense assets per (day, entity): raw expenses from landed Harvest expense exports,
staged expenses (mapping, approval, markup, FX; bad rows to staging.quarantine), and the expense
accrual entries. The Harvest API raw asset writes its expenses to the same `raw.expenses` table
(writer `harvest_api`), so both sources flow through the same layers.
"""

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from pm_accounting_pipeline.contracts.expenses import RawExpense, StagedExpense
from pm_accounting_pipeline.core.approvals import feed_folders, read_feed
from pm_accounting_pipeline.core.entities import rerouted, rows_by_rule
from pm_accounting_pipeline.core.expenses import build_expense_accruals, stage_expenses
from pm_accounting_pipeline.core.fx_providers import provider_for
from pm_accounting_pipeline.defs.ledger.assets import _daily_journal_result, _journal_specs
from pm_accounting_pipeline.defs.metadata import (
    accounting_check,
    contract_check,
    md_table,
    reason_counts,
    totals_by_currency,
)
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, context_partitions
from pm_accounting_pipeline.defs.raw.assets import landing_check_specs, read_landing, route, write_held
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources.assets import HARVEST_API_RAW

RAW_EXPENSES = dg.AssetKey(["raw", "expenses"])
STAGED_EXPENSES = dg.AssetKey(["staging", "expenses"])
EXPENSE_ACCRUALS = dg.AssetKey(["ledger", "expense_accrual_entries"])
CSV_WRITER = "expense_csv"
ASSIGNMENT_WRITER = "expense_raw"  # staging.quarantine files of expenses no entity could be given


def build_expense_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=RAW_EXPENSES,
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=landing_check_specs(RAW_EXPENSES),
        tags={"layer": "raw"},
    )
    def raw_expenses(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Expenses exactly as Harvest's expense CSV export wrote them (files dropped in
        `data/landing/<entity>/`, recognised by their header), every source column kept in
        `source_record`, receipts as URLs only. Each row is assigned to its legal entity like a
        time entry (`entity_assignment` in the mapping document; `entity_rule` and
        `landing_entity` say why) and written to (spent date, that entity), so a partition reads
        the expense exports of every entity for its days. Rows whose date cannot be read are
        quarantined per file; rows no entity can be given under their landing entity. The Harvest
        API asset writes its expenses to the same table."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        days = {date.fromisoformat(k) for _, k in wanted}
        read, quarantines, files_read, n_files = read_landing(
            pipeline, lake, parts.entities, days, expenses=True
        )
        raw_all, held, routing, n_elsewhere = route(read, mapping, wanted, day="spent_date")
        counts = lake.write_partitions("raw.expenses", raw_all, wanted, CSV_WRITER, pl.col("spent_date"))
        write_held(lake, held, wanted, ASSIGNMENT_WRITER)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": raw_all.height,
                "partitions": len(counts),
                "landing_files": n_files,
                "expense_files_read": files_read,
                "rows_by_entity_rule": rows_by_rule(raw_all),
                "rows_rerouted": dg.MetadataValue.md(md_table(rerouted(raw_all))),
                "rows_of_other_partitions": n_elsewhere,
                "unroutable_rows_by_reason": reason_counts(pl.concat([*quarantines, held])),
            },
            check_results=[contract_check("contract", RawExpense, raw_all), routing],
        )

    @dg.asset(
        key=STAGED_EXPENSES,
        deps=[RAW_EXPENSES, HARVEST_API_RAW],
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="staging",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=[
            dg.AssetCheckSpec("contract", asset=STAGED_EXPENSES, blocking=True),
            dg.AssetCheckSpec(
                "rows_accounted_for",
                asset=STAGED_EXPENSES,
                blocking=True,
                description="rows in = rows accepted + rows quarantined, per partition",
            ),
        ],
        tags={"layer": "staging"},
    )
    def staged_expenses(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Staged expenses: client and project mapped like time entries, category -> invoice item,
        billable vs non-billable, approvals applied like time (source row, approval feed,
        approver policy), unapproved billable expenses held (kept, not billed), markup from
        the mapping document's `expenses` section, amounts in minor units of the transaction,
        functional and reporting currency (same rate providers as time). Bad rows go to
        staging.quarantine with a reason."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        raw = lake.read("raw.expenses", wanted)
        # Approvals: the source rows' approver and time, overridden by landing/<entity>/approvals/*.csv.
        feed = read_feed(feed_folders(Path(pipeline.paths.data_dir) / "landing", list(mapping.entity_ids)))
        res = stage_expenses(raw, mapping, provider_for(mapping, pipeline.paths.data_dir), feed)
        lake.write_partitions("staging.expenses", res.expenses, wanted, "expenses", pl.col("spent_date"))
        lake.write_partitions(
            "staging.quarantine", res.quarantine, wanted, "expenses", pl.col("partition_date")
        )
        status = res.expenses.group_by("billing_status").len().sort("billing_status")
        metadata: dict[str, object] = {
            "dagster/row_count": res.expenses.height,
            "rows_in": raw.height,
            "rows_accepted": res.expenses.height,
            "rows_quarantined": res.quarantine.height,
            "quarantined_by_reason": reason_counts(res.quarantine),
            "rows_by_billing_status": {s: int(n) for s, n in status.iter_rows()},
            "recharge_totals": totals_by_currency(res.expenses, "currency", "recharge_minor"),
            "rule_version": mapping.rule_version,
        }
        if res.quarantine.height:
            metadata["quarantine_preview"] = dg.MetadataValue.md(
                md_table(
                    res.quarantine.select(
                        "entity", "partition_date", "reason", "detail", "source_file", "source_row"
                    )
                )
            )
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                contract_check("contract", StagedExpense, res.expenses),
                accounting_check(
                    "rows_accounted_for",
                    raw,
                    res.expenses,
                    res.quarantine,
                    wanted,
                    "spent_date",
                    "spent_date",
                ),
            ],
        )

    @dg.asset(
        key=EXPENSE_ACCRUALS,
        deps=[STAGED_EXPENSES],
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ledger",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=_journal_specs(EXPENSE_ACCRUALS),
        tags={"layer": "ledger"},
    )
    def expense_accrual_entries(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Daily expense accruals per entity: Dr unbilled receivables / Cr expense recharge for
        approved billable expenses (cost + markup), and Dr project expenses / Cr reimbursements
        payable for the cost of every expense. Each line links to its expenses in
        ledger.line_sources. A re-run after an expense is deleted at the source rewrites the day
        without it; billing then credits what was already invoiced."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        staged = lake.read("staging.expenses", wanted, writer="expenses")
        batch = build_expense_accruals(staged, mapping)
        return _daily_journal_result(lake, wanted, "expense_accrual", batch)

    return [raw_expenses, staged_expenses, expense_accrual_entries]
