"""Jobs: the daily layers, monthly billing, and the analytics refresh."""

from __future__ import annotations

import dagster as dg

from pm_accounting_pipeline.defs.analytics.assets import ANALYTICS_ASSETS
from pm_accounting_pipeline.defs.expenses import EXPENSE_ACCRUALS, RAW_EXPENSES, STAGED_EXPENSES
from pm_accounting_pipeline.defs.ledger.assets import ACCRUALS, INVOICES
from pm_accounting_pipeline.defs.raw.assets import RAW_TIME_ENTRIES
from pm_accounting_pipeline.defs.sources.assets import HARVEST_API_RAW
from pm_accounting_pipeline.defs.staging.assets import FX_BILLABLES, RATED_BILLABLES, WORK_ITEMS

DAILY_ASSETS = [RAW_TIME_ENTRIES, WORK_ITEMS, RATED_BILLABLES, FX_BILLABLES, ACCRUALS]
# Expenses: raw from landed expense exports, staged, accrued (the Harvest API asset writes raw too).
EXPENSE_ASSETS = [RAW_EXPENSES, STAGED_EXPENSES, EXPENSE_ACCRUALS]

daily_job = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS, *EXPENSE_ASSETS),
    description="Raw extracts to daily accrual entries for (day x entity) partitions.",
    tags={"dagster/max_retries": "1"},
)
harvest_api_job = dg.define_asset_job(
    "harvest_api_pipeline",
    selection=dg.AssetSelection.assets(HARVEST_API_RAW, *DAILY_ASSETS[1:], *EXPENSE_ASSETS[1:]),
    description="Harvest API changes to daily accrual entries for the (day x entity) partitions they touch.",
)
invoice_job = dg.define_asset_job(
    "monthly_billing",
    selection=dg.AssetSelection.assets(INVOICES),
    description="Invoices and their journal entries for (month x entity) billing periods.",
)
analytics_job = dg.define_asset_job(
    "analytics_refresh",
    selection=dg.AssetSelection.assets(*[a.key for a in ANALYTICS_ASSETS]),
    description="Re-evaluate the analytics views and the trial-balance check.",
)
