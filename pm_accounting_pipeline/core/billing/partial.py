"""Partially billable work: the share of each entry's rounded hours that is billed.

`billable_percentages` of the mapping document name a task, a person, or a person on a task, with
a percentage and optional validity dates. The most specific entry valid on the work date wins:
person and task, then person, then task; among equals the latest `valid_from`. Persons match by
the source's person id or by normalised name, tasks by normalised name (as rate cards do).
Billed hours = rounded hours x percentage, rounded half-up to 10^-4 h; cost stays on all hours.
"""

from __future__ import annotations

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.clean import normalise_name, normalise_text
from pm_accounting_pipeline.core.frames import lookup_distinct
from pm_accounting_pipeline.core.rounding import MoneyRounding, div_round_expr

FULL = 10_000  # percent at 10^-2: 10000 = 100%
_KEY = ["task_name", "person_id", "person_name", "work_date"]


def with_billable_share(
    df: pl.DataFrame, mapping: MappingDocument, hours_e4: str = "_billed_e4"
) -> pl.DataFrame:
    """Add `_billable_pct` (percent at 10^-2) and `_bill_hours_e4` (the billed share of `hours_e4`)."""
    if not mapping.billable_percentages:
        return df.with_columns(_billable_pct=pl.lit(FULL, dtype=pl.Int64), _bill_hours_e4=pl.col(hours_e4))
    df = lookup_distinct(df, _KEY, lambda d: _percent(d, mapping))
    share = div_round_expr(
        pl.col(hours_e4).cast(pl.Int64) * pl.col("_billable_pct"), pl.lit(FULL), MoneyRounding.HALF_UP
    )
    return df.with_columns(_bill_hours_e4=share)


def _percent(distinct: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    entries = pl.DataFrame(
        [
            (
                i,
                normalise_text(b.task) if b.task else None,
                b.person,
                normalise_text(b.person) if b.person else None,
                int(b.percent.scaleb(2)),
                b.valid_from,
                b.valid_to,
                0 if (b.task and b.person) else 1 if b.person else 2,
            )
            for i, b in enumerate(mapping.billable_percentages)
        ],
        schema={
            "_i": pl.Int64,
            "_task": pl.String,
            "_person": pl.String,
            "_person_key": pl.String,
            "_pct": pl.Int64,
            "_from": pl.Date,
            "_to": pl.Date,
            "_level": pl.Int64,
        },
        orient="row",
    )
    rows = distinct.with_row_index("_r").with_columns(
        _task_key=normalise_name(pl.col("task_name")), _name_key=normalise_name(pl.col("person_name"))
    )
    cand = rows.join(entries, how="cross").filter(
        (pl.col("_task").is_null() | (pl.col("_task") == pl.col("_task_key")))
        & (
            pl.col("_person").is_null()
            | (pl.col("_person") == pl.col("person_id"))
            | (pl.col("_person_key") == pl.col("_name_key"))
        )
        & (pl.col("_from").is_null() | (pl.col("_from") <= pl.col("work_date")))
        & (pl.col("_to").is_null() | (pl.col("_to") >= pl.col("work_date")))
    )
    best = (
        cand.sort(["_r", "_level", "_from", "_i"], descending=[False, False, True, False], nulls_last=True)
        .unique("_r", keep="first")
        .select("_r", pl.col("_pct").alias("_billable_pct"))
    )
    out = rows.join(best, on="_r", how="left").sort("_r")
    return out.with_columns(_billable_pct=pl.col("_billable_pct").fill_null(FULL)).drop(
        "_r", "_task_key", "_name_key"
    )
