"""The pure accounting core: plain functions over polars frames and Decimal values.

Nothing in this package imports dagster. Every rule that decides an amount lives here and is
unit-tested without an orchestrator.
"""
