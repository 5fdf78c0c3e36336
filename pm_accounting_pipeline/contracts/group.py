"""Contracts of the group tables: payments and their FX, revaluations, intercompany links,
consolidation eliminations, allocations, depreciation schedules and links between entries.

Registered in `contracts.layers.TABLES` (imported at the end of that module), so the lake writes
their schema files and the warehouse gives analysts a view of each. Journal entries themselves use
the ledger contracts; these tables carry what a journal line cannot (counterparty entity,
allocation driver, rate metadata of a settlement) keyed by entry_id / line_id.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine as pe

from pm_accounting_pipeline.contracts.layers import TABLES, FxRate, JournalEntry, JournalLine, Money, _Strict

GROUP_CONTRACT_VERSION = "1.0.0"


class Payment(pa.DataFrameModel):
    """ledger.payments: accepted customer payments applied to invoices, with the FX of settlement.

    Rates are units of the target currency per one unit of the payment currency
    (`rate_direction` spells it, e.g. 'KWD->USD'). `carrying_*` is the part of the invoice's
    historical (invoice-date) amount this payment settles; `realised_*` = settled at the payment
    rate - carrying: positive is a gain.
    """

    payment_id: str = pa.Field(unique=True)
    entity: str
    invoice_id: str
    invoice_number: str
    customer_ref: str
    payment_date: pl.Date
    currency: str
    amount_minor: pl.Int64 = pa.Field(gt=0)
    amount: Money
    reference: str = pa.Field(nullable=True)
    source_file: str
    source_row: pl.Int64
    functional_currency: str
    reporting_currency: str
    fx_rate_functional: FxRate = pa.Field(gt=0)
    fx_rate_reporting: FxRate = pa.Field(gt=0)
    rate_direction: str
    fx_rate_date: pl.Date
    fx_rate_source: str
    fx_rate_type: str
    functional_minor: pl.Int64
    reporting_minor: pl.Int64
    carrying_functional_minor: pl.Int64
    carrying_reporting_minor: pl.Int64
    realised_functional_minor: pl.Int64
    realised_reporting_minor: pl.Int64
    open_after_minor: pl.Int64 = pa.Field(ge=0)
    entry_id: str
    realised_entry_id: str = pa.Field(nullable=True)

    class Config(_Strict):
        name = "ledger.payments"


class FxRevaluation(pa.DataFrameModel):
    """ledger.fx_revaluations: each open foreign-currency monetary item at a period end (IAS 21).

    open_minor is the item's balance in its transaction currency; carrying_* its balance at
    historical rates; revalued_* = open_minor at the closing rate; unrealised_* = revalued -
    carrying, booked at the period end and reversed on the first day of the next period.
    """

    revaluation_id: str = pa.Field(unique=True)
    entity: str
    period_end: pl.Date
    account: str
    account_role: str
    currency: str
    customer_ref: str = pa.Field(nullable=True)
    document_id: str = pa.Field(nullable=True)
    counterparty_entity: str = pa.Field(nullable=True)
    open_minor: pl.Int64
    functional_currency: str
    reporting_currency: str
    closing_rate_functional: FxRate = pa.Field(gt=0)
    closing_rate_reporting: FxRate = pa.Field(gt=0)
    rate_direction: str
    rate_date: pl.Date
    rate_source: str
    carrying_functional_minor: pl.Int64
    carrying_reporting_minor: pl.Int64
    revalued_functional_minor: pl.Int64
    revalued_reporting_minor: pl.Int64
    unrealised_functional_minor: pl.Int64
    unrealised_reporting_minor: pl.Int64
    entry_id: str = pa.Field(nullable=True)
    reversal_entry_id: str = pa.Field(nullable=True)

    class Config(_Strict):
        name = "ledger.fx_revaluations"


class IntercompanyLink(pa.DataFrameModel):
    """ledger.intercompany_links: the counterparty entity of every intercompany journal line
    (recharges, their revaluation, and the consolidation eliminations)."""

    line_id: str = pa.Field(unique=True)
    entry_id: str
    entity: str
    counterparty_entity: str
    account_role: str
    agreement_id: str = pa.Field(nullable=True)
    period: pl.Date

    class Config(_Strict):
        name = "ledger.intercompany_links"


class IntercompanyRecharge(pa.DataFrameModel):
    """ledger.intercompany_recharges: what a provider charged a recipient per project and month."""

    recharge_id: str = pa.Field(unique=True)
    entity: str  # the recipient: the entity billing the work, whose partition holds the row
    period: pl.Date
    provider: str
    recipient: str
    agreement_id: str
    basis: str = pa.Field(isin=["cost", "cost_plus", "transfer_rate"])
    customer_ref: str
    customer_job: str
    project_code: str = pa.Field(nullable=True)
    currency: str
    hours: pe.Decimal(12, 4)
    cost_minor: pl.Int64 = pa.Field(ge=0)
    cost_currency: str
    recharge_minor: pl.Int64 = pa.Field(ge=0)
    provider_cost_minor: pl.Int64 = pa.Field(ge=0)
    provider_currency: str
    work_items: pl.Int64 = pa.Field(ge=1)

    class Config(_Strict):
        name = "ledger.intercompany_recharges"


class EliminationEntry(JournalEntry):
    """ledger.elimination_entries: consolidation-only entries of the group's consolidation entity
    (never posted to a legal entity's books), in the reporting currency."""

    class Config(_Strict):
        name = "ledger.elimination_entries"


class EliminationLine(JournalLine):
    """ledger.elimination_lines: the lines of the elimination entries."""

    class Config(_Strict):
        name = "ledger.elimination_lines"


class Allocation(pa.DataFrameModel):
    """ledger.allocations: one row per (shared-cost row, receiving project) of an allocation run.

    Carries the original cost's metadata (source document, account, amount, period, file and row),
    the driver and its quantities, the methodology in words, the rule version and generation of
    the run, and whether a later run reversed it.
    """

    allocation_id: str = pa.Field(unique=True)
    entity: str
    period: pl.Date
    pool: str
    driver: str = pa.Field(isin=["hours", "headcount", "usage", "revenue", "fixed"])
    methodology: str
    rule_version: str
    generation: pl.Int64 = pa.Field(ge=1)
    status: str = pa.Field(isin=["active", "reversed"])
    source_document: str
    source_account: str
    source_description: str = pa.Field(nullable=True)
    source_date: pl.Date
    source_amount_minor: pl.Int64
    source_file: str
    source_row: pl.Int64
    currency: str
    customer_ref: str = pa.Field(nullable=True)
    customer_job: str
    project_code: str = pa.Field(nullable=True)
    driver_quantity: pe.Decimal(18, 4) = pa.Field(ge=0)
    driver_total: pe.Decimal(18, 4) = pa.Field(gt=0)
    allocated_minor: pl.Int64
    allocated: Money
    target_account: str
    capitalised: bool
    entry_id: str
    reversal_entry_id: str = pa.Field(nullable=True)

    class Config(_Strict):
        name = "ledger.allocations"


class DepreciationSchedule(pa.DataFrameModel):
    """ledger.depreciation_schedule: straight-line depreciation per capitalised asset and month.

    One asset per (entity, project, month of capitalisation); the last month takes the remainder
    so the depreciation sums exactly to the cost.
    """

    asset_id: str
    entity: str
    customer_ref: str = pa.Field(nullable=True)
    customer_job: str
    project_code: str = pa.Field(nullable=True)
    capitalised_in: pl.Date
    in_service: pl.Date
    currency: str
    cost_minor: pl.Int64 = pa.Field(ge=0)
    useful_life_months: pl.Int64 = pa.Field(ge=1)
    period: pl.Date
    month_no: pl.Int64 = pa.Field(ge=1)
    depreciation_minor: pl.Int64 = pa.Field(ge=0)
    accumulated_minor: pl.Int64 = pa.Field(ge=0)
    net_book_value_minor: pl.Int64 = pa.Field(ge=0)

    class Config(_Strict):
        name = "ledger.depreciation_schedule"
        unique = ["asset_id", "period"]


class EntryLink(pa.DataFrameModel):
    """ledger.entry_links: how entries relate: `reverses` (a reversal and what it reverses),
    `supersedes` (a re-run's new entry and the entry it replaces), `settles` (a realised-FX entry
    and its payment entry)."""

    entry_id: str
    entity: str
    link_type: str = pa.Field(isin=["reverses", "supersedes", "settles"])
    linked_entry_id: str
    reason: str

    class Config(_Strict):
        name = "ledger.entry_links"
        unique = ["entry_id", "link_type", "linked_entry_id"]


GROUP_TABLES: dict[str, type[pa.DataFrameModel]] = {
    "ledger.payments": Payment,
    "ledger.fx_revaluations": FxRevaluation,
    "ledger.intercompany_links": IntercompanyLink,
    "ledger.intercompany_recharges": IntercompanyRecharge,
    "ledger.elimination_entries": EliminationEntry,
    "ledger.elimination_lines": EliminationLine,
    "ledger.allocations": Allocation,
    "ledger.depreciation_schedule": DepreciationSchedule,
    "ledger.entry_links": EntryLink,
}

TABLES.update(GROUP_TABLES)
