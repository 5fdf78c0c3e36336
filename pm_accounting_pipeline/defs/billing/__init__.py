"""Dagster wiring of billing: the client-matching decision log, billing documents, their checks and
jobs. `build_billing_defs(parts)` returns a `Definitions` to merge into the code location."""

from __future__ import annotations

import dagster as dg

from pm_accounting_pipeline.defs.billing.assets import (
    BILLING_DOCUMENTS,
    CLIENT_MATCHES,
    bill_on_demand_job,
    bill_through_job,
    build_billing_assets,
)
from pm_accounting_pipeline.defs.partitions import PipelinePartitions

__all__ = [
    "BILLING_DOCUMENTS",
    "CLIENT_MATCHES",
    "bill_on_demand_job",
    "bill_through_job",
    "billing_job",
    "build_billing_defs",
    "client_matching_job",
]

billing_job = dg.define_asset_job(
    "billing_documents",
    selection=dg.AssetSelection.assets(BILLING_DOCUMENTS),
    description="Billing documents, settlements and their journal for (month x entity) partitions, "
    "months in order (run after monthly_billing).",
)
client_matching_job = dg.define_asset_job(
    "client_matching",
    selection=dg.AssetSelection.assets(CLIENT_MATCHES),
    description="The client-matching decision log and review list for (day x entity) partitions.",
)


def build_billing_defs(parts: PipelinePartitions) -> dg.Definitions:
    """Billing assets (their checks inline) and jobs; needs the `pipeline` resource of the location."""
    return dg.Definitions(
        assets=build_billing_assets(parts),
        jobs=[billing_job, client_matching_job, bill_on_demand_job, bill_through_job],
    )
