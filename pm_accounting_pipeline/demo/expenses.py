"""Demo expenses: one Harvest expense CSV export per entity, derived from the demo time entries
(same people, projects and days), with billable and non-billable expenses, mileage, receipts, and a
few malformed rows whose quarantine reason is known in advance (`EXPENSE_MALFORMED`).

Every value is a pure function of the time entry it comes from, so a seed always gives the same
files. Dates and numbers follow the entity's Harvest account settings like the time exports
(date format, decimal separator, thousands separators, `British Pound - GBP` currency names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pm_accounting_pipeline.demo.generator import (
    _STRFTIME,
    DemoConfig,
    DemoDataset,
    _fmt_number,
    _harvest_settings,
    _render,
    _to_scale,
    _write_atomic,
)

EXPENSE_COLUMNS = [
    "Date", "Client", "Project", "Project Code", "Category", "Notes", "Amount", "Units", "Billable?",
    "Invoiced?", "Approved?", "First Name", "Last Name", "Employee?", "Currency", "Receipt URL",
]  # fmt: skip
# (category, billable by default, markup override in percent or None, unit price in cents or None)
CATEGORIES: tuple[tuple[str, bool, str | None, int | None], ...] = (
    ("Travel", True, None, None),
    ("Mileage", True, "0", 58),
    ("Meals", False, None, None),
    ("Lodging", True, None, None),
    ("Software", True, "5", None),
)
DEFAULT_MARKUP_PCT = "10"
TARGET_PER_ENTITY = 200
# Malformed rows appended to each entity's export: (kind, expected quarantine reason).
EXPENSE_MALFORMED: tuple[tuple[str, str], ...] = (
    ("bad_amount", "bad_amount"),
    ("unknown_client", "unknown_client"),
    ("unknown_category", "unknown_category"),
)


def mapping_section() -> dict[str, Any]:
    """The demo mapping document's `expenses` section."""
    return {
        "markup_pct": DEFAULT_MARKUP_PCT,
        "require_known_category": True,
        "categories": [
            {
                "name": name,
                "item": f"{name} expenses",
                **({"markup_pct": markup} if markup is not None else {}),
                **({} if billable else {"billable_by_default": False}),
            }
            for name, billable, markup, _ in CATEGORIES
        ],
        "cost_account": "5100",
        "reimbursement_account": "2150",
    }


def _expense_rows(ds: DemoDataset, te: pl.DataFrame) -> pl.DataFrame:
    """One expense per picked time entry, as Harvest expense-export columns plus helper columns."""
    rendered = _render(ds, te)
    n_cat = len(CATEGORIES)
    k = pl.col("id").rank("ordinal").cast(pl.Int64)  # 1, 2, ... in id order
    cat_idx = (k * 3) % n_cat
    names = [c[0] for c in CATEGORIES]
    unit_price = {i: c[3] for i, c in enumerate(CATEGORIES) if c[3] is not None}
    mileage = cat_idx.is_in(list(unit_price))
    units = (k * 7) % 90 + 10
    # Cents of the expense in a two-decimal currency (x100 in a currency without minor unit, so
    # yen amounts look like yen), then scaled to the client currency's unit.
    fixed_cents = (k * 3739) % 40_000 + 500
    cents = pl.when(mileage).then(units * 58).otherwise(fixed_cents)
    cents = pl.when(pl.col("_digits") == 0).then(cents * 100).otherwise(cents)
    return rendered.select(
        "entity",
        "spent_date",
        "id",
        "Client",
        "Project",
        "Project Code",
        cat_idx.replace_strict(dict(enumerate(names)), return_dtype=pl.String).alias("Category"),
        pl.concat_str(
            [
                cat_idx.replace_strict(dict(enumerate(names)), return_dtype=pl.String),
                pl.lit(" for "),
                "Project",
            ]
        ).alias("Notes"),
        _to_scale(cents.cast(pl.Int64), 2, pl.col("_digits")).alias("_amount_m"),
        pl.col("_digits"),
        pl.when(mileage).then(units.cast(pl.String)).alias("Units"),
        pl.when((k % 5 == 0) | (cat_idx == 2))  # every fifth expense, and meals, are not billable
        .then(pl.lit("No"))
        .otherwise(pl.lit("Yes"))
        .alias("Billable?"),
        pl.lit("No").alias("Invoiced?"),
        "Approved?",
        "First Name",
        "Last Name",
        "Employee?",
        "Currency",
        pl.when(k % 2 == 0)
        .then(pl.format("https://receipts.northwind.example/{}.pdf", pl.col("id")))
        .alias("Receipt URL"),
    )


def _localise(rows: pl.DataFrame, date_format: str, dec: str) -> pl.DataFrame:
    fmt = _STRFTIME[date_format]
    thousands = "," if dec == "." else "."
    return rows.with_columns(
        pl.col("spent_date").dt.strftime(fmt).alias("Date"),
        _fmt_number(pl.col("_amount_m"), pl.col("_digits"), dec, thousands).alias("Amount"),
    )


def _malformed(good: pl.DataFrame) -> pl.DataFrame:
    """Copies of the first rows, each broken one way (EXPENSE_MALFORMED, in order)."""
    base = good.head(len(EXPENSE_MALFORMED)).with_row_index("_k")
    return base.with_columns(
        pl.when(pl.col("_k") == 0).then(pl.lit("12,3x")).otherwise(pl.col("Amount")).alias("Amount"),
        pl.when(pl.col("_k") == 1)
        .then(pl.lit("Initech Unknown Ltd"))
        .otherwise(pl.col("Client"))
        .alias("Client"),
        pl.when(pl.col("_k") == 2)
        .then(pl.lit("Entertainment"))
        .otherwise(pl.col("Category"))
        .alias("Category"),
        pl.format("Malformed demo row {}", pl.col("_k")).alias("Notes"),
    ).drop("_k")


def write_expense_csvs(ds: DemoDataset, landing_dir: Path, config: DemoConfig) -> list[Path]:
    """Write one Harvest expense CSV export per entity into landing_dir/<entity>/; returns the paths."""
    settings = _harvest_settings(ds.mapping_yaml)
    paths = []
    for entity in ds.entities["entity"].to_list():
        te = ds.time_entries.filter(pl.col("entity") == entity)
        if te.height == 0:
            continue
        step = max(1, te.height // TARGET_PER_ENTITY)
        picked = te.filter(pl.col("id") % step == 0).sort("id").head(TARGET_PER_ENTITY)
        date_format, dec = settings.get(entity, ("auto", "."))
        good = _localise(_expense_rows(ds, picked), date_format, dec).select(EXPENSE_COLUMNS)
        out = pl.concat([good, _malformed(good)])
        folder = Path(landing_dir) / entity
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"harvest_expenses_{entity}_{config.start:%Y-%m}_{config.end:%Y-%m}.csv"
        _write_atomic(out, path)
        paths.append(path)
    return paths
