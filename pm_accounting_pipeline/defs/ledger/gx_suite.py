"""The great-expectations suite over the ledger layer (journal lines, per-entry balances, invoices)
and its rendered Data Docs. Plain functions over polars frames: no dagster here, only the ledger
asset check calls it.

How the data reaches great-expectations 1.24 (see STACK.md pitfall 8): each frame is converted to
pandas and validated as a whole-dataframe batch in an ephemeral context, one context per call.

- Money never becomes a float. Int64 minor-unit columns stay int64 (pandas nullable `Int64` when
  they hold nulls). Decimal columns (`debit`, `credit`, `total`, ...) reach pandas as exact int64
  counts of their contract scale (Decimal(18,3) 1.500 -> 1500): sign and zero are preserved, which
  is all the suite asks of them, and a million Decimal objects would cost seconds.
- great-expectations has no cross-column "exactly one of" and no cross-row group expectation, so
  the suite validates helper columns computed here with polars (all prefixed `gx_`):
  `gx_nonzero_sides` on each journal line = how many of debit_minor / credit_minor are non-zero (a
  null counts as zero), expected to be 1; `gx_total_mismatch_minor` / `gx_total_mismatch_milli` on
  each invoice = total - (subtotal + tax), expected to be 0; and a second batch, one row per journal
  entry, holding its imbalances (sum of debits - sum of credits in transaction minor units, and in
  functional and reporting thousandths), its line count and how many currencies and entities its
  lines use. The column-set expectations list the contract columns plus these helper columns.
- The suites: "ledger_suite" (journal lines), "ledger_suite.entry_balance" (the per-entry batch)
  and "ledger_suite.invoices". All three run under one run id and the outcome reports all of them.
- Data Docs: a filesystem site rooted at `docs_dir` replaces the context's default temporary site;
  `build_data_docs()` writes `docs_dir/index.html` plus one page per suite and per validation. The
  run id is `run_name` at `run_time` (by default the latest posting date, midnight UTC), so validating
  the same data again rewrites the same pages instead of adding wall-clock-stamped ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.money import known_currencies
from pm_accounting_pipeline.core.rounding import decimal_to_scaled_expr

if TYPE_CHECKING:
    import pandas as pd

    from pm_accounting_pipeline.config.schema import MappingDocument

LINES_SUITE = "ledger_suite"
ENTRY_BALANCE_SUITE = "ledger_suite.entry_balance"
INVOICES_SUITE = "ledger_suite.invoices"
DATA_DOCS_SITE = "ledger_data_docs"
DATASOURCE = "ledger"

# Plausible posting dates when the caller gives no range: the ECB reference-rate history the FX
# layer relies on starts in 1999, and nothing is posted a lifetime ahead.
DEFAULT_POSTING_DATE_RANGE = (date(2000, 1, 1), date(2099, 12, 31))

NONZERO_SIDES = "gx_nonzero_sides"
TOTAL_MISMATCH_MINOR = "gx_total_mismatch_minor"
TOTAL_MISMATCH_MILLI = "gx_total_mismatch_milli"
LINE_HELPERS = (NONZERO_SIDES,)
INVOICE_HELPERS = (TOTAL_MISMATCH_MINOR, TOTAL_MISMATCH_MILLI)
ENTRY_BALANCE_COLUMNS = (
    "entry_id",
    "line_count",
    "currency_count",
    "entity_count",
    "imbalance_minor",
    "functional_imbalance_milli",
    "reporting_imbalance_milli",
)

# Identifier columns (nearly one value per row) stay plain object columns in pandas.
HIGH_CARDINALITY = frozenset({"line_id", "entry_id", "document_id", "invoice_id", "invoice_number"})

# How many offending values / row ids a failure summary quotes.
_SAMPLE = 5
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class SuiteOutcome:
    """What one run of the ledger suites found.

    `failed` holds one flat dict per failed expectation (suite, expectation, column, unexpected_count,
    unexpected_percent, observed, sample, rows, exception), every value a str, int, float or None so
    the list turns straight into a polars frame or Dagster metadata.
    """

    success: bool
    evaluated: int
    failed: list[dict]
    docs_index: Path | None
    statistics: dict


def mapping_currencies(mapping: MappingDocument) -> set[str]:
    """Every ISO 4217 code the mapping document uses: reporting, functional, client and rate-card."""
    codes = {mapping.reporting_currency}
    codes |= {e.functional_currency for e in mapping.entities}
    codes |= {c.currency for c in mapping.clients}
    codes |= {r.currency for r in mapping.rate_cards if r.currency is not None}
    return codes


def validate_ledger(
    journal_lines: pl.DataFrame,
    invoices: pl.DataFrame | None,
    docs_dir: Path | None,
    *,
    currencies: set[str] | None = None,
    posting_date_range: tuple[date, date] | None = None,
    run_name: str = "ledger",
    run_time: datetime | None = None,
) -> SuiteOutcome:
    """Run the ledger suites over journal lines (and invoices, when given) and render Data Docs.

    `currencies` is the set a line's transaction currency must belong to (the mapping's codes, see
    `mapping_currencies`); None accepts any ISO 4217 code. Functional and reporting currencies are
    always checked against ISO 4217. `posting_date_range` is inclusive (default
    DEFAULT_POSTING_DATE_RANGE). With `docs_dir` None nothing is written.
    """
    lo, hi = posting_date_range or DEFAULT_POSTING_DATE_RANGE
    if lo > hi:
        raise ValueError(f"posting_date_range starts after it ends: {lo} > {hi}")
    allowed = sorted(currencies) if currencies is not None else sorted(known_currencies())
    iso = sorted(known_currencies())

    lines_pl = _with_line_helpers(journal_lines)
    entries_pl = entry_balances(journal_lines)
    invoices_pl = _with_invoice_helpers(invoices) if invoices is not None else None

    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        # Replace the default site (a fresh temporary directory per context) so nothing is written
        # outside docs_dir.
        context.variables.data_docs_sites = {
            DATA_DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        }
    else:
        context.variables.data_docs_sites = {}
    source = context.data_sources.add_pandas(DATASOURCE)

    batches: list[tuple[str, str, list[Any], pl.DataFrame, str]] = [
        (
            LINES_SUITE,
            "journal_lines",
            _line_expectations(gx, allowed, iso, lo, hi),
            lines_pl,
            "line_id",
        ),
        (ENTRY_BALANCE_SUITE, "entry_balances", _entry_expectations(gx), entries_pl, "entry_id"),
    ]
    if invoices_pl is not None:
        batches.append(
            (INVOICES_SUITE, "invoices", _invoice_expectations(gx, allowed), invoices_pl, "invoice_number")
        )

    run_id = RunIdentifier(run_name=_safe_run_name(run_name), run_time=run_time or _as_of(journal_lines))
    per_suite: dict[str, dict] = {}
    failed: list[dict] = []
    evaluated = 0
    for suite_name, asset_name, expectations, frame, index_column in batches:
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
        batch_definition = source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe(
            asset_name
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
        )
        # No unexpected_index_column_names: great-expectations then visits every unexpected row in
        # Python (minutes for a mass failure); the row ids are looked up here from positions instead.
        result_format = {"result_format": "SUMMARY", "partial_unexpected_count": _SAMPLE}
        # Copy-on-write: great-expectations filters the whole frame by a boolean mask for most
        # expectations, and without it pandas deep-copies every column even when the mask is all true.
        with pd.option_context("mode.copy_on_write", True):
            result = validation.run(
                batch_parameters={"dataframe": to_pandas_exact(frame)},
                run_id=run_id,
                result_format=result_format,
            )
        stats = dict(result.statistics)
        stats["rows"] = frame.height
        stats["success"] = bool(result.success)
        per_suite[suite_name] = stats
        evaluated += int(stats["evaluated_expectations"])
        ids = frame.get_column(index_column) if index_column in frame.columns else None
        failed.extend(_failure(suite_name, r, ids) for r in result.results if not r.success)

    docs_index: Path | None = None
    if docs_dir is not None:
        urls = context.build_data_docs(site_names=[DATA_DOCS_SITE])
        docs_index = Path(urls[DATA_DOCS_SITE].removeprefix("file://"))

    # great-expectations returns results in its own metric-resolution order; sort for stable output.
    order = {name: i for i, name in enumerate(per_suite)}
    failed.sort(key=lambda f: (order[f["suite"]], f["expectation"], f["column"] or ""))
    success = all(s["success"] for s in per_suite.values())
    statistics = {
        "evaluated_expectations": evaluated,
        "successful_expectations": evaluated - len(failed),
        "unsuccessful_expectations": len(failed),
        "suites": per_suite,
        "run_name": run_id.run_name,
        "run_time": run_id.run_time.isoformat(),
    }
    return SuiteOutcome(
        success=success, evaluated=evaluated, failed=failed, docs_index=docs_index, statistics=statistics
    )


# --- helper frames (polars, vectorised) -------------------------------------------------------------


def _with_line_helpers(lines: pl.DataFrame) -> pl.DataFrame:
    if not {"debit_minor", "credit_minor"} <= set(lines.columns):
        # Without the source columns the helper is left out; its expectation then fails as
        # "column not found" instead of passing on made-up values.
        return lines
    nonzero = (pl.col("debit_minor").fill_null(0) != 0).cast(pl.Int64) + (
        pl.col("credit_minor").fill_null(0) != 0
    ).cast(pl.Int64)
    return lines.with_columns(nonzero.alias(NONZERO_SIDES))


def entry_balances(lines: pl.DataFrame) -> pl.DataFrame:
    """One row per journal entry: line count, currencies and entities used, and its imbalances.

    `imbalance_minor` is sum(debit_minor) - sum(credit_minor) in the transaction currency;
    `functional_imbalance_milli` / `reporting_imbalance_milli` are the same over the Decimal(18,3)
    functional and reporting columns, in exact thousandths. A balanced entry has all three at 0.
    Columns whose sources are missing from `lines` are left out.
    """
    if "entry_id" not in lines.columns:
        return pl.DataFrame()
    cols = set(lines.columns)
    aggs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("line_count")]
    if "currency" in cols:
        aggs.append(pl.col("currency").n_unique().cast(pl.Int64).alias("currency_count"))
    if "entity" in cols:
        aggs.append(pl.col("entity").n_unique().cast(pl.Int64).alias("entity_count"))
    if {"debit_minor", "credit_minor"} <= cols:
        aggs.append((pl.col("debit_minor").sum() - pl.col("credit_minor").sum()).alias("imbalance_minor"))
    for prefix in ("functional", "reporting"):
        debit, credit = f"{prefix}_debit", f"{prefix}_credit"
        if (
            {debit, credit} <= cols
            and lines.schema[debit] == lines.schema[credit]
            and _is_decimal(lines.schema[debit])
        ):
            diff = pl.col(debit).sum() - pl.col(credit).sum()
            aggs.append(_clamped_int64(decimal_to_scaled_expr(diff, 3)).alias(f"{prefix}_imbalance_milli"))
    # maintain_order: the same lines give the same entry order, so the sampled failures are stable.
    return lines.lazy().group_by("entry_id", maintain_order=True).agg(aggs).collect()


def _with_invoice_helpers(invoices: pl.DataFrame) -> pl.DataFrame:
    cols = set(invoices.columns)
    helpers: list[pl.Expr] = []
    if {"total_minor", "subtotal_minor", "tax_minor"} <= cols:
        helpers.append(
            (pl.col("total_minor") - (pl.col("subtotal_minor") + pl.col("tax_minor"))).alias(
                TOTAL_MISMATCH_MINOR
            )
        )
    if {"total", "subtotal", "tax"} <= cols and all(
        _is_decimal(invoices.schema[c]) for c in ("total", "subtotal", "tax")
    ):
        diff = pl.col("total") - (pl.col("subtotal") + pl.col("tax"))
        helpers.append(_clamped_int64(decimal_to_scaled_expr(diff, 3)).alias(TOTAL_MISMATCH_MILLI))
    return invoices.with_columns(helpers) if helpers else invoices


def _clamped_int64(value: pl.Expr) -> pl.Expr:
    # An Int128 difference far outside Int64 is still a non-zero difference; clamping keeps it one
    # instead of letting a strict cast fail or a lax cast turn it into a null that passes unseen.
    return value.clip(-_INT64_MAX, _INT64_MAX).cast(pl.Int64)


def _is_decimal(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Decimal)


def to_pandas_exact(frame: pl.DataFrame) -> pd.DataFrame:
    """A pandas copy of `frame` that never routes money through a float (pyarrow is not installed).

    Int columns stay int64 (nullable `Int64` when they hold nulls); Decimal columns become exact
    int64 counts of their scale; dates become UTC timestamps (a tz-aware column is one
    great-expectations compares vectorised, and second resolution keeps any year representable);
    strings become Categoricals (codes + sorted categories: great-expectations copies the frame for
    most expectations, and copying codes is far cheaper than copying a million Python strings),
    except the identifier columns in HIGH_CARDINALITY, whose categories would be the whole column.
    """
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {}
    for name, dtype in frame.schema.items():
        series = frame.get_column(name)
        if _is_decimal(dtype):
            series = frame.select(
                _clamped_int64(decimal_to_scaled_expr(pl.col(name), dtype.scale))
            ).to_series()
            dtype = pl.Int64
        if dtype.is_integer():
            values = series.cast(pl.Int64)
            if values.null_count():
                data[name] = pd.arrays.IntegerArray(
                    values.fill_null(0).to_numpy(), values.is_null().to_numpy()
                )
            else:
                data[name] = values.to_numpy()
        elif dtype == pl.Date:
            seconds = series.to_numpy().astype("datetime64[s]")
            data[name] = pd.DatetimeIndex(seconds).tz_localize("UTC")
        elif dtype == pl.String and name not in HIGH_CARDINALITY:
            categories = series.drop_nulls().unique().sort()
            codes = series.cast(pl.Enum(categories)).to_physical().cast(pl.Int32).fill_null(-1).to_numpy()
            data[name] = pd.Categorical.from_codes(
                codes, categories=pd.Index(categories.to_numpy(), dtype=object)
            )
        elif dtype == pl.Null:
            data[name] = np.full(frame.height, None, dtype=object)
        else:
            data[name] = series.to_numpy()
    return pd.DataFrame(data, index=pd.RangeIndex(frame.height))


# --- expectations ---------------------------------------------------------------------------------


def _line_expectations(gx: Any, currencies: list[str], iso: list[str], lo: date, hi: date) -> list[Any]:
    e = gx.expectations
    contract = list(polars_schema("ledger.journal_lines"))
    out: list[Any] = [
        e.ExpectTableColumnsToMatchSet(
            column_set=[*contract, *LINE_HELPERS],
            exact_match=True,
            description="Columns are exactly the ledger.journal_lines contract plus the gx_ helper columns.",
        )
    ]
    for column in (
        "entry_id",
        "line_id",
        "account",
        "currency",
        "entity",
        "posting_date",
        "debit_minor",
        "credit_minor",
        "debit",
        "credit",
    ):
        out.append(e.ExpectColumnValuesToNotBeNull(column=column))
    out.append(e.ExpectColumnValuesToBeUnique(column="line_id"))
    for column in ("debit_minor", "credit_minor", "debit", "credit"):
        out.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column=NONZERO_SIDES,
            value_set=[1],
            description="Each line is either a debit or a credit: exactly one of debit_minor and credit_minor "
            "is non-zero (gx_nonzero_sides counts the non-zero sides).",
        )
    )
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column="currency",
            value_set=currencies,
            description=f"The transaction currency is one the mapping document uses ({_listing(currencies)}).",
        )
    )
    for column in ("functional_currency", "reporting_currency"):
        out.append(
            e.ExpectColumnValuesToBeInSet(
                column=column, value_set=iso, description=f"{column} is an ISO 4217 code."
            )
        )
    out.append(
        e.ExpectColumnValuesToBeBetween(
            column="posting_date",
            # UTC-aware bounds: to_pandas_exact turns dates into UTC timestamps.
            min_value=datetime(lo.year, lo.month, lo.day, tzinfo=UTC),
            max_value=datetime(hi.year, hi.month, hi.day, tzinfo=UTC),
            description=f"Posting dates lie between {lo} and {hi}.",
        )
    )
    return out


def _entry_expectations(gx: Any) -> list[Any]:
    e = gx.expectations
    out: list[Any] = [
        e.ExpectTableColumnsToMatchSet(
            column_set=list(ENTRY_BALANCE_COLUMNS),
            exact_match=True,
            description="The per-entry helper batch built from journal lines has every balance column.",
        )
    ]
    for column, text in (
        ("imbalance_minor", "Each entry balances: sum(debit_minor) - sum(credit_minor) = 0."),
        ("functional_imbalance_milli", "Each entry balances in the functional currency."),
        ("reporting_imbalance_milli", "Each entry balances in the reporting currency."),
    ):
        out.append(e.ExpectColumnValuesToNotBeNull(column=column))
        out.append(e.ExpectColumnValuesToBeInSet(column=column, value_set=[0], description=text))
    out.append(
        e.ExpectColumnValuesToBeBetween(
            column="line_count", min_value=2, description="Each entry has at least a debit and a credit line."
        )
    )
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column="currency_count", value_set=[1], description="All lines of an entry share one currency."
        )
    )
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column="entity_count", value_set=[1], description="All lines of an entry belong to one entity."
        )
    )
    return out


def _invoice_expectations(gx: Any, currencies: list[str]) -> list[Any]:
    e = gx.expectations
    contract = list(polars_schema("ledger.invoices"))
    out: list[Any] = [
        e.ExpectTableColumnsToMatchSet(
            column_set=[*contract, *INVOICE_HELPERS],
            exact_match=True,
            description="Columns are exactly the ledger.invoices contract plus the gx_ helper columns.",
        )
    ]
    for column in (
        "invoice_id",
        "invoice_number",
        "entity",
        "currency",
        "subtotal_minor",
        "tax_minor",
        "total_minor",
    ):
        out.append(e.ExpectColumnValuesToNotBeNull(column=column))
    out.append(e.ExpectColumnValuesToBeUnique(column="invoice_id"))
    out.append(e.ExpectColumnValuesToBeUnique(column="invoice_number"))
    for column in ("subtotal_minor", "tax_minor", "total_minor"):
        out.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column=TOTAL_MISMATCH_MINOR,
            value_set=[0],
            description="total_minor = subtotal_minor + tax_minor (gx_total_mismatch_minor is the difference).",
        )
    )
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column=TOTAL_MISMATCH_MILLI,
            value_set=[0],
            description="total = subtotal + tax exactly (gx_total_mismatch_milli is the difference in thousandths).",
        )
    )
    out.append(
        e.ExpectColumnValuesToBeInSet(
            column="currency",
            value_set=currencies,
            description=f"The invoice currency is one the mapping document uses ({_listing(currencies)}).",
        )
    )
    return out


# --- results ----------------------------------------------------------------------------------------


def _failure(suite: str, result: Any, ids: pl.Series | None) -> dict:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column")
    detail = result.result or {}
    exception = _exception_message(result.exception_info)
    # A column-set mismatch is clearer as what is unexpected / missing than as the whole column list.
    observed = (detail.get("details") or {}).get("mismatched") or detail.get("observed_value")
    rows: list[Any] = []
    positions = [p for p in detail.get("partial_unexpected_index_list") or [] if isinstance(p, int)]
    if ids is not None and positions:
        rows = ids.gather(positions[:_SAMPLE]).to_list()
    percent = detail.get("unexpected_percent")
    return {
        "suite": suite,
        "expectation": config.type,
        "column": column,
        "unexpected_count": detail.get("unexpected_count"),
        "unexpected_percent": None if percent is None else round(float(percent), 4),
        "observed": None if observed is None else _short(observed),
        "sample": _short([_plain(v) for v in detail.get("partial_unexpected_list") or []][:_SAMPLE]) or None,
        "rows": _short(rows) or None,
        "exception": exception,
    }


def _exception_message(info: Any) -> str | None:
    """The first line of the error an expectation raised, if any.

    great-expectations reports either one {raised_exception, exception_message, ...} dict or, when a
    metric failed to compute (e.g. a missing column), a dict of those keyed by metric id.
    """
    if not isinstance(info, dict):
        return None
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for candidate in candidates:
        message = candidate.get("exception_message")
        if message or candidate.get("raised_exception"):
            text = str(message or "raised an exception").strip().splitlines()
            return (text[-1] if text else "raised an exception")[:200]
    return None


def _plain(value: Any) -> Any:
    """JSON-friendly scalar: numpy/pandas scalars unwrapped, midnight timestamps as ISO dates."""
    if value is None:
        return None
    import numpy as np

    if isinstance(value, np.datetime64):
        value = str(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date | Decimal):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN / NaT stand for a missing value
        return None
    return value


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join("null" if v is None else str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    return str(value)


def _listing(codes: list[str]) -> str:
    return ", ".join(codes) if len(codes) <= 20 else f"{len(codes)} ISO 4217 codes"


def _safe_run_name(name: str) -> str:
    # The run name becomes a directory of the Data Docs site.
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name) or "ledger"


def _as_of(lines: pl.DataFrame) -> datetime:
    if "posting_date" in lines.columns and lines.schema["posting_date"] == pl.Date:
        latest = lines.get_column("posting_date").max()
        if isinstance(latest, date):
            return datetime(latest.year, latest.month, latest.day, tzinfo=UTC)
    return datetime(1970, 1, 1, tzinfo=UTC)
