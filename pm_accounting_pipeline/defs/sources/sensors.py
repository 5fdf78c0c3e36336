"""The Harvest API sensor: sync on an interval, request exactly the (date, entity) partitions changed.

Each tick runs an incremental sync (the API budget it spends is a handful of requests per account
when little changed) and then reads the store's change log for batches after the cursor, so a
tick that crashes after syncing loses nothing: the next tick still sees those batches. A shorter
interval means fresher partitions and more of the account's 100-requests-per-15-s budget spent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date

import dagster as dg
import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.entities import assign_entities
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources.resources import HarvestApiResource
from pm_accounting_pipeline.sources.harvest_api.sync import (
    AccountSpec,
    SyncConfig,
    changes_since,
    read_partition,
)


def _dimensions(partitions_def: dg.MultiPartitionsDefinition) -> tuple[dg.PartitionsDefinition, set[str]]:
    dims = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
    if set(dims) != {"date", "entity"}:
        raise ValueError(f"expected a date x entity partitions definition, got dimensions {sorted(dims)}")
    return dims["date"], set(dims["entity"].get_partition_keys())


def assigned_pairs(
    config: SyncConfig, specs: Sequence[AccountSpec], pairs: set[tuple[str, str]], mapping: MappingDocument
) -> set[tuple[str, str]]:
    """The (date key, entity) partitions the time entries and expenses of the (date key, account
    entity) partitions `pairs` are assigned to (and, for rows no entity can be given, the landing
    entity's partition that quarantines them)."""
    out: set[tuple[str, str]] = set()
    for resource, day in (("time_entries", "work_date"), ("expenses", "spent_date")):
        frames = [
            read_partition(config, specs, resource, date.fromisoformat(k), e)[0].rows
            for k, e in sorted(pairs)
        ]
        if not frames:
            continue
        assigned = assign_entities(pl.concat(frames), mapping, date_column=day)
        for frame, col in ((assigned.rows, day), (assigned.quarantine, "partition_date")):
            out |= {(d.isoformat(), e) for e, d in frame.select("entity", col).unique().iter_rows()}
    return out


def build_harvest_sensor(
    job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    partitions_def: dg.MultiPartitionsDefinition,
    minimum_interval_seconds: int = 300,
    name: str = "harvest_api_sensor",
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that syncs the Harvest accounts and requests runs of `job` for changed partitions.

    Its cursor is `{"seq": {account_id: last batch requested}}`; run keys are
    `harvest_api:<partition key>:<digest of the batch range>`, so a replayed tick is de-duplicated.
    """
    date_dim, entities = _dimensions(partitions_def)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Polls the Harvest API (incremental sync with deletion detection) and requests "
        "exactly the (date, entity) partitions whose time entries or expenses changed: the account's "
        "and those the changed rows are assigned to (entity_assignment in the mapping document).",
    )
    def harvest_api_sensor(
        context: dg.SensorEvaluationContext, harvest: HarvestApiResource, pipeline: PipelineResource
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {"seq": {}}
        seen: dict[str, int] = {k: int(v) for k, v in cursor.get("seq", {}).items()}
        _, errors = harvest.sync()
        for account_id, message in sorted(errors.items()):
            context.log.warning("Harvest account %s not synced: %s", account_id, message)
        config = harvest.sync_config()
        latest: dict[str, int] = {}
        pairs: set[tuple[str, str]] = set()
        for spec in harvest.account_specs():
            last, changed = changes_since(config, spec.account_id, seen.get(spec.account_id, 0))
            latest[spec.account_id] = last
            pairs |= {(d.isoformat(), e) for d, e in changed}
        # The changed rows' own entities (core/entities.py): an account of A may hold B's work.
        pairs |= assigned_pairs(config, harvest.account_specs(), pairs, pipeline.mapping())
        valid = sorted((d, e) for d, e in pairs if e in entities and date_dim.has_partition_key(d))
        skipped = sorted(pairs - set(valid))
        if skipped:
            context.log.info(
                "%d changed partition(s) outside the partitions definition: %s", len(skipped), skipped[:10]
            )
        tag = hashlib.sha256(json.dumps({"from": seen, "to": latest}, sort_keys=True).encode()).hexdigest()[
            :16
        ]
        requests = []
        for day, entity in valid:
            key = dg.MultiPartitionKey({"date": day, "entity": entity})
            requests.append(dg.RunRequest(run_key=f"harvest_api:{key}:{tag}", partition_key=key))
        new_cursor = json.dumps({"seq": {**seen, **latest}}, sort_keys=True)
        if not requests:
            reason = "; ".join(f"{a}: {m}" for a, m in sorted(errors.items())) or "no Harvest changes"
            return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
        context.log.info("Harvest changes -> %d partition run request(s)", len(requests))
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return harvest_api_sensor
