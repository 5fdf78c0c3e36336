"""Parse one dropped file into raw.time_entries rows (raw.expenses rows for Harvest's expense
export) and quarantine rows, losslessly.

Raw is source-shaped: every value stays the text the source wrote (numbers such as `1.234,50` and
flags such as `Yes` are read later by cleaning, with the entity's decimal separator); only Harvest's
`British Pound - GBP` becomes `GBP` and Toggl's `HH:MM:SS` duration becomes decimal hours. Empty
values become null, and the whole original row is kept in `source_record`. Only rows whose work date
cannot be read are quarantined here; every other check (hours, client, currency...) belongs to
cleaning. Bad content never raises: a file that cannot be used becomes an `error` plus quarantine
rows, so other files are unaffected.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import empty_frame, polars_schema
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.extract import formats as F

RAW_TABLE = "raw.time_entries"
QUARANTINE_TABLE = "staging.quarantine"
RAW_SCHEMA = polars_schema(RAW_TABLE)
QUARANTINE_SCHEMA = polars_schema(QUARANTINE_TABLE)
EXPENSES_TABLE = "raw.expenses"
EXPENSES_SCHEMA = polars_schema(EXPENSES_TABLE)

# The raw columns filled from a format's source columns (the rest are file/row metadata).
_FIELDS: tuple[str, ...] = (
    "client", "client_id", "project", "project_code", "task", "person", "person_id", "email", "notes",
    "hours_raw", "rounded_hours_raw", "billable_raw", "approved_raw", "invoiced_raw", "bill_rate_raw",
    "cost_rate_raw", "currency_raw",
)  # fmt: skip
# The raw.expenses columns filled from an expense export's columns.
_EXPENSE_FIELDS: tuple[str, ...] = (
    "client", "client_id", "project", "project_code", "person", "person_id", "category", "category_id",
    "units_raw", "unit_price_raw", "total_cost_raw", "billable_raw", "invoiced_raw", "receipt_url", "notes",
    "currency_raw", "approved_raw",
)  # fmt: skip


@dataclass(frozen=True)
class ParsedFile:
    """One file's rows (exactly the RawTimeEntry schema, or RawExpense for an expense export) and
    quarantine rows (exactly Quarantine).

    Invariant: rows_in == rows.height + quarantine.height. A file that cannot be read as rows at all
    (unreadable, unknown format, missing columns) counts as one input row with one quarantine row.
    """

    rows: pl.DataFrame
    quarantine: pl.DataFrame
    format: str
    file_hash: str
    rows_in: int
    error: str | None

    @property
    def accepted(self) -> bool:
        return self.error is None

    @property
    def rows_ok(self) -> int:
        return self.rows.height

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        if self.quarantine.height == 0:
            return {}
        counts = self.quarantine.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))

    @property
    def work_date_range(self) -> tuple[date, date] | None:
        if self.rows.height == 0:
            return None
        day = "spent_date" if self.format in F.EXPENSE_FORMATS else "work_date"
        return self.rows[day].min(), self.rows[day].max()  # type: ignore[return-value]


@dataclass(frozen=True)
class _Ctx:
    entity: str
    source_file: str
    file_hash: str
    extracted_at: datetime
    mapping: MappingDocument

    @property
    def partition_date(self) -> date:
        return self.extracted_at.date()


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_file(
    path: Path,
    entity: str,
    mapping: MappingDocument,
    *,
    extracted_at: datetime,
    source_file: str | None = None,
    fmt: str | None = None,
) -> ParsedFile:
    """Parse `path` for `entity`. `fmt` forces a format (one of formats.FORMATS); by default the format
    is recognised from the header. `source_file` (default: the file name) is recorded on every row."""
    path = Path(path)
    name = source_file or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        ctx = _Ctx(entity, name, "", _utc(extracted_at), mapping)
        return _file_failure(ctx, "file_unreadable", f"{name}: cannot be read: {exc.strerror or exc}")
    return parse_bytes(data, entity, mapping, extracted_at=extracted_at, source_file=name, fmt=fmt)


def parse_bytes(
    data: bytes,
    entity: str,
    mapping: MappingDocument,
    *,
    extracted_at: datetime,
    source_file: str,
    fmt: str | None = None,
) -> ParsedFile:
    """`parse_file` over bytes already in memory (landing hashes and parses the same bytes)."""
    mapping.entity(entity)  # an unknown entity is a caller error, not bad content: raise KeyError
    ctx = _Ctx(entity, source_file, hashlib.sha256(data).hexdigest(), _utc(extracted_at), mapping)
    json_like = F.looks_like_json(F.decode(data[:1024])[0])
    if fmt == F.CANONICAL_JSON or (fmt is None and json_like):
        frame_or_failure = _read_json(F.decode(data)[0], ctx)
        container = "json"
    else:
        frame_or_failure = _read_csv(data, ctx)
        container = "csv"
    if isinstance(frame_or_failure, ParsedFile):
        return frame_or_failure
    frame = frame_or_failure
    headers = F.Headers(frame.columns)
    detection = F.detect(headers, container, fmt, source_file)
    if detection.format is None:
        return _file_failure(ctx, detection.reason or "unknown_format", detection.message or "")
    return _to_raw(frame, headers, detection.format, ctx)


# --- reading -----------------------------------------------------------------------------------


def _read_csv(data: bytes, ctx: _Ctx) -> pl.DataFrame | ParsedFile:
    """Read every column as text. UTF-8 goes to polars as it is (no decoded copy of a large file);
    anything else is decoded (UTF-16 with BOM, Windows-1252, Latin-1) and re-encoded first."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = F.decode(data)[0].encode("utf-8")
    try:
        try:
            return pl.read_csv(data, infer_schema=False, empty_string_is_null=False, raise_if_empty=True)
        except pl.exceptions.ComputeError as exc:
            if "utf-8" not in str(exc).lower() and "utf8" not in str(exc).lower():
                raise
            text, _ = F.decode(data)
            return pl.read_csv(
                text.encode("utf-8"), infer_schema=False, empty_string_is_null=False, raise_if_empty=True
            )
    except pl.exceptions.NoDataError:
        return _file_failure(ctx, "file_unreadable", f"{ctx.source_file}: the file is empty")
    except pl.exceptions.PolarsError as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines if line.strip() and not line.startswith("-"))[:300]
        return _file_failure(ctx, "file_unreadable", f"{ctx.source_file}: not readable as CSV: {detail}")


def _read_json(text: str, ctx: _Ctx) -> pl.DataFrame | ParsedFile:
    try:
        # Numbers are kept as their source text so nothing is lost to float rounding.
        doc = json.loads(text, parse_float=str, parse_int=str)
    except json.JSONDecodeError as exc:
        return _file_failure(
            ctx, "file_unreadable", f"{ctx.source_file}: not valid JSON: {exc.msg} at line {exc.lineno}"
        )
    records = doc.get("time_entries") if isinstance(doc, dict) else doc
    if not isinstance(records, list):
        keys = ", ".join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        return _file_failure(
            ctx,
            "unknown_format",
            f"{ctx.source_file}: not a recognised format; expected one of: {F.EXPECTED_FORMATS}; "
            f'a JSON file must be a list of objects or {{"time_entries": [...]}}; found keys: {keys}',
        )
    if not records:
        return pl.DataFrame(schema=dict.fromkeys(F.CANONICAL_FIELDS, pl.String))
    try:
        frame = pl.from_dicts(records, infer_schema_length=None, strict=False)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return _file_failure(
            ctx,
            "unknown_format",
            f"{ctx.source_file}: canonical JSON must be a list of objects (one per entry)",
        )
    return frame.with_columns(_json_text(name, dtype) for name, dtype in frame.schema.items())


def _json_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A JSON column as text: strings as they are, true/false, nested values as JSON text."""
    col = pl.col(name)
    if dtype == pl.String:
        return col
    if dtype.is_nested():
        # Wrapping in a one-field struct lets polars encode any nested value; strip the wrapper.
        encoded = pl.struct(col.alias("v")).struct.json_encode()
        return pl.when(col.is_not_null()).then(encoded.str.slice(5, encoded.str.len_chars() - 6)).alias(name)
    return col.cast(pl.String)


# --- mapping source columns to raw columns -----------------------------------------------------


def _getter(headers: F.Headers) -> Callable[[str], pl.Expr]:
    def col(norm: str) -> pl.Expr:
        name = headers.get(norm)
        return pl.col(name) if name is not None else pl.lit(None, dtype=pl.String)

    return col


def _verbatim(e: pl.Expr) -> pl.Expr:
    """Free text (notes) as written; only empty becomes null."""
    return pl.when(e.str.len_bytes() > 0).then(e)


def _harvest_fields(headers: F.Headers) -> dict[str, pl.Expr]:
    col = _getter(headers)
    person = pl.concat_str([col("first name").fill_null(""), col("last name").fill_null("")], separator=" ")
    return {
        "client": F.empty_to_null(col("client")),
        "client_id": F.empty_to_null(col("client id")),
        "project": F.empty_to_null(col("project")),
        "project_code": F.empty_to_null(col("project code")),
        "task": F.empty_to_null(col("task")),
        "person": F.empty_to_null(person),
        "person_id": F.empty_to_null(col("employee id")),
        "email": F.empty_to_null(col("email")),
        "notes": _verbatim(col("notes")),
        "hours_raw": F.empty_to_null(col("hours")),
        "rounded_hours_raw": F.empty_to_null(col("hours rounded")),
        "billable_raw": F.empty_to_null(col("billable")),
        "approved_raw": F.empty_to_null(col("approved")),
        "invoiced_raw": F.empty_to_null(col("invoiced")),
        "bill_rate_raw": F.empty_to_null(col("billable rate")),
        "cost_rate_raw": F.empty_to_null(col("cost rate")),
        "currency_raw": F.normalise_currency(col("currency")),
    }


def _expense_fields(headers: F.Headers) -> dict[str, pl.Expr]:
    """Harvest's expense export: `Amount` (or `Total Amount`) is the expense's total; `Units` is
    the quantity of a unit-priced category (mileage); the receipt is referenced by its URL."""
    col = _getter(headers)
    person = pl.concat_str([col("first name").fill_null(""), col("last name").fill_null("")], separator=" ")
    amount = headers.expense_amount()
    none = pl.lit(None, dtype=pl.String)
    return {
        "client": F.empty_to_null(col("client")),
        "client_id": F.empty_to_null(col("client id")),
        "project": F.empty_to_null(col("project")),
        "project_code": F.empty_to_null(col("project code")),
        "person": F.empty_to_null(person),
        "person_id": F.empty_to_null(col("employee id")),
        "category": F.empty_to_null(col("category")),
        "category_id": none,
        "units_raw": F.empty_to_null(col("units")),
        "unit_price_raw": F.empty_to_null(col("unit price")),
        "total_cost_raw": F.empty_to_null(col(amount)) if amount else none,
        "billable_raw": F.empty_to_null(col("billable")),
        "invoiced_raw": F.empty_to_null(col("invoiced")),
        "receipt_url": F.empty_to_null(pl.coalesce(col("receipt url"), col("receipt"))),
        "notes": _verbatim(col("notes")),
        "currency_raw": F.normalise_currency(col("currency")),
        "approved_raw": F.empty_to_null(col("approved")),
    }


def _toggl_fields(headers: F.Headers) -> dict[str, pl.Expr]:
    col = _getter(headers)
    amount = headers.toggl_amount()
    currency = amount[1] if amount else None
    none = pl.lit(None, dtype=pl.String)
    return {
        "client": F.empty_to_null(col("client")),
        "client_id": none,
        "project": F.empty_to_null(col("project")),
        "project_code": none,
        "task": F.empty_to_null(col("task")),
        "person": F.empty_to_null(col("user")),
        "person_id": none,
        "email": F.empty_to_null(col("email")),
        "notes": _verbatim(col("description")),
        "hours_raw": F.duration_to_hours(col("duration")),
        "rounded_hours_raw": none,
        "billable_raw": F.empty_to_null(col("billable")),
        "approved_raw": none,  # Toggl's detailed export has no approval state
        "invoiced_raw": none,
        "bill_rate_raw": none,
        "cost_rate_raw": none,
        # The currency sits in the amount header: `Amount (USD)`; `Amount ()` means none is set.
        "currency_raw": pl.lit(currency, dtype=pl.String),
    }


def _canonical_fields(headers: F.Headers) -> dict[str, pl.Expr]:
    col = _getter(headers)
    return {
        "client": F.empty_to_null(col("client")),
        "client_id": F.empty_to_null(col("client_id")),
        "project": F.empty_to_null(col("project")),
        "project_code": F.empty_to_null(col("project_code")),
        "task": F.empty_to_null(col("task")),
        "person": F.empty_to_null(col("person")),
        "person_id": F.empty_to_null(col("person_id")),
        "email": F.empty_to_null(col("email")),
        "notes": _verbatim(col("notes")),
        "hours_raw": F.empty_to_null(col("hours")),
        "rounded_hours_raw": F.empty_to_null(col("rounded_hours")),
        "billable_raw": F.empty_to_null(col("billable")),
        "approved_raw": F.empty_to_null(col("approved")),
        "invoiced_raw": F.empty_to_null(col("invoiced")),
        "bill_rate_raw": F.empty_to_null(col("bill_rate")),
        "cost_rate_raw": F.empty_to_null(col("cost_rate")),
        "currency_raw": F.normalise_currency(col("currency")),
    }


def _identity_columns(headers: F.Headers, exclude: frozenset[str]) -> list[str]:
    """The columns that say what the work was: every column but the workflow ones, ordered by
    normalised header name so a re-export with reordered columns yields the same ids."""
    return [headers.by_norm[n] for n in sorted(headers.by_norm) if n not in exclude]


def _with_identity(base: pl.DataFrame, identity: list[str]) -> pl.DataFrame:
    """Add `_key` (the identity columns' text joined) and `_occ`, each row's number among the rows
    with the same key (1, 2, ...) in file order.

    Most rows are unique, so a hash finds the candidates and only those rows are grouped by the
    full key.
    """
    key = pl.concat_str([pl.col(c).fill_null("\x00") for c in identity], separator="\x1f")
    base = base.with_columns(key.alias("_key"))
    dup = base.select(pl.col("_key").hash(seed=0x0CC).is_duplicated()).to_series()
    occ = pl.repeat(1, base.height, dtype=pl.Int64, eager=True).alias("_occ")
    if dup.any():
        idx = dup.arg_true()
        sub = base.select("_key")[idx].select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("_key"))
        occ = occ.scatter(idx, sub.to_series())
    return base.with_columns(occ)


# --- assembling raw and quarantine rows --------------------------------------------------------


def _to_raw(frame: pl.DataFrame, headers: F.Headers, fmt: str, ctx: _Ctx) -> ParsedFile:
    entity = ctx.mapping.entity(ctx.entity)
    field_names, schema, day = _FIELDS, RAW_SCHEMA, "work_date"
    if fmt == F.HARVEST_CSV:
        fields = _harvest_fields(headers)
        configured, date_col = entity.harvest_csv.date_format, headers.get("date")
    elif fmt == F.HARVEST_EXPENSE_CSV:
        fields = _expense_fields(headers)
        configured, date_col = entity.harvest_csv.date_format, headers.get("date")
        field_names, schema, day = _EXPENSE_FIELDS, EXPENSES_SCHEMA, "spent_date"
    elif fmt == F.TOGGL_CSV:
        fields, configured, date_col = _toggl_fields(headers), "auto", headers.get("start date")
    else:
        fields, configured, date_col = _canonical_fields(headers), "YYYY-MM-DD", headers.get("date")
    assert date_col is not None  # detection guarantees the required date column

    source_names = frame.columns
    base = frame.with_row_index("_row", offset=1)
    del frame
    # Blank lines (every field empty) are not entries; drop them rather than quarantine noise. Only
    # rows with an empty date can be blank, so the full check runs on those few.
    maybe_blank = base.filter(pl.col(date_col).fill_null("").str.strip_chars() == "")
    if maybe_blank.height:
        blank = pl.all_horizontal(pl.col(c).fill_null("").str.strip_chars() == "" for c in source_names)
        blank_rows = maybe_blank.filter(blank)["_row"]
        base = base.filter(~pl.col("_row").is_in(blank_rows.implode()))
    rows_in = base.height

    if fmt in (F.CANONICAL_CSV, F.CANONICAL_JSON):
        source_id = F.empty_to_null(pl.col(headers.by_norm["source_id"]))
    else:
        # No id in the source: derive one from the row's content and its occurrence among identical
        # rows, so the same export landed twice gives the same ids and repeated rows stay distinct.
        identity = _identity_columns(
            headers,
            F.HARVEST_WORKFLOW_COLUMNS if fmt in (F.HARVEST_CSV, F.HARVEST_EXPENSE_CSV) else frozenset(),
        )
        base = _with_identity(base, identity)
        names = "|".join(F.normalise_header(c) for c in identity)
        source_id = stable_id_expr("_key", "_occ", prefix=f"{fmt}\x1f{ctx.entity}\x1f{names}")

    choice = F.choose_date_format(base[date_col], configured)
    date_raw = pl.col(date_col)
    if choice.format is None:
        how = f"any known date format ({', '.join(F.DATE_FORMATS)})"
        work_date = pl.lit(None, dtype=pl.Date)
    else:
        how = f"the date format {choice.format} " + (
            "detected from the file" if choice.detected else f"configured for entity '{ctx.entity}'"
        )
        work_date = F.parse_dates(date_raw, choice.format)
    if choice.ambiguous:
        reason = pl.lit("ambiguous_date")
    else:
        reason = (
            pl.when(pl.col("source_id").is_null() | F.empty_to_null(date_raw).is_null())
            .then(pl.lit("missing_required"))
            .when(pl.col("work_date").is_null())
            .then(pl.lit("bad_date"))
        )
    base = base.with_columns(work_date.alias("work_date"), source_id.alias("source_id"))
    base = base.with_columns(reason.alias("_reason"))
    n_bad = base.height - base["_reason"].null_count()

    error: str | None = None
    if choice.ambiguous:
        options = " or ".join(choice.ambiguous)
        example = base[date_col].drop_nulls().head(1).to_list()
        error = (
            f"{ctx.source_file}: ambiguous dates: every {date_col} value fits {options} (e.g. {example[0]!r}); "
            f"set entities[{ctx.entity}].harvest_csv.date_format in the mapping document rather than let the "
            "pipeline guess"
        )
        detail = pl.lit(f"the file's dates fit {options}; the date format cannot be chosen without guessing")
    else:
        detail = (
            pl.when(pl.col("source_id").is_null())
            .then(pl.lit("source_id is empty; the canonical format needs an explicit id per entry"))
            .when(F.empty_to_null(date_raw).is_null())
            .then(pl.lit(f"{date_col} is empty"))
            .otherwise(pl.concat_str([pl.lit(f"{date_col} '"), date_raw, pl.lit(f"' does not match {how}")]))
        )
        if rows_in > 0 and n_bad == rows_in and base["_reason"].eq("bad_date").all():
            example = base[date_col].head(1).to_list()[0]
            error = (
                f"{ctx.source_file}: no {date_col} value matches {how} (e.g. {example!r}); check the entity's "
                "harvest_csv.date_format in the mapping document"
            )

    record = pl.struct([pl.col(c) for c in source_names]).struct.json_encode()
    # Lazy, so filtering and the wide text columns are computed in one pass per output and the
    # intermediate copies of the source columns are not kept.
    ok = base.lazy() if n_bad == 0 else base.lazy().filter(pl.col("_reason").is_null())
    rows = (
        ok.select(
            pl.lit(ctx.entity).alias("entity"),
            # Until core/entities.py assigns the row, it belongs to the entity it was landed for.
            pl.lit(ctx.entity).alias("landing_entity"),
            pl.lit("pm_account").alias("entity_rule"),
            pl.col("work_date").alias(day),
            pl.lit(fmt).alias("source_system"),
            pl.lit(ctx.source_file).alias("source_file"),
            pl.lit(ctx.file_hash).alias("file_hash"),
            pl.col("_row").cast(pl.Int64).alias("source_row"),
            pl.col("source_id"),
            pl.lit(ctx.extracted_at, dtype=pl.Datetime("us", "UTC")).alias("extracted_at"),
            date_raw.alias("date_raw"),
            *(fields[name].alias(name) for name in field_names),
            record.alias("source_record"),
        )
        .select(schema.names())
        .cast(dict(schema))
        .collect()
    )
    quarantine = (
        base.lazy()
        .filter(pl.col("_reason").is_not_null())
        .select(
            pl.lit(ctx.entity).alias("entity"),
            pl.lit(ctx.partition_date).alias("partition_date"),
            pl.lit("raw").alias("layer"),
            pl.lit(fmt).alias("source_system"),
            pl.lit(ctx.source_file).alias("source_file"),
            pl.col("_row").cast(pl.Int64).alias("source_row"),
            pl.col("source_id"),
            pl.col("_reason").alias("reason"),
            detail.alias("detail"),
            record.alias("source_record"),
        )
        .cast(dict(QUARANTINE_SCHEMA))
        .collect()
    )
    return ParsedFile(rows, quarantine, fmt, ctx.file_hash, rows_in, error)


def _file_failure(ctx: _Ctx, reason: str, message: str) -> ParsedFile:
    quarantine = pl.DataFrame(
        {
            "entity": [ctx.entity],
            "partition_date": [ctx.partition_date],
            "layer": ["raw"],
            "source_system": [None],
            "source_file": [ctx.source_file],
            "source_row": [None],
            "source_id": [None],
            "reason": [reason],
            "detail": [message],
            "source_record": [None],
        },
        schema=QUARANTINE_SCHEMA,
    )
    return ParsedFile(empty_frame(RAW_TABLE), quarantine, "unknown", ctx.file_hash, 1, message)


# --- recognising a file from its header alone --------------------------------------------------

_SNIFF_CACHE: dict[tuple[str, int, int], str | None] = {}


def sniff_format(path: Path) -> str | None:
    """The format of a landed file judged from its first line (None when not recognised), without
    reading the whole file: the raw assets use it to route expense exports and time exports."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _SNIFF_CACHE:
        return _SNIFF_CACHE[key]
    with path.open("rb") as fh:
        head = fh.read(65536)
    text, _ = F.decode(head)
    fmt: str | None = None
    if F.looks_like_json(text):
        fmt = F.CANONICAL_JSON
    else:
        first = text.splitlines()[0] if text else ""
        names = next(csv.reader([first]), [])
        fmt = F.detect(F.Headers(names), "csv", None, path.name).format
    _SNIFF_CACHE[key] = fmt
    return fmt


def is_expense_file(path: Path, fmt: str | None) -> bool:
    """Whether a landed file holds expenses: its sidecar's format, else its header."""
    return (fmt if fmt is not None else sniff_format(path)) in F.EXPENSE_FORMATS
