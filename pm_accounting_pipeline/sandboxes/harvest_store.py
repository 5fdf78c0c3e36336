"""The Harvest sandbox's in-memory account: API-shaped objects built from a demo dataset, plus edits.

Each resource is a polars frame of filter columns (id, spent_date, updated_at, is_billed, ...) and
the object's JSON text, encoded once so a page of 2,000 entries is served by joining strings.
Numbers are JSON numbers, as Harvest sends them; they are written from Decimal text, never floats.
Edits, approvals, deletions and backdated entries change the frame under a lock and bump
`updated_at` past every timestamp the account has served, as Harvest does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import polars as pl

RESOURCES = ("clients", "projects", "tasks", "users", "time_entries", "expenses", "expense_categories")
FILTER_COLUMNS = ("spent_date", "updated_at", "is_billed", "project_id", "user_id", "client_id", "task_id")
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NUM_MARK = "@@num:"
_NUM_RE = r'"@@num:(-?[0-9]+(?:\.[0-9]+)?)"'

# Expense categories every sandbox account has (Harvest ships similar defaults).
EXPENSE_CATEGORIES: tuple[tuple[int, str, str | None, str | None], ...] = (
    (4_100_001, "Travel", None, None),
    (4_100_002, "Mileage", "0.58", "mile"),
    (4_100_003, "Meals", None, None),
    (4_100_004, "Lodging", None, None),
)


class DemoDatasetLike(Protocol):
    """What the store needs from `pm_accounting_pipeline.demo.generator.DemoDataset`."""

    entities: pl.DataFrame
    clients: pl.DataFrame
    projects: pl.DataFrame
    tasks: pl.DataFrame
    users: pl.DataFrame
    time_entries: pl.DataFrame


class SandboxError(ValueError):
    """A control request the sandbox cannot carry out (unknown id, bad patch)."""


def _num(col: str | pl.Expr) -> pl.Expr:
    """A numeric column as a JSON-number placeholder: Decimal text without trailing zeros."""
    expr = pl.col(col) if isinstance(col, str) else col
    text = expr.cast(pl.String).str.replace(r"^(-?\d+\.\d*?)0+$", "${1}").str.replace(r"\.$", "")
    return pl.concat_str([pl.lit(_NUM_MARK), text])


def _ts(col: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        expr = pl.col(col)
        if dtype.time_zone is not None:
            expr = expr.dt.convert_time_zone("UTC")
        return expr.dt.strftime(TS_FORMAT)
    return pl.col(col).cast(pl.String)


def _date_text(col: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(col).dt.strftime("%Y-%m-%d") if dtype == pl.Date else pl.col(col).cast(pl.String)


def _encode(frame: pl.DataFrame, struct: pl.Expr) -> pl.Series:
    """JSON text per row with placeholder strings turned back into bare JSON numbers."""
    return frame.select(
        struct.struct.json_encode().str.replace_all(_NUM_RE, "${1}").alias("json")
    ).to_series()


def dumps(obj: Any) -> str:
    """Serialise one API object with Decimals as JSON numbers (as Harvest sends them)."""
    text = json.dumps(obj, default=lambda v: f"{_NUM_MARK}{v}" if isinstance(v, Decimal) else str(v))
    return re.sub(_NUM_RE, r"\1", text)


def _int_ids(*series: pl.Series, base: int) -> dict[Any, int]:
    """Harvest ids are integers: keep integer ids, number string ids densely in sorted order."""
    values = pl.concat([s.cast(pl.String) for s in series]).drop_nulls().unique().sort()
    if all(s.dtype.is_integer() for s in series):
        return {v: int(v) for v in values.to_list()}
    return {v: base + i for i, v in enumerate(values.to_list(), start=1)}


def _map_ids(frame: pl.DataFrame, col: str, mapping: dict[Any, int]) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(col).cast(pl.String).replace_strict(mapping, default=None, return_dtype=pl.Int64).alias(col)
    )


def pick_entity(dataset: DemoDatasetLike, account_id: str) -> str:
    """The entity whose Harvest account id matches, else the first entity (documented fallback)."""
    entities = dataset.entities
    match = entities.filter(pl.col("harvest_account_id").cast(pl.String) == str(account_id))
    if match.height:
        return str(match["entity"][0])
    if entities.height == 0:
        raise SandboxError("the dataset has no entities")
    return str(entities["entity"][0])


@dataclass
class _Resource:
    frame: pl.DataFrame  # id, filter columns, json


class HarvestStore:
    """One Harvest account's objects, queryable with the API's filters and editable under a lock."""

    def __init__(
        self,
        resources: dict[str, pl.DataFrame],
        entity: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.entity = entity
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._res = {name: _Resource(frame) for name, frame in resources.items()}
        self._last_ts = max(
            (r.frame["updated_at"].max() for r in self._res.values() if r.frame.height),
            default=datetime(2000, 1, 1, tzinfo=UTC),
        )

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def from_dataset(
        cls, dataset: DemoDatasetLike, account_id: str, clock: Callable[[], datetime] | None = None
    ) -> HarvestStore:
        entity = pick_entity(dataset, account_id)
        return cls(build_resources(dataset, entity), entity, clock)

    # ---- reading --------------------------------------------------------------------------
    def query(
        self,
        resource: str,
        filters: dict[str, Any],
        after_id: int | None,
        offset: int,
        limit: int,
    ) -> tuple[list[str], int | None, int, int]:
        """One page in id-descending order: (JSON texts, last id, total matching, matches after it)."""
        with self._lock:
            frame = self._res[resource].frame
        cond = pl.lit(True)
        if filters.get("updated_since") is not None:
            cond &= pl.col("updated_at") >= filters["updated_since"]
        if filters.get("from") is not None:
            cond &= pl.col("spent_date") >= filters["from"]
        if filters.get("to") is not None:
            cond &= pl.col("spent_date") <= filters["to"]
        for key in ("is_billed", "is_running", "is_active"):
            if filters.get(key) is not None and key in frame.columns:
                cond &= pl.col(key) == filters[key]
        for key in ("project_id", "user_id", "client_id", "task_id"):
            if filters.get(key) is not None and key in frame.columns:
                cond &= pl.col(key) == filters[key]
        matched = frame.filter(cond).sort("id", descending=True)
        total = matched.height
        rest = matched.filter(pl.col("id") < after_id) if after_id is not None else matched.slice(offset)
        page = rest.head(limit)
        last_id = int(page["id"][-1]) if page.height else None
        return page["json"].to_list(), last_id, total, rest.height - page.height

    def get(self, resource: str, object_id: int) -> str | None:
        with self._lock:
            hit = self._res[resource].frame.filter(pl.col("id") == object_id)
        return hit["json"][0] if hit.height else None

    def objects(self, resource: str) -> list[dict[str, Any]]:
        """Every object the API currently serves, parsed with Decimal numbers (for test assertions)."""
        with self._lock:
            texts = self._res[resource].frame.sort("id")["json"].to_list()
        return [json.loads(t, parse_float=Decimal) for t in texts]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {name: r.frame.height for name, r in self._res.items()}

    # ---- editing --------------------------------------------------------------------------
    def _tick(self) -> datetime:
        """A new `updated_at`: now, but strictly after anything served so far (whole seconds)."""
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        self._last_ts = max(now, self._last_ts + timedelta(seconds=1))
        return self._last_ts

    def _replace(self, resource: str, object_id: int, obj: dict[str, Any]) -> dict[str, Any]:
        row = _row_from_object(obj, self._res[resource].frame.schema)
        frame = self._res[resource].frame
        self._res[resource].frame = pl.concat([frame.filter(pl.col("id") != object_id), row])
        return obj

    def _load(self, resource: str, object_id: int) -> dict[str, Any]:
        if resource not in ("time_entries", "expenses"):
            raise SandboxError(f"only time_entries and expenses can be changed, not {resource!r}")
        text = self.get(resource, object_id)
        if text is None:
            raise SandboxError(f"{resource} {object_id} does not exist")
        return json.loads(text, parse_float=Decimal)

    def edit(self, resource: str, object_id: int, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7396: null removes a key) and bump `updated_at`.

        The patch is applied as given, so a test can also serve a malformed object (a string
        where a number belongs, a missing currency) to exercise the connector's quarantine.
        """
        patch = _decimals(patch)
        if resource == "time_entries" and isinstance(patch.get("hours"), Decimal):
            # Without a timer or a rounding setting, Harvest keeps these equal to the edited hours.
            patch = {"hours_without_timer": patch["hours"], "rounded_hours": patch["hours"]} | patch
        with self._lock:
            obj = _merge_patch(self._load(resource, object_id), patch)
            obj["id"] = object_id
            obj["updated_at"] = self._tick().strftime(TS_FORMAT)
            return self._replace(resource, object_id, obj)

    def approve(self, object_id: int) -> dict[str, Any]:
        with self._lock:
            obj = self._load("time_entries", object_id)
            obj.update(approval_status="approved", is_locked=True, locked_reason="Approved")
            obj["updated_at"] = self._tick().strftime(TS_FORMAT)
            return self._replace("time_entries", object_id, obj)

    def delete(self, resource: str, object_id: int) -> None:
        """Remove the object: like Harvest, the API simply stops returning it."""
        with self._lock:
            self._load(resource, object_id)
            frame = self._res[resource].frame
            self._res[resource].frame = frame.filter(pl.col("id") != object_id)

    def add_backdated(
        self, spent_date: date, template_id: int | None = None, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A new time entry for an old `spent_date`, created (and updated) now.

        It copies an existing entry (the lowest id unless `template_id` is given) so it references
        real clients, projects and users, and gets the next free id.
        """
        with self._lock:
            frame = self._res["time_entries"].frame
            if frame.height == 0:
                raise SandboxError("the account has no time entry to copy")
            source_id = template_id if template_id is not None else int(frame["id"].min())
            obj = self._load("time_entries", source_id)
            new_id = int(frame["id"].max()) + 1
            stamp = self._tick().strftime(TS_FORMAT)
            obj.update(
                id=new_id,
                spent_date=spent_date.isoformat(),
                created_at=stamp,
                updated_at=stamp,
                approval_status="unsubmitted",
                is_billed=False,
                invoice=None,
                is_locked=False,
                locked_reason=None,
            )
            obj = _merge_patch(obj, _decimals(fields or {}))
            return self._replace("time_entries", new_id, obj)


def _decimals(value: Any) -> Any:
    """Floats arriving in a JSON control request become Decimals so no float reaches the store."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _as_ts(value: Any) -> datetime | None:
    try:
        return datetime.strptime(value, TS_FORMAT).replace(tzinfo=UTC) if isinstance(value, str) else None
    except ValueError:
        return None


def _row_from_object(obj: dict[str, Any], schema: pl.Schema) -> pl.DataFrame:
    """The filter columns of one edited object; unparseable values filter as null, like a bad row."""

    def ref(key: str) -> int | None:
        value = obj.get(key)
        return _as_int(value.get("id")) if isinstance(value, dict) else None

    values: dict[str, Any] = {
        "id": _as_int(obj.get("id")),
        "spent_date": _as_date(obj.get("spent_date")),
        "updated_at": _as_ts(obj.get("updated_at")),
        "is_billed": obj.get("is_billed") if isinstance(obj.get("is_billed"), bool) else None,
        "is_running": obj.get("is_running") if isinstance(obj.get("is_running"), bool) else None,
        "project_id": ref("project"),
        "user_id": ref("user"),
        "client_id": ref("client"),
        "task_id": ref("task"),
        "json": dumps(obj),
    }
    return pl.DataFrame({name: [values.get(name)] for name in schema.names()}, schema=schema)


# ---- building resources from a demo dataset -------------------------------------------------
def _frame(
    source: pl.DataFrame, struct: pl.Expr, extra: dict[str, pl.Expr], updated_at: pl.Expr
) -> pl.DataFrame:
    cols = {
        "id": pl.col("id").cast(pl.Int64),
        "spent_date": pl.lit(None, dtype=pl.Date),
        "updated_at": updated_at,
        "is_billed": pl.lit(None, dtype=pl.Boolean),
        "is_running": pl.lit(None, dtype=pl.Boolean),
        "project_id": pl.lit(None, dtype=pl.Int64),
        "user_id": pl.lit(None, dtype=pl.Int64),
        "client_id": pl.lit(None, dtype=pl.Int64),
        "task_id": pl.lit(None, dtype=pl.Int64),
    } | extra
    out = source.select(**cols)
    return out.with_columns(_encode(source, struct))


def _utc(col: str, dtype: pl.DataType) -> pl.Expr:
    expr = pl.col(col)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return expr.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return expr.cast(pl.String).str.to_datetime(TS_FORMAT, time_zone="UTC", time_unit="us")


def build_resources(dataset: DemoDatasetLike, entity: str) -> dict[str, pl.DataFrame]:
    """Every API resource of the account that books into `entity`, with expenses derived from time."""
    ids = {
        "client_id": _int_ids(
            dataset.clients["client_id"], dataset.time_entries["client_id"], base=5_000_000
        ),
        "project_id": _int_ids(
            dataset.projects["project_id"], dataset.time_entries["project_id"], base=14_000_000
        ),
        "task_id": _int_ids(dataset.tasks["task_id"], dataset.time_entries["task_id"], base=8_000_000),
        "user_id": _int_ids(dataset.users["user_id"], dataset.time_entries["user_id"], base=1_700_000),
        "id": _int_ids(dataset.time_entries["id"], base=600_000_000),
    }
    clients = _map_ids(dataset.clients.filter(pl.col("entity") == entity), "client_id", ids["client_id"])
    projects = _map_ids(
        _map_ids(dataset.projects, "project_id", ids["project_id"]), "client_id", ids["client_id"]
    )
    projects = projects.filter(pl.col("client_id").is_in(clients["client_id"].implode()))
    tasks = _map_ids(dataset.tasks, "task_id", ids["task_id"])
    users = _map_ids(dataset.users.filter(pl.col("entity") == entity), "user_id", ids["user_id"])
    entries = dataset.time_entries.filter(pl.col("entity") == entity)
    for col in ("client_id", "project_id", "task_id", "user_id", "id"):
        entries = _map_ids(entries, col, ids[col])

    # Reference objects carry no timestamps in the dataset: date them at the account's first entry.
    epoch = (
        entries.select(_utc("created_at", entries.schema["created_at"]).min()).item()
        if entries.height
        else None
    )
    epoch = epoch or datetime(2026, 1, 1, tzinfo=UTC)
    epoch_text = pl.lit(epoch.strftime(TS_FORMAT))
    epoch_lit = pl.lit(epoch, dtype=pl.Datetime("us", "UTC"))

    client_ref = clients.select(
        pl.col("client_id"),
        pl.struct(
            pl.col("client_id").alias("id"),
            pl.col("name").cast(pl.String),
            pl.col("currency").cast(pl.String),
        ).alias("client_obj"),
    )
    out: dict[str, pl.DataFrame] = {}
    out["clients"] = _frame(
        clients.rename({"client_id": "id"}),
        pl.struct(
            pl.col("id"),
            pl.col("name").cast(pl.String),
            pl.col("is_active").cast(pl.Boolean),
            pl.lit(None, dtype=pl.String).alias("address"),
            pl.lit(None, dtype=pl.String).alias("statement_key"),
            pl.col("currency").cast(pl.String),
            epoch_text.alias("created_at"),
            epoch_text.alias("updated_at"),
        ),
        {},
        epoch_lit,
    )
    proj = projects.join(client_ref, on="client_id", how="left").rename({"project_id": "id"})
    out["projects"] = _frame(
        proj,
        pl.struct(
            pl.col("id"),
            pl.col("name").cast(pl.String),
            pl.col("code").cast(pl.String),
            pl.lit(True).alias("is_active"),
            pl.col("is_billable").cast(pl.Boolean),
            pl.col("is_fixed_fee").cast(pl.Boolean),
            pl.col("bill_by").cast(pl.String),
            _num("hourly_rate").alias("hourly_rate"),
            pl.lit(None, dtype=pl.String).alias("budget"),
            pl.lit("none").alias("budget_by"),
            pl.lit(None, dtype=pl.String).alias("fee"),
            pl.lit("").alias("notes"),
            pl.lit(None, dtype=pl.String).alias("starts_on"),
            pl.lit(None, dtype=pl.String).alias("ends_on"),
            epoch_text.alias("created_at"),
            epoch_text.alias("updated_at"),
            pl.col("client_obj").alias("client"),
        ),
        {"client_id": pl.col("client_id").cast(pl.Int64)},
        epoch_lit,
    )
    out["tasks"] = _frame(
        tasks.rename({"task_id": "id"}),
        pl.struct(
            pl.col("id"),
            pl.col("name").cast(pl.String),
            pl.col("billable_by_default").cast(pl.Boolean),
            _num("default_hourly_rate").alias("default_hourly_rate"),
            pl.lit(False).alias("is_default"),
            pl.lit(True).alias("is_active"),
            epoch_text.alias("created_at"),
            epoch_text.alias("updated_at"),
        ),
        {},
        epoch_lit,
    )
    out["users"] = _frame(
        users.rename({"user_id": "id"}),
        pl.struct(
            pl.col("id"),
            pl.col("first_name").cast(pl.String),
            pl.col("last_name").cast(pl.String),
            pl.col("email").cast(pl.String),
            pl.lit("").alias("telephone"),
            pl.lit("UTC").alias("timezone"),
            pl.col("is_contractor").cast(pl.Boolean),
            pl.lit(True).alias("is_active"),
            _num("default_hourly_rate").alias("default_hourly_rate"),
            _num("cost_rate").alias("cost_rate"),
            pl.lit([], dtype=pl.List(pl.String)).alias("roles"),
            pl.lit(["member"], dtype=pl.List(pl.String)).alias("access_roles"),
            epoch_text.alias("created_at"),
            epoch_text.alias("updated_at"),
        ),
        {},
        epoch_lit,
    )
    categories = pl.DataFrame(
        {
            "id": [c[0] for c in EXPENSE_CATEGORIES],
            "name": [c[1] for c in EXPENSE_CATEGORIES],
            "unit_price": [c[2] for c in EXPENSE_CATEGORIES],
            "unit_name": [c[3] for c in EXPENSE_CATEGORIES],
        }
    )
    category_struct = pl.struct(
        pl.col("id"),
        pl.col("name"),
        pl.when(pl.col("unit_price").is_not_null()).then(_num("unit_price")).alias("unit_price"),
        pl.col("unit_name"),
    )
    out["expense_categories"] = _frame(
        categories,
        pl.struct(
            pl.col("id"),
            pl.col("name"),
            pl.when(pl.col("unit_price").is_not_null()).then(_num("unit_price")).alias("unit_price"),
            pl.col("unit_name"),
            pl.lit(True).alias("is_active"),
            epoch_text.alias("created_at"),
            epoch_text.alias("updated_at"),
        ),
        {},
        epoch_lit,
    )

    te = _entry_base(entries, users, projects, tasks, clients)
    out["time_entries"] = _time_entries(te)
    out["expenses"] = _expenses(te, categories.select(category_struct.alias("category")))
    return out


def _entry_base(
    entries: pl.DataFrame,
    users: pl.DataFrame,
    projects: pl.DataFrame,
    tasks: pl.DataFrame,
    clients: pl.DataFrame,
) -> pl.DataFrame:
    schema = entries.schema
    joined = (
        entries.join(
            users.select(
                "user_id",
                pl.concat_str([pl.col("first_name"), pl.col("last_name")], separator=" ").alias("user_name"),
                pl.col("default_hourly_rate").alias("user_rate"),
            ),
            on="user_id",
            how="left",
        )
        .join(
            projects.select(
                "project_id",
                pl.col("name").cast(pl.String).alias("project_name"),
                pl.col("code").cast(pl.String).alias("project_code"),
                pl.col("hourly_rate").alias("project_rate"),
            ),
            on="project_id",
            how="left",
        )
        .join(
            tasks.select(
                "task_id",
                pl.col("name").cast(pl.String).alias("task_name"),
                pl.col("default_hourly_rate").alias("task_rate"),
            ),
            on="task_id",
            how="left",
        )
        .join(
            clients.select("client_id", pl.col("name").cast(pl.String).alias("client_name")),
            on="client_id",
            how="left",
        )
    )
    return joined.with_columns(
        _utc("created_at", schema["created_at"]).alias("created_ts"),
        _utc("updated_at", schema["updated_at"]).alias("updated_ts"),
        _date_text("spent_date", schema["spent_date"]).alias("spent_date_text"),
        (
            pl.col("spent_date") if schema["spent_date"] == pl.Date else pl.col("spent_date").cast(pl.Date)
        ).alias("spent_day"),
        # Assignment ids are stable functions of the pair they join, as Harvest's are stable.
        (
            pl.lit(100_000_000, dtype=pl.Int64) + pl.col("project_id") * 1_000 + pl.col("user_id") % 1_000
        ).alias("ua_id"),
        (
            pl.lit(200_000_000, dtype=pl.Int64) + pl.col("project_id") * 1_000 + pl.col("task_id") % 1_000
        ).alias("ta_id"),
        pl.col("is_billed").cast(pl.Boolean),
        pl.col("billable").cast(pl.Boolean),
    )


def _invoice() -> pl.Expr:
    """Billed items point at one invoice per client and month, as Harvest's monthly invoicing does."""
    return (
        pl.when(pl.col("is_billed"))
        .then(
            pl.struct(
                (
                    pl.lit(30_000_000, dtype=pl.Int64)
                    + pl.col("client_id") % 10_000 * 1_000
                    + pl.col("spent_day").dt.month().cast(pl.Int64)
                ).alias("id"),
                pl.concat_str(
                    [pl.col("spent_day").dt.strftime("%Y%m"), pl.col("client_id").cast(pl.String)],
                    separator="-",
                ).alias("number"),
            )
        )
        .otherwise(None)
    )


def _time_entries(te: pl.DataFrame) -> pl.DataFrame:
    created = pl.col("created_ts").dt.strftime(TS_FORMAT)
    updated = pl.col("updated_ts").dt.strftime(TS_FORMAT)
    approved = pl.col("approval_status").cast(pl.String) == "approved"
    locked = pl.col("is_billed") | approved
    invoice = _invoice()
    struct = pl.struct(
        pl.col("id"),
        pl.col("spent_date_text").alias("spent_date"),
        pl.struct(pl.col("user_id").alias("id"), pl.col("user_name").alias("name")).alias("user"),
        pl.struct(
            pl.col("client_id").alias("id"),
            pl.col("client_name").alias("name"),
            pl.col("currency").cast(pl.String),
        ).alias("client"),
        pl.struct(
            pl.col("project_id").alias("id"),
            pl.col("project_name").alias("name"),
            pl.col("project_code").alias("code"),
        ).alias("project"),
        pl.struct(pl.col("task_id").alias("id"), pl.col("task_name").alias("name")).alias("task"),
        pl.struct(
            pl.col("ua_id").alias("id"),
            pl.lit(False).alias("is_project_manager"),
            pl.lit(True).alias("is_active"),
            pl.lit(None, dtype=pl.String).alias("budget"),
            created.alias("created_at"),
            created.alias("updated_at"),
            _num("user_rate").alias("hourly_rate"),
        ).alias("user_assignment"),
        pl.struct(
            pl.col("ta_id").alias("id"),
            pl.col("billable"),
            pl.lit(True).alias("is_active"),
            created.alias("created_at"),
            created.alias("updated_at"),
            _num(pl.coalesce("project_rate", "task_rate")).alias("hourly_rate"),
            pl.lit(None, dtype=pl.String).alias("budget"),
        ).alias("task_assignment"),
        _num("hours").alias("hours"),
        _num("hours").alias("hours_without_timer"),
        _num("rounded_hours").alias("rounded_hours"),
        pl.col("notes").cast(pl.String),
        locked.alias("is_locked"),
        pl.when(pl.col("is_billed"))
        .then(pl.lit("Item Invoiced"))
        .when(approved)
        .then(pl.lit("Approved"))
        .otherwise(None)
        .alias("locked_reason"),
        pl.col("is_billed").alias("is_closed"),
        pl.col("approval_status").cast(pl.String),
        pl.col("is_billed"),
        invoice.alias("invoice"),
        pl.lit(None, dtype=pl.String).alias("external_reference"),
        pl.lit(None, dtype=pl.String).alias("timer_started_at"),
        pl.lit(None, dtype=pl.String).alias("started_time"),
        pl.lit(None, dtype=pl.String).alias("ended_time"),
        pl.lit(False).alias("is_running"),
        pl.col("billable"),
        pl.lit(False).alias("budgeted"),
        pl.when(pl.col("billable_rate").is_not_null()).then(_num("billable_rate")).alias("billable_rate"),
        pl.when(pl.col("cost_rate").is_not_null()).then(_num("cost_rate")).alias("cost_rate"),
        created.alias("created_at"),
        updated.alias("updated_at"),
    )
    return _frame(
        te,
        struct,
        {
            "spent_date": pl.col("spent_day"),
            "is_billed": pl.col("is_billed"),
            "is_running": pl.lit(False),
            "project_id": pl.col("project_id").cast(pl.Int64),
            "user_id": pl.col("user_id").cast(pl.Int64),
            "client_id": pl.col("client_id").cast(pl.Int64),
            "task_id": pl.col("task_id").cast(pl.Int64),
        },
        pl.col("updated_ts"),
    )


def _expenses(te: pl.DataFrame, categories: pl.DataFrame) -> pl.DataFrame:
    """One expense for every seventh time entry (by id), same person, project and day.

    Amounts and categories are pure functions of the entry id, so the same dataset always gives the
    same expenses; mileage is units x unit price, other categories a fixed-point total.
    """
    picked = te.filter(pl.col("id") % 7 == 0).with_columns(
        (pl.col("id") % len(EXPENSE_CATEGORIES)).alias("cat_idx"),
        (pl.lit(900_000_000, dtype=pl.Int64) + pl.col("id") % 100_000_000).alias("expense_id"),
    )
    cats = categories.with_row_index("cat_idx").with_columns(pl.col("cat_idx").cast(pl.Int64))
    picked = picked.join(cats, on="cat_idx", how="left").sort("id")
    is_mileage = pl.col("cat_idx") == 1  # EXPENSE_CATEGORIES[1] is Mileage
    units = (pl.col("id") % 90 + 10).cast(pl.Decimal(12, 2))
    fixed_total = ((pl.col("id") * 37) % 20_000 + 500).cast(pl.Decimal(14, 2)) / pl.lit(100).cast(
        pl.Decimal(14, 2)
    )
    mileage_total = units * pl.lit(Decimal("0.58"), dtype=pl.Decimal(12, 2))
    picked = picked.with_columns(
        pl.when(is_mileage).then(units).otherwise(pl.lit(1).cast(pl.Decimal(12, 2))).alias("units"),
        pl.when(is_mileage)
        .then(mileage_total.cast(pl.Decimal(14, 2)))
        .otherwise(fixed_total.cast(pl.Decimal(14, 2)))
        .alias("total_cost"),
        (pl.col("id") % 3 != 0).alias("exp_billable"),
    )
    created = pl.col("created_ts").dt.strftime(TS_FORMAT)
    updated = pl.col("updated_ts").dt.strftime(TS_FORMAT)
    receipt = (
        pl.when(pl.col("id") % 2 == 0)
        .then(
            pl.struct(
                pl.concat_str(
                    [
                        pl.lit("https://receipts.sandbox.invalid/"),
                        pl.col("expense_id").cast(pl.String),
                        pl.lit(".pdf"),
                    ]
                ).alias("url"),
                pl.concat_str(
                    [pl.lit("receipt-"), pl.col("expense_id").cast(pl.String), pl.lit(".pdf")]
                ).alias("file_name"),
                (pl.col("id") % 50_000 + 10_000).alias("file_size"),
                pl.lit("application/pdf").alias("content_type"),
            )
        )
        .otherwise(None)
    )
    struct = pl.struct(
        pl.col("expense_id").alias("id"),
        pl.concat_str(
            [pl.col("category").struct.field("name"), pl.lit(" for "), pl.col("project_name")]
        ).alias("notes"),
        _num("total_cost").alias("total_cost"),
        _num("units").alias("units"),
        pl.col("is_billed").alias("is_closed"),
        pl.col("is_billed").alias("is_locked"),
        pl.col("is_billed"),
        # Expenses are approved with the timesheet they were submitted with.
        pl.col("approval_status").cast(pl.String),
        pl.when(pl.col("is_billed"))
        .then(pl.lit("Expense is invoiced."))
        .otherwise(None)
        .alias("locked_reason"),
        pl.col("spent_date_text").alias("spent_date"),
        created.alias("created_at"),
        updated.alias("updated_at"),
        pl.col("exp_billable").alias("billable"),
        receipt.alias("receipt"),
        pl.struct(pl.col("user_id").alias("id"), pl.col("user_name").alias("name")).alias("user"),
        pl.struct(
            pl.col("ua_id").alias("id"),
            pl.lit(False).alias("is_project_manager"),
            pl.lit(True).alias("is_active"),
            _num("user_rate").alias("hourly_rate"),
        ).alias("user_assignment"),
        pl.struct(
            pl.col("project_id").alias("id"),
            pl.col("project_name").alias("name"),
            pl.col("project_code").alias("code"),
        ).alias("project"),
        pl.col("category").alias("expense_category"),
        pl.struct(
            pl.col("client_id").alias("id"),
            pl.col("client_name").alias("name"),
            pl.col("currency").cast(pl.String),
        ).alias("client"),
        _invoice().alias("invoice"),
    )
    return _frame(
        picked,
        struct,
        {
            "id": pl.col("expense_id"),
            "spent_date": pl.col("spent_day"),
            "is_billed": pl.col("is_billed"),
            "project_id": pl.col("project_id").cast(pl.Int64),
            "user_id": pl.col("user_id").cast(pl.Int64),
            "client_id": pl.col("client_id").cast(pl.Int64),
        },
        pl.col("updated_ts"),
    )
