"""Monthly invoicing: invoices, their lines and the invoice journal entries from billable work.

One invoice per (customer_ref, currency, invoice period) of an entity and month, with lines per
(project, task). The invoice period follows the client's billing cycle (`core.billing.cycles`):
the month, or ISO weeks split at month end; on-demand clients are not invoiced here (their work
stays in unbilled receivables until billing issues a requested invoice). Numbers follow the
entity's `invoice_number_format` with period = YYYYMM of the month and a gap-free seq ordered by
(period end, customer_ref, currency). Issue date = invoice period end; due date = issue date +
the client's payment terms. invoice_id is uuid5 of (entity, customer_ref, currency, period) and
deliberately not of the rule version, so re-running a period after a mapping change keeps the
document's identity; its journal entry id, like every entry id, includes the rule version.

Amounts. Line amount = sum of the rows' amounts (`rounding.money_level: line`) or, with
`money_level: invoice`, sum(billed_hours x bill_rate) rounded once per line. Exclusive pricing:
subtotal = sum of lines, tax = round(subtotal x tax_rate), total = subtotal + tax. Inclusive
pricing: the lines are gross, subtotal (net) = round(gross / (1 + tax_rate)), tax = gross - net,
total = gross.

The invoice entry (posting date = issue date, currency = invoice currency) relieves exactly what
the revenue accruals booked and balances in all three currencies:
- Cr unbilled_receivables per (customer_job, project_code): the rows' amounts, and in the
  functional and reporting currencies the sums of the rows' converted amounts;
- Cr tax_payable: the tax; converted at the invoice's weighted rate (sum of the rows' functional
  or reporting amounts / sum of their transaction amounts), rounded once;
- inclusive pricing: Dr service_revenue for the tax carved out of the gross revenue accrued;
- invoice-level rounding: the difference between the invoice lines and the accrued rows goes to
  service_revenue (credit when the invoice is higher), converted at the weighted rate;
- Dr accounts_receivable: the total, and in the functional and reporting currencies the
  balancing sum of the other lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.billing.cycles import with_periods
from pm_accounting_pipeline.core.ids import stable_id
from pm_accounting_pipeline.core.ledger import LINE_KEY, SOURCE_ROW_COLUMNS, LedgerBatch, assemble, money_expr
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import (
    decimal_to_scaled_expr,
    div_round_expr,
    rescale_expr,
    scaled_to_decimal_expr,
)

INVOICE_KEY = ["customer_ref", "currency", "period_start", "period_end"]
INVOICE_LINE_KEY = ["customer_job", "project_code", "project_name", "task_name", "item", "revenue_account"]


@dataclass(frozen=True)
class InvoiceBatch:
    invoices: pl.DataFrame
    invoice_lines: pl.DataFrame
    entries: pl.DataFrame
    lines: pl.DataFrame
    line_sources: pl.DataFrame

    @property
    def ledger(self) -> LedgerBatch:
        return LedgerBatch(entries=self.entries, lines=self.lines, line_sources=self.line_sources)


def _empty(ledger: LedgerBatch) -> InvoiceBatch:
    return InvoiceBatch(
        invoices=pl.DataFrame(schema=polars_schema("ledger.invoices")),
        invoice_lines=pl.DataFrame(schema=polars_schema("ledger.invoice_lines")),
        entries=ledger.entries,
        lines=ledger.lines,
        line_sources=ledger.line_sources,
    )


def build_invoices(
    fx_month: pl.DataFrame, mapping: MappingDocument, entity: str, period_start: date, period_end: date
) -> InvoiceBatch:
    """Invoices for `entity`'s billable work dated within [period_start, period_end]."""
    if period_end < period_start:
        raise ValueError(f"period_end {period_end} is before period_start {period_start}")
    ent = mapping.entity(entity)
    mode = mapping.rounding.money_mode
    rule_version = mapping.rule_version
    rows = fx_month.filter(
        (pl.col("entity") == entity)
        & (pl.col("billing_status") == "billable")
        & (pl.col("amount_minor") > 0)
        & pl.col("work_date").is_between(period_start, period_end)
    )
    rows = with_periods(rows, mapping, period_start, period_end).filter(
        pl.col("billing_cycle") != "on_demand"
    )
    if rows.height == 0:
        return _empty(LedgerBatch.empty())
    currencies = set(rows["currency"].unique()) | {ent.functional_currency, mapping.reporting_currency}

    # --- invoice lines ----------------------------------------------------------------------------
    exact = decimal_to_scaled_expr(pl.col("billed_hours"), 4) * decimal_to_scaled_expr(pl.col("bill_rate"), 4)
    grouped = rows.group_by([*INVOICE_KEY, *INVOICE_LINE_KEY]).agg(
        decimal_to_scaled_expr(pl.col("billed_hours"), 4).sum().alias("_qty_e4"),
        pl.when(pl.col("bill_rate").n_unique() == 1).then(pl.col("bill_rate").first()).alias("unit_price"),
        pl.col("amount_minor").sum().alias("_accrued"),
        exact.sum().alias("_exact_e8"),
        pl.len().cast(pl.Int64).alias("source_count"),
        pl.col("approved_by")
        .drop_nulls()
        .unique()
        .sort()
        .str.join("; ")
        .replace("", None)
        .alias("approved_by"),
        pl.col("approved_at").max().alias("approved_at"),
    )
    digits = pl.col("currency").replace_strict(
        {c: minor_digits(c) for c in currencies}, return_dtype=pl.Int32
    )
    if mapping.rounding.money_level == "invoice":
        line_amount = rescale_expr(pl.col("_exact_e8"), 8, digits, mode)
    else:
        line_amount = pl.col("_accrued")
    grouped = grouped.with_columns(amount_minor=line_amount).sort(
        [*INVOICE_KEY, *INVOICE_LINE_KEY], nulls_last=False
    )
    grouped = grouped.with_columns(line_no=pl.int_range(1, pl.len() + 1).over(INVOICE_KEY))

    # --- invoice headers --------------------------------------------------------------------------
    heads = rows.group_by(INVOICE_KEY).agg(
        pl.col("client_name").first(),
        pl.col("tax_rate").n_unique().alias("_tax_rates"),
        pl.col("tax_rate").first(),
        pl.col("amount_minor").sum().alias("_accrued"),
        pl.col("amount_functional_minor").sum().alias("_accrued_fn"),
        pl.col("amount_reporting_minor").sum().alias("_accrued_rp"),
    )
    mixed = heads.filter(pl.col("_tax_rates") > 1)
    if mixed.height:
        raise ValueError(
            f"rows of one invoice carry different tax rates: {sorted(mixed['customer_ref'].to_list())}"
        )
    line_sums = grouped.group_by(INVOICE_KEY).agg(
        pl.col("amount_minor").sum().alias("_lines_total"), pl.len().cast(pl.Int64).alias("line_count")
    )
    heads = heads.join(line_sums, on=INVOICE_KEY).sort(
        "period_end", "customer_ref", "currency", "period_start"
    )
    terms = {c.customer_ref: c.payment_terms_days for c in mapping.clients}
    keys = heads.select(INVOICE_KEY).rows()
    fmt = ent.invoice_number_format
    heads = heads.with_columns(
        invoice_id=pl.Series(
            [stable_id("invoice", entity, ref, cur, p0, p1) for ref, cur, p0, p1 in keys],
            dtype=pl.String,
        ),
        invoice_number=pl.Series(
            [
                fmt.format(
                    entity=entity,
                    period=f"{period_start:%Y%m}",
                    year=period_start.year,
                    month=period_start.month,
                    seq=seq,
                )
                for seq in range(1, len(keys) + 1)
            ],
            dtype=pl.String,
        ),
        due_date=pl.Series(
            [p1 + timedelta(days=terms.get(ref, 30)) for ref, _, _, p1 in keys], dtype=pl.Date
        ),
    )
    rate_e6 = decimal_to_scaled_expr(pl.col("tax_rate"), 6)
    gross = pl.col("_lines_total")
    if ent.tax.pricing == "inclusive":
        net = div_round_expr(gross * 1_000_000, rate_e6 + 1_000_000, mode)
        heads = heads.with_columns(subtotal_minor=net, tax_minor=gross - net, total_minor=gross)
    else:
        tax = div_round_expr(gross * rate_e6, pl.lit(1_000_000), mode)
        heads = heads.with_columns(subtotal_minor=gross, tax_minor=tax, total_minor=gross + tax)

    ledger = _invoice_entries(rows, heads, mapping, entity, inclusive=ent.tax.pricing == "inclusive")
    entry_of = ledger.entries.select(pl.col("document_id").alias("invoice_id"), "entry_id")
    invoice_schema = polars_schema("ledger.invoices")
    invoices = (
        heads.join(entry_of, on="invoice_id", how="left")
        .with_columns(
            entity=pl.lit(entity),
            issue_date=pl.col("period_end"),
            subtotal=money_expr("subtotal_minor", "currency", currencies),
            tax=money_expr("tax_minor", "currency", currencies),
            total=money_expr("total_minor", "currency", currencies),
            rule_version=pl.lit(rule_version),
        )
        .sort("invoice_number")
        .select(invoice_schema.names())
        .cast(dict(invoice_schema))
    )
    line_schema = polars_schema("ledger.invoice_lines")
    invoice_lines = (
        grouped.join(heads.select([*INVOICE_KEY, "invoice_id", "invoice_number"]), on=INVOICE_KEY)
        .with_columns(
            entity=pl.lit(entity),
            description=pl.concat_str([pl.col("project_name"), pl.lit(" - "), pl.col("task_name")]),
            quantity=scaled_to_decimal_expr(pl.col("_qty_e4"), 4, 12),
            amount=money_expr("amount_minor", "currency", currencies),
        )
        .sort("invoice_number", "line_no")
        .select(line_schema.names())
        .cast(dict(line_schema))
    )
    return InvoiceBatch(
        invoices=invoices,
        invoice_lines=invoice_lines,
        entries=ledger.entries,
        lines=ledger.lines,
        line_sources=ledger.line_sources,
    )


def _invoice_entries(
    rows: pl.DataFrame,
    heads: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    inclusive: bool,
) -> LedgerBatch:
    mode = mapping.rounding.money_mode
    ent = mapping.entity(entity)
    acct = {
        r: mapping.account(entity, r) for r in ("accounts_receivable", "unbilled_receivables", "tax_payable")
    }
    revenue_account = mapping.account(entity, "service_revenue")
    common = {
        "entity": pl.lit(entity),
        "posting_date": pl.col("period_end"),
        "entry_type": pl.lit("invoice"),
        "document_id": pl.col("invoice_id"),
        "description": pl.format("Invoice {} to {} ({})", "invoice_number", "customer_ref", "currency"),
        "functional_currency": pl.lit(ent.functional_currency),
        "reporting_currency": pl.lit(mapping.reporting_currency),
        "source_amount": pl.lit("amount_minor"),
    }
    rows = rows.with_row_index("_idx")
    per_invoice = rows.group_by(INVOICE_KEY, maintain_order=True).agg(pl.col("_idx").alias("rows"))
    heads = heads.join(per_invoice, on=INVOICE_KEY).with_columns(**common)
    unbilled = (
        rows.group_by([*INVOICE_KEY, "customer_job", "project_code"], maintain_order=True)
        .agg(
            pl.col("amount_minor").sum().alias("tx_minor"),
            pl.col("amount_functional_minor").sum().alias("fn_minor"),
            pl.col("amount_reporting_minor").sum().alias("rp_minor"),
            pl.col("_idx").alias("rows"),
        )
        .join(heads.select(*INVOICE_KEY, "invoice_id", "invoice_number"), on=INVOICE_KEY)
        .with_columns(**common)
    )

    # Converted at the invoice's weighted rate: accrued functional (reporting) / accrued transaction.
    def weighted(minor: pl.Expr, accrued: str) -> pl.Expr:
        return div_round_expr(minor * pl.col(accrued), pl.col("_accrued"), mode)

    none = pl.lit(None, dtype=pl.String)

    def line(frame: pl.DataFrame, account: str, role: str, side: str, tx: pl.Expr, job: bool) -> pl.DataFrame:
        return frame.select(
            *common,
            pl.col("currency"),
            pl.lit(account).alias("account"),
            pl.lit(role).alias("account_role"),
            pl.lit(side).alias("side"),
            pl.col("customer_ref"),
            (pl.col("customer_job") if job else none).alias("customer_job"),
            (pl.col("project_code") if job else none).alias("project_code"),
            tx.alias("tx_minor"),
            pl.col("fn_minor"),
            pl.col("rp_minor"),
            pl.col("rows"),
        )

    tax = heads.filter(pl.col("tax_minor") > 0).with_columns(
        fn_minor=weighted(pl.col("tax_minor"), "_accrued_fn"),
        rp_minor=weighted(pl.col("tax_minor"), "_accrued_rp"),
    )
    parts = [
        line(
            unbilled,
            acct["unbilled_receivables"],
            "unbilled_receivables",
            "credit",
            pl.col("tx_minor"),
            job=True,
        ),
        line(tax, acct["tax_payable"], "tax_payable", "credit", pl.col("tax_minor"), job=False),
    ]
    if inclusive:
        parts.append(line(tax, revenue_account, "service_revenue", "debit", pl.col("tax_minor"), job=False))
    # Invoice-level rounding: the lines' total against what the accruals booked, to revenue.
    diff = pl.col("_lines_total") - pl.col("_accrued")
    adjust = heads.filter(diff != 0).with_columns(
        _abs=diff.abs(), _side=pl.when(diff > 0).then(pl.lit("credit")).otherwise(pl.lit("debit"))
    )
    adjust = adjust.with_columns(
        fn_minor=weighted(pl.col("_abs"), "_accrued_fn"), rp_minor=weighted(pl.col("_abs"), "_accrued_rp")
    )
    for side in ("credit", "debit"):
        chosen = adjust.filter(pl.col("_side") == side)
        parts.append(line(chosen, revenue_account, "service_revenue", side, pl.col("_abs"), job=False))
    others = pl.concat(parts, how="vertical")
    signed = pl.when(pl.col("side") == "credit").then(1).otherwise(-1)
    balance = others.group_by("document_id").agg(
        (pl.col("fn_minor") * signed).sum().alias("fn_minor"),
        (pl.col("rp_minor") * signed).sum().alias("rp_minor"),
    )
    ar = heads.join(balance, on="document_id")
    receivable = line(
        ar, acct["accounts_receivable"], "accounts_receivable", "debit", pl.col("total_minor"), job=False
    )
    # With inclusive pricing the tax carve-out and a rounding debit both hit service_revenue on the
    # same key: they are one line (same rows behind both).
    line_amounts = (
        pl.concat([receivable, others], how="vertical")
        .group_by(LINE_KEY, maintain_order=True)
        .agg(
            *[
                pl.col(c).first()
                for c in (
                    "description",
                    "functional_currency",
                    "reporting_currency",
                    "account_role",
                    "source_amount",
                )
            ],
            pl.col("tx_minor").sum(),
            pl.col("fn_minor").sum(),
            pl.col("rp_minor").sum(),
            pl.col("rows").first(),
        )
    )
    source_rows = rows.select(*SOURCE_ROW_COLUMNS, "amount_minor")
    return assemble(line_amounts, source_rows, mapping.rule_version)
