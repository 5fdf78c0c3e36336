"""Composing billing documents: lines from billed items (grouped as the mapping's `billing.bill_by`
says), correction lines, discount lines, then tax and totals.

Time lines. Items are grouped per document by the bill-by key: `project_task` (the lines of
`ledger.invoices`: project and task), `project`, `task` or `person`. A line's amount is the sum of
its items' amounts (`rounding.money_level: line`: each entry was rounded on its own) or the sum of
their exact hours x rate rounded once (`money_level: invoice`).

Correction lines (`adjustment`) group changed items per original document, project and task;
their amounts are the items' signed differences. Late work (never billed, from an earlier billed
period) is an adjustment line too.

Discounts (`discounts` of the mapping document) apply to the time lines of invoices for their
billing period: first project discounts on the project's items (their line-level amounts), then
client and invoice discounts on what remains: percentages on that same base (they do not
compound), then fixed amounts; the total discount never exceeds the base. Correction lines carry
the discount of the invoice they correct in proportion (its discount / its time amount), so a
credit for half the hours of a discounted invoice is half of what the customer paid for them.

Tax and totals come from `core.billing.amounts.document_taxes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.config.billing import Discount
from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.billing.amounts import document_taxes, percent_e4, share
from pm_accounting_pipeline.core.invoicing import INVOICE_LINE_KEY
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import MoneyRounding, div_round_int, rescale_expr

BILL_BY_KEYS: dict[str, list[str]] = {
    "project_task": INVOICE_LINE_KEY,
    "project": ["customer_job", "project_code", "project_name"],
    "task": ["task_name", "item", "revenue_account"],
    "person": ["person_name"],
}
ADJUSTMENT_KEY = ["orig_document_id", "customer_job", "project_code", "task_name"]

LINE_SCHEMA = pl.Schema(
    {
        "document_id": pl.String,
        "line_no": pl.Int64,
        "line_type": pl.String,
        "item": pl.String,
        "description": pl.String,
        "account": pl.String,
        "customer_job": pl.String,
        "project_code": pl.String,
        "task_name": pl.String,
        "person_name": pl.String,
        "quantity_e4": pl.Int64,
        "unit_price_e4": pl.Int64,
        "amount_minor": pl.Int64,
        "source_count": pl.Int64,
        "_order": pl.Int64,
        "_group": pl.String,
    }
)
# Order of line types on a document.
_TYPE_ORDER = {"time": 0, "adjustment": 1, "discount": 2, "retainer": 3, "credit": 4}


@dataclass(frozen=True)
class Composition:
    """Lines (LINE_SCHEMA plus `line_tax_minor`), the documents with their amounts, and the items
    with the line number that carries each (`line_no`)."""

    lines: pl.DataFrame
    documents: pl.DataFrame
    items: pl.DataFrame


def _str(v: str | None) -> pl.Expr:
    return pl.lit(v, dtype=pl.String)


def _group_label(cols: list[str]) -> pl.Expr:
    return pl.concat_str([pl.col(c).fill_null("\x00") for c in cols], separator="\x1f")


def time_lines(items: pl.DataFrame, mapping: MappingDocument, entity: str) -> pl.DataFrame:
    """Lines of the `time` items (items with `document_id`), grouped by `billing.bill_by`."""
    bill_by = mapping.billing.bill_by
    key = BILL_BY_KEYS[bill_by]
    service = mapping.account(entity, "service_revenue")
    currencies = set(items["currency"].unique().to_list())
    digits = pl.col("currency").replace_strict(
        {c: minor_digits(c) for c in currencies}, return_dtype=pl.Int32
    )
    grouped = items.group_by(["document_id", "currency", *key]).agg(
        pl.col("billed_e4").sum().alias("quantity_e4"),
        pl.when(pl.col("rate_e4").n_unique() == 1).then(pl.col("rate_e4").first()).alias("unit_price_e4"),
        pl.col("charge_minor").sum().alias("_charges"),
        pl.col("exact_e8").cast(pl.Int128).sum().alias("_exact"),
        pl.len().cast(pl.Int64).alias("source_count"),
    )
    if mapping.rounding.money_level == "invoice":
        amount = rescale_expr(pl.col("_exact"), 8, digits, mapping.rounding.money_mode)
    else:
        amount = pl.col("_charges")
    item_col = {"project_task": "item", "task": "item", "project": "project_name", "person": "person_name"}[
        bill_by
    ]
    description = {
        "project_task": pl.concat_str([pl.col("project_name"), pl.lit(" - "), pl.col("task_name")]),
        "project": pl.col("project_name"),
        "task": pl.col("task_name"),
        "person": pl.col("person_name"),
    }[bill_by]
    account = pl.col("revenue_account") if "revenue_account" in key else _str(service)
    out = grouped.with_columns(
        amount_minor=amount.cast(pl.Int64),
        line_type=_str("time"),
        item=pl.col(item_col),
        description=description,
        account=account,
        _group=_group_label(key),
        _order=pl.lit(_TYPE_ORDER["time"], dtype=pl.Int64),
    )
    for c in ("customer_job", "project_code", "task_name", "person_name"):
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    return (
        out.with_columns(line_no=pl.lit(0, dtype=pl.Int64))
        .select(LINE_SCHEMA.names())
        .cast(dict(LINE_SCHEMA))
    )


def adjustment_lines(
    items: pl.DataFrame, numbers: dict[str, str], mapping: MappingDocument, entity: str
) -> pl.DataFrame:
    """Lines of changed items (`adjustment`), per original document, project and task."""
    if items.height == 0:
        return pl.DataFrame(schema=LINE_SCHEMA)
    service = mapping.account(entity, "service_revenue")
    grouped = items.group_by(["document_id", *ADJUSTMENT_KEY]).agg(
        pl.col("billed_e4").sum().alias("quantity_e4"),
        pl.when(pl.col("rate_e4").n_unique() == 1).then(pl.col("rate_e4").first()).alias("unit_price_e4"),
        pl.col("charge_minor").sum().alias("amount_minor"),
        pl.len().cast(pl.Int64).alias("source_count"),
        pl.col("revenue_account").drop_nulls().first().alias("_account"),
    )
    orig = pl.col("orig_document_id").replace_strict(numbers, default=None, return_dtype=pl.String)
    label = pl.concat_str([pl.col("customer_job"), pl.lit(" - "), pl.col("task_name")])
    description = (
        pl.when(pl.col("orig_document_id").is_null())
        .then(pl.concat_str([pl.lit("Work not invoiced before: "), label]))
        .otherwise(pl.concat_str([pl.lit("Correction to "), orig, pl.lit(": "), label]))
    )
    out = grouped.with_columns(
        line_type=_str("adjustment"),
        item=pl.col("task_name"),
        description=description,
        account=pl.coalesce("_account", _str(service)),
        person_name=pl.lit(None, dtype=pl.String),
        _group=_group_label(ADJUSTMENT_KEY),
        _order=pl.lit(_TYPE_ORDER["adjustment"], dtype=pl.Int64),
        line_no=pl.lit(0, dtype=pl.Int64),
    )
    return out.select(LINE_SCHEMA.names()).cast(dict(LINE_SCHEMA))


def _line(
    document_id: str,
    line_type: str,
    item: str,
    description: str,
    account: str,
    amount: int,
    group: str,
    customer_job: str | None = None,
    project_code: str | None = None,
) -> dict[str, object]:
    return {
        "document_id": document_id,
        "line_no": 0,
        "line_type": line_type,
        "item": item,
        "description": description,
        "account": account,
        "customer_job": customer_job,
        "project_code": project_code,
        "task_name": None,
        "person_name": None,
        "quantity_e4": None,
        "unit_price_e4": None,
        "amount_minor": amount,
        "source_count": 0,
        "_order": _TYPE_ORDER[line_type],
        "_group": group,
    }


def extra_lines(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LINE_SCHEMA) if rows else pl.DataFrame(schema=LINE_SCHEMA)


def _matches_project(discount: Discount) -> pl.Expr:
    return (pl.col("customer_job") == discount.project) | (pl.col("project_code") == discount.project)


def discount_lines(
    heads: pl.DataFrame, items: pl.DataFrame, base_of: dict[str, int], mapping: MappingDocument, entity: str
) -> pl.DataFrame:
    """Discount lines for invoices (see the module docstring for the order). `items` are the
    discountable items per document (new and late work), `base_of` their line amount per document."""
    if not mapping.discounts or not base_of:
        return pl.DataFrame(schema=LINE_SCHEMA)
    mode = mapping.rounding.money_mode
    account = mapping.account(entity, "discounts")
    rows: list[dict[str, object]] = []
    for head in heads.filter(pl.col("document_type") == "invoice").iter_rows(named=True):
        doc = head["document_id"]
        if doc not in base_of:
            continue
        applicable = [
            d
            for d in mapping.discounts
            if d.client == head["client_name"] and d.applies(head["period_start"], head["period_end"])
        ]
        if not applicable:
            continue
        doc_items = items.filter(pl.col("document_id") == doc)
        remaining = int(base_of[doc])
        for d in sorted((d for d in applicable if d.scope == "project"), key=lambda d: d.id):
            project_base = int(doc_items.filter(_matches_project(d))["charge_minor"].sum())
            amount = _discount_amount(d, project_base, head["currency"], mode)
            amount = min(amount, max(remaining, 0), max(project_base, 0))
            if amount > 0:
                remaining -= amount
                rows.append(
                    _line(
                        doc,
                        "discount",
                        f"Discount {d.id}",
                        _describe(d),
                        account,
                        -amount,
                        f"{len(rows):04d}",
                        d.project,
                    )
                )
        base = max(remaining, 0)
        rest = sorted(
            (d for d in applicable if d.scope != "project"), key=lambda d: (d.kind != "percentage", d.id)
        )
        for d in rest:
            amount = min(_discount_amount(d, base, head["currency"], mode), max(remaining, 0))
            if amount > 0:
                remaining -= amount
                rows.append(
                    _line(
                        doc,
                        "discount",
                        f"Discount {d.id}",
                        _describe(d),
                        account,
                        -amount,
                        f"{len(rows):04d}",
                    )
                )
    return extra_lines(rows)


def _discount_amount(d: Discount, base: int, currency: str, mode: MoneyRounding) -> int:
    if d.kind == "percentage":
        return share(base, percent_e4(d.value), mode)
    return int(d.value.scaleb(minor_digits(currency)))


def _describe(d: Discount) -> str:
    what = f"{d.value.normalize():f}%" if d.kind == "percentage" else "fixed"
    on = {"client": "all work", "invoice": f"invoice for {d.period}", "project": f"project {d.project}"}[
        d.scope
    ]
    text = d.description or f"Discount {d.id}"
    return f"{text} ({what} on {on})"


def correction_discount_lines(
    adjustment_items: pl.DataFrame,
    documents: pl.DataFrame,
    numbers: dict[str, str],
    mapping: MappingDocument,
    entity: str,
) -> pl.DataFrame:
    """The original invoice's discount, in proportion, on correction lines (signed opposite)."""
    if adjustment_items.height == 0:
        return pl.DataFrame(schema=LINE_SCHEMA)
    discounted = documents.filter((pl.col("discount_minor") != 0) & (pl.col("time_minor") > 0)).select(
        pl.col("document_id").alias("orig_document_id"), "discount_minor", "time_minor"
    )
    sums = (
        adjustment_items.filter(pl.col("orig_document_id").is_not_null())
        .group_by("document_id", "orig_document_id")
        .agg(pl.col("charge_minor").sum().alias("amount_minor"))
        .join(discounted, on="orig_document_id", how="inner")
        .sort("document_id", "orig_document_id")
    )
    mode = mapping.rounding.money_mode
    account = mapping.account(entity, "discounts")
    rows = []
    for r in sums.iter_rows(named=True):
        amount = div_round_int(r["amount_minor"] * r["discount_minor"], r["time_minor"], mode)
        if amount != 0:
            number = numbers.get(r["orig_document_id"], r["orig_document_id"])
            rows.append(
                _line(
                    r["document_id"],
                    "discount",
                    "Discount on correction",
                    f"Discount of {number} on its correction",
                    account,
                    amount,
                    f"correction:{r['orig_document_id']}",
                )
            )
    return extra_lines(rows)


def number_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """Line numbers per document: by type (time, adjustment, discount, retainer, credit), then key."""
    ordered = lines.sort("document_id", "_order", "_group", "description", nulls_last=False)
    return ordered.with_columns(line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("document_id"))


def totals(
    lines: pl.DataFrame, heads: pl.DataFrame, mode: MoneyRounding
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tax and amounts per document: time, adjustment, discount, credit, retainer fee, subtotal,
    tax, total (heads need tax_rate_e6, pricing, tax_level)."""
    taxed_lines, docs = document_taxes(lines, heads, mode)

    def of(kind: str) -> pl.Expr:
        return pl.col("amount_minor").filter(pl.col("line_type") == kind).sum().alias(f"{kind}_minor")

    parts = lines.group_by("document_id").agg(
        of("time"),
        of("adjustment"),
        of("discount"),
        of("credit"),
        of("retainer").alias("retainer_fee_minor"),
        pl.len().cast(pl.Int64).alias("line_count"),
    )
    docs = docs.join(parts, on="document_id", how="left").with_columns(
        *[
            pl.col(c).fill_null(0).cast(pl.Int64)
            for c in (
                "time_minor",
                "adjustment_minor",
                "discount_minor",
                "credit_minor",
                "retainer_fee_minor",
                "line_count",
            )
        ]
    )
    return taxed_lines, docs
