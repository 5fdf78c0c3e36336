"""Analytics assets: the `analytics.*` DuckDB views (SQL in `sql/analytics/`), evaluated after the
ledger changes so the UI shows their current figures and the trial balance is checked.

The views are evaluated in an in-memory DuckDB over the same Parquet files, never in the analysts'
`warehouse.duckdb`, so nothing here waits on (or takes) that file's lock.
"""

import dagster as dg
import polars as pl

from pm_accounting_pipeline.defs.ledger.assets import ACCRUALS, INVOICES
from pm_accounting_pipeline.defs.metadata import md_table
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.lib.warehouse import connect_in_memory

TRIAL_BALANCE = dg.AssetKey(["analytics", "trial_balance"])
PROFITABILITY = dg.AssetKey(["analytics", "project_profitability"])
QUARANTINE_SUMMARY = dg.AssetKey(["analytics", "quarantine_summary"])


def _query(pipeline: PipelineResource, sql: str) -> pl.DataFrame:
    con = connect_in_memory(pipeline.lake())
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


@dg.asset(
    key=TRIAL_BALANCE,
    deps=[ACCRUALS, INVOICES],
    group_name="analytics",
    kinds={"duckdb", "sql"},
    owners=["team:finance-data"],
    check_specs=[
        dg.AssetCheckSpec(
            "entities_balance",
            asset=TRIAL_BALANCE,
            description="per entity, functional debits equal functional credits",
        )
    ],
)
def trial_balance(pipeline: PipelineResource) -> dg.MaterializeResult:
    """`analytics.trial_balance`: debit, credit and balance per entity, account and currency."""
    check = _query(pipeline, "SELECT * FROM analytics.trial_balance_check")
    tb = _query(pipeline, "SELECT * FROM analytics.trial_balance")
    bad = check.filter(pl.col("out_of_balance") != 0)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": tb.height,
            "per_entity": dg.MetadataValue.md(md_table(check)),
            "preview": dg.MetadataValue.md(md_table(tb, 40)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="entities_balance",
                passed=bad.is_empty(),
                metadata={"entities_out_of_balance": dg.MetadataValue.md(md_table(bad))},
            )
        ],
    )


@dg.asset(
    key=PROFITABILITY,
    deps=[ACCRUALS],
    group_name="analytics",
    kinds={"duckdb", "sql"},
    owners=["team:finance-data"],
)
def project_profitability(pipeline: PipelineResource) -> dg.MaterializeResult:
    """`analytics.project_profitability`: revenue, cost and margin per entity, project and month,
    in the entity's functional currency and the group reporting currency."""
    df = _query(
        pipeline,
        "SELECT entity, project, month, functional_currency, revenue, cost, margin, margin_reporting "
        "FROM analytics.project_profitability ORDER BY margin_reporting DESC",
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "top_projects_by_margin": dg.MetadataValue.md(md_table(df, 15)),
        }
    )


@dg.asset(
    key=QUARANTINE_SUMMARY,
    deps=[ACCRUALS],
    group_name="analytics",
    kinds={"duckdb", "sql"},
    owners=["team:finance-data"],
)
def quarantine_summary(pipeline: PipelineResource) -> dg.MaterializeResult:
    """`analytics.quarantine_summary`: quarantined rows per entity, layer and reason."""
    df = _query(pipeline, "SELECT * FROM analytics.quarantine_summary")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "quarantined_rows": int(df["rows"].sum()) if df.height else 0,
            "summary": dg.MetadataValue.md(md_table(df, 40)),
        }
    )


ANALYTICS_ASSETS = [trial_balance, project_profitability, quarantine_summary]
