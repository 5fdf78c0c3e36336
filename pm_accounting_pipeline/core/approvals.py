"""Who approved each work item and when: from the source row, and from approval feeds.

Sources, in increasing precedence:

1. the source row (kept whole in `raw.time_entries.source_record`):
   - canonical CSV / JSON: the optional `approved_by` and `approved_at` fields;
   - Harvest API: the Harvest v2 time entry (and expense) exposes `approval_status` (an expense of
     an account without approvals: `is_closed`) but not who approved it, so `approved_by` is
     `harvest:<account_id>` and `approved_at` is the entry's `updated_at` when it is approved;
     the sync also writes the `updated_at` of the first version it saw
     approved to the feed `approvals/harvest_api-<account_id>.csv` (below), which takes precedence;
   - Harvest CSV and Harvest expense CSV (`Approved?` only) and Toggl: neither;
2. approval feeds: `landing/<entity>/approvals/*.csv` with columns `source_system, source_id,
   status, approved_by, approved_at` (an approval log exported from the PM tool or an approval
   workflow). An expense is named like a time entry, by the source system and source id it has
   on the ledger (`harvest_expense_csv`, or `harvest_api_expense` for a Harvest API expense, whose
   ids are a separate id space from the account's time entries). Per (source_system, source_id) the latest row (by `approved_at`, then file name and
   row; the time of a withdrawal is its `approved_at` column too) wins: `status: approved` approves the item (and names the approver), `unapproved` or
   `rejected` withdraws the approval. A feed row overrides what the source row says.

The billing status is then decided again for billable work: `held_unapproved` when the client
(else the deployment) requires approval and the item is not approved; `held_no_approver` when it is
approved but the client (else `approval.require_approver`) requires an approver's name and none is
known; otherwise `billable`. Held work is billed by a later run once the hold is lifted.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument

FEED_COLUMNS = ("source_system", "source_id", "status", "approved_by", "approved_at")
FEED_STATUSES = ("approved", "unapproved", "rejected")
FEED_SCHEMA = {
    "source_system": pl.String,
    "source_id": pl.String,
    "approved": pl.Boolean,
    "approved_by": pl.String,
    "approved_at": pl.Datetime("us", "UTC"),
    "event_at": pl.Datetime("us", "UTC"),
    "source_file": pl.String,
    "source_row": pl.Int64,
}
_UTC = pl.Datetime("us", "UTC")
_SOURCES_WITH_APPROVALS = ("canonical_csv", "canonical_json", "harvest_api")


class ApprovalFeedError(ValueError):
    """An approval feed file has rows that cannot be used; the message names file, row and problem."""


def parse_timestamp(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text as a UTC timestamp: `2026-03-05T10:00:00Z`, with an offset (`+01:00`), without
    one (taken as UTC; also with a space for the `T`), or a date alone (midnight UTC)."""
    t = text.str.strip_chars().str.replace(" ", "T").str.replace(r"Z$", "+00:00")
    with_offset = t.str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", strict=False, time_unit="us", time_zone="UTC")
    naive = t.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us").dt.replace_time_zone("UTC")
    day = t.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return pl.coalesce(with_offset, naive, day)


def read_feed(folders: list[Path]) -> pl.DataFrame:
    """Every `*.csv` of the given approval folders (sorted by file name) as FEED_SCHEMA rows.
    Raises ApprovalFeedError listing each unusable row (missing column or field, unknown status,
    bad timestamp)."""
    frames: list[pl.DataFrame] = []
    problems: list[str] = []
    for folder in folders:
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
            raw = raw.rename({c: c.strip().lower() for c in raw.columns})
            missing = [c for c in ("source_system", "source_id", "status") if c not in raw.columns]
            if missing:
                problems.append(f"{path}: no column(s) {missing}; expected {list(FEED_COLUMNS)}")
                continue
            raw = raw.with_columns(
                **{c: pl.lit(None, dtype=pl.String) for c in FEED_COLUMNS if c not in raw.columns}
            ).with_columns(pl.col(c).str.strip_chars().replace("", None).alias(c) for c in FEED_COLUMNS)
            typed = raw.with_columns(
                _row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
                _status=pl.col("status").str.to_lowercase(),
                _at=parse_timestamp(pl.col("approved_at")),
            )
            problem = (
                pl.when(pl.col("source_system").is_null() | pl.col("source_id").is_null())
                .then(pl.lit("source_system and source_id are required"))
                .when(~pl.col("_status").is_in(FEED_STATUSES) | pl.col("_status").is_null())
                .then(pl.format("status '{}' is not approved, unapproved or rejected", pl.col("status")))
                .when(pl.col("approved_at").is_not_null() & pl.col("_at").is_null())
                .then(pl.format("approved_at '{}' is not an ISO timestamp", pl.col("approved_at")))
            )
            typed = typed.with_columns(_problem=problem)
            for row, text in (
                typed.filter(pl.col("_problem").is_not_null()).select("_row", "_problem").iter_rows()
            ):
                problems.append(f"{path.name} row {row}: {text}")
            frames.append(
                typed.filter(pl.col("_problem").is_null()).select(
                    "source_system",
                    "source_id",
                    (pl.col("_status") == "approved").alias("approved"),
                    pl.when(pl.col("_status") == "approved").then(pl.col("approved_by")).alias("approved_by"),
                    pl.when(pl.col("_status") == "approved").then(pl.col("_at")).alias("approved_at"),
                    pl.col("_at").alias("event_at"),
                    pl.lit(path.name).alias("source_file"),
                    pl.col("_row").alias("source_row"),
                )
            )
    if problems:
        raise ApprovalFeedError("approval feed rows cannot be used:\n" + "\n".join(problems))
    if not frames:
        return pl.DataFrame(schema=FEED_SCHEMA)
    return pl.concat(frames, how="vertical").cast(FEED_SCHEMA)  # type: ignore[arg-type]


def feed_folders(landing: Path, entities: list[str]) -> list[Path]:
    """`<landing>/<entity>/approvals` of each entity."""
    return [Path(landing) / e / "approvals" for e in entities]


def harvest_approved_expr(record: pl.Expr) -> pl.Expr:
    """Whether a Harvest v2 object (its JSON text) is approved: `approval_status` is `approved`; an
    expense of an account without approvals has no `approval_status`, and then `is_closed: true`
    (approved or closed) counts. Null when the object says neither."""
    status = record.str.json_path_match("$.approval_status")
    closed = record.str.json_path_match("$.is_closed")
    return pl.when(status.is_not_null()).then(status == "approved").otherwise(closed == "true")


def from_source(raw: pl.DataFrame) -> pl.DataFrame:
    """(source_file, source_row) -> approved_by, approved_at as the source rows give them."""
    record = pl.col("source_record")
    harvest_approved = (pl.col("source_system") == "harvest_api") & harvest_approved_expr(record)
    canonical = pl.col("source_system").is_in(["canonical_csv", "canonical_json"])
    return raw.select(
        "source_file",
        "source_row",
        pl.when(canonical)
        .then(record.str.json_path_match("$.approved_by").str.strip_chars().replace("", None))
        .when(harvest_approved)
        .then(pl.format("harvest:{}", pl.col("source_file").str.strip_prefix("harvest_api:")))
        .alias("_src_by"),
        pl.when(canonical)
        .then(parse_timestamp(record.str.json_path_match("$.approved_at")))
        .when(harvest_approved)
        .then(parse_timestamp(record.str.json_path_match("$.updated_at")))
        .alias("_src_at"),
    )


def apply_approvals(
    work_items: pl.DataFrame, raw: pl.DataFrame, feed: pl.DataFrame | None, mapping: MappingDocument
) -> pl.DataFrame:
    """Work items with approved_by / approved_at filled, is_approved and billing_status decided
    again (see the module docstring). Columns and row order are kept."""
    columns = work_items.columns
    if work_items.height == 0:
        return work_items
    # Only canonical and Harvest API rows carry approvals in the row (the JSON is read for those only).
    carrying = raw.filter(pl.col("source_system").is_in(list(_SOURCES_WITH_APPROVALS)))
    needs_approver = mapping.approval.require_approver or any(c.require_approver for c in mapping.clients)
    if carrying.height == 0 and (feed is None or feed.height == 0) and not needs_approver:
        return work_items
    src = from_source(carrying)
    out = work_items.join(src, on=["source_file", "source_row"], how="left", maintain_order="left")
    if feed is not None and feed.height:
        latest = (
            feed.sort("event_at", "source_file", "source_row", nulls_last=False)
            .unique(["source_system", "source_id"], keep="last")
            .select(
                "source_system",
                "source_id",
                pl.col("approved").alias("_feed_approved"),
                pl.col("approved_by").alias("_feed_by"),
                pl.col("approved_at").alias("_feed_at"),
            )
        )
        out = out.join(latest, on=["source_system", "source_id"], how="left", maintain_order="left")
    else:
        out = out.with_columns(
            _feed_approved=pl.lit(None, dtype=pl.Boolean),
            _feed_by=pl.lit(None, dtype=pl.String),
            _feed_at=pl.lit(None, dtype=_UTC),
        )
    in_feed = pl.col("_feed_approved").is_not_null()
    approved = pl.when(in_feed).then(pl.col("_feed_approved")).otherwise(pl.col("is_approved"))
    by = pl.when(in_feed).then(pl.coalesce("_feed_by", pl.when(pl.col("_feed_approved")).then("_src_by")))
    at = pl.when(in_feed).then(pl.coalesce("_feed_at", pl.when(pl.col("_feed_approved")).then("_src_at")))
    out = out.with_columns(
        is_approved=approved,
        approved_by=pl.when(approved).then(pl.coalesce(by.otherwise(pl.col("_src_by")), "approved_by")),
        approved_at=pl.when(approved).then(pl.coalesce(at.otherwise(pl.col("_src_at")), "approved_at")),
    )
    default_approval = mapping.approval.require_approval
    default_approver = mapping.approval.require_approver
    policy = pl.DataFrame(
        {
            "customer_ref": [c.customer_ref for c in mapping.clients],
            "_needs_approval": [
                default_approval if c.require_approval is None else c.require_approval
                for c in mapping.clients
            ],
            "_needs_approver": [
                default_approver if c.require_approver is None else c.require_approver
                for c in mapping.clients
            ],
        },
        schema={"customer_ref": pl.String, "_needs_approval": pl.Boolean, "_needs_approver": pl.Boolean},
    )
    out = out.join(policy, on="customer_ref", how="left", maintain_order="left").with_columns(
        pl.col("_needs_approval").fill_null(default_approval),
        pl.col("_needs_approver").fill_null(default_approver),
    )
    decided = pl.col("billing_status").is_in(["billable", "held_unapproved", "held_no_approver"])
    status = (
        pl.when(~decided)
        .then(pl.col("billing_status"))
        .when(pl.col("_needs_approval") & ~pl.col("is_approved"))
        .then(pl.lit("held_unapproved"))
        .when(pl.col("_needs_approval") & pl.col("_needs_approver") & pl.col("approved_by").is_null())
        .then(pl.lit("held_no_approver"))
        .otherwise(pl.lit("billable"))
    )
    return out.with_columns(billing_status=status).select(columns)
