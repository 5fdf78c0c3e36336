"""A beancount journal of the ledger that `bean-check` accepts, built with vectorised polars.

Accounts become `<Root>:<Entity>:<Role>-<code>` (root from the account role: Assets, Liabilities,
Income, Expenses, Equity; by the code's first digit when the role is unknown), each opened on the
first day it is used. A transaction per journal entry in its transaction currency, postings signed
(debit positive), so every transaction sums to zero per currency as beancount requires. Sources:
the built-in general ledger's posted lines (reversals included) or the ledger's journal lines.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pm_accounting_pipeline.core.money import minor_digits_table
from pm_accounting_pipeline.core.rounding import minor_to_decimal_expr
from pm_accounting_pipeline.posting.documents import LedgerTables
from pm_accounting_pipeline.posting.store import PostingStore

ROLE_ROOTS = {
    "unbilled_receivables": "Assets",
    "accounts_receivable": "Assets",
    "intercompany_receivable": "Assets",
    "tax_payable": "Liabilities",
    "payroll_clearing": "Liabilities",
    "retainer_liability": "Liabilities",
    "intercompany_payable": "Liabilities",
    "service_revenue": "Income",
    "expense_recharge": "Income",
    "discounts": "Income",
    "fx_gain_loss": "Income",
    "cost_of_services": "Expenses",
    "write_off": "Expenses",
}
_DIGIT_ROOTS = {"1": "Assets", "2": "Liabilities", "3": "Equity", "4": "Income"}

# Columns the exporter needs, whatever the source.
LINES_SCHEMA = pl.Schema(
    {
        "entry_key": pl.String,
        "posting_date": pl.Date,
        "entity": pl.String,
        "narration": pl.String,
        "line_no": pl.Int64,
        "account": pl.String,
        "account_role": pl.String,
        "currency": pl.String,
        "debit_minor": pl.Int64,
        "credit_minor": pl.Int64,
    }
)


def _camel(expr: pl.Expr) -> pl.Expr:
    """`acme_us` -> `AcmeUs`, `accounts_receivable` -> `AccountsReceivable` (beancount component rules)."""
    return (
        expr.str.replace_all(r"[^A-Za-z0-9_]", "_")
        .str.split("_")
        .list.eval(pl.element().str.slice(0, 1).str.to_uppercase() + pl.element().str.slice(1))
        .list.join("")
    )


def _account_name() -> pl.Expr:
    root = pl.col("account_role").replace_strict(ROLE_ROOTS, default=None, return_dtype=pl.String)
    by_digit = (
        pl.col("account")
        .str.slice(0, 1)
        .replace_strict(_DIGIT_ROOTS, default="Expenses", return_dtype=pl.String)
    )
    entity = _camel(pl.col("entity"))
    # A component must start with a capital letter or a digit.
    entity = pl.when(entity.str.contains(r"^[A-Z0-9]")).then(entity).otherwise(pl.lit("E") + entity)
    return pl.concat_str(
        [
            pl.coalesce(root, by_digit),
            pl.lit(":"),
            entity,
            pl.lit(":"),
            _camel(pl.col("account_role")),
            pl.lit("-"),
            pl.col("account").str.replace_all(r"[^A-Za-z0-9]", ""),
        ]
    )


def beancount_text(
    lines: pl.DataFrame, *, title: str = "pm-accounting ledger", operating_currencies: list[str] | None = None
) -> str:
    """The journal for lines in LINES_SCHEMA (one transaction per `entry_key`)."""
    lines = lines.select(list(LINES_SCHEMA)).cast(LINES_SCHEMA)  # type: ignore[arg-type]
    digits = minor_digits_table(set(lines["currency"].unique().to_list()))
    df = lines.with_columns(
        _account_name().alias("bean_account"),
        pl.col("currency").replace_strict(digits, return_dtype=pl.Int64).alias("_digits"),
    ).with_columns(
        minor_to_decimal_expr(pl.col("debit_minor") - pl.col("credit_minor"), pl.col("_digits"))
        .cast(pl.String)
        .alias("_amount")
    )
    opens = (
        df.group_by("bean_account")
        .agg(pl.col("posting_date").min().alias("opened"))
        .sort("bean_account")
        .select(
            pl.concat_str([pl.col("opened").cast(pl.String), pl.lit(" open "), pl.col("bean_account")]).alias(
                "text"
            )
        )
    )
    postings = df.sort("posting_date", "entry_key", "line_no").with_columns(
        pl.concat_str(
            [
                pl.lit("  "),
                pl.col("bean_account"),
                pl.lit("  "),
                pl.col("_amount"),
                pl.lit(" "),
                pl.col("currency"),
            ]
        ).alias("_posting")
    )
    txns = (
        postings.group_by("entry_key", maintain_order=True)
        .agg(
            pl.col("posting_date").first(),
            pl.col("entity").first(),
            pl.col("narration").first(),
            pl.col("_posting").str.join("\n").alias("_body"),
        )
        .select(
            pl.concat_str(
                [
                    pl.col("posting_date").cast(pl.String),
                    pl.lit(' * "'),
                    pl.col("entity"),
                    pl.lit('" "'),
                    pl.col("narration").str.replace_all(r'["\\\n]', " "),
                    pl.lit('"\n  pm-entry: "'),
                    pl.col("entry_key"),
                    pl.lit('"\n'),
                    pl.col("_body"),
                ]
            ).alias("text")
        )
    )
    header = [f'option "title" "{title}"']
    for cur in operating_currencies or []:
        header.append(f'option "operating_currency" "{cur}"')
    parts = ["\n".join(header), "\n".join(opens["text"].to_list()), "\n\n".join(txns["text"].to_list())]
    return "\n\n".join(p for p in parts if p) + "\n"


def gl_lines(store: PostingStore) -> pl.DataFrame:
    """The built-in general ledger's posted lines in LINES_SCHEMA."""
    return store.query_frame(
        "SELECT e.gl_entry_id AS entry_key, l.posting_date, l.entity, "
        "e.document_kind || ' ' || e.document_id AS narration, l.line_no, l.account, l.account_role, "
        "l.currency, l.debit_minor, l.credit_minor FROM {s}.gl_lines l JOIN {s}.gl_entries e "
        "ON e.gl_entry_id = l.gl_entry_id ORDER BY l.posting_date, e.gl_entry_id, l.line_no",
        schema=LINES_SCHEMA,
    )


def ledger_lines(ledger: LedgerTables) -> pl.DataFrame:
    """The ledger's journal lines (as produced upstream) in LINES_SCHEMA."""
    return ledger.journal_lines.join(
        ledger.journal_entries.select("entry_id", "description"), on="entry_id", how="left"
    ).select(
        pl.col("entry_id").alias("entry_key"),
        "posting_date",
        "entity",
        pl.col("description").fill_null(pl.col("entry_type")).alias("narration"),
        "line_no",
        "account",
        "account_role",
        "currency",
        "debit_minor",
        "credit_minor",
    )


def export_beancount(lines: pl.DataFrame, path: Path, **kwargs: object) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(beancount_text(lines, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path


def check_beancount(source: str | Path) -> list[str]:
    """What `bean-check` would report: parse and validate with beancount's loader; [] when clean."""
    from beancount import loader

    if isinstance(source, Path):
        _, errors, _ = loader.load_file(str(source))
    else:
        _, errors, _ = loader.load_string(source)
    return [f"{getattr(e, 'source', {}).get('lineno', '?')}: {e.message}" for e in errors]
