"""Contracts of the expense tables: raw expenses (Harvest API and Harvest's expense CSV export,
one canonical source-shaped table) and staged expenses (mapped, approved or held, marked up,
in integer minor units of the transaction, functional and reporting currency).

Registered in `contracts.layers.TABLES` (imported at the end of that module), so the lake writes
their schema files and the warehouse gives analysts `raw.expenses` and `staging.expenses`.
Receipts are referenced (`receipt_url`), never copied.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine as pe

from pm_accounting_pipeline.contracts.layers import (
    PERSONAL_DATA,
    TABLES,
    FxRate,
    Hours,
    UtcTs,
    _Strict,
)

EXPENSE_SOURCE_SYSTEMS = ["harvest_api", "harvest_expense_csv"]
EXPENSE_STATUSES = ["billable", "held_unapproved", "held_no_approver", "non_billable", "internal"]


class RawExpense(pa.DataFrameModel):
    """raw.expenses: one row per source expense, source-shaped strings, lossless.

    Both sources fill the same columns; `source_record` keeps every source column (CSV) or field
    (API) verbatim. `entity` is the legal entity the row was assigned to (core/entities.py, as for
    time entries), `entity_rule` the rule that decided it and `landing_entity` the entity of the
    Harvest account or landing folder it came from. Numbers and flags stay as the source wrote them (`1,234.50`, `Yes`, `true`).
    """

    entity: str
    spent_date: pl.Date
    source_system: str = pa.Field(isin=EXPENSE_SOURCE_SYSTEMS)
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
    person: str = pa.Field(nullable=True)
    person_id: str = pa.Field(nullable=True)
    category: str = pa.Field(nullable=True)
    category_id: str = pa.Field(nullable=True)
    units_raw: str = pa.Field(nullable=True)
    unit_price_raw: str = pa.Field(nullable=True)
    total_cost_raw: str = pa.Field(nullable=True)
    billable_raw: str = pa.Field(nullable=True)
    invoiced_raw: str = pa.Field(nullable=True)
    receipt_url: str = pa.Field(nullable=True)
    notes: str = pa.Field(nullable=True)
    currency_raw: str = pa.Field(nullable=True)
    source_record: str
    approved_raw: str = pa.Field(nullable=True)
    landing_entity: str
    entity_rule: str = pa.Field(isin=["project", "client", "person", "pm_account"])

    class Config(_Strict):
        name = "raw.expenses"
        unique = ["source_file", "source_row"]


class StagedExpense(pa.DataFrameModel):
    """staging.expenses: one row per accepted expense, mapped and valued.

    `expense_minor` is what was spent (transaction currency = the client's billing currency);
    `original_minor` is what the receipt says, in `original_currency`; an expense paid in another
    currency than the billing currency is converted at `original_fx_rate` (billing-currency units
    per one original unit, the spent date's rate: its publication date, type and source beside it;
    1 / `identity` when the currencies agree). `expense_functional_minor` and
    `expense_reporting_minor` convert the original amount directly.
    `markup_minor` and `recharge_minor` (= expense + markup) are re-invoiced only when
    `billing_status` is "billable" (approved billable expenses of a billable project) and are 0
    otherwise. Every amount also in the entity's functional and the group reporting currency, with
    the rates and their provenance, like staging.fx_billables.
    """

    expense_item_id: str = pa.Field(unique=True)
    entity: str
    spent_date: pl.Date
    source_system: str = pa.Field(isin=EXPENSE_SOURCE_SYSTEMS)
    source_id: str
    source_file: str
    source_row: pl.Int64
    extracted_at: UtcTs
    client_name: str
    customer_ref: str
    project_name: str
    project_code: str = pa.Field(nullable=True)
    customer_job: str
    category: str
    item: str
    person_id: str
    person_name: str
    notes: str = pa.Field(nullable=True)
    units: Hours = pa.Field(nullable=True, ge=0)
    receipt_url: str = pa.Field(nullable=True)
    is_billable: bool
    is_approved: bool
    approved_by: str = pa.Field(nullable=True)
    approved_at: UtcTs = pa.Field(nullable=True)
    billing_status: str = pa.Field(isin=EXPENSE_STATUSES)
    currency: str
    original_currency: str
    original_minor: pl.Int64 = pa.Field(ge=0)
    original_fx_rate: FxRate = pa.Field(gt=0)
    original_fx_rate_direction: str = pa.Field(isin=["target_per_source"])
    original_fx_rate_date: pl.Date
    original_fx_rate_type: str = pa.Field(isin=["spot", "contract", "monthly_average"])
    original_fx_rate_source: str
    expense_minor: pl.Int64 = pa.Field(ge=0)
    markup_pct: pe.Decimal(9, 4) = pa.Field(ge=0)
    markup_minor: pl.Int64 = pa.Field(ge=0)
    recharge_minor: pl.Int64 = pa.Field(ge=0)
    tax_rate: pe.Decimal(8, 6) = pa.Field(ge=0)
    recharge_account: str
    cost_account: str
    reimbursement_account: str
    functional_currency: str
    reporting_currency: str
    fx_rate_functional: FxRate = pa.Field(gt=0)
    fx_rate_reporting: FxRate = pa.Field(gt=0)
    fx_rate_date: pl.Date
    fx_rate_source: str
    fx_rate_type: str = pa.Field(isin=["spot", "contract", "monthly_average"])
    expense_functional_minor: pl.Int64 = pa.Field(ge=0)
    expense_reporting_minor: pl.Int64 = pa.Field(ge=0)
    recharge_functional_minor: pl.Int64 = pa.Field(ge=0)
    recharge_reporting_minor: pl.Int64 = pa.Field(ge=0)
    rule_version: str

    class Config(_Strict):
        name = "staging.expenses"


TABLES.update({"raw.expenses": RawExpense, "staging.expenses": StagedExpense})
PERSONAL_DATA.update(
    {
        "raw.expenses": ["person", "notes", "receipt_url", "source_record"],
        "staging.expenses": ["person_name", "notes", "receipt_url"],
    }
)
