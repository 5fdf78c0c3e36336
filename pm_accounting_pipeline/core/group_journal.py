"""Journal assembly for the group modules: signed line amounts in, ledger-contract entries out.

Payments, FX revaluation, intercompany recharges, eliminations, allocations and depreciation state
their postings as signed integers per basis (positive = debit) in the transaction, functional and
reporting currency. Each basis is split into debit/credit on its own, because an FX difference can
be a gain in the functional currency and a loss in the reporting currency on the same line. Every
entry balances in all three by construction (the builders post pairs that negate each other), and
`assemble_signed` checks it before returning.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.ids import stable_id, stable_id_expr
from pm_accounting_pipeline.core.ledger import money_expr

SIGNED_SCHEMA = pl.Schema(
    {
        "entity": pl.String,
        "posting_date": pl.Date,
        "entry_type": pl.String,
        "currency": pl.String,
        "functional_currency": pl.String,
        "reporting_currency": pl.String,
        "document_id": pl.String,
        "entry_key": pl.String,
        "description": pl.String,
        "account": pl.String,
        "account_role": pl.String,
        "customer_ref": pl.String,
        "customer_job": pl.String,
        "project_code": pl.String,
        "line_key": pl.String,
        "tx": pl.Int64,
        "fn": pl.Int64,
        "rp": pl.Int64,
    }
)
ENTRY_KEY = ["entity", "posting_date", "entry_type", "currency", "document_id", "entry_key"]
LINE_DIMS = ["account", "account_role", "customer_ref", "customer_job", "project_code", "line_key"]


@dataclass(frozen=True)
class Journal:
    """Entries and lines in the ledger contracts; `lines` keep `line_key` and `entry_key` in
    `keys` (line_id -> entry_key, line_key) for builders that link lines to their own tables."""

    entries: pl.DataFrame
    lines: pl.DataFrame
    keys: pl.DataFrame

    @staticmethod
    def empty() -> Journal:
        return Journal(
            pl.DataFrame(schema=polars_schema("ledger.journal_entries")),
            pl.DataFrame(schema=polars_schema("ledger.journal_lines")),
            pl.DataFrame(
                schema={
                    "line_id": pl.String,
                    "entry_id": pl.String,
                    "entry_key": pl.String,
                    "line_key": pl.String,
                }
            ),
        )

    def concat(self, other: Journal) -> Journal:
        return Journal(
            pl.concat([self.entries, other.entries]),
            pl.concat([self.lines, other.lines]),
            pl.concat([self.keys, other.keys]),
        )


def signed_frame(**columns: pl.Expr) -> list[pl.Expr]:
    """Select expressions producing SIGNED_SCHEMA columns (missing ones are null / 0)."""
    out = []
    for name, dtype in SIGNED_SCHEMA.items():
        expr = columns.get(name)
        if expr is None:
            expr = pl.lit(0 if dtype == pl.Int64 else None)
        out.append(expr.cast(dtype).alias(name))
    return out


def entry_id_of(
    entity: str,
    posting_date: object,
    entry_type: str,
    currency: str,
    document_id: str | None,
    entry_key: str | None,
    rule_version: str,
) -> str:
    """The id `assemble_signed` gives an entry (so builders can link entries they have not built yet)."""
    return stable_id(
        "group", entity, posting_date, entry_type, currency, document_id, entry_key, rule_version
    )


def assemble_signed(signed: pl.DataFrame, rule_version: str) -> Journal:
    """Ledger-contract entries and lines from signed amounts (SIGNED_SCHEMA rows).

    Rows sharing an entry key and line dimensions are summed into one line; lines whose three
    amounts are all zero are dropped, and so are entries left with no lines. Lines are numbered
    debits first (by functional amount), then by account and dimensions.
    """
    if signed.height == 0:
        return Journal.empty()
    rows = signed.select(SIGNED_SCHEMA.names()).cast(dict(SIGNED_SCHEMA))
    lines = (
        rows.group_by([*ENTRY_KEY, *LINE_DIMS], maintain_order=True)
        .agg(
            pl.col("functional_currency").first(),
            pl.col("reporting_currency").first(),
            pl.col("description").first(),
            pl.col("tx").sum(),
            pl.col("fn").sum(),
            pl.col("rp").sum(),
        )
        .filter((pl.col("tx") != 0) | (pl.col("fn") != 0) | (pl.col("rp") != 0))
    )
    if lines.height == 0:
        return Journal.empty()
    heads = lines.group_by(ENTRY_KEY, maintain_order=True).agg(
        pl.col("description").first(),
        pl.len().cast(pl.Int64).alias("line_count"),
        pl.col("tx").clip(lower_bound=0).sum().alias("total_debit_minor"),
        pl.col("functional_currency").first(),
        pl.col("reporting_currency").first(),
    )
    heads = heads.with_columns(
        entry_id=pl.Series(
            [entry_id_of(*k, rule_version) for k in heads.select(ENTRY_KEY).iter_rows()], dtype=pl.String
        )
    ).sort("entity", "posting_date", "entry_type", "entry_id")
    lines = lines.join(heads.select(*ENTRY_KEY, "entry_id"), on=ENTRY_KEY, how="left", nulls_equal=True)
    lines = lines.with_columns(
        line_id=stable_id_expr("entry_id", *LINE_DIMS, prefix="gline"),
        _order=pl.when((pl.col("fn") > 0) | ((pl.col("fn") == 0) & (pl.col("tx") > 0))).then(0).otherwise(1),
    ).sort(["entry_id", "_order", *LINE_DIMS], nulls_last=False)
    lines = lines.with_columns(line_no=pl.int_range(1, pl.len() + 1).over("entry_id"))
    currencies = set(lines["currency"]) | set(lines["functional_currency"]) | set(lines["reporting_currency"])

    line_schema = polars_schema("ledger.journal_lines")
    out = lines.with_columns(
        debit_minor=pl.col("tx").clip(lower_bound=0),
        credit_minor=(-pl.col("tx")).clip(lower_bound=0),
        _fd=pl.col("fn").clip(lower_bound=0),
        _fc=(-pl.col("fn")).clip(lower_bound=0),
        _rd=pl.col("rp").clip(lower_bound=0),
        _rc=(-pl.col("rp")).clip(lower_bound=0),
        source_count=pl.lit(0, dtype=pl.Int64),
        rule_version=pl.lit(rule_version),
    ).with_columns(
        debit=money_expr("debit_minor", "currency", currencies),
        credit=money_expr("credit_minor", "currency", currencies),
        functional_debit=money_expr("_fd", "functional_currency", currencies),
        functional_credit=money_expr("_fc", "functional_currency", currencies),
        reporting_debit=money_expr("_rd", "reporting_currency", currencies),
        reporting_credit=money_expr("_rc", "reporting_currency", currencies),
    )
    journal_lines = out.select(line_schema.names()).cast(dict(line_schema))
    entry_schema = polars_schema("ledger.journal_entries")
    entries = (
        heads.with_columns(rule_version=pl.lit(rule_version))
        .select(entry_schema.names())
        .cast(dict(entry_schema))
    )
    assert_balanced(journal_lines)
    keys = out.select("line_id", "entry_id", "entry_key", "line_key")
    return Journal(entries, journal_lines, keys)


def negate(
    journal: Journal,
    entry_type: str,
    posting_date: object,
    rule_version: str,
    reason: str,
    entry_key_suffix: str = "reversal",
) -> tuple[Journal, pl.DataFrame]:
    """Reversing entries (every amount negated) of `journal`'s entries, posted on `posting_date`,
    and the `ledger.entry_links` rows saying which reverses which. In the returned `keys`, a
    reversal line's `line_key` is the id of the line it reverses."""
    if journal.lines.height == 0:
        return Journal.empty(), pl.DataFrame(schema=polars_schema("ledger.entry_links"))
    # Works on entries read back from the lake too (they have no `keys`): each reversal line is
    # keyed by the id of the line it reverses.
    lines = journal.lines
    signed = lines.join(
        journal.entries.select("entry_id", pl.col("description").alias("_orig")), on="entry_id"
    ).select(
        signed_frame(
            entity=pl.col("entity"),
            posting_date=pl.lit(posting_date),
            entry_type=pl.lit(entry_type),
            currency=pl.col("currency"),
            functional_currency=pl.col("functional_currency"),
            reporting_currency=pl.col("reporting_currency"),
            document_id=pl.col("document_id"),
            entry_key=pl.concat_str([pl.col("entry_id"), pl.lit(f":{entry_key_suffix}")]),
            description=pl.concat_str([pl.lit("Reversal of: "), pl.col("_orig")]),
            account=pl.col("account"),
            account_role=pl.col("account_role"),
            customer_ref=pl.col("customer_ref"),
            customer_job=pl.col("customer_job"),
            project_code=pl.col("project_code"),
            line_key=pl.col("line_id"),
            tx=-(pl.col("debit_minor") - pl.col("credit_minor")),
            fn=-_minor_of(
                pl.col("functional_debit") - pl.col("functional_credit"), "functional_currency", lines
            ),
            rp=-_minor_of(
                pl.col("reporting_debit") - pl.col("reporting_credit"), "reporting_currency", lines
            ),
        )
    )
    reversal = assemble_signed(signed, rule_version)
    links = (
        reversal.keys.select("entry_id", "entry_key")
        .unique()
        .with_columns(linked_entry_id=pl.col("entry_key").str.replace(f":{entry_key_suffix}$", ""))
        .join(reversal.entries.select("entry_id", "entity"), on="entry_id")
        .select(
            "entry_id",
            "entity",
            pl.lit("reverses").alias("link_type"),
            "linked_entry_id",
            pl.lit(reason).alias("reason"),
        )
        .sort("entry_id")
    )
    return reversal, links.cast(dict(polars_schema("ledger.entry_links")))


def _minor_of(amount: pl.Expr, currency_col: str, frame: pl.DataFrame) -> pl.Expr:
    """An exact Decimal(18, 3) amount back to integer minor units of the row's currency."""
    from pm_accounting_pipeline.core.ledger import digits_expr

    currencies = set(frame[currency_col].unique())
    shift = pl.lit(10, dtype=pl.Int64).pow(pl.lit(3, dtype=pl.Int32) - digits_expr(currency_col, currencies))
    units = amount.cast(pl.Decimal(38, 3)).to_physical().cast(pl.Int64)
    return units // shift
