"""What customers owe: the open balance of each billing document and the retainer balance per
client, from documents, settlements (credits applied, retainer drawdowns, refunds) and payments.

open = total + sum(settlements) - sum(payments). The same rule is the SQL view
`analytics.open_items` (sql/analytics/35_billing.sql), which AR aging reads.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import minor_to_decimal_expr


def open_items(
    documents: pl.DataFrame, settlements: pl.DataFrame, payments: pl.DataFrame, as_of: date | None = None
) -> pl.DataFrame:
    """One row per document: total, settled, paid and open (minor units and Decimal), as of a date."""
    if as_of is not None:
        documents = documents.filter(pl.col("issue_date") <= as_of)
        settlements = settlements.filter(pl.col("settlement_date") <= as_of)
        if "payment_date" in payments.columns:
            payments = payments.filter(pl.col("payment_date") <= as_of)
    settled = settlements.group_by("document_id").agg(pl.col("amount_minor").sum().alias("settled_minor"))
    if {"invoice_id", "amount_minor"} <= set(payments.columns):
        paid = payments.group_by(pl.col("invoice_id").alias("document_id")).agg(
            pl.col("amount_minor").sum().alias("paid_minor")
        )
    else:
        paid = pl.DataFrame(schema={"document_id": pl.String, "paid_minor": pl.Int64})
    out = (
        documents.select(
            "entity",
            "document_id",
            "document_number",
            "document_type",
            "customer_ref",
            "client_name",
            "currency",
            "issue_date",
            "due_date",
            "total_minor",
        )
        .join(settled, on="document_id", how="left")
        .join(paid, on="document_id", how="left")
        .with_columns(pl.col("settled_minor").fill_null(0), pl.col("paid_minor").fill_null(0).cast(pl.Int64))
        .with_columns(open_minor=pl.col("total_minor") + pl.col("settled_minor") - pl.col("paid_minor"))
    )
    digits = {c: minor_digits(c) for c in out["currency"].unique().to_list()}
    d = pl.col("currency").replace_strict(digits, return_dtype=pl.Int32) if digits else pl.lit(2)
    return out.with_columns(open=minor_to_decimal_expr(pl.col("open_minor"), d).cast(pl.Decimal(18, 3))).sort(
        "entity", "document_number"
    )


def retainer_balances(movements: pl.DataFrame) -> pl.DataFrame:
    """Retainer balance per entity, client and currency (issued - drawn)."""
    out = movements.group_by("entity", "customer_ref", "client_name", "currency").agg(
        pl.col("amount_minor").filter(pl.col("kind") == "issued").sum().alias("issued_minor"),
        (-pl.col("amount_minor").filter(pl.col("kind") == "drawn").sum()).alias("drawn_minor"),
        pl.col("amount_minor").sum().alias("balance_minor"),
        pl.col("functional_minor").sum().alias("balance_functional_minor"),
    )
    return out.sort("entity", "customer_ref", "currency")
