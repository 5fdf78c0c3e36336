"""The three daily staging assets. Each reads its upstream partitions from the lake, calls one pure
core function, writes accepted rows and quarantined rows, and reports the row accounting.

They share one shape, so one builder makes all three: what differs is the core function, the
tables and the contract.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandera.polars as pa
import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import FxBillable, RatedBillable, WorkItem
from pm_accounting_pipeline.core.approvals import apply_approvals, feed_folders, read_feed
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.fx import enrich
from pm_accounting_pipeline.core.fx_providers import provider_for
from pm_accounting_pipeline.core.rating import rate
from pm_accounting_pipeline.defs.metadata import (
    accounting_check,
    contract_check,
    md_table,
    reason_counts,
    totals_by_currency,
)
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, context_partitions
from pm_accounting_pipeline.defs.raw.assets import RAW_TIME_ENTRIES
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources.assets import HARVEST_API_RAW

WORK_ITEMS = dg.AssetKey(["staging", "work_items"])
RATED_BILLABLES = dg.AssetKey(["staging", "rated_billables"])
FX_BILLABLES = dg.AssetKey(["staging", "fx_billables"])


def _clean(
    frame: pl.DataFrame, mapping: MappingDocument, data_dir: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    res = clean_and_map(frame, mapping)
    # Approvals: the source rows' approver and time, overridden by landing/<entity>/approvals/*.csv.
    entities = sorted(set(frame["entity"].unique().to_list()) | set(mapping.entity_ids))
    feed = read_feed(feed_folders(Path(data_dir) / "landing", entities))
    return apply_approvals(res.work_items, frame, feed, mapping), res.quarantine


def _rate(frame: pl.DataFrame, mapping: MappingDocument, data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    res = rate(frame, mapping)
    return res.rated, res.quarantine


def _fx(frame: pl.DataFrame, mapping: MappingDocument, data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    # The configured providers (manual overrides, client contract rates, ECB feed or the offline
    # ECB history) behind one interface; with no exchange_rates section this is the offline ECB.
    res = enrich(frame, mapping, provider_for(mapping, data_dir))
    return res.fx, res.quarantine


@dataclass(frozen=True)
class Layer:
    key: dg.AssetKey
    upstream: dg.AssetKey
    upstream_table: str
    upstream_writer: str | None
    table: str
    writer: str
    model: type[pa.DataFrameModel]
    transform: Callable[[pl.DataFrame, MappingDocument, Path], tuple[pl.DataFrame, pl.DataFrame]]
    description: str
    amount: tuple[str, str] | None  # (currency column, minor column) for totals in the UI


LAYERS = (
    Layer(
        WORK_ITEMS,
        RAW_TIME_ENTRIES,
        "raw.time_entries",
        None,
        "staging.work_items",
        "clean",
        WorkItem,
        _clean,
        "Canonical work items: the mapping document applied (client -> customer, project -> customer "
        "job, task -> invoice item and revenue account), names normalised, near-duplicate client names "
        "merged through aliases, billable vs internal decided and unapproved work held (kept, not "
        "billed). Rows that cannot be used go to staging.quarantine with a reason.",
        None,
    ),
    Layer(
        RATED_BILLABLES,
        WORK_ITEMS,
        "staging.work_items",
        "clean",
        "staging.rated_billables",
        "rate",
        RatedBillable,
        _rate,
        "Rated billables: hours rounded by the configured rule, bill and cost rates resolved from the "
        "source row or the most specific effective-dated rate card, amounts rounded to the currency's "
        "minor unit, the entity's default tax rate attached.",
        ("currency", "amount_minor"),
    ),
    Layer(
        FX_BILLABLES,
        RATED_BILLABLES,
        "staging.rated_billables",
        "rate",
        "staging.fx_billables",
        "fx",
        FxBillable,
        _fx,
        "FX-enriched billables: every amount in transaction, entity functional and group reporting "
        "currency using ECB reference rates (last published rate on weekends and holidays), with "
        "rate, direction, rate date, rate type and source stored on every row.",
        ("functional_currency", "amount_functional_minor"),
    ),
)


def _build(layer: Layer, parts: PipelinePartitions) -> dg.AssetsDefinition:
    @dg.asset(
        key=layer.key,
        deps=[layer.upstream, *([HARVEST_API_RAW] if layer.upstream == RAW_TIME_ENTRIES else [])],
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="staging",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        description=layer.description,
        check_specs=[
            dg.AssetCheckSpec("contract", asset=layer.key, blocking=True),
            dg.AssetCheckSpec(
                "rows_accounted_for",
                asset=layer.key,
                blocking=True,
                description="rows in = rows accepted + rows quarantined, per partition",
            ),
        ],
        tags={"layer": layer.key.path[-1]},
    )
    def _asset(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        upstream = lake.read(layer.upstream_table, wanted, writer=layer.upstream_writer)
        accepted, quarantine = layer.transform(upstream, mapping, pipeline.paths.data_dir)
        counts = lake.write_partitions(layer.table, accepted, wanted, layer.writer, pl.col("work_date"))
        lake.write_partitions(
            "staging.quarantine", quarantine, wanted, layer.writer, pl.col("partition_date")
        )
        metadata: dict[str, object] = {
            "dagster/row_count": accepted.height,
            "rows_in": upstream.height,
            "rows_accepted": accepted.height,
            "rows_quarantined": quarantine.height,
            "quarantined_by_reason": reason_counts(quarantine),
            "partitions": len(counts),
            "rule_version": mapping.rule_version,
        }
        if "billing_status" in accepted.columns:
            status = accepted.group_by("billing_status").len().sort("billing_status")
            metadata["rows_by_billing_status"] = {s: int(n) for s, n in status.iter_rows()}
        if layer.amount is not None:
            metadata["billable_totals"] = totals_by_currency(accepted, *layer.amount)
        if not quarantine.is_empty():
            metadata["quarantine_preview"] = dg.MetadataValue.md(
                md_table(
                    quarantine.select(
                        "entity", "partition_date", "reason", "detail", "source_file", "source_row"
                    )
                )
            )
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                contract_check("contract", layer.model, accepted),
                accounting_check(
                    "rows_accounted_for", upstream, accepted, quarantine, wanted, "work_date", "work_date"
                ),
            ],
        )

    return _asset


def build_staging_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    return [_build(layer, parts) for layer in LAYERS]
