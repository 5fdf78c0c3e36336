"""The file formats extraction understands and how to recognise them: header signatures, text
decoding, date-format choice, and the few vectorised normalisers raw applies (`British Pound - GBP`
-> `GBP`, Toggl's `01:30:00` -> `1.5000` hours). Numbers and flags stay as the source wrote them
(`1.234,50`, `Yes`): cleaning reads them with the entity's decimal separator.

Columns are always matched by header name (trimmed, case-insensitive, a trailing `?` ignored), never
by position: vendors add and reorder columns.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.core.rounding import div_round_expr

HARVEST_CSV = "harvest_csv"
TOGGL_CSV = "toggl_csv"
CANONICAL_CSV = "canonical_csv"
CANONICAL_JSON = "canonical_json"
HARVEST_EXPENSE_CSV = "harvest_expense_csv"
FORMATS = (HARVEST_CSV, TOGGL_CSV, CANONICAL_CSV, CANONICAL_JSON, HARVEST_EXPENSE_CSV)
# Formats whose rows are expenses (raw.expenses) rather than time entries (raw.time_entries).
EXPENSE_FORMATS = frozenset({HARVEST_EXPENSE_CSV})

# The canonical format's fields, in order (docs/formats.md is the reference).
CANONICAL_FIELDS: tuple[str, ...] = (
    "source_id", "date", "client", "client_id", "project", "project_code", "task", "person", "person_id",
    "email", "notes", "hours", "rounded_hours", "billable", "approved", "invoiced", "bill_rate", "cost_rate",
    "currency",
)  # fmt: skip
CANONICAL_REQUIRED: tuple[str, ...] = ("source_id", "date", "client", "project", "task", "person", "hours")
# Optional approval fields of the canonical format: not raw columns; they travel in `source_record`
# and core/approvals.py reads them (who approved the entry, and when, ISO 8601).
CANONICAL_APPROVAL_FIELDS: tuple[str, ...] = ("approved_by", "approved_at")

HARVEST_REQUIRED: tuple[str, ...] = ("date", "client", "project", "task", "hours", "first name", "last name")
TOGGL_REQUIRED: tuple[str, ...] = ("user", "project", "start date", "duration")
# Harvest's expense export also needs an amount column: `Amount` or `Total Amount` (EXPENSE_AMOUNT).
HARVEST_EXPENSE_REQUIRED: tuple[str, ...] = (
    "date",
    "client",
    "project",
    "category",
    "first name",
    "last name",
)
EXPENSE_AMOUNT: tuple[str, ...] = ("amount", "total amount")

# Harvest columns that record where an entry is in its workflow rather than what the work was. They
# change between two exports of the same entry, so they are left out of the derived source id.
HARVEST_WORKFLOW_COLUMNS = frozenset({"approved", "invoiced"})

EXPECTED_FORMATS = (
    "Harvest Detailed Time CSV (columns Date, Client, Project, Task, Hours, ...), Toggl detailed CSV, "
    "canonical CSV/JSON, Harvest expense CSV (Date, Client, Project, Category, Amount, ...) "
    "(see docs/formats.md)"
)

# Date formats as the mapping document names them (config.schema.HarvestCsvSettings) -> strptime.
DATE_FORMATS: dict[str, str] = {
    "YYYY-MM-DD": "%Y-%m-%d",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD/MM/YYYY": "%d/%m/%Y",
    "DD.MM.YYYY": "%d.%m.%Y",
}

_TOGGL_AMOUNT = re.compile(r"^amount\s*\(\s*([a-z]*)\s*\)$")
_LABELS = {
    HARVEST_CSV: "Harvest Detailed Time CSV",
    TOGGL_CSV: "Toggl detailed CSV",
    CANONICAL_CSV: "canonical CSV",
    CANONICAL_JSON: "canonical JSON",
    HARVEST_EXPENSE_CSV: "Harvest expense CSV",
}


def label(fmt: str) -> str:
    return _LABELS.get(fmt, fmt)


def normalise_header(name: str) -> str:
    """`  Billable? ` -> `billable`; BOMs and repeated spaces removed."""
    return " ".join(name.replace("\ufeff", "").strip().lower().split()).removesuffix("?").strip()


class Headers:
    """A file's header names, looked up by their normalised form (first occurrence wins)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.by_norm: dict[str, str] = {}
        for n in names:
            self.by_norm.setdefault(normalise_header(n), n)

    def __contains__(self, norm: str) -> bool:
        return norm in self.by_norm

    def get(self, norm: str) -> str | None:
        return self.by_norm.get(norm)

    def missing(self, required: tuple[str, ...]) -> list[str]:
        return [r for r in required if r not in self.by_norm]

    def expense_amount(self) -> str | None:
        """The normalised name of the expense amount column (`amount`, else `total amount`)."""
        return next((n for n in EXPENSE_AMOUNT if n in self.by_norm), None)

    def missing_for(self, fmt: str) -> list[str]:
        """The required columns of `fmt` this header lacks (an expense file needs one amount column)."""
        missing = self.missing(_REQUIRED[fmt])
        if fmt == HARVEST_EXPENSE_CSV and self.expense_amount() is None:
            missing.append("amount")
        return missing

    def toggl_amount(self) -> tuple[str, str | None] | None:
        """The `Amount (USD)` header and the currency inside it (None for `Amount ()`)."""
        for norm, original in self.by_norm.items():
            m = _TOGGL_AMOUNT.match(norm)
            if m:
                return original, (m.group(1).upper() or None)
        return None


@dataclass(frozen=True)
class Detection:
    """The outcome of recognising a header: a format, or a reason code and message."""

    format: str | None
    reason: str | None = None
    message: str | None = None


_REQUIRED = {
    HARVEST_CSV: HARVEST_REQUIRED,
    TOGGL_CSV: TOGGL_REQUIRED,
    CANONICAL_CSV: CANONICAL_REQUIRED,
    CANONICAL_JSON: CANONICAL_REQUIRED,
    HARVEST_EXPENSE_CSV: HARVEST_EXPENSE_REQUIRED,
}


def _pretty(required: list[str], fmt: str) -> str:
    if fmt in (CANONICAL_CSV, CANONICAL_JSON):
        return ", ".join(required)
    return ", ".join(" ".join(w.capitalize() for w in r.split()) for r in required)


def detect(headers: Headers, container: str, hint: str | None, source_file: str) -> Detection:
    """Recognise the format of a file from its header (CSV) or keys (JSON).

    `container` is "csv" or "json" (what the bytes look like); `hint` forces a format. A header that
    nearly matches one format (most of its required columns) is reported as that format missing
    columns, which is a more useful message than "unknown format".
    """
    candidates = (
        [CANONICAL_JSON]
        if container == "json"
        else [CANONICAL_CSV, TOGGL_CSV, HARVEST_CSV, HARVEST_EXPENSE_CSV]
    )
    if hint is not None:
        if hint not in FORMATS:
            return Detection(
                None, "unknown_format", f"{source_file}: unknown format {hint!r}; use one of {FORMATS}"
            )
        if (hint == CANONICAL_JSON) != (container == "json"):
            return Detection(
                None,
                "unknown_format",
                f"{source_file}: declared as {label(hint)} but the content is {container.upper()}",
            )
        candidates = [hint]
    for fmt in candidates:
        if not headers.missing_for(fmt):
            return Detection(fmt)
    # A near miss: more than half of some format's required columns are there (the closest wins).
    for fmt in sorted(candidates, key=lambda f: len(headers.missing_for(f)) / len(_REQUIRED[f])):
        req = _REQUIRED[fmt]
        missing = headers.missing_for(fmt)
        if hint is not None or len(missing) * 2 < len(req):
            return Detection(
                None,
                "missing_required",
                f"{source_file}: looks like a {label(fmt)} but lacks required column(s): {_pretty(missing, fmt)}; "
                f"found columns: {', '.join(headers.names)}",
            )
    what = "keys" if container == "json" else "columns"
    found = ", ".join(headers.names) if headers.names else "(none)"
    return Detection(
        None,
        "unknown_format",
        f"{source_file}: not a recognised format; expected one of: {EXPECTED_FORMATS}; found {what}: {found}",
    )


# --- decoding ----------------------------------------------------------------------------------


def decode(data: bytes) -> tuple[str, str]:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252, else Latin-1.

    Returns (text, encoding used). Latin-1 maps every byte, so decoding never fails.
    """
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    else:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{")


# --- vectorised normalisers --------------------------------------------------------------------


def empty_to_null(e: pl.Expr) -> pl.Expr:
    """Trimmed text; empty or blank becomes null."""
    return e.str.strip_chars().replace("", None)


def normalise_currency(e: pl.Expr) -> pl.Expr:
    """`British Pound - GBP` -> `GBP` (the code after the last " - "); `GBP` stays `GBP`."""
    s = empty_to_null(e)
    return s.str.split(" - ").list.last().str.strip_chars()


def duration_to_hours(e: pl.Expr) -> pl.Expr:
    """Toggl `HH:MM:SS` (or `HH:MM`) to decimal hours text with four places, rounded half up; anything
    else (a decimal duration such as `1.5`, or garbage for cleaning to quarantine) is kept verbatim."""
    s = empty_to_null(e)
    parts = s.str.extract_groups(r"^(\d+):([0-5]\d)(?::([0-5]\d))?$")
    seconds = (
        parts.struct.field("1").cast(pl.Int64) * 3600
        + parts.struct.field("2").cast(pl.Int64) * 60
        + parts.struct.field("3").cast(pl.Int64).fill_null(0)
    )
    ten_thousandths = div_round_expr(seconds * 10_000, pl.lit(3600, dtype=pl.Int64))
    text = pl.concat_str(
        [
            (ten_thousandths // 10_000).cast(pl.String),
            pl.lit("."),
            (ten_thousandths % 10_000).cast(pl.String).str.zfill(4),
        ]
    )
    return pl.when(seconds.is_not_null()).then(text).otherwise(s)


# --- dates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateChoice:
    """The date format a file is read with, or why none can be chosen."""

    format: str | None  # a key of DATE_FORMATS
    detected: bool
    ambiguous: tuple[str, ...] = ()  # formats that all fit when the choice is ambiguous


def parse_dates(e: pl.Expr, fmt: str) -> pl.Expr:
    return empty_to_null(e).str.strptime(pl.Date, DATE_FORMATS[fmt], strict=False)


def choose_date_format(values: pl.Series, configured: str) -> DateChoice:
    """Use the configured format, or with "auto" detect it from ALL the file's date values.

    Detection never guesses: when more than one format fits every value (a file of `03/04/2026`-style
    dates fits both MM/DD/YYYY and DD/MM/YYYY) the choice is ambiguous. When no format fits every
    value, the one that fits most values wins if it is the only one; its misfits become bad dates.
    """
    if configured != "auto":
        return DateChoice(configured, detected=False)
    uniq = values.str.strip_chars().filter(values.str.strip_chars().str.len_bytes() > 0).unique()
    if uniq.len() == 0:
        return DateChoice("YYYY-MM-DD", detected=True)
    fits = {
        name: uniq.len() - uniq.str.strptime(pl.Date, fmt, strict=False).null_count()
        for name, fmt in DATE_FORMATS.items()
    }
    best = max(fits.values())
    winners = tuple(name for name, n in fits.items() if n == best)
    if best == 0:
        return DateChoice(None, detected=True)
    if len(winners) > 1:
        return DateChoice(None, detected=True, ambiguous=winners)
    return DateChoice(winners[0], detected=True)
