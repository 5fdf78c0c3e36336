"""Ledger layer: daily accrual journal entries and monthly invoices, balanced and traceable."""
