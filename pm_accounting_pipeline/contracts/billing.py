"""Contracts of the billing tables: client match decisions, issued billing documents (invoices,
retainer invoices, credit memos) with their lines and the source entries behind them, settlements,
retainer movements, the credits status for the PM side, and rejected billing inputs.

Registered in `contracts.layers.TABLES` (imported at the end of that module), so the lake writes
their schema files and the warehouse gives analysts a view of each. Amounts are integer minor
units of the document currency and signed from the receivable's point of view: invoices are
positive, credit memos negative, discount lines negative.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine as pe

from pm_accounting_pipeline.contracts.layers import (
    QUARANTINE_REASONS,
    TABLES,
    Hours,
    Money,
    Rate,
    _Strict,
)

BILLING_CONTRACT_VERSION = "1.0.0"

MATCH_RULES = {
    "source_id": "the source's client id is a mapped client's source_id",
    "exact_name": "the normalised name equals a mapped client's normalised name",
    "alias": "the normalised name equals a normalised alias of a mapped client",
    "decision_merge": "a person accepted this spelling for the client (client_matching.decisions)",
    "decision_keep_apart": "a person rejected merging this spelling (client_matching.decisions)",
    "fuzzy_auto": "fuzzy score at or above the high threshold: merged automatically",
    "fuzzy_review": "fuzzy score between the low and the high threshold: waiting for review",
    "fuzzy_ambiguous": "two clients score alike above the low threshold: waiting for review",
    "no_match": "no client scores at or above the low threshold: kept apart",
    "matching_disabled": "client_matching.enabled is false and no exact match exists",
}
MATCH_OUTCOMES = ("matched", "review", "kept_apart")
DOCUMENT_TYPES = ("invoice", "retainer_invoice", "credit_memo")
LINE_TYPES = ("time", "adjustment", "discount", "retainer", "credit")
CHANGES = ("billed", "late", "edited", "removed", "moved", "rate_frozen", "manual_credit")
SETTLEMENT_KINDS = ("credit_applied", "retainer_applied", "refund")
# Codes of rejected billing inputs: the shared quarantine codes plus billing's own.
BILLING_REJECTION_REASONS = {
    **{k: QUARANTINE_REASONS[k] for k in ("missing_required", "bad_date", "bad_rate", "duplicate_exact")},
    "unknown_document": "the row names a document number the entity never issued",
    "currency_mismatch": "the row's currency differs from the document's",
    "over_credit": "the credit exceeds what is left to credit on the invoice",
    "over_refund": "the refund exceeds the credit balance of the document",
    "not_creditable": "the document is not an invoice (only invoices can be credited)",
}


class ClientMatch(pa.DataFrameModel):
    """staging.client_matches: the decision log of client matching, one row per distinct source
    spelling (and client id) of a partition, with the rule that decided it and its score."""

    entity: str
    partition_date: pl.Date
    source_name: str = pa.Field(nullable=True)
    source_client_id: str = pa.Field(nullable=True)
    name_key: str = pa.Field(nullable=True)
    rule: str = pa.Field(isin=list(MATCH_RULES))
    outcome: str = pa.Field(isin=list(MATCH_OUTCOMES))
    client_name: str = pa.Field(nullable=True)
    customer_ref: str = pa.Field(nullable=True)
    score: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    runner_up: str = pa.Field(nullable=True)
    runner_up_score: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    scorer: str
    low_threshold: pl.Float64
    high_threshold: pl.Float64
    rows: pl.Int64 = pa.Field(ge=1)
    rule_version: str

    class Config(_Strict):
        name = "staging.client_matches"


class BillingDocument(pa.DataFrameModel):
    """ledger.billing_documents: every document issued to a customer, frozen once issued.

    `document_id` of an invoice equals the `invoice_id` of the `ledger.invoices` row it finalises
    (when there is one: `base_invoice_id`). subtotal = time + adjustments + discounts (+ credits)
    excluding tax; total includes tax; amount_due = total - retainer_applied. `ar_*_minor` is the
    receivable booked for it in the functional and reporting currencies.
    """

    document_id: str = pa.Field(unique=True)
    document_number: str = pa.Field(unique=True)
    document_type: str = pa.Field(isin=list(DOCUMENT_TYPES))
    sequence: pl.Int64 = pa.Field(ge=1)
    entity: str
    customer_ref: str
    client_name: str
    currency: str
    period_start: pl.Date
    period_end: pl.Date
    issue_date: pl.Date
    due_date: pl.Date
    issued_in: pl.Date
    corrects_document_id: str = pa.Field(nullable=True)
    corrects_document_number: str = pa.Field(nullable=True)
    base_invoice_id: str = pa.Field(nullable=True)
    reason: str = pa.Field(nullable=True)
    tax_profile: str = pa.Field(isin=["standard", "exempt", "zero_rated", "reverse_charge"])
    pricing: str = pa.Field(isin=["exclusive", "inclusive"])
    tax_level: str = pa.Field(isin=["invoice", "line"])
    tax_rate: pe.Decimal(8, 6) = pa.Field(ge=0)
    time_minor: pl.Int64
    adjustment_minor: pl.Int64
    discount_minor: pl.Int64 = pa.Field(le=0)
    credit_minor: pl.Int64 = pa.Field(le=0)
    retainer_fee_minor: pl.Int64 = pa.Field(ge=0)
    subtotal_minor: pl.Int64
    tax_minor: pl.Int64
    total_minor: pl.Int64
    retainer_applied_minor: pl.Int64 = pa.Field(ge=0)
    amount_due_minor: pl.Int64
    subtotal: Money
    tax: Money
    total: Money
    amount_due: Money
    functional_currency: str
    reporting_currency: str
    ar_functional_minor: pl.Int64
    ar_reporting_minor: pl.Int64
    line_count: pl.Int64 = pa.Field(ge=1)
    note: str = pa.Field(nullable=True)
    rule_version: str

    class Config(_Strict):
        name = "ledger.billing_documents"


class BillingDocumentLine(pa.DataFrameModel):
    """ledger.billing_document_lines: the lines of billing documents. `tax_minor` is the line's tax
    when tax is computed per line (tax_level: line), else null."""

    document_id: str
    line_no: pl.Int64 = pa.Field(ge=1)
    entity: str
    line_type: str = pa.Field(isin=list(LINE_TYPES))
    item: str
    description: str
    account: str
    customer_job: str = pa.Field(nullable=True)
    project_code: str = pa.Field(nullable=True)
    task_name: str = pa.Field(nullable=True)
    person_name: str = pa.Field(nullable=True)
    quantity: Hours = pa.Field(nullable=True)
    unit_price: Rate = pa.Field(nullable=True)
    amount_minor: pl.Int64
    amount: Money
    tax_minor: pl.Int64 = pa.Field(nullable=True)
    source_count: pl.Int64 = pa.Field(ge=0)
    # Who approved the line's source entries ("; "-joined when several) and the latest approval.
    approved_by: str = pa.Field(nullable=True)
    approved_at: pl.Datetime("us", "UTC") = pa.Field(nullable=True)

    class Config(_Strict):
        name = "ledger.billing_document_lines"
        unique = ["document_id", "line_no"]


class BillingLineSource(pa.DataFrameModel):
    """ledger.billing_line_sources: the register of what was billed for each source entry.

    One row per (document, source entry): the hours and the frozen rate billed, the amount charged
    to the customer (`charge_minor`) and the amount relieved from unbilled receivables
    (`relief_*`, in transaction, functional and reporting currency). Corrections add rows with the
    differences, so the sums per source entry are what the customer has been charged for it.
    `line_no` 0 marks a correction booked without a document line (the rate stayed frozen while
    the accrual was re-rated). `approved_by` / `approved_at`: who approved the entry and when
    (source row or approval feed, core/approvals.py).
    """

    document_id: str
    line_no: pl.Int64 = pa.Field(ge=0)
    entity: str
    issued_in: pl.Date
    change: str = pa.Field(isin=list(CHANGES))
    work_item_id: str
    source_system: str
    source_id: str
    source_file: str
    source_row: pl.Int64
    work_date: pl.Date
    customer_ref: str
    currency: str
    customer_job: str
    project_code: str = pa.Field(nullable=True)
    task_name: str
    person_name: str
    billed_hours: Hours
    bill_rate: Rate = pa.Field(nullable=True)
    charge_minor: pl.Int64
    relief_minor: pl.Int64
    relief_functional_minor: pl.Int64
    relief_reporting_minor: pl.Int64
    approved_by: str = pa.Field(nullable=True)
    approved_at: pl.Datetime("us", "UTC") = pa.Field(nullable=True)

    class Config(_Strict):
        name = "ledger.billing_line_sources"


class Settlement(pa.DataFrameModel):
    """ledger.settlements: changes to a document's open balance other than customer payments
    (`ledger.payments`): credit memos applied to the invoice they correct, retainer drawdowns,
    refunds. `amount_minor` is signed: the open balance becomes total + the sum of settlements."""

    settlement_id: str = pa.Field(unique=True)
    entity: str
    document_id: str
    document_number: str
    customer_ref: str
    currency: str
    settlement_date: pl.Date
    kind: str = pa.Field(isin=list(SETTLEMENT_KINDS))
    amount_minor: pl.Int64
    amount: Money
    counter_document_id: str = pa.Field(nullable=True)
    counter_document_number: str = pa.Field(nullable=True)
    reference: str = pa.Field(nullable=True)
    issued_in: pl.Date

    class Config(_Strict):
        name = "ledger.settlements"


class RetainerMovement(pa.DataFrameModel):
    """ledger.retainer_movements: retainer invoices (positive) and drawdowns (negative) per client
    and currency; the balance is the sum, also in the functional and reporting currencies."""

    entity: str
    customer_ref: str
    client_name: str
    currency: str
    retainer_id: str = pa.Field(nullable=True)
    movement_date: pl.Date
    kind: str = pa.Field(isin=["issued", "drawn"])
    document_id: str
    document_number: str
    amount_minor: pl.Int64
    amount: Money
    functional_minor: pl.Int64
    reporting_minor: pl.Int64
    issued_in: pl.Date

    class Config(_Strict):
        name = "ledger.retainer_movements"


class CreditStatus(pa.DataFrameModel):
    """ledger.credit_status: which source entries were credited, for the PM side (also exported as
    CSV to `data/exports/<entity>/credits/`)."""

    entity: str
    source_system: str
    source_id: str
    work_item_id: str
    change: str = pa.Field(isin=list(CHANGES))
    credited_document_id: str
    credited_document_number: str
    original_document_number: str
    issue_date: pl.Date
    currency: str
    credited_hours: Hours
    credited_minor: pl.Int64 = pa.Field(ge=0)
    issued_in: pl.Date

    class Config(_Strict):
        name = "ledger.credit_status"


class BillingRejection(pa.DataFrameModel):
    """ledger.billing_rejections: rows of billing input files (manual credits, refunds) that could
    not be used, with a reason code and a detail; nothing is dropped silently."""

    entity: str
    issued_in: pl.Date
    input: str = pa.Field(isin=["credits", "refunds"])
    source_file: str
    source_row: pl.Int64 = pa.Field(ge=1)
    reason: str = pa.Field(isin=list(BILLING_REJECTION_REASONS))
    detail: str
    record: str

    class Config(_Strict):
        name = "ledger.billing_rejections"


BILLING_TABLES: dict[str, type[pa.DataFrameModel]] = {
    "staging.client_matches": ClientMatch,
    "ledger.billing_documents": BillingDocument,
    "ledger.billing_document_lines": BillingDocumentLine,
    "ledger.billing_line_sources": BillingLineSource,
    "ledger.settlements": Settlement,
    "ledger.retainer_movements": RetainerMovement,
    "ledger.credit_status": CreditStatus,
    "ledger.billing_rejections": BillingRejection,
}
TABLES.update(BILLING_TABLES)
