"""Journal building: accrual entries from FX-enriched billables, and the assembly every entry shares.

Invariants (stated once, enforced by construction and checked by `core.checks`): every entry
balances in its transaction currency, in the entity's functional currency and in the reporting
currency, because the debit and credit sides are sums over the same rows of already-rounded row
amounts; identifiers are derived from what the entry is, never random; each line lists the work
items behind it in `line_sources`.

- revenue_accrual, per (entity, work date, transaction currency), from `billable` rows:
  Dr unbilled_receivables per (customer_ref, customer_job, project_code) /
  Cr the task's revenue account per (revenue_account, customer_ref, customer_job, project_code).
- cost_accrual, per (entity, work date), in the functional currency, from every row with cost:
  Dr cost_of_services per (customer_ref, customer_job, project_code) / Cr payroll_clearing.
Rows whose amount (or cost) is zero carry no money and produce no posting.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.frames import group_rows
from pm_accounting_pipeline.core.ids import stable_id, stable_id_expr
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import minor_to_decimal_expr

ENTRY_KEY = ["entity", "posting_date", "entry_type", "currency", "document_id"]
LINE_DIMS = ["account", "side", "customer_ref", "customer_job", "project_code"]
LINE_KEY = [*ENTRY_KEY, *LINE_DIMS]
_ROLES = ("unbilled_receivables", "cost_of_services", "payroll_clearing")

# What `assemble` takes: one row per journal line, amounts in minor units of each currency, and
# `rows`: the positions (in the `source_rows` frame) of the work items behind the line.
LINE_AMOUNTS_SCHEMA = pl.Schema(
    {
        "entity": pl.String,
        "posting_date": pl.Date,
        "entry_type": pl.String,
        "currency": pl.String,
        "document_id": pl.String,
        "description": pl.String,
        "functional_currency": pl.String,
        "reporting_currency": pl.String,
        "account": pl.String,
        "account_role": pl.String,
        "side": pl.String,
        "customer_ref": pl.String,
        "customer_job": pl.String,
        "project_code": pl.String,
        "tx_minor": pl.Int64,
        "fn_minor": pl.Int64,
        "rp_minor": pl.Int64,
        "rows": pl.List(pl.UInt32),
        "source_amount": pl.String,
    }
)
# Columns `source_rows` must hold; `source_amount` of a line names the one its sources report.
SOURCE_ROW_COLUMNS = ["work_item_id", "source_system", "source_id", "source_file", "source_row"]


@dataclass(frozen=True)
class LedgerBatch:
    """Journal entries, their lines and the line -> work item audit trail, in contract shape."""

    entries: pl.DataFrame
    lines: pl.DataFrame
    line_sources: pl.DataFrame

    @staticmethod
    def empty() -> LedgerBatch:
        return LedgerBatch(
            entries=pl.DataFrame(schema=polars_schema("ledger.journal_entries")),
            lines=pl.DataFrame(schema=polars_schema("ledger.journal_lines")),
            line_sources=pl.DataFrame(schema=polars_schema("ledger.line_sources")),
        )

    def concat(self, other: LedgerBatch) -> LedgerBatch:
        return LedgerBatch(
            entries=pl.concat([self.entries, other.entries]),
            lines=pl.concat([self.lines, other.lines]),
            line_sources=pl.concat([self.line_sources, other.line_sources]),
        )


def digits_expr(col: str, currencies: set[str]) -> pl.Expr:
    """The minor-unit digits of a currency column (JPY 0, USD 2, KWD 3)."""
    return pl.col(col).replace_strict({c: minor_digits(c) for c in currencies}, return_dtype=pl.Int32)


def money_expr(minor: str, currency_col: str, currencies: set[str]) -> pl.Expr:
    """Minor units as the contract's exact Decimal(18, 3) amount."""
    return minor_to_decimal_expr(pl.col(minor), digits_expr(currency_col, currencies)).cast(pl.Decimal(18, 3))


def assemble(line_amounts: pl.DataFrame, source_rows: pl.DataFrame, rule_version: str) -> LedgerBatch:
    """Give lines and entries their ids and numbers and shape everything to the ledger contracts.

    `line_amounts` follows LINE_AMOUNTS_SCHEMA, one row per line (`side` is "debit" or "credit");
    `source_rows` holds SOURCE_ROW_COLUMNS plus the amount columns that `source_amount` names.
    Entry ids are uuid5 of (entity, date, entry type, currency, rule version, document); line ids
    derive from the entry id and the line's dimensions; lines are numbered debits first, then by
    account, customer, job and project code.
    """
    if line_amounts.height == 0:
        return LedgerBatch.empty()
    lines = line_amounts.select(LINE_AMOUNTS_SCHEMA.names()).cast(dict(LINE_AMOUNTS_SCHEMA))
    if lines.select(LINE_KEY).is_duplicated().any():
        raise ValueError("two journal lines share one key; merge them before assembling")
    heads = lines.group_by(ENTRY_KEY).agg(
        pl.col("description").first(),
        pl.len().cast(pl.Int64).alias("line_count"),
        pl.col("tx_minor").filter(pl.col("side") == "debit").sum().alias("total_debit_minor"),
    )
    heads = heads.with_columns(
        entry_id=pl.Series(
            [
                stable_id(entity, posting_date, entry_type, currency, rule_version, document_id)
                for entity, posting_date, entry_type, currency, document_id in heads.select(
                    ENTRY_KEY
                ).iter_rows()
            ],
            dtype=pl.String,
        )
    ).sort(ENTRY_KEY, nulls_last=False)
    lines = lines.join(heads.select([*ENTRY_KEY, "entry_id"]), on=ENTRY_KEY, how="left", nulls_equal=True)
    lines = lines.with_columns(
        line_id=stable_id_expr("entry_id", *LINE_DIMS, prefix="line"),
        _side_order=pl.when(pl.col("side") == "debit").then(0).otherwise(1),
    ).sort(
        [*ENTRY_KEY, "_side_order", "account", "customer_ref", "customer_job", "project_code"],
        nulls_last=False,
    )
    lines = lines.with_columns(
        line_no=pl.int_range(1, pl.len() + 1).over("entry_id"),
        source_count=pl.col("rows").list.len().cast(pl.Int64),
    )

    currencies = set(lines["currency"].unique()) | set(lines["functional_currency"].unique())
    currencies |= set(lines["reporting_currency"].unique())
    debit = pl.col("side") == "debit"

    def split(minor: str, currency_col: str) -> tuple[pl.Expr, pl.Expr]:
        amount = money_expr(minor, currency_col, currencies)
        zero = pl.lit(0).cast(pl.Decimal(18, 3))
        return pl.when(debit).then(amount).otherwise(zero), pl.when(debit).then(zero).otherwise(amount)

    tx_d, tx_c = split("tx_minor", "currency")
    fn_d, fn_c = split("fn_minor", "functional_currency")
    rp_d, rp_c = split("rp_minor", "reporting_currency")
    line_schema = polars_schema("ledger.journal_lines")
    journal_lines = lines.with_columns(
        debit_minor=pl.when(debit).then(pl.col("tx_minor")).otherwise(0),
        credit_minor=pl.when(debit).then(0).otherwise(pl.col("tx_minor")),
        debit=tx_d,
        credit=tx_c,
        functional_debit=fn_d,
        functional_credit=fn_c,
        reporting_debit=rp_d,
        reporting_credit=rp_c,
        rule_version=pl.lit(rule_version),
    ).select(line_schema.names())

    entry_schema = polars_schema("ledger.journal_entries")
    entries = heads.with_columns(rule_version=pl.lit(rule_version)).select(entry_schema.names())

    # One row per (line, work item), in line order and within a line in row order.
    links = lines.select("line_id", "entry_id", "entity", "source_amount", "rows").explode("rows")
    amount_columns = sorted(set(lines["source_amount"].unique()))
    # Gathering from one contiguous chunk is many times faster than from a chunked column.
    picked = source_rows.select(*SOURCE_ROW_COLUMNS, *amount_columns).rechunk()
    picked = picked.select(pl.all().gather(links["rows"]))
    amount = pl.lit(None, dtype=pl.Int64)
    for name in amount_columns:
        amount = pl.when(pl.col("source_amount") == name).then(pl.col(name)).otherwise(amount)
    source_schema = polars_schema("ledger.line_sources")
    line_sources = (
        links.drop("rows").hstack(picked).with_columns(amount_minor=amount).select(source_schema.names())
    )
    return LedgerBatch(
        entries=entries.cast(dict(entry_schema)),
        lines=journal_lines.cast(dict(line_schema)),
        line_sources=line_sources.cast(dict(source_schema)),
    )


def build_accruals(fx: pl.DataFrame, mapping: MappingDocument) -> LedgerBatch:
    """Revenue and cost accrual entries for FX-enriched billables (see the module docstring)."""
    entities = sorted(set(fx["entity"].unique()))
    account = {role: {e: mapping.account(e, role) for e in entities} for role in _ROLES}

    def acct(role: str) -> pl.Expr:
        return pl.col("entity").replace_strict(account[role], return_dtype=pl.String)

    rows = fx.with_row_index("_idx")
    dims = ["customer_ref", "customer_job", "project_code"]
    none = pl.lit(None, dtype=pl.String)

    # Revenue: the finest grouping first (one pass over the rows), then the two sides from it.
    rev_key = [
        "entity",
        "work_date",
        "currency",
        "functional_currency",
        "reporting_currency",
        *dims,
        "revenue_account",
    ]
    rev_amounts = ["amount_minor", "amount_functional_minor", "amount_reporting_minor"]
    rev_rows = rows.select(
        *rev_key,
        *rev_amounts,
        "_idx",
        _keep=(pl.col("billing_status") == "billable") & (pl.col("amount_minor") > 0),
    )
    rev = group_rows(
        rev_rows,
        rev_key,
        [
            pl.col(a).sum().alias(b)
            for a, b in zip(rev_amounts, ("tx_minor", "fn_minor", "rp_minor"), strict=True)
        ],
        rows_as="rows",
        where=pl.col("_keep"),
    ).with_columns(
        posting_date=pl.col("work_date"),
        entry_type=pl.lit("revenue_accrual"),
        document_id=none,
        description=pl.format("Revenue accrual: billable time worked on {} ({})", "work_date", "currency"),
        source_amount=pl.lit("amount_minor"),
    )
    rev_credit = rev.with_columns(
        account=pl.col("revenue_account"), account_role=pl.lit("service_revenue"), side=pl.lit("credit")
    )
    rev_debit = _merge(
        rev.with_columns(
            account=acct("unbilled_receivables"),
            account_role=pl.lit("unbilled_receivables"),
            side=pl.lit("debit"),
        )
    )

    cost_key = ["entity", "work_date", "functional_currency", "reporting_currency", *dims]
    cost_rows = rows.select(*cost_key, "cost_minor", "cost_reporting_minor", "_idx")
    cost = group_rows(
        cost_rows,
        cost_key,
        [
            pl.col("cost_minor").sum().alias("tx_minor"),
            pl.col("cost_reporting_minor").sum().alias("rp_minor"),
        ],
        rows_as="rows",
        where=pl.col("cost_minor") > 0,
    ).with_columns(
        currency=pl.col("functional_currency"),
        fn_minor=pl.col("tx_minor"),
        posting_date=pl.col("work_date"),
        entry_type=pl.lit("cost_accrual"),
        document_id=none,
        description=pl.format(
            "Cost accrual: time worked on {} at cost ({})", "work_date", "functional_currency"
        ),
        source_amount=pl.lit("cost_minor"),
    )
    cost_debit = cost.with_columns(
        account=acct("cost_of_services"), account_role=pl.lit("cost_of_services"), side=pl.lit("debit")
    )
    cost_credit = _merge(
        cost.with_columns(
            account=acct("payroll_clearing"),
            account_role=pl.lit("payroll_clearing"),
            side=pl.lit("credit"),
            customer_ref=none,
            customer_job=none,
            project_code=none,
        )
    )
    parts = [p.select(LINE_AMOUNTS_SCHEMA.names()) for p in (rev_debit, rev_credit, cost_debit, cost_credit)]
    line_amounts = pl.concat(parts, how="vertical")
    source_rows = rows.select(*SOURCE_ROW_COLUMNS, "amount_minor", "cost_minor")
    return assemble(line_amounts, source_rows, mapping.rule_version)


def _merge(parts: pl.DataFrame) -> pl.DataFrame:
    """Sum finer groups that share a line key into one line (amounts add up, row lists concatenate)."""
    return parts.group_by(LINE_KEY, maintain_order=True).agg(
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
        pl.col("rows").list.explode(keep_nulls=False, empty_as_null=False),
    )
