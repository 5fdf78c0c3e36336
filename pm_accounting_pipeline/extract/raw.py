"""Read an entity's landed files into raw.time_entries rows and their quarantine rows.

The raw asset calls this per partition (work dates x entity). Files with identical bytes are read
once whatever they are called; a sidecar's work-date span lets files that cannot contribute to the
requested dates be skipped without parsing. The rows carry the entity they were landed for
(`landing_entity`, `entity_rule` pm_account); `core.entities.assign_entities` gives them the legal
entity they belong to, as the raw asset does.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.extract.landing import LandingFile
from pm_accounting_pipeline.extract.parse import QUARANTINE_TABLE, RAW_TABLE, is_expense_file, parse_file


def may_contribute(lf: LandingFile, dates: set[date] | None) -> bool:
    """False only when the sidecar proves the file has nothing for `dates`: no work date in its span
    and not its extraction date (file-level and bad-date quarantine rows land on that date)."""
    if dates is None or lf.work_date_min is None or lf.work_date_max is None:
        return True
    if lf.extracted_at.date() in dates:
        return True
    return any(lf.work_date_min <= d <= lf.work_date_max for d in dates)


def unique_files(files: list[LandingFile]) -> list[LandingFile]:
    """One file per content hash, in path order: a properly landed copy (with its sidecar) is
    preferred over the same bytes copied in by hand, else the first by path."""
    chosen: dict[str, LandingFile] = {}
    for lf in sorted(files, key=lambda f: (f.format is None, str(f.path))):
        chosen.setdefault(lf.file_hash, lf)
    return sorted(chosen.values(), key=lambda f: str(f.path))


def extract_raw(
    files: list[LandingFile], entity: str, mapping: MappingDocument, dates: set[date] | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All raw rows of `files` (only those whose work date is in `dates`, when given) and the
    quarantine rows of these files (those whose partition date is in `dates`, when given)."""
    rows: list[pl.DataFrame] = [empty_frame(RAW_TABLE)]
    quarantine: list[pl.DataFrame] = [empty_frame(QUARANTINE_TABLE)]
    wanted = pl.lit(pl.Series(sorted(dates), dtype=pl.Date)).implode() if dates is not None else None
    for lf in unique_files(files):
        if not may_contribute(lf, dates) or is_expense_file(lf.path, lf.format):
            continue
        parsed = parse_file(
            lf.path, entity, mapping, extracted_at=lf.extracted_at, source_file=lf.path.name, fmt=lf.format
        )
        r, q = parsed.rows, parsed.quarantine
        if wanted is not None:
            r = r.filter(pl.col("work_date").is_in(wanted))
            q = q.filter(pl.col("partition_date").is_in(wanted))
        rows.append(r)
        quarantine.append(q)
    return pl.concat(rows, how="vertical"), pl.concat(quarantine, how="vertical")
