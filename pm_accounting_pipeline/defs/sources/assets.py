"""The Harvest API raw asset: one (date, entity) partition of time entries, expenses and tombstones.

It reads the synced store (the sensor keeps it current) rather than calling the API per partition,
so a backfill over many days costs no API budget; an account that was never synced is synced first.
"""

import os
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from pm_accounting_pipeline.contracts.layers import RawTimeEntry, empty_frame
from pm_accounting_pipeline.core.entities import rows_by_rule
from pm_accounting_pipeline.defs.metadata import contract_check, md_table, reason_counts
from pm_accounting_pipeline.defs.partitions import split_key
from pm_accounting_pipeline.defs.raw.assets import route
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources.resources import HarvestApiResource
from pm_accounting_pipeline.sources.harvest_api.sync import TOMBSTONE_SCHEMA, load_state, read_partition
from pm_accounting_pipeline.sources.harvest_api.to_raw import EXPENSES_RAW_SCHEMA

HARVEST_API_RAW = dg.AssetKey(["raw", "harvest_api_time_entries"])
WRITER = "harvest_api"
TOMBSTONES_DIR = ("raw", "harvest_api_tombstones")


def _write(root: Path, parts: tuple[str, str], entity: str, key: str, frame: pl.DataFrame) -> None:
    target = root.joinpath(*parts, entity, f"{key}.{WRITER}.parquet")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp, compression="zstd")
    os.replace(tmp, target)


def build_harvest_api_assets(partitions_def: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=HARVEST_API_RAW,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=[
            dg.AssetCheckSpec("contract", asset=HARVEST_API_RAW, blocking=True),
            dg.AssetCheckSpec(
                "rows_accounted_for",
                asset=HARVEST_API_RAW,
                blocking=True,
                description="per account entity and day: time entries read = written + rows of "
                "other partitions + quarantined at entity assignment",
            ),
            dg.AssetCheckSpec(
                "expenses_accounted_for",
                asset=HARVEST_API_RAW,
                blocking=True,
                description="per account entity and day: expenses read = written + rows of other "
                "partitions + quarantined at entity assignment",
            ),
        ],
        tags={"layer": "raw", "source": "harvest_api"},
    )
    def harvest_api_time_entries(
        context: dg.AssetExecutionContext, pipeline: PipelineResource, harvest: HarvestApiResource
    ) -> dg.MaterializeResult:
        """Time entries and expenses pulled from the Harvest API v2, as the latest version of each
        source id dated in the partition, every field kept in `source_record`. Written to the lake
        as `raw.time_entries` (writer `harvest_api`) beside the file-based sources; bad objects go to
        quarantine with a reason; entries deleted in Harvest appear as tombstones with the time they
        were found missing, so the ledger can reverse what was already booked. Time entries are
        assigned to their legal entity like the file-based ones (`entity_assignment` in the
        mapping document; `entity_rule` and `landing_entity` say why), and so are expenses;
        tombstones stay with the entity of their Harvest account."""
        specs = harvest.account_specs()
        config = harvest.sync_config()
        if any(not (config.account_dir(s.account_id) / "state.json").exists() for s in specs):
            _, errors = harvest.sync()
            if errors:
                raise dg.Failure(f"Harvest sync failed: {errors}")
        wanted = sorted(split_key(k) for k in context.partition_keys)
        lake = pipeline.lake()
        raws, quarantines, expenses, tombstones = [], [], [], []
        # A (day, B) partition holds B's time entries from every account (core/entities.py): an
        # account of A may log work billed by B. Each (day, account entity) is read once; what it
        # holds for partitions outside this run is written by their own run.
        wanted_set = set(wanted)
        sources = sorted({(e, k) for k in {k for _, k in wanted} for e in {s.entity for s in specs}})
        for entity, key in sorted(wanted_set | set(sources)):
            day = date.fromisoformat(key)
            te, te_tombs = read_partition(config, specs, "time_entries", day, entity)
            ex, ex_tombs = read_partition(config, specs, "expenses", day, entity)
            raws.append(te.rows)
            expenses.append(ex.rows)
            if (entity, key) not in wanted_set:
                continue
            quarantines += [te.quarantine, ex.quarantine]
            tombs = pl.concat([te_tombs, ex_tombs])
            tombstones.append(tombs)
            _write(lake.root, TOMBSTONES_DIR, entity, key, tombs)
        read = pl.concat(raws) if raws else empty_frame("raw.time_entries")
        mapping = pipeline.mapping()
        raw_all, held, routing, n_elsewhere = route(read, mapping, wanted)
        # Expenses are assigned the same way (an expense of A's account for B's client is B's).
        read_ex = pl.concat(expenses) if expenses else pl.DataFrame(schema=EXPENSES_RAW_SCHEMA)
        expenses_all, held_ex, routing_ex, n_ex_elsewhere = route(
            read_ex, mapping, wanted, day="spent_date", check_name="expenses_accounted_for"
        )
        quarantine_all = pl.concat([*quarantines, held, held_ex])
        tombstones_all = pl.concat(tombstones) if tombstones else pl.DataFrame(schema=TOMBSTONE_SCHEMA)
        lake.write_partitions("raw.time_entries", raw_all, wanted, WRITER, pl.col("work_date"))
        # Expenses go to the one canonical raw expense table, beside Harvest's expense CSV export.
        lake.write_partitions("raw.expenses", expenses_all, wanted, WRITER, pl.col("spent_date"))
        lake.write_partitions("staging.quarantine", quarantine_all, wanted, WRITER, pl.col("partition_date"))
        context.log.info(
            "harvest_api: %d time entries, %d expenses, %d quarantined, %d tombstones in %d partition(s)",
            raw_all.height,
            expenses_all.height,
            quarantine_all.height,
            tombstones_all.height,
            len(wanted),
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": raw_all.height,
                "partitions": len(wanted),
                "rows_by_entity_rule": rows_by_rule(raw_all),
                "rows_of_other_partitions": n_elsewhere,
                "expenses": expenses_all.height,
                "expenses_by_entity_rule": rows_by_rule(expenses_all),
                "expenses_of_other_partitions": n_ex_elsewhere,
                "quarantined_by_reason": reason_counts(quarantine_all),
                "tombstones": tombstones_all.height,
                "tombstones_preview": dg.MetadataValue.md(
                    md_table(
                        tombstones_all.select(
                            "resource", "entity", "source_id", "spent_date", "tombstoned_at"
                        )
                    )
                ),
                "accounts": dg.MetadataValue.json(
                    {s.account_id: load_state(config, s.account_id).get("high_water_mark", {}) for s in specs}
                ),
            },
            check_results=[contract_check("contract", RawTimeEntry, raw_all), routing, routing_ex],
        )

    return [harvest_api_time_entries]
