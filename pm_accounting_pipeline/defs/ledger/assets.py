"""Ledger assets: daily accruals per (day, entity) and invoices per (month, entity).

Every entry is checked for balance (transaction, functional and reporting currency) before it is
written; an unbalanced batch fails the step and nothing of it is stored.
"""

import calendar
from datetime import date, timedelta

import dagster as dg
import polars as pl

from pm_accounting_pipeline.contracts.layers import (
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    LineSource,
)
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.invoicing import build_invoices
from pm_accounting_pipeline.core.ledger import LedgerBatch, build_accruals
from pm_accounting_pipeline.defs.metadata import contract_check, md_table, totals_by_currency
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, context_partitions, daily_to_monthly
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.staging.assets import FX_BILLABLES
from pm_accounting_pipeline.lib.expenses import read_billables
from pm_accounting_pipeline.lib.lake import Lake

ACCRUALS = dg.AssetKey(["ledger", "accrual_entries"])
INVOICES = dg.AssetKey(["ledger", "invoices"])
STAGED_EXPENSES = dg.AssetKey(["staging", "expenses"])  # defs/expenses: billable expenses are invoiced too


def _write_journal(
    lake: Lake,
    wanted: list[tuple[str, str]],
    writer: str,
    entries: pl.DataFrame,
    lines: pl.DataFrame,
    line_sources: pl.DataFrame,
    key_of_date: pl.Expr,
) -> None:
    assert_balanced(lines)
    lake.write_partitions("ledger.journal_entries", entries, wanted, writer, _key(entries, key_of_date))
    lake.write_partitions("ledger.journal_lines", lines, wanted, writer, _key(lines, key_of_date))
    dates = lines.select("line_id", "posting_date").unique("line_id")
    keyed = line_sources.join(dates, on="line_id", how="left")
    lake.write_partitions("ledger.line_sources", line_sources, wanted, writer, _key(keyed, key_of_date))


def _key(df: pl.DataFrame, key_of_date: pl.Expr) -> pl.Series:
    return df.select(key_of_date.alias("k"))["k"]


def _journal_checks(
    entries: pl.DataFrame, lines: pl.DataFrame, sources: pl.DataFrame
) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name="journal_balanced",
            passed=True,
            metadata={"entries": entries.height, "lines": lines.height},
        ),
        contract_check("entries_contract", JournalEntry, entries),
        contract_check("lines_contract", JournalLine, lines),
        contract_check("line_sources_contract", LineSource, sources),
    ]


def _daily_journal_result(
    lake: Lake,
    wanted: list[tuple[str, str]],
    writer: str,
    batch: LedgerBatch,
    extra_metadata: dict[str, int] | None = None,
) -> dg.MaterializeResult:
    """Write a daily accrual batch as the `writer` journal, keyed by posting date, and describe it:
    lines, entries, entries by type, `extra_metadata`, debits by currency, and the journal checks."""
    _write_journal(
        lake,
        wanted,
        writer,
        batch.entries,
        batch.lines,
        batch.line_sources,
        pl.col("posting_date").cast(pl.String),
    )
    types = batch.entries.group_by("entry_type").len().sort("entry_type")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": batch.lines.height,
            "entries": batch.entries.height,
            "entries_by_type": {t: int(n) for t, n in types.iter_rows()},
            **(extra_metadata or {}),
            "debits_by_currency": totals_by_currency(batch.lines, "currency", "debit_minor"),
        },
        check_results=_journal_checks(batch.entries, batch.lines, batch.line_sources),
    )


def _journal_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "journal_balanced",
            asset=key,
            blocking=True,
            description="every entry balances to the cent per entity and currency (transaction, "
            "functional and reporting); checked before anything is stored",
        ),
        dg.AssetCheckSpec("entries_contract", asset=key, blocking=True),
        dg.AssetCheckSpec("lines_contract", asset=key, blocking=True),
        dg.AssetCheckSpec("line_sources_contract", asset=key, blocking=True),
    ]


def month_days(month_start: date) -> list[date]:
    last = calendar.monthrange(month_start.year, month_start.month)[1]
    return [month_start + timedelta(days=i) for i in range(last)]


def build_ledger_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=ACCRUALS,
        deps=[FX_BILLABLES],
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ledger",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=_journal_specs(ACCRUALS),
        tags={"layer": "ledger"},
    )
    def accrual_entries(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Daily accrual journal entries per entity: Dr unbilled receivables / Cr service revenue for
        approved billable work (per transaction currency), and Dr cost of services / Cr payroll
        clearing for the cost of all work. Each line links to its work items in ledger.line_sources
        and, through them, to the timesheet row in the source file."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        fx = lake.read("staging.fx_billables", wanted, writer="fx")
        batch = build_accruals(fx, mapping)
        return _daily_journal_result(
            lake,
            wanted,
            "accrual",
            batch,
            {"traced_work_items": batch.line_sources.select("work_item_id").n_unique()},
        )

    @dg.asset(
        key=INVOICES,
        deps=[
            dg.AssetDep(
                FX_BILLABLES,
                partition_mapping=daily_to_monthly(),
            ),
            dg.AssetDep(STAGED_EXPENSES, partition_mapping=daily_to_monthly()),
            ACCRUALS,
        ],
        partitions_def=parts.monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ledger",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=[
            *_journal_specs(INVOICES),
            dg.AssetCheckSpec("invoices_contract", asset=INVOICES, blocking=True),
            dg.AssetCheckSpec("invoice_lines_contract", asset=INVOICES, blocking=True),
            dg.AssetCheckSpec(
                "period_complete",
                asset=INVOICES,
                description="every day of the billing period was materialised upstream",
            ),
        ],
        tags={"layer": "ledger"},
    )
    def invoices(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Invoices per entity, client, currency and monthly billing period, numbered gap-free from
        the entity's sequence, with lines grouped by project and task that reference their source
        entries, and the invoice journal entry (Dr receivables / Cr unbilled receivables / Cr tax
        payable) that moves the accrued unbilled amount to accounts receivable."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        outs: dict[str, list[pl.DataFrame]] = {k: [] for k in ("inv", "lines", "entries", "jl", "src")}
        missing: list[str] = []
        for entity, month_key in wanted:
            start = date.fromisoformat(month_key)
            days = month_days(start)
            day_parts = [(entity, d.isoformat()) for d in days]
            missing += [
                f"{entity}|{d}"
                for e, d in day_parts
                if not lake.path("staging.fx_billables", e, d, "fx").exists()
            ]
            fx = read_billables(lake, day_parts)
            batch = build_invoices(fx, mapping, entity, days[0], days[-1])
            outs["inv"].append(batch.invoices)
            outs["lines"].append(batch.invoice_lines)
            outs["entries"].append(batch.entries)
            outs["jl"].append(batch.lines)
            outs["src"].append(batch.line_sources)
        frames = {k: pl.concat(v) for k, v in outs.items()}
        month_of = pl.col("posting_date").dt.truncate("1mo").cast(pl.String)
        _write_journal(lake, wanted, "invoice", frames["entries"], frames["jl"], frames["src"], month_of)
        lake.write_partitions(
            "ledger.invoices",
            frames["inv"],
            wanted,
            "invoice",
            pl.col("period_start").dt.truncate("1mo").cast(pl.String),
        )
        inv_month = frames["inv"].select("invoice_id", "period_start")
        lines_keyed = frames["lines"].join(inv_month, on="invoice_id", how="left")
        lake.write_partitions(
            "ledger.invoice_lines",
            frames["lines"],
            wanted,
            "invoice",
            lines_keyed.select(pl.col("period_start").dt.truncate("1mo").cast(pl.String))["period_start"],
        )
        inv = frames["inv"]
        preview = inv.select(
            "invoice_number", "entity", "customer_ref", "currency", "subtotal", "tax", "total"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": inv.height,
                "invoices": inv.height,
                "invoice_lines": frames["lines"].height,
                "totals_by_currency": totals_by_currency(inv, "currency", "total_minor"),
                "preview": dg.MetadataValue.md(md_table(preview.sort("invoice_number"))),
            },
            check_results=[
                *_journal_checks(frames["entries"], frames["jl"], frames["src"]),
                contract_check("invoices_contract", Invoice, inv),
                contract_check("invoice_lines_contract", InvoiceLine, frames["lines"]),
                dg.AssetCheckResult(
                    check_name="period_complete",
                    passed=not missing,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"days_not_materialised": len(missing), "examples": ", ".join(missing[:10])},
                ),
            ],
        )

    return [accrual_entries, invoices]
