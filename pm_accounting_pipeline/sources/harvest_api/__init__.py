"""Harvest API v2: the HTTP client, incremental sync with deletion detection, and the raw-layer mapping."""

from pm_accounting_pipeline.sources.harvest_api.client import (
    BreakerPolicy,
    HarvestCircuitOpenError,
    HarvestClient,
    HarvestClientConfig,
    HarvestError,
    HarvestPermanentError,
    HarvestRetriesExhaustedError,
    HarvestTransientError,
    RetryPolicy,
)

__all__ = [
    "BreakerPolicy",
    "HarvestCircuitOpenError",
    "HarvestClient",
    "HarvestClientConfig",
    "HarvestError",
    "HarvestPermanentError",
    "HarvestRetriesExhaustedError",
    "HarvestTransientError",
    "RetryPolicy",
]
