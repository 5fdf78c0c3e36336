"""The group layer in Dagster: payments and realised FX, intercompany recharges, IAS 21
revaluation, allocations, capex and consolidation eliminations, per (month x entity).

`build_group_defs(parts)` is merged into the code location's definitions (which provide the
`pipeline` resource); `group_definitions(data_dir, config_path)` is a self-contained variant with
the resource, for the CLI and tests.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.group.assets import GROUP_ASSET_KEYS, build_group_assets
from pm_accounting_pipeline.defs.group.jobs import GROUP_JOBS, allocation_rerun_job, group_month_end_job
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, build_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource

__all__ = [
    "GROUP_ASSET_KEYS",
    "allocation_rerun_job",
    "build_group_defs",
    "group_definitions",
    "group_month_end_job",
]


def build_group_defs(parts: PipelinePartitions) -> dg.Definitions:
    return dg.Definitions(assets=build_group_assets(parts), jobs=GROUP_JOBS)


def group_definitions(data_dir: Path, config_path: Path) -> dg.Definitions:
    mapping = load_mapping(config_path)
    return dg.Definitions.merge(
        build_group_defs(build_partitions(mapping)),
        dg.Definitions(
            resources={"pipeline": PipelineResource(data_dir=str(data_dir), config_path=str(config_path))}
        ),
    )
