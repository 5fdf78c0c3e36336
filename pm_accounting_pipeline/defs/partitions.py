"""Partitions: day x legal entity for the daily layers, month x legal entity for billing.

The entity dimension is static (the entities of the mapping document), which also avoids the
dynamic-partition pitfalls of multi-partitioned assets (STACK.md, pitfall 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from pm_accounting_pipeline.config.schema import MappingDocument


@dataclass(frozen=True)
class PipelinePartitions:
    daily: dg.MultiPartitionsDefinition
    monthly: dg.MultiPartitionsDefinition
    entities: tuple[str, ...]


def build_partitions(mapping: MappingDocument) -> PipelinePartitions:
    entities = tuple(mapping.entity_ids)
    start = mapping.start_date
    entity_dim = dg.StaticPartitionsDefinition(list(entities))
    daily = dg.MultiPartitionsDefinition(
        {"date": dg.DailyPartitionsDefinition(start_date=start.isoformat()), "entity": entity_dim}
    )
    monthly = dg.MultiPartitionsDefinition(
        {
            "date": dg.MonthlyPartitionsDefinition(start_date=start.replace(day=1).isoformat()),
            "entity": entity_dim,
        }
    )
    return PipelinePartitions(daily=daily, monthly=monthly, entities=entities)


def daily_to_monthly() -> dg.MultiPartitionMapping:
    """A (month, entity) partition depends on every (day, entity) partition of that month."""
    return dg.MultiPartitionMapping(
        {
            "date": dg.DimensionPartitionMapping("date", dg.TimeWindowPartitionMapping()),
            "entity": dg.DimensionPartitionMapping("entity", dg.IdentityPartitionMapping()),
        }
    )


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """A multi-partition key 'date|entity' as (entity, date-key)."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["entity"], dims["date"]
    date_part, _, entity = str(key).partition("|")
    return entity, date_part


def daily_key(day: date, entity: str) -> str:
    return f"{day.isoformat()}|{entity}"


def monthly_key(month_start: date, entity: str) -> str:
    return f"{month_start.replace(day=1).isoformat()}|{entity}"


def context_partitions(context: dg.AssetExecutionContext) -> list[tuple[str, str]]:
    """The (entity, date-key) pairs this run materialises (one, or many in a single-run backfill)."""
    return sorted(split_key(k) for k in context.partition_keys)


def range_tags(start_key: str, end_key: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start_key,
        "dagster/asset_partition_range_end": end_key,
    }
