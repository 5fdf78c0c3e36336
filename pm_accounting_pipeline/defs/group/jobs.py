"""Group jobs: the month-end close of the group assets, and the on-demand allocation re-run."""

from __future__ import annotations

import dagster as dg

from pm_accounting_pipeline.defs.group.assets import ALLOCATIONS, CAPEX, GROUP_ASSET_KEYS

group_month_end_job = dg.define_asset_job(
    "group_month_end",
    selection=dg.AssetSelection.assets(*GROUP_ASSET_KEYS),
    description="Payments and realised FX, intercompany recharges, IAS 21 revaluation, allocations, "
    "capex and eliminations for (month x entity) partitions.",
)
allocation_rerun_job = dg.define_asset_job(
    "allocation_rerun",
    selection=dg.AssetSelection.assets(ALLOCATIONS, CAPEX),
    description="Re-run shared-cost allocations (and capex/depreciation after them) for chosen (month x "
    "entity) partitions: unchanged rules and inputs change nothing; otherwise the active allocation "
    "is reversed and the new one posted, both linked.",
)
GROUP_JOBS = [group_month_end_job, allocation_rerun_job]
