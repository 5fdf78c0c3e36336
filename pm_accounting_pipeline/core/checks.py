"""Ledger invariants as checks: entries balance in every currency, and the trial balance.

Run before anything is stored or posted; an unbalanced entry is a bug, never something to post.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

Basis = Literal["transaction", "functional", "reporting"]

_BASIS_COLUMNS: dict[str, tuple[str, str, str]] = {
    "transaction": ("currency", "debit", "credit"),
    "functional": ("functional_currency", "functional_debit", "functional_credit"),
    "reporting": ("reporting_currency", "reporting_debit", "reporting_credit"),
}


class UnbalancedEntryError(ValueError):
    """Journal entries whose debits and credits differ; `offenders` is the `unbalanced_entries` frame."""

    def __init__(self, offenders: pl.DataFrame):
        self.offenders = offenders
        shown = [
            f"{r['entry_id']} ({r['entity']}, {r['currency']}): "
            f"{r['difference']} {r['currency']}, "
            f"{r['functional_difference']} {r['functional_currency']}, "
            f"{r['reporting_difference']} {r['reporting_currency']}"
            for r in offenders.head(20).iter_rows(named=True)
        ]
        more = f"\n  ... and {offenders.height - 20} more" if offenders.height > 20 else ""
        super().__init__(
            f"{offenders.height} journal entr{'y' if offenders.height == 1 else 'ies'} do not balance "
            "(debit - credit):\n  " + "\n  ".join(shown) + more
        )


def unbalanced_entries(lines: pl.DataFrame) -> pl.DataFrame:
    """Entries whose debit - credit is not zero in the transaction, functional or reporting currency.

    Empty when every entry balances. The differences are signed (debit - credit).
    """
    totals = lines.group_by(
        "entry_id", "entity", "currency", "functional_currency", "reporting_currency"
    ).agg(
        (pl.col("debit_minor").sum() - pl.col("credit_minor").sum()).alias("difference_minor"),
        (pl.col("debit").sum() - pl.col("credit").sum()).alias("difference"),
        (pl.col("functional_debit").sum() - pl.col("functional_credit").sum()).alias("functional_difference"),
        (pl.col("reporting_debit").sum() - pl.col("reporting_credit").sum()).alias("reporting_difference"),
    )
    # An entry must also have one currency of each kind; a second one shows up as a second group.
    split = pl.len().over("entry_id") > 1
    off = totals.filter(
        (pl.col("difference_minor") != 0)
        | (pl.col("difference") != 0)
        | (pl.col("functional_difference") != 0)
        | (pl.col("reporting_difference") != 0)
        | split
    )
    return off.select(
        "entry_id",
        "entity",
        "currency",
        "difference_minor",
        "difference",
        "functional_currency",
        "functional_difference",
        "reporting_currency",
        "reporting_difference",
    ).sort("entry_id", "currency", "functional_currency", "reporting_currency")


def assert_balanced(lines: pl.DataFrame) -> None:
    """Raise UnbalancedEntryError naming every entry that does not balance."""
    off = unbalanced_entries(lines)
    if off.height:
        raise UnbalancedEntryError(off)


def trial_balance(lines: pl.DataFrame, basis: Basis = "transaction") -> pl.DataFrame:
    """Debit, credit and balance (debit - credit) per entity, account and currency.

    `basis` picks the amounts: the transaction currency (default), the entity's functional
    currency or the reporting currency. Over any set of balanced entries the balances of one
    entity and currency sum to zero.
    """
    currency, debit, credit = _BASIS_COLUMNS[basis]
    return (
        lines.group_by("entity", "account", pl.col(currency).alias("currency"))
        .agg(pl.col(debit).sum().alias("debit"), pl.col(credit).sum().alias("credit"))
        .with_columns(balance=pl.col("debit") - pl.col("credit"))
        .sort("entity", "account", "currency")
    )
