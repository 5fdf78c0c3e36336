"""The code location: every asset, check, job, sensor, schedule and resource of the pipeline.

Partitions follow the mapping document's entities, so the document is read when the code
location loads (`PM_ACCOUNTING_CONFIG`, else `<data>/mapping.yaml`, else the packaged example).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.analytics.assets import ANALYTICS_ASSETS
from pm_accounting_pipeline.defs.automation import build_landing_sensor, build_schedules
from pm_accounting_pipeline.defs.jobs import analytics_job, daily_job, invoice_job
from pm_accounting_pipeline.defs.ledger.assets import build_ledger_assets
from pm_accounting_pipeline.defs.ledger.checks import build_ledger_checks
from pm_accounting_pipeline.defs.partitions import build_partitions
from pm_accounting_pipeline.defs.raw.assets import build_raw_assets
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.staging.assets import build_staging_assets
from pm_accounting_pipeline.lib import settings


def build_definitions(data_dir: Path | None = None, config_path: Path | None = None) -> dg.Definitions:
    data_dir = (data_dir or settings.data_dir()).resolve()
    config_path = (config_path or settings.config_path()).resolve()
    mapping = load_mapping(config_path)
    parts = build_partitions(mapping)
    assets = [
        *build_raw_assets(parts),
        *build_staging_assets(parts),
        *build_ledger_assets(parts),
        *ANALYTICS_ASSETS,
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=build_ledger_checks(),
        jobs=[daily_job, invoice_job, analytics_job],
        sensors=[build_landing_sensor(parts, daily_job, invoice_job)],
        schedules=build_schedules(parts, daily_job, invoice_job, analytics_job),
        resources={"pipeline": PipelineResource(data_dir=str(data_dir), config_path=str(config_path))},
    )


defs = build_definitions()
