"""Source connectors in Dagster: the Harvest API resource, its polling sensor and its raw asset."""

from pm_accounting_pipeline.defs.sources.assets import HARVEST_API_RAW, build_harvest_api_assets
from pm_accounting_pipeline.defs.sources.resources import HarvestApiResource, harvest_accounts_from_mapping
from pm_accounting_pipeline.defs.sources.sensors import build_harvest_sensor

__all__ = [
    "HARVEST_API_RAW",
    "HarvestApiResource",
    "build_harvest_api_assets",
    "build_harvest_sensor",
    "harvest_accounts_from_mapping",
]
