"""Expense assets: raw expenses from Harvest's expense CSV export, staged expenses, expense accruals."""

from pm_accounting_pipeline.defs.expenses.assets import (
    EXPENSE_ACCRUALS,
    RAW_EXPENSES,
    STAGED_EXPENSES,
    build_expense_assets,
)

__all__ = ["EXPENSE_ACCRUALS", "RAW_EXPENSES", "STAGED_EXPENSES", "build_expense_assets"]
