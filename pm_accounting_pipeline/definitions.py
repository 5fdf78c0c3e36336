"""The code location: every asset, check, job, sensor, schedule and resource of the pipeline.

Partitions follow the mapping document's entities, so the document is read when the code
location loads (`PM_ACCOUNTING_CONFIG`, else `<data>/mapping.yaml`, else the packaged example).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.analytics.assets import ANALYTICS_ASSETS
from pm_accounting_pipeline.defs.automation import build_landing_sensor, build_schedules
from pm_accounting_pipeline.defs.billing import BILLING_DOCUMENTS, build_billing_defs
from pm_accounting_pipeline.defs.expenses import EXPENSE_ACCRUALS, build_expense_assets
from pm_accounting_pipeline.defs.group import build_group_defs
from pm_accounting_pipeline.defs.jobs import analytics_job, daily_job, harvest_api_job, invoice_job
from pm_accounting_pipeline.defs.ledger.assets import ACCRUALS, INVOICES, build_ledger_assets
from pm_accounting_pipeline.defs.ledger.checks import build_ledger_checks
from pm_accounting_pipeline.defs.partitions import build_partitions
from pm_accounting_pipeline.defs.posting import build_posting_defs
from pm_accounting_pipeline.defs.raw.assets import build_raw_assets
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources import (
    HarvestApiResource,
    build_harvest_api_assets,
    build_harvest_sensor,
    harvest_accounts_from_mapping,
)
from pm_accounting_pipeline.defs.staging.assets import build_staging_assets
from pm_accounting_pipeline.lib import settings
from pm_accounting_pipeline.sources.harvest_api.client import HARVEST_BASE_URL


def build_definitions(data_dir: Path | None = None, config_path: Path | None = None) -> dg.Definitions:
    data_dir = (data_dir or settings.data_dir()).resolve()
    config_path = (config_path or settings.config_path()).resolve()
    mapping = load_mapping(config_path)
    parts = build_partitions(mapping)
    assets = [
        *build_raw_assets(parts),
        *build_harvest_api_assets(parts.daily),
        *build_staging_assets(parts),
        *build_ledger_assets(parts),
        *build_expense_assets(parts),
        *ANALYTICS_ASSETS,
    ]
    core = dg.Definitions(
        assets=assets,
        asset_checks=build_ledger_checks(),
        jobs=[daily_job, harvest_api_job, invoice_job, analytics_job],
        sensors=[
            build_landing_sensor(parts, daily_job, invoice_job),
            build_harvest_sensor(harvest_api_job, parts.daily, minimum_interval_seconds=60),
        ],
        schedules=build_schedules(parts, daily_job, invoice_job, analytics_job),
        resources={
            "pipeline": PipelineResource(data_dir=str(data_dir), config_path=str(config_path)),
            # The token comes from the environment only; the URL may point at the local sandbox.
            "harvest": HarvestApiResource(
                token=dg.EnvVar("HARVEST_TOKEN"),
                accounts=harvest_accounts_from_mapping(mapping),
                data_dir=str(data_dir),
                base_url=os.environ.get("HARVEST_BASE_URL", HARVEST_BASE_URL),
            ),
        },
    )
    posting = build_posting_defs(
        [ACCRUALS, EXPENSE_ACCRUALS, INVOICES, BILLING_DOCUMENTS], data_dir=data_dir, config_path=config_path
    )
    return dg.Definitions.merge(core, posting, build_billing_defs(parts), build_group_defs(parts))


defs = build_definitions()
