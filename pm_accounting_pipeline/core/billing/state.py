"""What billing has issued: the billing tables of one or more (entity, month) partitions as one value.

A billing run reads the state of every other partition (what was issued before, or later) and of
its own partition (what it issued on an earlier run, which it keeps unchanged) and returns its
partition's new state. Frames are in their contract shape (`contracts/billing.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema

STATE_TABLES = {
    "documents": "ledger.billing_documents",
    "lines": "ledger.billing_document_lines",
    "sources": "ledger.billing_line_sources",
    "settlements": "ledger.settlements",
    "retainer_movements": "ledger.retainer_movements",
    "credit_status": "ledger.credit_status",
    "rejections": "ledger.billing_rejections",
}


@dataclass(frozen=True)
class BillingState:
    documents: pl.DataFrame
    lines: pl.DataFrame
    sources: pl.DataFrame
    settlements: pl.DataFrame
    retainer_movements: pl.DataFrame
    credit_status: pl.DataFrame
    rejections: pl.DataFrame

    @staticmethod
    def empty() -> BillingState:
        return BillingState(**{k: pl.DataFrame(schema=polars_schema(t)) for k, t in STATE_TABLES.items()})

    @staticmethod
    def from_tables(tables: dict[str, pl.DataFrame]) -> BillingState:
        """From frames keyed by table name (missing tables are empty)."""
        return BillingState(
            **{
                k: tables.get(t, pl.DataFrame(schema=polars_schema(t))).select(polars_schema(t).names())
                for k, t in STATE_TABLES.items()
            }
        )

    def tables(self) -> dict[str, pl.DataFrame]:
        return {STATE_TABLES[f.name]: getattr(self, f.name) for f in fields(self)}

    def concat(self, other: BillingState) -> BillingState:
        return BillingState(
            **{
                f.name: pl.concat([getattr(self, f.name), getattr(other, f.name)], how="vertical")
                for f in fields(self)
            }
        )

    def shaped(self) -> BillingState:
        """Every frame cast to its contract schema, in contract column order."""
        out = {}
        for f in fields(self):
            schema = polars_schema(STATE_TABLES[f.name])
            out[f.name] = getattr(self, f.name).select(schema.names()).cast(dict(schema))
        return BillingState(**out)
