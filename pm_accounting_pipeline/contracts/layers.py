"""The columns and checks of every table the pipeline writes, one pandera model per table.

These are public contracts (analysts query them through the DuckDB schemas raw, staging, ledger,
analytics): a breaking change bumps CONTRACT_VERSION's major number and ships a translator.
Columns holding personal data are listed in PERSONAL_DATA so later governance (encryption,
erasure) can find them. Money inside the pipeline is integer minor units (`*_minor`, Int64); the
ledger also carries exact DECIMAL(18,3) columns for people.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine as pe

CONTRACT_VERSION = "1.1.0"

Money = pe.Decimal(18, 3)
Hours = pe.Decimal(12, 4)
Rate = pe.Decimal(18, 4)
FxRate = pe.Decimal(28, 12)
UtcTs = pl.Datetime("us", "UTC")

# Quarantine reason codes (stable; analysts group by them).
QUARANTINE_REASONS = {
    "unknown_format": "file is not in a recognised format",
    "file_unreadable": "file could not be decoded or parsed",
    "missing_required": "a required column or field is empty or absent",
    "bad_date": "the work date cannot be parsed with the configured format",
    "ambiguous_date": "the file's date format cannot be determined without guessing",
    "bad_hours": "hours are not a number",
    "negative_hours": "hours are negative",
    "absurd_hours": "hours exceed the configured maximum per entry",
    "bad_rate": "a rate or amount is not a number or is negative",
    "bad_flag": "a yes/no field (billable, approved) holds a value that is not a yes/no answer",
    "unknown_currency": "currency is not an ISO 4217 code",
    "currency_mismatch": "row currency differs from the client's billing currency",
    "unknown_client": "client has no mapping to a customer",
    "unknown_project": "project has no mapping to a customer job",
    "wrong_entity": "the row's entity differs from the entity billing its client or project",
    "no_entity": "no entity-assignment rule decides which legal entity the row belongs to",
    "unknown_entity": "the row's PM account or landing folder names an entity the mapping does not list",
    "duplicate_conflict": "same source id seen with different content",
    "duplicate_exact": "same source id seen again with identical content",
    "missing_rate": "billable work has no bill rate from the source or a rate card",
    "missing_fx_rate": "no exchange rate is available for the currency and date",
    "unknown_invoice": "a payment names an invoice number the entity never issued",
    "overpayment": "a payment exceeds what is still open on its invoice",
    "unknown_pool": "a shared-cost row belongs to no allocation pool of its entity",
    "no_allocation_basis": "the pool's driver has no quantity for any project in the period",
    "bad_amount": "an expense amount or quantity is not a number or is negative",
    "unknown_category": "expense category is not listed in the mapping document's expenses section",
}

PERSONAL_DATA = {
    "raw.time_entries": ["person", "email", "notes", "source_record"],
    "staging.work_items": ["person_name", "notes"],
    "staging.rated_billables": ["person_name", "notes"],
    "staging.fx_billables": ["person_name", "notes"],
    "staging.quarantine": ["source_record"],
}


# Entry types of the group modules (payments, FX, intercompany, allocations, capex; core/group_*).
GROUP_ENTRY_TYPES = (
    "payment",
    "fx_realised",
    "fx_revaluation",
    "fx_revaluation_reversal",
    "ic_recharge",
    "ic_cost_transfer",
    "ic_elimination",
    "allocation",
    "allocation_reversal",
    "capitalisation",
    "depreciation",
)


# Entry types of expenses (core/expenses.py): recharge of billable expenses to unbilled
# receivables, and the cost of every expense against reimbursements payable.
EXPENSE_ENTRY_TYPES = ("expense_recharge_accrual", "expense_cost_accrual")


# Entry types of billing (core/billing): adjustments that finalise an invoice (discounts, tax,
# retainer drawdown, corrections carried), retainer invoices, credit memos, refunds, and
# corrections booked without a document (the invoiced rate stays frozen).
BILLING_ENTRY_TYPES = (
    "invoice_adjustment",
    "retainer_invoice",
    "credit_memo",
    "refund",
    "billing_correction",
)


class _Strict:
    strict = True
    coerce = False


class RawTimeEntry(pa.DataFrameModel):
    """raw.time_entries: one row per source row, source-shaped strings, lossless.

    `source_record` is the original row as a JSON object of every source column (names as in the
    file), so nothing the vendor sent is lost. The typed-looking columns are still strings here.
    `entity` is the legal entity the row was assigned to (core/entities.py), `entity_rule` the rule
    that decided it and `landing_entity` the entity of the PM account or landing folder it came from.
    """

    entity: str
    landing_entity: str
    entity_rule: str = pa.Field(isin=["project", "client", "person", "pm_account"])
    work_date: pl.Date
    source_system: str = pa.Field(
        isin=["harvest_csv", "canonical_csv", "canonical_json", "harvest_api", "toggl_csv"]
    )
    source_file: str
    file_hash: str
    source_row: pl.Int64 = pa.Field(ge=1)
    source_id: str
    extracted_at: UtcTs
    date_raw: str
    client: str = pa.Field(nullable=True)
    client_id: str = pa.Field(nullable=True)
    project: str = pa.Field(nullable=True)
    project_code: str = pa.Field(nullable=True)
    task: str = pa.Field(nullable=True)
    person: str = pa.Field(nullable=True)
    person_id: str = pa.Field(nullable=True)
    email: str = pa.Field(nullable=True)
    notes: str = pa.Field(nullable=True)
    hours_raw: str = pa.Field(nullable=True)
    rounded_hours_raw: str = pa.Field(nullable=True)
    billable_raw: str = pa.Field(nullable=True)
    approved_raw: str = pa.Field(nullable=True)
    invoiced_raw: str = pa.Field(nullable=True)
    bill_rate_raw: str = pa.Field(nullable=True)
    cost_rate_raw: str = pa.Field(nullable=True)
    currency_raw: str = pa.Field(nullable=True)
    source_record: str

    class Config(_Strict):
        name = "raw.time_entries"
        unique = ["source_file", "source_row"]


class Quarantine(pa.DataFrameModel):
    """staging.quarantine: every row a layer could not use, with a reason code and a detail."""

    entity: str
    partition_date: pl.Date
    layer: str = pa.Field(
        isin=["landing", "raw", "clean", "rate", "fx", "ledger", "payments", "allocation", "expenses"]
    )
    source_system: str = pa.Field(nullable=True)
    source_file: str = pa.Field(nullable=True)
    source_row: pl.Int64 = pa.Field(nullable=True)
    source_id: str = pa.Field(nullable=True)
    reason: str = pa.Field(isin=list(QUARANTINE_REASONS))
    detail: str
    source_record: str = pa.Field(nullable=True)

    class Config(_Strict):
        name = "staging.quarantine"


class WorkItem(pa.DataFrameModel):
    """staging.work_items: canonical, mapped, typed work. One row per accepted source row."""

    work_item_id: str = pa.Field(unique=True)
    entity: str
    work_date: pl.Date
    source_system: str
    source_id: str
    source_file: str
    source_row: pl.Int64
    extracted_at: UtcTs
    client_name: str
    customer_ref: str
    project_name: str
    project_code: str = pa.Field(nullable=True)
    customer_job: str
    task_name: str
    item: str
    revenue_account: str
    person_id: str
    person_name: str
    notes: str = pa.Field(nullable=True)
    hours: Hours = pa.Field(ge=0)
    hours_rounded_source: Hours = pa.Field(nullable=True, ge=0)
    is_billable: bool
    is_approved: bool
    billing_status: str = pa.Field(
        isin=["billable", "held_unapproved", "held_no_approver", "non_billable", "internal"]
    )
    currency: str
    source_bill_rate: Rate = pa.Field(nullable=True, ge=0)
    source_cost_rate: Rate = pa.Field(nullable=True, ge=0)
    approved_by: str = pa.Field(nullable=True)
    # When the approval was given (source row or approval feed; core/approvals.py).
    approved_at: UtcTs = pa.Field(nullable=True)
    rule_version: str

    class Config(_Strict):
        name = "staging.work_items"


class RatedBillable(WorkItem):
    """staging.rated_billables: work items with hours rounded, rates resolved, amounts computed.

    amount_minor is in the transaction (client billing) currency; cost_minor is in the entity's
    functional currency. Non-billable and held rows carry amount_minor = 0 and still carry cost.
    """

    billed_hours: Hours = pa.Field(ge=0)
    bill_rate: Rate = pa.Field(nullable=True, ge=0)
    bill_rate_source: str
    cost_rate: Rate = pa.Field(ge=0)
    cost_rate_source: str
    amount_minor: pl.Int64 = pa.Field(ge=0)
    cost_minor: pl.Int64 = pa.Field(ge=0)
    tax_rate: pe.Decimal(8, 6) = pa.Field(ge=0)

    class Config(_Strict):
        name = "staging.rated_billables"


class FxBillable(RatedBillable):
    """staging.fx_billables: every amount in transaction, functional and reporting currency.

    Rates are quoted as units of the target currency per one unit of the source currency; each
    row stores the rate, its date, source and type so any report can be reproduced exactly.
    """

    functional_currency: str
    reporting_currency: str
    fx_rate_functional: FxRate = pa.Field(gt=0)
    fx_rate_reporting: FxRate = pa.Field(gt=0)
    fx_rate_cost_reporting: FxRate = pa.Field(gt=0)
    fx_rate_date: pl.Date
    fx_rate_source: str
    fx_rate_type: str = pa.Field(isin=["spot", "contract", "monthly_average"])
    fx_rate_direction: str = pa.Field(isin=["target_per_source"])
    amount_functional_minor: pl.Int64 = pa.Field(ge=0)
    amount_reporting_minor: pl.Int64 = pa.Field(ge=0)
    cost_reporting_minor: pl.Int64 = pa.Field(ge=0)

    class Config(_Strict):
        name = "staging.fx_billables"


class JournalEntry(pa.DataFrameModel):
    """ledger.journal_entries: one row per balanced entry (header)."""

    entry_id: str = pa.Field(unique=True)
    entity: str
    posting_date: pl.Date
    entry_type: str = pa.Field(
        isin=[
            "revenue_accrual",
            "cost_accrual",
            "invoice",
            *GROUP_ENTRY_TYPES,
            *BILLING_ENTRY_TYPES,
            *EXPENSE_ENTRY_TYPES,
        ]
    )
    currency: str
    description: str
    document_id: str = pa.Field(nullable=True)
    line_count: pl.Int64 = pa.Field(ge=2)
    total_debit_minor: pl.Int64 = pa.Field(ge=0)
    rule_version: str

    class Config(_Strict):
        name = "ledger.journal_entries"


class JournalLine(pa.DataFrameModel):
    """ledger.journal_lines: the postings. Per entry, debits = credits in the transaction
    currency, in the functional currency and in the reporting currency."""

    line_id: str = pa.Field(unique=True)
    entry_id: str
    line_no: pl.Int64 = pa.Field(ge=1)
    entity: str
    posting_date: pl.Date
    entry_type: str
    account: str
    account_role: str
    currency: str
    debit_minor: pl.Int64 = pa.Field(ge=0)
    credit_minor: pl.Int64 = pa.Field(ge=0)
    debit: Money = pa.Field(ge=0)
    credit: Money = pa.Field(ge=0)
    functional_currency: str
    functional_debit: Money = pa.Field(ge=0)
    functional_credit: Money = pa.Field(ge=0)
    reporting_currency: str
    reporting_debit: Money = pa.Field(ge=0)
    reporting_credit: Money = pa.Field(ge=0)
    customer_ref: str = pa.Field(nullable=True)
    project_code: str = pa.Field(nullable=True)
    customer_job: str = pa.Field(nullable=True)
    document_id: str = pa.Field(nullable=True)
    source_count: pl.Int64 = pa.Field(ge=0)
    rule_version: str

    class Config(_Strict):
        name = "ledger.journal_lines"


class LineSource(pa.DataFrameModel):
    """ledger.line_sources: the audit trail from each journal line to the work items behind it."""

    line_id: str
    entry_id: str
    entity: str
    work_item_id: str
    source_system: str
    source_id: str
    source_file: str
    source_row: pl.Int64
    amount_minor: pl.Int64

    class Config(_Strict):
        name = "ledger.line_sources"


class Invoice(pa.DataFrameModel):
    """ledger.invoices: one per entity x client x currency x billing period."""

    invoice_id: str = pa.Field(unique=True)
    invoice_number: str = pa.Field(unique=True)
    entity: str
    customer_ref: str
    client_name: str
    currency: str
    period_start: pl.Date
    period_end: pl.Date
    issue_date: pl.Date
    due_date: pl.Date
    subtotal_minor: pl.Int64 = pa.Field(ge=0)
    tax_minor: pl.Int64 = pa.Field(ge=0)
    total_minor: pl.Int64 = pa.Field(ge=0)
    subtotal: Money
    tax: Money
    total: Money
    tax_rate: pe.Decimal(8, 6)
    line_count: pl.Int64 = pa.Field(ge=1)
    entry_id: str
    rule_version: str

    class Config(_Strict):
        name = "ledger.invoices"


class InvoiceLine(pa.DataFrameModel):
    """ledger.invoice_lines: grouped lines of an invoice, each referencing its source entries."""

    invoice_id: str
    line_no: pl.Int64 = pa.Field(ge=1)
    entity: str
    item: str
    description: str
    project_code: str = pa.Field(nullable=True)
    customer_job: str
    task_name: str
    revenue_account: str
    quantity: Hours
    unit_price: Rate = pa.Field(nullable=True)
    amount_minor: pl.Int64 = pa.Field(ge=0)
    amount: Money
    source_count: pl.Int64 = pa.Field(ge=1)
    # Who approved the line's source entries ("; "-joined when several) and the latest approval.
    approved_by: str = pa.Field(nullable=True)
    approved_at: UtcTs = pa.Field(nullable=True)

    class Config(_Strict):
        name = "ledger.invoice_lines"


TABLES: dict[str, type[pa.DataFrameModel]] = {
    "raw.time_entries": RawTimeEntry,
    "staging.quarantine": Quarantine,
    "staging.work_items": WorkItem,
    "staging.rated_billables": RatedBillable,
    "staging.fx_billables": FxBillable,
    "ledger.journal_entries": JournalEntry,
    "ledger.journal_lines": JournalLine,
    "ledger.line_sources": LineSource,
    "ledger.invoices": Invoice,
    "ledger.invoice_lines": InvoiceLine,
}


def polars_schema(table: str) -> pl.Schema:
    """The polars schema of a contract table (used to write empty partitions and schema files)."""
    model = TABLES[table]
    schema = model.to_schema()
    out: dict[str, pl.DataType] = {}
    for name, col in schema.columns.items():
        out[name] = col.dtype.type
    return pl.Schema(out)


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=polars_schema(table))


# The group tables register themselves in TABLES (payments, revaluations, intercompany, allocations).
# The billing tables register themselves in TABLES (documents, settlements, retainers, credits).
import pm_accounting_pipeline.contracts.billing  # noqa: E402
import pm_accounting_pipeline.contracts.expenses  # noqa: E402
import pm_accounting_pipeline.contracts.group  # noqa: E402, F401
