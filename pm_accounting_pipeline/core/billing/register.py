"""The billed-items register and the changes against it: what billing has charged per source entry,
compared with what the source says now.

An item is one billable time entry, keyed by (source_system, source_id, customer_ref, currency):
the source's own id (not the work item id, which changes with the rule version) and the customer
and currency it is billed to, so an entry moved to another client is a removal from the first and
a late charge to the second.

Against the register (the sum of every billed and corrected amount per item), the current rows say:
- `billed`: new work of the period being billed, never billed before;
- `late`: work of an earlier, already billed period that was never billed (approved late, added
  late, or moved there);
- `edited`: the billed hours changed: the customer is charged (or credited) the difference at the
  rate frozen on the original line, never at today's rate;
- `removed` / `moved`: the entry is gone (deleted, no longer billable or approved), or now belongs
  to another customer or currency: everything charged for it is credited;
- `rate_frozen`: the hours are unchanged but the accrual was re-rated (a rate card changed after
  invoicing): nothing changes for the customer; the ledger keeps the invoiced amount.
Every change also carries the difference in the amount relieved from unbilled receivables
(`relief_*`), so unbilled receivables for billed work always net to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from pm_accounting_pipeline.core.rounding import MoneyRounding, decimal_to_scaled_expr, rescale_expr

ITEM_KEY = ["source_system", "source_id", "customer_ref", "currency"]
ITEM_SCHEMA = pl.Schema(
    {
        "work_item_id": pl.String,
        "source_system": pl.String,
        "source_id": pl.String,
        "source_file": pl.String,
        "source_row": pl.Int64,
        "work_date": pl.Date,
        "customer_ref": pl.String,
        "client_name": pl.String,
        "currency": pl.String,
        "customer_job": pl.String,
        "project_code": pl.String,
        "project_name": pl.String,
        "task_name": pl.String,
        "item": pl.String,
        "revenue_account": pl.String,
        "person_name": pl.String,
        "approved_by": pl.String,
        "approved_at": pl.Datetime("us", "UTC"),
        "billed_e4": pl.Int64,
        "rate_e4": pl.Int64,
        "exact_e8": pl.Int64,
        "charge_minor": pl.Int64,
        "relief_minor": pl.Int64,
        "relief_functional_minor": pl.Int64,
        "relief_reporting_minor": pl.Int64,
        "change": pl.String,
        "orig_document_id": pl.String,
    }
)


def items_from_fx(fx: pl.DataFrame) -> pl.DataFrame:
    """Billable FX-enriched rows as items (ITEM_SCHEMA): charge and relief are the accrued amount."""
    rows = fx.filter((pl.col("billing_status") == "billable") & (pl.col("amount_minor") > 0))
    billed = decimal_to_scaled_expr(pl.col("billed_hours"), 4).cast(pl.Int64)
    rate = decimal_to_scaled_expr(pl.col("bill_rate"), 4).cast(pl.Int64)
    out = rows.with_columns(
        billed_e4=billed,
        rate_e4=rate,
        exact_e8=(billed * rate).cast(pl.Int64),
        charge_minor=pl.col("amount_minor"),
        relief_minor=pl.col("amount_minor"),
        relief_functional_minor=pl.col("amount_functional_minor"),
        relief_reporting_minor=pl.col("amount_reporting_minor"),
        change=pl.lit("billed"),
        orig_document_id=pl.lit(None, dtype=pl.String),
    )
    return out.select(ITEM_SCHEMA.names()).cast(dict(ITEM_SCHEMA))


@dataclass(frozen=True)
class Changes:
    """`new`: items of the billed period never billed (change "billed"). `changes`: items whose
    billing must change, with the differences in ITEM_SCHEMA's amount columns (signed) and
    `orig_document_id` / `orig_rate_e4` of the line that first billed them (null for late items)."""

    new: pl.DataFrame
    changes: pl.DataFrame


def detect_changes(
    register: pl.DataFrame,
    current: pl.DataFrame,
    period_start: date,
    period_end: date,
    digits: dict[str, int],
    mode: MoneyRounding,
) -> Changes:
    """Compare the register (`ledger.billing_line_sources` rows) with current items (ITEM_SCHEMA)
    of the billed periods and the period [period_start, period_end] being billed; see the module
    docstring."""
    cur = current.select(ITEM_SCHEMA.names())
    if register.height == 0:
        # Nothing billed yet: everything of the period is new, nothing else can have changed.
        new = cur.filter(pl.col("work_date").is_between(period_start, period_end))
        return Changes(new=new, changes=pl.DataFrame(schema=ITEM_SCHEMA))
    reg = _register_totals(register)
    in_register = cur.join(reg.select(ITEM_KEY), on=ITEM_KEY, how="semi")
    fresh = cur.join(reg.select(ITEM_KEY), on=ITEM_KEY, how="anti")
    # Unbilled work of a later period waits for that period's run.
    new = fresh.filter(pl.col("work_date").is_between(period_start, period_end))
    late = fresh.filter(pl.col("work_date") < period_start).with_columns(change=pl.lit("late"))

    both = reg.join(in_register, on=ITEM_KEY, how="inner", suffix="_cur")
    tx_digits = pl.col("currency").replace_strict(digits, return_dtype=pl.Int32)
    target_charge = rescale_expr(
        pl.col("billed_e4_cur").cast(pl.Int128) * pl.col("rate_e4").cast(pl.Int128), 8, tx_digits, mode
    )
    edited = both.with_columns(
        d_billed=pl.col("billed_e4_cur") - pl.col("billed_e4"),
        d_charge=target_charge - pl.col("charge_minor"),
        d_relief=pl.col("relief_minor_cur") - pl.col("relief_minor"),
        d_relief_fn=pl.col("relief_functional_minor_cur") - pl.col("relief_functional_minor"),
        d_relief_rp=pl.col("relief_reporting_minor_cur") - pl.col("relief_reporting_minor"),
    )
    customer_facing = (pl.col("d_billed") != 0) | (pl.col("d_charge") != 0)
    any_relief = (pl.col("d_relief") != 0) | (pl.col("d_relief_fn") != 0) | (pl.col("d_relief_rp") != 0)
    edited = edited.filter(customer_facing | any_relief).with_columns(
        change=pl.when(customer_facing).then(pl.lit("edited")).otherwise(pl.lit("rate_frozen"))
    )
    # Descriptive columns come from the current row; the rate stays the one billed first.
    edited = edited.select(
        *[
            pl.col(f"{c}_cur").alias(c) if f"{c}_cur" in edited.columns else pl.col(c)
            for c in ITEM_SCHEMA.names()
            if c
            not in (
                "billed_e4",
                "charge_minor",
                "relief_minor",
                "relief_functional_minor",
                "relief_reporting_minor",
                "change",
                "rate_e4",
                "exact_e8",
                "orig_document_id",
            )
        ],
        pl.col("d_billed").alias("billed_e4"),
        pl.col("rate_e4"),
        (pl.col("d_billed") * pl.col("rate_e4")).alias("exact_e8"),
        pl.col("d_charge").alias("charge_minor"),
        pl.col("d_relief").alias("relief_minor"),
        pl.col("d_relief_fn").alias("relief_functional_minor"),
        pl.col("d_relief_rp").alias("relief_reporting_minor"),
        "change",
        "orig_document_id",
    )

    gone = reg.join(cur.select(ITEM_KEY), on=ITEM_KEY, how="anti")
    gone = gone.filter(
        (pl.col("billed_e4") != 0)
        | (pl.col("charge_minor") != 0)
        | (pl.col("relief_minor") != 0)
        | (pl.col("relief_functional_minor") != 0)
        | (pl.col("relief_reporting_minor") != 0)
    )
    elsewhere = cur.select("source_system", "source_id").unique().with_columns(_elsewhere=pl.lit(True))
    gone = gone.join(elsewhere, on=["source_system", "source_id"], how="left")
    gone = gone.with_columns(
        change=pl.when(pl.col("_elsewhere").fill_null(False))
        .then(pl.lit("moved"))
        .otherwise(pl.lit("removed")),
        billed_e4=-pl.col("billed_e4"),
        exact_e8=-pl.col("billed_e4") * pl.col("rate_e4"),
        charge_minor=-pl.col("charge_minor"),
        relief_minor=-pl.col("relief_minor"),
        relief_functional_minor=-pl.col("relief_functional_minor"),
        relief_reporting_minor=-pl.col("relief_reporting_minor"),
    )
    changes = pl.concat(
        [
            late.select(ITEM_SCHEMA.names()).cast(dict(ITEM_SCHEMA)),
            edited.select(ITEM_SCHEMA.names()).cast(dict(ITEM_SCHEMA)),
            gone.select(ITEM_SCHEMA.names()).cast(dict(ITEM_SCHEMA)),
        ],
        how="vertical",
    ).sort(["customer_ref", "currency", "source_system", "source_id"])
    return Changes(new=new, changes=changes)


def _register_totals(register: pl.DataFrame) -> pl.DataFrame:
    """Per item: the sums billed so far, and the rate, document and descriptive columns of the
    line that first billed it."""
    reg = register.with_columns(
        billed_e4=decimal_to_scaled_expr(pl.col("billed_hours"), 4).cast(pl.Int64),
        rate_e4=decimal_to_scaled_expr(pl.col("bill_rate"), 4).cast(pl.Int64),
        _first=pl.col("change").is_in(["billed", "late"]),
    )
    firsts = (
        reg.filter(pl.col("_first"))
        .sort("issued_in", "document_id")
        .unique(ITEM_KEY, keep="first", maintain_order=True)
        .select(
            *ITEM_KEY,
            "work_item_id",
            "source_file",
            "source_row",
            "work_date",
            "customer_job",
            "project_code",
            "task_name",
            "person_name",
            "approved_by",
            "approved_at",
            "rate_e4",
            pl.col("document_id").alias("orig_document_id"),
        )
    )
    sums = reg.group_by(ITEM_KEY).agg(
        pl.col("billed_e4").sum(),
        pl.col("charge_minor").sum(),
        pl.col("relief_minor").sum(),
        pl.col("relief_functional_minor").sum(),
        pl.col("relief_reporting_minor").sum(),
    )
    out = sums.join(firsts, on=ITEM_KEY, how="inner")
    return out.with_columns(
        client_name=pl.lit(None, dtype=pl.String),
        project_name=pl.lit(None, dtype=pl.String),
        item=pl.lit(None, dtype=pl.String),
        revenue_account=pl.lit(None, dtype=pl.String),
        exact_e8=pl.lit(0, dtype=pl.Int64),
        change=pl.lit(None, dtype=pl.String),
    )
