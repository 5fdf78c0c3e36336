"""Posting the ledger to accounting systems effectively once.

`documents` turns ledger tables into documents, `outbox` enqueues them (registry + outbox, one
transaction, reversals for corrections), `delivery` sends them with retries, a circuit breaker and
rate limits, `dlq` and `killswitch` are what a person operates, `reconcile` compares the ledger with
each target, `beancount_export` writes a checked journal, `chaos` and `bench` prove it. Nothing here
imports dagster; the Dagster wiring lives in `pm_accounting_pipeline.defs.posting`.
"""
