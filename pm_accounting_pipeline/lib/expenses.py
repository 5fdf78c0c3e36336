"""What invoicing and billing read from the lake: time billables and billable expenses together."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from pm_accounting_pipeline.core.billing.expenses import with_expenses
from pm_accounting_pipeline.lib.lake import Lake


def read_billables(lake: Lake, partitions: Iterable[tuple[str, str]]) -> pl.DataFrame:
    """staging.fx_billables (writer fx) and staging.expenses (writer expenses) of the (entity, day)
    partitions, as one frame in fx_billables shape."""
    parts = list(partitions)
    fx = lake.read("staging.fx_billables", parts, writer="fx")
    return with_expenses(fx, lake.read("staging.expenses", parts, writer="expenses"))
