"""The raw time-entry asset: landing files of an entity, routed to (work date, entity) partitions."""

from datetime import date

import dagster as dg
import polars as pl

from pm_accounting_pipeline.contracts.layers import RawTimeEntry, empty_frame
from pm_accounting_pipeline.defs.metadata import contract_check, md_table, reason_counts
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, context_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.extract.landing import list_landing_files
from pm_accounting_pipeline.extract.parse import is_expense_file, parse_file
from pm_accounting_pipeline.extract.raw import may_contribute, unique_files

RAW_TIME_ENTRIES = dg.AssetKey(["raw", "time_entries"])


def build_raw_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=RAW_TIME_ENTRIES,
        partitions_def=parts.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        kinds={"polars", "parquet"},
        owners=["team:finance-data"],
        check_specs=[dg.AssetCheckSpec("contract", asset=RAW_TIME_ENTRIES, blocking=True)],
        tags={"layer": "raw"},
    )
    def raw_time_entries(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Time entries exactly as the source exported them (Harvest CSV, Toggl CSV, canonical
        CSV/JSON dropped in `data/landing/<entity>/`), every source column kept in `source_record`,
        with source system, file name, content hash, row number and extraction time. Rows whose
        date cannot be read are quarantined per file (they cannot be routed to a day)."""
        mapping = pipeline.mapping()
        lake = pipeline.lake()
        wanted = context_partitions(context)
        frames, quarantines, files_read, files_seen = [empty_frame("raw.time_entries")], [], 0, 0
        for entity in sorted({e for e, _ in wanted}):
            days = {date.fromisoformat(k) for e, k in wanted if e == entity}
            files = unique_files(list_landing_files(pipeline.paths.data_dir, entity))
            files_seen += len(files)
            day_list = pl.Series(sorted(days), dtype=pl.Date)
            for lf in files:
                if is_expense_file(lf.path, lf.format):
                    continue  # expense exports feed raw.expenses (defs/expenses)
                if not may_contribute(lf, days):
                    continue  # the sidecar's work-date span proves it has nothing for these days
                files_read += 1
                parsed = parse_file(
                    lf.path,
                    entity,
                    mapping,
                    extracted_at=lf.extracted_at,
                    source_file=lf.path.name,
                    fmt=lf.format,
                )
                frames.append(parsed.rows.filter(pl.col("work_date").is_in(day_list.implode())))
                # What cannot be routed to a day (unreadable file, bad date) belongs to the file:
                # one quarantine file per landed file, rewritten whenever the file is read.
                key = f"file-{lf.file_hash[:16]}"
                lake.write_partitions(
                    "staging.quarantine", parsed.quarantine, [(entity, key)], "raw", pl.lit(key)
                )
                quarantines.append(parsed.quarantine)
        raw_all = pl.concat(frames)
        quarantine_all = pl.concat(quarantines)
        counts = lake.write_partitions("raw.time_entries", raw_all, wanted, "raw", pl.col("work_date"))
        context.log.info(
            "raw: %d rows into %d partitions from %d files", raw_all.height, len(counts), files_seen
        )
        by_system = raw_all.group_by("source_system").len().sort("source_system")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": raw_all.height,
                "partitions": len(counts),
                "landing_files": files_seen,
                "landing_files_read": files_read,
                "rows_by_source_system": dg.MetadataValue.md(md_table(by_system)),
                "unroutable_rows_by_reason": reason_counts(quarantine_all),
            },
            check_results=[contract_check("contract", RawTimeEntry, raw_all)],
        )

    return [raw_time_entries]
