"""The daily chain of the pure core in one call: clean -> rate -> FX -> accruals, checked.

A convenience for tests, benchmarks and scripts; the orchestrated pipeline calls the same steps
one asset at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.approvals import apply_approvals
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.fx import RateProvider, enrich
from pm_accounting_pipeline.core.ledger import LedgerBatch, build_accruals
from pm_accounting_pipeline.core.rating import rate


class RowsLostError(AssertionError):
    """Rows in != rows out + rows quarantined: a bug, never acceptable."""


@dataclass(frozen=True)
class DailyResult:
    work_items: pl.DataFrame
    rated: pl.DataFrame
    fx: pl.DataFrame
    ledger: LedgerBatch
    quarantine: pl.DataFrame

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined rows per reason code (for run metadata)."""
        counts = self.quarantine.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))


def run_daily(
    raw: pl.DataFrame,
    mapping: MappingDocument,
    provider: RateProvider,
    approvals: pl.DataFrame | None = None,
) -> DailyResult:
    """Run the core over raw time entries (with the approval feed rows, `core.approvals`, if any);
    raise if any row is lost or any entry is unbalanced."""
    cleaned = clean_and_map(raw, mapping)
    work_items = apply_approvals(cleaned.work_items, raw, approvals, mapping)
    rated = rate(work_items, mapping)
    fx = enrich(rated.rated, mapping, provider)
    ledger = build_accruals(fx.fx, mapping)
    quarantine = pl.concat([cleaned.quarantine, rated.quarantine, fx.quarantine], how="vertical")
    if raw.height != fx.fx.height + quarantine.height:
        raise RowsLostError(
            f"{raw.height} raw rows but {fx.fx.height} FX-enriched + {quarantine.height} quarantined"
        )
    assert_balanced(ledger.lines)
    return DailyResult(
        work_items=work_items, rated=rated.rated, fx=fx.fx, ledger=ledger, quarantine=quarantine
    )
