"""Harvest API objects -> the raw layer: `raw.time_entries` rows, raw expense rows, and quarantine rows.

Each object is kept whole in `source_record` (sorted keys, Decimals as strings), and the
source-shaped string columns are read out of that text with JSON paths, so a field of the wrong
type reads as missing instead of breaking the page. Objects that cannot be used (missing fields,
wrong types, bad dates or numbers, unknown currency) become quarantine rows with a reason code;
the rest of the page is kept. Everything after the JSON boundary is vectorised polars.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pm_accounting_pipeline.contracts.layers import QUARANTINE_REASONS, polars_schema
from pm_accounting_pipeline.core.money import known_currencies

SOURCE_SYSTEM = "harvest_api"
_NUMBER = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_INTEGER = r"^[0-9]+$"
_BOOLEAN = ["true", "false"]
APPROVAL_STATUSES = ["unsubmitted", "submitted", "approved"]

# The raw expenses table (contracts/expenses.py `raw.expenses`): the same lineage columns as
# raw.time_entries, expense-shaped value columns, all source-shaped strings. Harvest's expense CSV
# export (extract/parse.py) fills the same columns.
EXPENSES_RAW_SCHEMA = polars_schema("raw.expenses")


@dataclass(frozen=True)
class RawBatch:
    rows: pl.DataFrame
    quarantine: pl.DataFrame


def canonical_json(record: Any) -> str:
    """The object as stable text: sorted keys, Decimals as their exact strings, UTF-8 kept."""
    return json.dumps(record, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))


def canonical_records(records: Sequence[Any]) -> list[str]:
    # The one per-object step: serialising each parsed object (the JSON boundary); all else is
    # vectorised over the resulting strings.
    return [canonical_json(r) for r in records]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def source_file(account_id: str) -> str:
    return f"{SOURCE_SYSTEM}:{account_id}"


def _path(path: str) -> pl.Expr:
    return pl.col("source_record").str.json_path_match(path)


def _check(cond: pl.Expr, reason: str, message: str) -> tuple[pl.Expr, str, str]:
    if reason not in QUARANTINE_REASONS:
        raise ValueError(f"unknown quarantine reason {reason!r}")
    return cond, reason, message


def _number_checks(col: str, label: str, required: bool, reason: str, negative_reason: str) -> list:
    checks = []
    if required:
        checks.append(_check(pl.col(col).is_null(), "missing_required", f"{label} is missing"))
    checks.append(
        _check(
            pl.col(col).is_not_null() & ~pl.col(col).str.contains(_NUMBER), reason, f"{label} is not a number"
        )
    )
    checks.append(
        _check(
            pl.col(col).is_not_null() & pl.col(col).str.contains(_NUMBER) & pl.col(col).str.starts_with("-"),
            negative_reason,
            f"{label} is negative",
        )
    )
    return checks


def _common_checks(currency_col: str) -> list:
    return [
        _check(pl.col("source_id").is_null(), "missing_required", "id is missing"),
        _check(
            pl.col("source_id").is_not_null() & ~pl.col("source_id").str.contains(_INTEGER),
            "missing_required",
            "id is not an integer",
        ),
        _check(pl.col("date_raw").is_null(), "missing_required", "spent_date is missing"),
        _check(
            pl.col("date_raw").is_not_null() & pl.col("_date").is_null(),
            "bad_date",
            "spent_date is not YYYY-MM-DD",
        ),
        _check(pl.col("client").is_null(), "missing_required", "client.name is missing"),
        _check(pl.col("client_id").is_null(), "missing_required", "client.id is missing"),
        _check(pl.col("project").is_null(), "missing_required", "project.name is missing"),
        _check(pl.col("person_id").is_null(), "missing_required", "user.id is missing"),
        _check(pl.col(currency_col).is_null(), "missing_required", "client.currency is missing"),
        _check(
            pl.col(currency_col).is_not_null() & ~pl.col(currency_col).is_in(sorted(known_currencies())),
            "unknown_currency",
            "client.currency is not an ISO 4217 code",
        ),
        _check(
            pl.col("billable_raw").is_null() | ~pl.col("billable_raw").is_in(_BOOLEAN),
            "missing_required",
            "billable is missing or not true/false",
        ),
        _check(
            pl.col("invoiced_raw").is_not_null() & ~pl.col("invoiced_raw").is_in(_BOOLEAN),
            "missing_required",
            "is_billed is not true/false",
        ),
    ]


def _split(
    frame: pl.DataFrame,
    checks: list,
    entity: str,
    fallback_date: pl.Expr,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows passing every check, and one quarantine row per failing row (first reason, all details)."""
    reason = pl.lit(None, dtype=pl.String)
    for cond, code, _ in reversed(checks):
        reason = pl.when(cond).then(pl.lit(code)).otherwise(reason)
    details = pl.concat_str(
        [pl.when(cond).then(pl.lit(message)) for cond, _, message in checks],
        separator="; ",
        ignore_nulls=True,
    )
    flagged = frame.with_columns(reason.alias("_reason"), details.alias("_detail"))
    good = flagged.filter(pl.col("_reason").is_null())
    bad = flagged.filter(pl.col("_reason").is_not_null())
    quarantine = bad.select(
        pl.lit(entity).alias("entity"),
        pl.coalesce(pl.col("_date"), fallback_date).alias("partition_date"),
        pl.lit("raw").alias("layer"),
        pl.lit(SOURCE_SYSTEM).alias("source_system"),
        pl.col("source_file"),
        pl.col("source_row"),
        pl.col("source_id"),
        pl.col("_reason").alias("reason"),
        pl.col("_detail").alias("detail"),
        pl.col("source_record"),
    ).cast(polars_schema("staging.quarantine"))
    return good, quarantine


Extracted = datetime | pl.Series


def _base(
    texts: Sequence[str], account_id: str, file_hash: str, extracted_at: Extracted, first_row: int
) -> pl.DataFrame:
    frame = pl.DataFrame({"source_record": list(texts)}, schema={"source_record": pl.String})
    # One pull time for a whole batch, or one per row when rows of several pulls are re-read.
    extracted = extracted_at if isinstance(extracted_at, pl.Series) else pl.lit(extracted_at)
    return (
        frame.with_row_index("source_row", offset=first_row)
        .with_columns(
            pl.col("source_row").cast(pl.Int64),
            pl.lit(SOURCE_SYSTEM).alias("source_system"),
            pl.lit(source_file(account_id)).alias("source_file"),
            pl.lit(file_hash).alias("file_hash"),
            extracted.cast(pl.Datetime("us", "UTC")).alias("extracted_at"),
            _path("$.id").alias("source_id"),
            _path("$.spent_date").alias("date_raw"),
            _path("$.client.name").alias("client"),
            _path("$.client.id").alias("client_id"),
            _path("$.project.name").alias("project"),
            _path("$.project.code").alias("project_code"),
            _path("$.user.name").alias("person"),
            _path("$.user.id").alias("person_id"),
            _path("$.notes").alias("notes"),
            _path("$.billable").alias("billable_raw"),
            _path("$.is_billed").alias("invoiced_raw"),
            _path("$.client.currency").alias("currency_raw"),
        )
        .with_columns(pl.col("date_raw").str.strptime(pl.Date, "%Y-%m-%d", strict=False).alias("_date"))
    )


def time_entries_to_raw(
    texts: Sequence[str],
    entity: str,
    account_id: str,
    file_hash: str,
    extracted_at: Extracted,
    first_row: int = 1,
) -> RawBatch:
    """Canonical JSON texts of API time entries -> `raw.time_entries` rows + quarantine rows.

    `source_row` is the 1-based position in `texts` (offset by `first_row - 1`); `file_hash`
    identifies the sync batch; `extracted_at` is when the batch was pulled (an input fact), or a
    Series of one pull time per text. A quarantined object without a usable `spent_date` is filed
    under the date it was pulled.
    """
    frame = _base(texts, account_id, file_hash, extracted_at, first_row).with_columns(
        _path("$.task.name").alias("task"),
        _path("$.hours").alias("hours_raw"),
        _path("$.rounded_hours").alias("rounded_hours_raw"),
        _path("$.approval_status").alias("approved_raw"),
        _path("$.billable_rate").alias("bill_rate_raw"),
        _path("$.cost_rate").alias("cost_rate_raw"),
    )
    checks = [
        *_common_checks("currency_raw"),
        _check(pl.col("task").is_null(), "missing_required", "task.name is missing"),
        *_number_checks("hours_raw", "hours", True, "bad_hours", "negative_hours"),
        *_number_checks("rounded_hours_raw", "rounded_hours", False, "bad_hours", "negative_hours"),
        *_number_checks("bill_rate_raw", "billable_rate", False, "bad_rate", "bad_rate"),
        *_number_checks("cost_rate_raw", "cost_rate", False, "bad_rate", "bad_rate"),
        _check(
            pl.col("approved_raw").is_null() | ~pl.col("approved_raw").is_in(APPROVAL_STATUSES),
            "missing_required",
            "approval_status is missing or not unsubmitted/submitted/approved",
        ),
    ]
    good, quarantine = _split(frame, checks, entity, pl.col("extracted_at").dt.date())
    schema = polars_schema("raw.time_entries")
    rows = good.with_columns(
        pl.lit(entity).alias("entity"),
        # The account's entity until core/entities.py assigns the row.
        pl.lit(entity).alias("landing_entity"),
        pl.lit("pm_account").alias("entity_rule"),
        pl.col("_date").alias("work_date"),
        pl.lit(None, dtype=pl.String).alias("email"),
    ).select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    return RawBatch(rows, quarantine)


def expenses_to_raw(
    texts: Sequence[str],
    entity: str,
    account_id: str,
    file_hash: str,
    extracted_at: Extracted,
    first_row: int = 1,
) -> RawBatch:
    """Canonical JSON texts of API expenses -> raw expense rows (`EXPENSES_RAW_SCHEMA`) + quarantine."""
    frame = _base(texts, account_id, file_hash, extracted_at, first_row).with_columns(
        _path("$.expense_category.name").alias("category"),
        _path("$.expense_category.id").alias("category_id"),
        _path("$.expense_category.unit_price").alias("unit_price_raw"),
        _path("$.units").alias("units_raw"),
        _path("$.total_cost").alias("total_cost_raw"),
        _path("$.receipt.url").alias("receipt_url"),
        # Approval: `approval_status` where the account uses approvals, else `is_closed` (approved
        # or closed); cleaning reads both ("approved", "true").
        pl.coalesce(_path("$.approval_status"), _path("$.is_closed")).alias("approved_raw"),
    )
    checks = [
        *_common_checks("currency_raw"),
        _check(pl.col("category").is_null(), "missing_required", "expense_category.name is missing"),
        *_number_checks("total_cost_raw", "total_cost", True, "bad_rate", "bad_rate"),
        *_number_checks("units_raw", "units", False, "bad_rate", "bad_rate"),
        *_number_checks("unit_price_raw", "expense_category.unit_price", False, "bad_rate", "bad_rate"),
    ]
    good, quarantine = _split(frame, checks, entity, pl.col("extracted_at").dt.date())
    rows = good.with_columns(
        pl.lit(entity).alias("entity"),
        # The account's entity until core/entities.py assigns the row.
        pl.lit(entity).alias("landing_entity"),
        pl.lit("pm_account").alias("entity_rule"),
        pl.col("_date").alias("spent_date"),
    ).select([pl.col(name).cast(dtype) for name, dtype in EXPENSES_RAW_SCHEMA.items()])
    return RawBatch(rows, quarantine)


def empty_expenses_raw() -> pl.DataFrame:
    return pl.DataFrame(schema=EXPENSES_RAW_SCHEMA)
