"""Billable expenses on invoices: approved billable expenses of the period become invoice lines
beside time, moved from unbilled receivables to receivables exactly like time.

Invoicing (`core.invoicing`) and billing (`core.billing.run`) read FX-enriched billables; this
module adds the staged expenses to them in that shape (`core.expenses.expense_billables`): one
item per expense, quantity 1 at its recharge amount (cost + markup), item = the category's item,
task "Expenses: <category>", revenue account = the recharge account, the client's tax rate, the
receipt URL in the notes, and the expense's own source id so every line references it. Held
(unapproved) and non-billable expenses carry no amount and are never billed; a held expense
approved later is billed by the next run like late time, and one deleted after it was billed is
credited like deleted time.
"""

from __future__ import annotations

import polars as pl

from pm_accounting_pipeline.core.expenses import expense_billables


def with_expenses(fx: pl.DataFrame, staged_expenses: pl.DataFrame) -> pl.DataFrame:
    """`fx` (staging.fx_billables rows) followed by the staged expenses as billables."""
    if staged_expenses.height == 0:
        return fx
    return pl.concat([fx, expense_billables(staged_expenses).select(fx.columns)], how="vertical")
