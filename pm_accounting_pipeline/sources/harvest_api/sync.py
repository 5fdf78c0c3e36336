"""Incremental Harvest sync with change detection and deletion detection, persisted under a data dir.

Per account, `<data_dir>/harvest_api/<account_id>/` holds `state.json` (per resource the
high-water mark = the largest `updated_at` seen, the last trailing-window check, the batch
counter), one Parquet store per resource (the latest object per source id with its content hash,
partition date and `tombstoned_at`), and `changes.parquet`, an append-only log of which (date,
entity) partitions each batch touched, which a sensor reads with its cursor.

Approvals: the API does not say who approved an entry or when, so each sync records the moment
it first sees a time entry approved (the `updated_at` of that version) and withdrawals, as an
approval feed `<data_dir>/landing/<entity>/approvals/harvest_api-<account_id>.csv`
(core/approvals.py; approver `harvest:<account_id>` unless another feed names a person).

A sync asks for `updated_since = high-water mark - overlap` (2 days by default) so late edits,
approvals and backdated entries are never missed, skips objects whose content hash is unchanged,
and every `window_check_every` re-pulls the trailing window (60 days by default) in full: source
ids in that window that no longer appear are tombstoned with the time they were found missing,
because Harvest does not report deletions.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.core.approvals import harvest_approved_expr
from pm_accounting_pipeline.sources.harvest_api.client import HarvestClient
from pm_accounting_pipeline.sources.harvest_api.to_raw import (
    RawBatch,
    canonical_records,
    content_hash,
    empty_expenses_raw,
    expenses_to_raw,
    time_entries_to_raw,
)

SYNCED_RESOURCES = ("time_entries", "expenses")
SOURCE_SYSTEM_API = "harvest_api"
REFERENCE_RESOURCES = ("clients", "projects", "tasks", "users", "expense_categories")
_TS = "%Y-%m-%dT%H:%M:%SZ"
_UTC = pl.Datetime("us", "UTC")

STORE_SCHEMA = pl.Schema(
    {
        "source_id": pl.String,
        "entity": pl.String,
        "partition_date": pl.Date,
        "updated_at": _UTC,
        "content_hash": pl.String,
        "record": pl.String,
        "extracted_at": _UTC,
        "batch_seq": pl.Int64,
        "tombstoned_at": _UTC,
    }
)
CHANGES_SCHEMA = pl.Schema(
    {
        "seq": pl.Int64,
        "resource": pl.String,
        "entity": pl.String,
        "partition_date": pl.Date,
        "source_id": pl.String,
    }
)
TOMBSTONE_SCHEMA = pl.Schema(
    {
        "resource": pl.String,
        "account_id": pl.String,
        "entity": pl.String,
        "source_system": pl.String,
        "source_id": pl.String,
        "spent_date": pl.Date,
        "tombstoned_at": _UTC,
        "last_content_hash": pl.String,
    }
)
CHANGE_KINDS = ("new", "changed", "revived", "tombstoned")


@dataclass(frozen=True)
class AccountSpec:
    """A Harvest account and the legal entity its work books into."""

    account_id: str
    entity: str


@dataclass(frozen=True)
class SyncConfig:
    data_dir: Path
    overlap: timedelta = timedelta(days=2)
    trailing_window_days: int = 60
    window_check_every: timedelta = timedelta(hours=24)
    resources: tuple[str, ...] = SYNCED_RESOURCES
    reference_resources: tuple[str, ...] = REFERENCE_RESOURCES

    def account_dir(self, account_id: str) -> Path:
        return Path(self.data_dir) / "harvest_api" / str(account_id)


@dataclass
class SyncResult:
    """What one sync found. Raw frames hold only new, changed and revived objects."""

    time_entries_raw: pl.DataFrame
    expenses_raw: pl.DataFrame
    tombstones: pl.DataFrame
    changed_dates: set[tuple[date, str]]
    stats: dict[str, Any]
    quarantine: pl.DataFrame = field(default_factory=lambda: empty_frame("staging.quarantine"))
    changes: pl.DataFrame = field(default_factory=lambda: _empty_changes_frame())
    reference: dict[str, pl.DataFrame] = field(default_factory=dict)
    batch_seq: dict[str, int] = field(default_factory=dict)

    @classmethod
    def combine(cls, results: Sequence[SyncResult]) -> SyncResult:
        return cls(
            time_entries_raw=_concat([r.time_entries_raw for r in results], empty_frame("raw.time_entries")),
            expenses_raw=_concat([r.expenses_raw for r in results], empty_expenses_raw()),
            tombstones=_concat([r.tombstones for r in results], pl.DataFrame(schema=TOMBSTONE_SCHEMA)),
            changed_dates=set().union(*(r.changed_dates for r in results)),
            stats={k: v for r in results for k, v in r.stats.items()},
            quarantine=_concat([r.quarantine for r in results], empty_frame("staging.quarantine")),
            changes=_concat([r.changes for r in results], _empty_changes_frame()),
            reference={k: v for r in results for k, v in r.reference.items()},
            batch_seq={k: v for r in results for k, v in r.batch_seq.items()},
        )


def _concat(frames: list[pl.DataFrame], empty: pl.DataFrame) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames) if frames else empty


def _empty_changes_frame() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "account_id": pl.String,
            "resource": pl.String,
            "source_id": pl.String,
            "entity": pl.String,
            "spent_date": pl.Date,
            "change": pl.String,
            "content_hash": pl.String,
        }
    )


# ---- persistence ------------------------------------------------------------------------------
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_write_parquet(path: Path, frame: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp, compression="zstd")
    os.replace(tmp, path)


@contextmanager
def _account_lock(directory: Path) -> Iterator[None]:
    """One sync per account at a time across processes (sensor and assets may overlap)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_state(config: SyncConfig, account_id: str) -> dict[str, Any]:
    path = config.account_dir(account_id) / "state.json"
    if not path.exists():
        return {
            "account_id": str(account_id),
            "high_water_mark": {},
            "last_window_check_at": {},
            "batch_seq": 0,
        }
    return json.loads(path.read_text())


def _save_state(config: SyncConfig, account_id: str, state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=2, sort_keys=True)
    _atomic_write_bytes(config.account_dir(account_id) / "state.json", text.encode())


def load_store(config: SyncConfig, account_id: str, resource: str) -> pl.DataFrame:
    path = config.account_dir(account_id) / f"{resource}.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=STORE_SCHEMA)


def load_changes(config: SyncConfig, account_id: str) -> pl.DataFrame:
    path = config.account_dir(account_id) / "changes.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=CHANGES_SCHEMA)


def changes_since(config: SyncConfig, account_id: str, after_seq: int) -> tuple[int, set[tuple[date, str]]]:
    """(latest batch seq, the (date, entity) partitions touched by batches after `after_seq`)."""
    state = load_state(config, account_id)
    changes = load_changes(config, account_id).filter(pl.col("seq") > after_seq)
    pairs = changes.select("partition_date", "entity").unique()
    return int(state.get("batch_seq", 0)), {(d, e) for d, e in pairs.iter_rows()}


# ---- the sync ---------------------------------------------------------------------------------
def _ts(value: str | None) -> datetime | None:
    return datetime.strptime(value, _TS).replace(tzinfo=UTC) if value else None


def _keyed(records: Sequence[Any], entity: str, extracted_at: datetime) -> pl.DataFrame:
    """Pulled objects with their id, updated_at, partition date and hash; latest version per id."""
    texts = canonical_records(records)
    frame = pl.DataFrame({"record": texts}, schema={"record": pl.String}).with_row_index("_pos")
    rec = pl.col("record")
    frame = frame.with_columns(
        rec.str.json_path_match("$.id").alias("source_id"),
        pl.lit(entity).alias("entity"),
        rec.str.json_path_match("$.updated_at")
        .str.to_datetime(_TS, time_zone="UTC", strict=False)
        .alias("updated_at"),
        pl.coalesce(
            rec.str.json_path_match("$.spent_date").str.strptime(pl.Date, "%Y-%m-%d", strict=False),
            pl.lit(extracted_at.date()),
        ).alias("partition_date"),
        pl.Series("content_hash", [content_hash(t) for t in texts], dtype=pl.String),
        pl.lit(extracted_at).cast(_UTC).alias("extracted_at"),
    )
    # The same id can arrive twice (edited between two pages, or in both pulls): keep the newest.
    return (
        frame.sort(["source_id", "updated_at", "_pos"], nulls_last=False)
        .unique(subset=["source_id"], keep="last", maintain_order=False)
        .sort("_pos")
        .drop("_pos")
    )


def _batch_hash(account_id: str, resource: str, changed: pl.DataFrame, tombstoned: pl.DataFrame) -> str:
    parts = [f"{account_id}:{resource}"]
    parts += [
        f"{i}={h}" for i, h in changed.select("source_id", "content_hash").sort("source_id").iter_rows()
    ]
    parts += [f"{i}=deleted" for i in tombstoned["source_id"].sort().to_list()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _to_raw(
    resource: str, texts: list[str], entity: str, account_id: str, file_hash: str, at: Any
) -> RawBatch:
    convert = time_entries_to_raw if resource == "time_entries" else expenses_to_raw
    return convert(texts, entity, account_id, file_hash, at)


def sync_account(
    client: HarvestClient,
    account: AccountSpec,
    config: SyncConfig,
    clock: Callable[[], datetime] | None = None,
    full: bool = False,
    check_deletions: bool | None = None,
) -> SyncResult:
    """Pull what changed for one account, update its store, and return the changes.

    `full` ignores the high-water mark and re-pulls everything (every stored id that is missing is
    tombstoned). `check_deletions` forces (True) or skips (False) the trailing-window re-pull;
    by default it runs when `window_check_every` has passed since the last one.
    """
    now = (clock or (lambda: datetime.now(UTC)))().astimezone(UTC).replace(microsecond=0)
    directory = config.account_dir(account.account_id)
    with _account_lock(directory):
        state = load_state(config, account.account_id)
        results: dict[str, tuple[RawBatch, pl.DataFrame, pl.DataFrame, dict[str, Any]]] = {}
        seq = int(state.get("batch_seq", 0))
        new_changes: list[pl.DataFrame] = []
        for resource in config.resources:
            raw, tomb, changes, stats, touched, new_store = _sync_resource(
                client, account, config, state, resource, now, seq + 1, full, check_deletions
            )
            # Crash-safe order: change log, then store, then state. A crash in between at worst
            # re-detects the same changes next time (a repeated partition run), never loses them.
            if touched.height:
                seq += 1
                batch = touched.with_columns(pl.lit(seq, dtype=pl.Int64).alias("seq")).select(
                    CHANGES_SCHEMA.names()
                )
                new_changes.append(batch)
                _atomic_write_parquet(
                    directory / "changes.parquet",
                    pl.concat([load_changes(config, account.account_id), batch]),
                )
            if new_store is not None:
                _atomic_write_parquet(directory / f"{resource}.parquet", new_store)
            state["batch_seq"] = seq
            _save_state(config, account.account_id, state)
            results[resource] = (raw, tomb, changes, stats)
        _sync_reference(client, account, config, state, now, full)
        state["last_sync_at"] = now.strftime(_TS)
        _save_state(config, account.account_id, state)
        reference = {r: load_reference(config, account.account_id, r) for r in config.reference_resources}

    te_raw, te_tomb, te_changes, te_stats = results.get(
        "time_entries",
        (RawBatch(empty_frame("raw.time_entries"), empty_frame("staging.quarantine")), None, None, {}),
    )
    ex_raw, ex_tomb, ex_changes, ex_stats = results.get(
        "expenses", (RawBatch(empty_expenses_raw(), empty_frame("staging.quarantine")), None, None, {})
    )
    changes = _concat([c for c in (te_changes, ex_changes) if c is not None], _empty_changes_frame())
    return SyncResult(
        time_entries_raw=te_raw.rows,
        expenses_raw=ex_raw.rows,
        tombstones=_concat(
            [t for t in (te_tomb, ex_tomb) if t is not None], pl.DataFrame(schema=TOMBSTONE_SCHEMA)
        ),
        changed_dates={(d, e) for d, e in _touched_pairs(new_changes)},
        stats={account.account_id: {"time_entries": te_stats, "expenses": ex_stats, "batch_seq": seq}},
        quarantine=_concat([te_raw.quarantine, ex_raw.quarantine], empty_frame("staging.quarantine")),
        changes=changes,
        reference=reference,
        batch_seq={account.account_id: seq},
    )


APPROVAL_FEED_COLUMNS = ("source_system", "source_id", "status", "approved_by", "approved_at")


def approvals_feed_path(config: SyncConfig, account: AccountSpec) -> Path:
    return (
        Path(config.data_dir)
        / "landing"
        / account.entity
        / "approvals"
        / f"harvest_api-{account.account_id}.csv"
    )


def record_approvals(
    config: SyncConfig,
    account: AccountSpec,
    store: pl.DataFrame,
    fresh: pl.DataFrame,
    resource: str = "time_entries",
) -> int:
    """Append the approval transitions of new or changed time entries (or expenses) to the
    account's approval feed: `approved` when a version is approved and the stored one was not
    (approved_at = that version's `updated_at`), `unapproved` when an approved one is no longer.
    Expenses are named `harvest_api_expense` (their ids are not time-entry ids) and read as
    approved by `approval_status`, else `is_closed` (core.approvals.harvest_approved_expr).
    Returns the rows added."""
    if fresh.height == 0:
        return 0
    approved = harvest_approved_expr(pl.col("record")).fill_null(False)
    system = SOURCE_SYSTEM_API if resource == "time_entries" else f"{SOURCE_SYSTEM_API}_expense"
    old = store.select("source_id", approved.alias("_old"))
    t = fresh.join(old, on="source_id", how="left").with_columns(_new=approved)
    approved_now = pl.col("_new") & ~pl.col("_old").fill_null(False)
    withdrawn = ~pl.col("_new") & pl.col("_old").fill_null(False)
    rows = t.filter(approved_now | withdrawn).select(
        pl.lit(system).alias("source_system"),
        "source_id",
        pl.when(approved_now).then(pl.lit("approved")).otherwise(pl.lit("unapproved")).alias("status"),
        pl.when(approved_now).then(pl.lit(f"harvest:{account.account_id}")).alias("approved_by"),
        pl.col("updated_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("approved_at"),
    )
    if rows.height == 0:
        return 0
    path = approvals_feed_path(config, account)
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    with path.open("ab") as fh:
        rows.write_csv(fh, include_header=new_file)
    return rows.height


def _touched_pairs(frames: list[pl.DataFrame]) -> set[tuple[date, str]]:
    if not frames:
        return set()
    pairs = pl.concat(frames).select("partition_date", "entity").unique()
    return {(d, e) for d, e in pairs.iter_rows()}


def _sync_resource(
    client: HarvestClient,
    account: AccountSpec,
    config: SyncConfig,
    state: dict[str, Any],
    resource: str,
    now: datetime,
    next_seq: int,
    full: bool,
    check_deletions: bool | None,
) -> tuple[RawBatch, pl.DataFrame, pl.DataFrame, dict[str, Any], pl.DataFrame, pl.DataFrame | None]:
    hwm = _ts(state["high_water_mark"].get(resource))
    full = full or hwm is None
    last_check = _ts(state["last_window_check_at"].get(resource))
    window_due = (
        check_deletions
        if check_deletions is not None
        else (last_check is None or now - last_check >= config.window_check_every)
    )
    window_start = now.date() - timedelta(days=config.trailing_window_days)

    records: list[Any] = []
    requests_before = client.stats.requests
    if full:
        records += client.list_all(resource)
    else:
        assert hwm is not None
        records += client.list_all(resource, updated_since=hwm - config.overlap)
        if window_due:
            records += client.list_all(resource, **{"from": window_start})
    pulled = _keyed(records, account.entity, now)

    store = load_store(config, account.account_id, resource)
    joined = pulled.join(
        store.select(
            "source_id",
            pl.col("content_hash").alias("_old_hash"),
            pl.col("partition_date").alias("_old_date"),
            pl.col("tombstoned_at").alias("_old_tomb"),
            pl.lit(True).alias("_known"),
        ),
        on="source_id",
        how="left",
    )
    change = (
        pl.when(pl.col("source_id").is_null())
        .then(pl.lit("unusable"))  # no id: quarantined below, cannot be tracked
        .when(pl.col("_known").is_null())
        .then(pl.lit("new"))
        .when(pl.col("_old_tomb").is_not_null())
        .then(pl.lit("revived"))
        .when(pl.col("_old_hash") != pl.col("content_hash"))
        .then(pl.lit("changed"))
        .otherwise(pl.lit("unchanged"))
    )
    joined = joined.with_columns(change.alias("change"))
    fresh = joined.filter(pl.col("change") != "unchanged")

    # Deletions: a full pull checks every live id, a window pull the live ids dated inside it.
    live = store.filter(pl.col("tombstoned_at").is_null())
    if full:
        scope = live
    elif window_due:
        scope = live.filter(pl.col("partition_date") >= window_start)
    else:
        scope = live.clear()
    seen = pulled["source_id"].drop_nulls().implode()
    gone = scope.filter(~pl.col("source_id").is_in(seen))

    batch_hash = _batch_hash(
        account.account_id, resource, fresh.filter(pl.col("source_id").is_not_null()), gone
    )
    fresh_sorted = fresh.sort(pl.col("source_id").cast(pl.Int64, strict=False), "source_id", nulls_last=True)
    raw = _to_raw(
        resource, fresh_sorted["record"].to_list(), account.entity, account.account_id, batch_hash, now
    )

    tracked = fresh_sorted.filter(pl.col("source_id").is_not_null())
    if resource in ("time_entries", "expenses"):
        record_approvals(config, account, store, tracked, resource)
    upserts = tracked.select(
        "source_id",
        "entity",
        "partition_date",
        "updated_at",
        "content_hash",
        "record",
        "extracted_at",
        pl.lit(next_seq, dtype=pl.Int64).alias("batch_seq"),
        pl.lit(None, dtype=_UTC).alias("tombstoned_at"),
    )
    tomb_rows = gone.with_columns(
        pl.lit(now).cast(_UTC).alias("tombstoned_at"), pl.lit(next_seq, dtype=pl.Int64).alias("batch_seq")
    )
    replaced = pl.concat([upserts["source_id"], tomb_rows["source_id"]]).implode()
    new_store = pl.concat(
        [store.filter(~pl.col("source_id").is_in(replaced)), upserts, tomb_rows.select(STORE_SCHEMA.names())]
    ).cast(STORE_SCHEMA)

    # Partitions touched: where changed objects are now, where moved ones were, where deleted ones were.
    touched = (
        pl.concat(
            [
                fresh.select("entity", "partition_date", "source_id"),
                tracked.filter(
                    pl.col("_old_date").is_not_null() & (pl.col("_old_date") != pl.col("partition_date"))
                ).select("entity", pl.col("_old_date").alias("partition_date"), "source_id"),
                gone.select("entity", "partition_date", "source_id"),
            ]
        )
        .with_columns(pl.lit(resource).alias("resource"))
        .unique()
    )

    tombstones = gone.select(
        pl.lit(resource).alias("resource"),
        pl.lit(account.account_id).alias("account_id"),
        "entity",
        pl.lit("harvest_api").alias("source_system"),
        "source_id",
        pl.col("partition_date").alias("spent_date"),
        pl.lit(now).cast(_UTC).alias("tombstoned_at"),
        pl.col("content_hash").alias("last_content_hash"),
    ).sort("source_id")
    changes = pl.concat(
        [
            fresh.select(
                pl.lit(account.account_id).alias("account_id"),
                pl.lit(resource).alias("resource"),
                "source_id",
                "entity",
                pl.col("partition_date").alias("spent_date"),
                "change",
                "content_hash",
            ),
            tombstones.select(
                "account_id",
                "resource",
                "source_id",
                "entity",
                "spent_date",
                pl.lit("tombstoned").alias("change"),
                pl.col("last_content_hash").alias("content_hash"),
            ),
        ]
    )

    max_seen = pulled["updated_at"].max()
    if max_seen is not None and (hwm is None or max_seen > hwm):
        state["high_water_mark"][resource] = max_seen.strftime(_TS)
    if full or window_due:
        state["last_window_check_at"][resource] = now.strftime(_TS)
    counts = joined.group_by("change").len()
    stats = {
        "mode": "full" if full else ("incremental+window" if window_due else "incremental"),
        "requests": client.stats.requests - requests_before,
        "pulled": len(records),
        "distinct": pulled.height,
        **{kind: 0 for kind in ("new", "changed", "revived", "unchanged", "unusable")},
        **{str(k): int(v) for k, v in counts.iter_rows()},
        "tombstoned": gone.height,
        "quarantined": raw.quarantine.height,
        "high_water_mark": state["high_water_mark"].get(resource),
        "batch_hash": batch_hash,
    }
    changed_store = new_store if (upserts.height or tomb_rows.height) else None
    return raw, tombstones, changes, stats, touched, changed_store


def load_reference(config: SyncConfig, account_id: str, resource: str) -> pl.DataFrame:
    """The latest snapshot of a reference resource (clients, projects, ...): id, updated_at, hash, record."""
    path = config.account_dir(account_id) / "reference" / f"{resource}.parquet"
    columns = ["source_id", "updated_at", "content_hash", "record"]
    if not path.exists():
        return pl.DataFrame(
            schema={
                "source_id": pl.String,
                "updated_at": _UTC,
                "content_hash": pl.String,
                "record": pl.String,
            }
        )
    return pl.read_parquet(path, columns=columns)


def _sync_reference(
    client: HarvestClient,
    account: AccountSpec,
    config: SyncConfig,
    state: dict[str, Any],
    now: datetime,
    full: bool,
) -> None:
    """Clients, projects, tasks, users, categories: incrementally merged snapshots (id -> object)."""
    for resource in config.reference_resources:
        path = config.account_dir(account.account_id) / "reference" / f"{resource}.parquet"
        hwm = None if full else _ts(state["high_water_mark"].get(resource))
        since = {"updated_since": hwm - config.overlap} if hwm else {}
        pulled = _keyed(client.list_all(resource, **since), account.entity, now).filter(
            pl.col("source_id").is_not_null()
        )
        old = pl.read_parquet(path) if path.exists() and hwm else pulled.clear()
        merged = pl.concat(
            [old.filter(~pl.col("source_id").is_in(pulled["source_id"].implode())), pulled]
        ).sort(pl.col("source_id").cast(pl.Int64, strict=False))
        if pulled.height or not path.exists():
            _atomic_write_parquet(path, merged)
        max_seen = pulled["updated_at"].max()
        if max_seen is not None and (hwm is None or max_seen > hwm):
            state["high_water_mark"][resource] = max_seen.strftime(_TS)


def sync_accounts(
    clients: dict[str, HarvestClient],
    accounts: Sequence[AccountSpec],
    config: SyncConfig,
    clock: Callable[[], datetime] | None = None,
    full: bool = False,
    check_deletions: bool | None = None,
) -> SyncResult:
    """Sync every account (each with its own client) and combine the results."""
    return SyncResult.combine(
        [sync_account(clients[a.account_id], a, config, clock, full, check_deletions) for a in accounts]
    )


# ---- reading a partition back ---------------------------------------------------------------
def read_partition(
    config: SyncConfig, accounts: Sequence[AccountSpec], resource: str, day: date, entity: str
) -> tuple[RawBatch, pl.DataFrame]:
    """The current raw rows (and quarantine) of one (date, entity) partition, plus its tombstones.

    Rows are ordered by account and numeric source id, `source_row` is the position in that order
    and `file_hash` hashes the partition's content, so the same store gives the same bytes.
    """
    texts: list[str] = []
    extracted: list[datetime] = []
    files: list[tuple[str, int, int]] = []
    hashes: list[str] = []
    tombs: list[pl.DataFrame] = []
    for account in sorted((a for a in accounts if a.entity == entity), key=lambda a: a.account_id):
        store = load_store(config, account.account_id, resource).filter(
            (pl.col("partition_date") == day) & (pl.col("entity") == entity)
        )
        live = store.filter(pl.col("tombstoned_at").is_null()).sort(
            pl.col("source_id").cast(pl.Int64, strict=False), "source_id"
        )
        files.append((account.account_id, len(texts), live.height))
        texts += live["record"].to_list()
        extracted += live["extracted_at"].to_list()
        hashes += live["content_hash"].to_list()
        tombs.append(
            store.filter(pl.col("tombstoned_at").is_not_null()).select(
                pl.lit(resource).alias("resource"),
                pl.lit(account.account_id).alias("account_id"),
                "entity",
                pl.lit("harvest_api").alias("source_system"),
                "source_id",
                pl.col("partition_date").alias("spent_date"),
                "tombstoned_at",
                pl.col("content_hash").alias("last_content_hash"),
            )
        )
    file_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    batches = []
    for account_id, start, count in files:
        series = pl.Series("extracted_at", extracted[start : start + count], dtype=_UTC)
        batches.append(_to_raw(resource, texts[start : start + count], entity, account_id, file_hash, series))
    empty_rows = empty_frame("raw.time_entries") if resource == "time_entries" else empty_expenses_raw()
    raw = RawBatch(
        _concat([b.rows for b in batches], empty_rows),
        _concat([b.quarantine for b in batches], empty_frame("staging.quarantine")),
    )
    return raw, _concat(tombs, pl.DataFrame(schema=TOMBSTONE_SCHEMA)).cast(TOMBSTONE_SCHEMA)
