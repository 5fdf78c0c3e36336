"""The raw time-entry asset: landing files of every entity, each row assigned to its legal entity
(core/entities.py) and routed to its (work date, entity) partition.

A partition (d, B) depends on the landing files of all entities that may hold rows dated d: a
row landed in A's folder for a client billed by B belongs to B, and it is written once, to
(d, B). A run writes only the partitions it materialises; rows of the files it reads that belong
to other partitions are counted (`rows_of_other_partitions`) and written by the run of their own
partition.
"""

from collections.abc import Sequence
from datetime import date

import dagster as dg
import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import RawTimeEntry, empty_frame
from pm_accounting_pipeline.core.entities import assign_entities, rerouted, rows_by_rule
from pm_accounting_pipeline.defs.metadata import contract_check, md_table, reason_counts
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, context_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.extract.landing import list_landing_files
from pm_accounting_pipeline.extract.parse import is_expense_file, parse_file
from pm_accounting_pipeline.extract.raw import may_contribute, unique_files
from pm_accounting_pipeline.lib.lake import Lake

RAW_TIME_ENTRIES = dg.AssetKey(["raw", "time_entries"])
ASSIGNMENT_WRITER = "raw"  # staging.quarantine files of rows no entity could be given


def in_partitions(entity: str, day: str, wanted: list[tuple[str, str]]) -> pl.Expr:
    """Rows whose (entity column, date column) pair is one of the `wanted` (entity, date-key) pairs."""
    keys = pl.Series([f"{e}|{k}" for e, k in wanted], dtype=pl.String)
    return pl.concat_str([pl.col(entity), pl.col(day).cast(pl.String)], separator="|").is_in(keys.implode())


def routing_check(
    read: pl.DataFrame, outcomes: dict[str, pl.DataFrame], check_name: str = "rows_accounted_for"
) -> dg.AssetCheckResult:
    """Per landing entity and day of the rows read, rows read = the sum of the `outcomes` (frames
    of (landing_entity, day) rows: written here, belonging to other partitions, quarantined)."""

    def per(df: pl.DataFrame, name: str) -> pl.DataFrame:
        return df.group_by("landing_entity", "day").agg(pl.len().alias(name))

    frame = per(read, "rows_read")
    for name, df in outcomes.items():
        frame = frame.join(per(df, name), on=["landing_entity", "day"], how="full", coalesce=True)
    frame = frame.fill_null(0).sort("landing_entity", "day")
    total = pl.sum_horizontal(*outcomes)
    bad = frame.filter(pl.col("rows_read") != total)
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=bad.is_empty(),
        metadata={
            "rows_read": int(frame["rows_read"].sum()),
            **{name: int(frame[name].sum()) for name in outcomes},
            "out_of_balance": dg.MetadataValue.md(md_table(bad)),
        },
    )


def route(
    read: pl.DataFrame,
    mapping: MappingDocument,
    wanted: list[tuple[str, str]],
    day: str = "work_date",
    check_name: str = "rows_accounted_for",
) -> tuple[pl.DataFrame, pl.DataFrame, dg.AssetCheckResult, int]:
    """Assign `read` (rows with their landing entity in `entity`) to entities and keep what belongs
    to the `wanted` partitions: (rows to write, assignment quarantine to write, the accounting
    check, number of rows that belong to partitions of other runs)."""
    assigned = assign_entities(read, mapping, date_column=day)
    here = in_partitions("entity", day, wanted)
    held_here = in_partitions("entity", "partition_date", wanted)
    rows, elsewhere = assigned.rows.filter(here), assigned.rows.filter(~here)
    held, held_elsewhere = assigned.quarantine.filter(held_here), assigned.quarantine.filter(~held_here)

    def keyed(df: pl.DataFrame, entity: str, date_col: str) -> pl.DataFrame:
        return df.select(pl.col(entity).alias("landing_entity"), pl.col(date_col).alias("day"))

    check = routing_check(
        keyed(read, "entity", day),
        {
            "written": keyed(rows, "landing_entity", day),
            "other_partitions": pl.concat(
                [keyed(elsewhere, "landing_entity", day), keyed(held_elsewhere, "entity", "partition_date")]
            ),
            "quarantined": keyed(held, "entity", "partition_date"),
        },
        check_name,
    )
    return rows, held, check, elsewhere.height + held_elsewhere.height


def read_landing(
    pipeline: PipelineResource, lake: Lake, entities: Sequence[str], days: set[date], expenses: bool
) -> tuple[pl.DataFrame, list[pl.DataFrame], int, int]:
    """The rows dated in `days` of every entity's landing files, time exports or expense exports
    (`expenses`), each row with its landing entity in `entity`: (rows, per-file quarantine frames,
    files read, files landed). One file per content hash: the same bytes landed twice are read
    once. What cannot be routed to a day (unreadable file, bad date) belongs to the file: one
    quarantine file per landed file (writer `raw`), rewritten whenever the file is read."""
    mapping = pipeline.mapping()
    table, day = ("raw.expenses", "spent_date") if expenses else ("raw.time_entries", "work_date")
    day_list = pl.Series(sorted(days), dtype=pl.Date).implode()
    frames, quarantines, files_read = [empty_frame(table)], [], 0
    files = unique_files([f for e in entities for f in list_landing_files(pipeline.paths.data_dir, e)])
    for lf in files:
        if not may_contribute(lf, days) or is_expense_file(lf.path, lf.format) != expenses:
            continue  # nothing for these days (sidecar's date span), or the other kind of file
        landing_entity = lf.path.parent.name
        files_read += 1
        parsed = parse_file(
            lf.path,
            landing_entity,
            mapping,
            extracted_at=lf.extracted_at,
            source_file=lf.path.name,
            fmt=lf.format,
        )
        frames.append(parsed.rows.filter(pl.col(day).is_in(day_list)))
        key = f"file-{lf.file_hash[:16]}"
        lake.write_partitions(
            "staging.quarantine", parsed.quarantine, [(landing_entity, key)], "raw", pl.lit(key)
        )
        quarantines.append(parsed.quarantine)
    return pl.concat(frames), quarantines, files_read, len(files)


def write_held(lake: Lake, held: pl.DataFrame, wanted: list[tuple[str, str]], writer: str) -> None:
    """Write the entity-assignment quarantine `held` (staging.quarantine rows, writer `writer`):
    only where there are rows or an earlier run left some to replace."""
    held_keys = {(e, d.isoformat()) for e, d in held.select("entity", "partition_date").unique().iter_rows()}
    stale = {(e, k) for e, k in wanted if lake.path("staging.quarantine", e, k, writer).exists()}
    lake.write_partitions("staging.quarantine", held, held_keys | stale, writer, pl.col("partition_date"))


def landing_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The blocking checks of a raw asset read from landing files and routed to entities: its
    contract, and every row read accounted for (written, of other partitions, or quarantined)."""
    return [
        dg.AssetCheckSpec("contract", asset=key, blocking=True),
        dg.AssetCheckSpec(
            "rows_accounted_for",
            asset=key,
            blocking=True,
            description="per landing entity and day: rows read = rows written + rows of other "
            "partitions + rows quarantined at entity assignment",
        ),
    ]


def build_raw_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=RAW_TIME_ENTRIES,
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=landing_check_specs(RAW_TIME_ENTRIES),
        tags={"layer": "raw"},
    )
    def raw_time_entries(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Time entries exactly as the source exported them (Harvest CSV, Toggl CSV, canonical
        CSV/JSON dropped in `data/landing/<entity>/`), every source column kept in `source_record`,
        with source system, file name, content hash, row number and extraction time. Each row is
        assigned to its legal entity by the mapping document's `entity_assignment` rules (project,
        client, person's employer, PM account / landing folder) and written to (work date, that
        entity); `entity_rule` and `landing_entity` record why. A partition therefore reads the
        landing files of every entity for its days. Rows whose date cannot be read are quarantined
        per file; rows no entity can be given are quarantined under their landing entity."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        days = {date.fromisoformat(k) for _, k in wanted}
        read, quarantines, files_read, n_files = read_landing(
            pipeline, lake, parts.entities, days, expenses=False
        )
        raw_all, held, routing, n_elsewhere = route(read, mapping, wanted)
        counts = lake.write_partitions("raw.time_entries", raw_all, wanted, "raw", pl.col("work_date"))
        write_held(lake, held, wanted, ASSIGNMENT_WRITER)
        context.log.info(
            "raw: %d rows into %d partitions from %d of %d files (%d rows belong to other partitions)",
            raw_all.height,
            len(counts),
            files_read,
            n_files,
            n_elsewhere,
        )
        quarantine_all = pl.concat([*quarantines, held]) if quarantines else held
        by_system = raw_all.group_by("source_system").len().sort("source_system")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": raw_all.height,
                "partitions": len(counts),
                "landing_files": n_files,
                "landing_files_read": files_read,
                "rows_by_source_system": dg.MetadataValue.md(md_table(by_system)),
                "rows_by_entity_rule": rows_by_rule(raw_all),
                "rows_rerouted": dg.MetadataValue.md(md_table(rerouted(raw_all))),
                "rows_of_other_partitions": n_elsewhere,
                "unroutable_rows_by_reason": reason_counts(quarantine_all),
            },
            check_results=[
                contract_check("contract", RawTimeEntry, raw_all),
                routing,
            ],
        )

    return [raw_time_entries]
