"""Billing input files: manual credit memos and refunds dropped as CSV into the landing folder.

`data/landing/<entity>/credits/*.csv`: credit_id, document_number, date, amount, reason
(amount empty = credit everything still open to credit on the invoice; otherwise the amount as
priced on the invoice: excluding tax with exclusive pricing, including it with inclusive pricing).
`data/landing/<entity>/refunds/*.csv`: refund_id, document_number, date, amount, currency, reference
(money paid back on a document with a credit balance, e.g. a credit memo on a paid invoice).
`data/landing/<entity>/billing_requests/*.csv`: request_id, customer_ref, date, requested_by, note
(bill an on-demand client's unbilled work dated up to `date`, on an invoice issued on `date`;
written by `pm-accounting billing run --client REF --through DATE`).

Dates are ISO (YYYY-MM-DD), amounts use '.' as the decimal separator without thousands separators.
Rows that cannot be used become `ledger.billing_rejections` rows with a reason code; the checks
that need the documents (unknown number, currency, over-credit) happen in the billing run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

REQUIRED = {
    "credits": ("credit_id", "document_number", "date", "reason"),
    "refunds": ("refund_id", "document_number", "date", "amount", "currency"),
    "billing_requests": ("request_id", "customer_ref", "date"),
}
COLUMNS = {
    "credits": ("credit_id", "document_number", "date", "amount", "reason"),
    "refunds": ("refund_id", "document_number", "date", "amount", "currency", "reference"),
    "billing_requests": ("request_id", "customer_ref", "date", "requested_by", "note"),
}
ID_COLUMN = {"credits": "credit_id", "refunds": "refund_id", "billing_requests": "request_id"}
_AMOUNT = r"^-?\d+(\.\d+)?$"


@dataclass(frozen=True)
class Requests:
    """Parsed rows (typed, with source_file/source_row and the verbatim record) and rejected rows."""

    rows: pl.DataFrame
    rejected: pl.DataFrame


def rejection_frame() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "input": pl.String,
            "source_file": pl.String,
            "source_row": pl.Int64,
            "reason": pl.String,
            "detail": pl.String,
            "record": pl.String,
            "date": pl.Date,
        }
    )


def read_requests(folder: Path, kind: str) -> Requests:
    """Read every `*.csv` in `folder` (sorted by name) as `kind` ("credits", "refunds" or "billing_requests")."""
    cols = COLUMNS[kind]
    frames = []
    rejected = [rejection_frame()]
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
        raw = raw.rename({c: c.strip().lower() for c in raw.columns})
        missing = [c for c in REQUIRED[kind] if c not in raw.columns]
        record = pl.struct(pl.all()).struct.json_encode()
        raw = raw.with_columns(
            _record=record,
            source_file=pl.lit(path.name),
            source_row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
            **{c: pl.lit(None, dtype=pl.String) for c in cols if c not in raw.columns},
        )
        if missing:
            rejected.append(
                raw.select(
                    pl.lit(kind).alias("input"),
                    "source_file",
                    "source_row",
                    pl.lit("missing_required").alias("reason"),
                    pl.lit(f"the file has no column(s) {missing}; expected {list(cols)}").alias("detail"),
                    pl.col("_record").alias("record"),
                    pl.lit(None, dtype=pl.Date).alias("date"),
                )
            )
            continue
        frames.append(raw.select(*cols, "source_file", "source_row", "_record"))
    if not frames:
        return Requests(rows=empty_rows(kind), rejected=pl.concat(rejected, how="vertical"))
    df = pl.concat(frames, how="vertical")
    return _validate(kind, df, rejected)


def empty_rows(kind: str) -> pl.DataFrame:
    """The typed request frame of `kind` with no rows."""
    schema: dict[str, pl.DataType] = {c: pl.String() for c in COLUMNS[kind] if c != "date"}
    schema.update(date=pl.Date(), source_file=pl.String(), source_row=pl.Int64(), record=pl.String())
    return pl.DataFrame(schema=schema)


def _typed(kind: str, df: pl.DataFrame) -> pl.DataFrame:
    trimmed = {c: pl.col(c).str.strip_chars() for c in COLUMNS[kind]}
    amount = pl.col("amount") if "amount" in COLUMNS[kind] else pl.lit(None, dtype=pl.String)
    return df.with_columns(**trimmed).with_columns(
        date=pl.col("date").str.to_date("%Y-%m-%d", strict=False),
        _amount_ok=amount.is_null() | (amount == "") | amount.str.contains(_AMOUNT),
    )


def _validate(kind: str, df: pl.DataFrame, rejected: list[pl.DataFrame]) -> Requests:
    blank = [pl.col(c).str.strip_chars().fill_null("") == "" for c in REQUIRED[kind]]
    df = df.with_columns(pl.any_horizontal(blank).alias("_missing"), pl.col("date").alias("_raw_date"))
    typed = _typed(kind, df)
    missing = pl.col("_missing")
    missing_names = pl.concat_str(
        [pl.when(pl.col(c).fill_null("") == "").then(pl.lit(c)) for c in REQUIRED[kind] if c != "date"]
        + [pl.when(pl.col("_raw_date").fill_null("").str.strip_chars() == "").then(pl.lit("date"))],
        separator=", ",
        ignore_nulls=True,
    )
    id_col = ID_COLUMN[kind]
    content = pl.struct([pl.col(c) for c in COLUMNS[kind]]).hash(seed=7)
    typed = typed.with_columns(_content=content)
    typed = typed.with_columns(
        _variants=pl.col("_content").n_unique().over(id_col),
        _first=pl.int_range(pl.len()).over(id_col) == 0,
    )
    amount = pl.col("amount") if "amount" in COLUMNS[kind] else pl.lit(None, dtype=pl.String)
    positive = ~amount.fill_null("").str.starts_with("-")
    reason = (
        pl.when(missing)
        .then(pl.lit("missing_required"))
        .when(pl.col("date").is_null())
        .then(pl.lit("bad_date"))
        .when(~pl.col("_amount_ok") | ~positive)
        .then(pl.lit("bad_rate"))
        .when(pl.col("_variants") > 1)
        .then(pl.lit("duplicate_conflict"))
        .when(~pl.col("_first"))
        .then(pl.lit("duplicate_exact"))
    )
    detail = (
        pl.when(missing)
        .then(pl.concat_str([pl.lit("required field(s) empty: "), missing_names]))
        .when(pl.col("date").is_null())
        .then(pl.format("date '{}' is not an ISO date (YYYY-MM-DD)", pl.col("_raw_date").fill_null("")))
        .when(~pl.col("_amount_ok") | ~positive)
        .then(pl.format("amount '{}' is not a positive number with '.' decimals", amount.fill_null("")))
        .when(pl.col("_variants") > 1)
        .then(
            pl.format(
                "{} '{}' appears with different contents; every copy is held back",
                pl.lit(id_col),
                pl.col(id_col),
            )
        )
        .otherwise(
            pl.format("{} '{}' already given earlier with identical content", pl.lit(id_col), pl.col(id_col))
        )
    )
    typed = typed.with_columns(_reason=reason, _detail=detail)
    bad = typed.filter(pl.col("_reason").is_not_null()).select(
        pl.lit(kind).alias("input"),
        "source_file",
        "source_row",
        pl.col("_reason").alias("reason"),
        pl.col("_detail").alias("detail"),
        pl.col("_record").alias("record"),
        pl.col("date"),
    )
    rejected.append(bad)
    good = typed.filter(pl.col("_reason").is_null()).select(
        *[c for c in COLUMNS[kind] if c != "date"],
        "date",
        "source_file",
        "source_row",
        pl.col("_record").alias("record"),
    )
    if "amount" in COLUMNS[kind]:
        good = good.with_columns(
            amount=pl.when(pl.col("amount") == "").then(None).otherwise(pl.col("amount"))
        )
    return Requests(rows=good, rejected=pl.concat(rejected, how="vertical").sort("source_file", "source_row"))
