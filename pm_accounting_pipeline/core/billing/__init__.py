"""Billing: the documents an entity issues (invoices, retainer invoices, credit memos), their
corrections, discounts, tax and retainers, and the journal entries that finalise invoices.

Entry point: `core.billing.run.bill_period`. Kept free of imports so `core.rating` can use
`core.billing.partial` without pulling in the rest.
"""
