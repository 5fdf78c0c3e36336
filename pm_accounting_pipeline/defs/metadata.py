"""Materialisation metadata a person reads in the Dagster UI: counts, reasons, totals, previews."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import dagster as dg
import pandera.polars as pa
import polars as pl

from pm_accounting_pipeline.core.money import minor_digits


def md_table(df: pl.DataFrame, limit: int = 20) -> str:
    if df.is_empty():
        return "_(none)_"
    head = df.head(limit)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append(
            "| " + " | ".join("" if v is None else str(v).replace("|", "\\|")[:80] for v in row) + " |"
        )
    if df.height > limit:
        lines.append(f"\n_{df.height - limit} more rows_")
    return "\n".join(lines)


def reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    if quarantine.is_empty():
        return {}
    counts = quarantine.group_by("reason").len().sort("reason")
    return {r: int(n) for r, n in counts.iter_rows()}


def totals_by_currency(df: pl.DataFrame, currency_col: str, minor_col: str) -> dict[str, str]:
    """Exact totals per currency as strings such as '12,345.67'."""
    if df.is_empty():
        return {}
    sums = df.group_by(currency_col).agg(pl.col(minor_col).sum()).sort(currency_col)
    out = {}
    for cur, minor in sums.iter_rows():
        amount = Decimal(int(minor)).scaleb(-minor_digits(cur))
        out[cur] = f"{amount:,.{minor_digits(cur)}f}"
    return out


def contract_check(
    check_name: str, model: type[pa.DataFrameModel], df: pl.DataFrame, asset_key: dg.AssetKey | None = None
) -> dg.AssetCheckResult:
    """Validate eagerly with lazy=True so every failure case is collected (STACK.md, pitfall 6)."""
    try:
        model.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return dg.AssetCheckResult(
            check_name=check_name,
            asset_key=asset_key,
            passed=False,
            metadata={
                "failure_cases": dg.MetadataValue.md(md_table(cases.cast(pl.String))),
                "failures": len(cases),
                "contract": model.Config.name,
            },
        )
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=True,
        metadata={"rows_validated": df.height, "contract": model.Config.name},
    )


def accounting_check(
    check_name: str,
    rows_in: pl.DataFrame,
    accepted: pl.DataFrame,
    quarantined: pl.DataFrame,
    keys: Iterable[tuple[str, str]],
    in_date: str,
    accepted_date: str,
    asset_key: dg.AssetKey | None = None,
) -> dg.AssetCheckResult:
    """Every row is accounted for: per partition, rows in = rows accepted + rows quarantined."""

    def per_key(df: pl.DataFrame, col: str, name: str) -> pl.DataFrame:
        # Group on the native date first and cast only the (small) result to the key text.
        return (
            df.group_by("entity", col)
            .agg(pl.len().alias(name))
            .select("entity", pl.col(col).cast(pl.String).alias("key"), name)
        )

    frame = pl.DataFrame(sorted(set(keys)), schema=["entity", "key"], orient="row")
    for df, col, name in (
        (rows_in, in_date, "rows_in"),
        (accepted, accepted_date, "accepted"),
        (quarantined, "partition_date", "quarantined"),
    ):
        frame = frame.join(per_key(df, col, name), on=["entity", "key"], how="left")
    frame = frame.fill_null(0)
    bad = frame.filter(pl.col("rows_in") != pl.col("accepted") + pl.col("quarantined"))
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=bad.is_empty(),
        metadata={
            "rows_in": int(frame["rows_in"].sum()),
            "accepted": int(frame["accepted"].sum()),
            "quarantined": int(frame["quarantined"].sum()),
            "partitions_out_of_balance": dg.MetadataValue.md(md_table(bad)),
        },
    )
