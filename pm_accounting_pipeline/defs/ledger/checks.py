"""Checks on the whole ledger that run after it changes: the great-expectations suite, whose
rendered results (Data Docs) land in `<data>/reports/gx/index.html`."""

import dagster as dg

from pm_accounting_pipeline.defs.ledger.assets import ACCRUALS
from pm_accounting_pipeline.defs.metadata import md_table
from pm_accounting_pipeline.defs.resources import PipelineResource


@dg.asset_check(
    asset=ACCRUALS,
    name="great_expectations_ledger_suite",
    description="The great-expectations 'ledger_suite' over all journal lines and invoices; results "
    "rendered to <data>/reports/gx/index.html.",
    blocking=False,
)
def great_expectations_ledger_suite(pipeline: PipelineResource) -> dg.AssetCheckResult:
    import polars as pl

    from pm_accounting_pipeline.defs.ledger.gx_suite import validate_ledger

    lake = pipeline.lake()
    lines = lake.read("ledger.journal_lines")
    invoices = lake.read("ledger.invoices")
    mapping = pipeline.mapping()
    currencies = {c.currency for c in mapping.clients} | {e.functional_currency for e in mapping.entities}
    outcome = validate_ledger(lines, invoices, pipeline.paths.reports / "gx", currencies=currencies)
    failed = pl.DataFrame(outcome.failed) if outcome.failed else pl.DataFrame()
    return dg.AssetCheckResult(
        passed=outcome.success,
        metadata={
            "expectations_evaluated": outcome.evaluated,
            "failed_expectations": dg.MetadataValue.md(md_table(failed.cast(pl.String))),
            "data_docs": dg.MetadataValue.path(str(outcome.docs_index)) if outcome.docs_index else "",
            "lines_validated": lines.height,
        },
    )


def build_ledger_checks() -> list[dg.AssetChecksDefinition]:
    return [great_expectations_ledger_suite]
