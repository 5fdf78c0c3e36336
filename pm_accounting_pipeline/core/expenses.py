"""Expenses: raw expense rows (Harvest API or Harvest's expense CSV export) become staged expenses
or quarantine rows, and staged expenses become balanced accrual entries.

Staging (`stage_expenses`) applies the mapping document the way cleaning does for time entries,
through the same functions (`core.clean`: client, project and person matching, flag, number and
currency parsing, fuzzy-matched client spellings), then:

- billing status: "internal" when the project is not billable; "non_billable" when the source
  says so (or, when it is silent, the category is not billable by default); "held_unapproved"
  when billable, approval is required (client setting, else the deployment's) and the expense is
  not approved; "held_no_approver" when approved but an approver's name is required and none is
  known; else "billable". Approvals are applied as for time entries (core.approvals: the
  source row, the approval feed, `approval.require_approver`), with `approved_by` and
  `approved_at` kept on the row and carried onto the billed lines. Only "billable" expenses are re-invoiced; held ones are kept,
  counted and billed by a later run once approved.
- amounts in integer minor units of the client's billing currency, in this order: the source's
  total rounded to its own currency's minor unit (`original_minor`); converted to the billing
  currency at the spent date's rate when the expense was paid in another currency (same
  providers, rate rules and quote convention as time; rate, direction, rate date, type and
  source kept on the row) = expense; markup = round(expense x markup_pct / 100); recharge =
  expense + markup. Markup and recharge are 0 unless the status is "billable". Every rounding
  uses `rounding.money_mode` through core.rounding. An expense whose currency has no rate at
  all is quarantined (`missing_fx_rate`).
- FX: the recharge converts to the entity's functional and the group reporting currency with
  the same providers and conversion as time (`core.fx.enrich`); the expense's cost converts
  the original amount directly (an expense paid in the functional currency costs exactly what
  was paid).

Every raw row ends in exactly one output: raw.height == expenses.height + quarantine.height
(quarantine rows of this layer carry `layer = "expenses"`).

Accruals (`build_expense_accruals`), per (entity, spent date, transaction currency):
- expense_recharge_accrual, from "billable" rows: Dr unbilled_receivables / Cr the recharge
  account (cost + markup), per (customer_ref, customer_job, project_code);
- expense_cost_accrual, from every staged expense (the money was spent whatever its billing):
  Dr the project expense cost account per (customer_ref, customer_job, project_code) /
  Cr reimbursements payable.
Both sides are sums over the same rows' already converted amounts, so each entry balances in the
transaction, functional and reporting currency by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import QUARANTINE_REASONS, polars_schema
from pm_accounting_pipeline.core.approvals import apply_approvals
from pm_accounting_pipeline.core.clean import (
    _blank_to_null,
    _client_names,
    _currency_columns,
    _flag_columns,
    _map_person,
    _map_references,
    _number_columns,
    _q,
    bad_flag_detail,
    billing_status,
    client_frame,
    copy_marks,
    first_reason,
    missing_reference_labels,
    normalise_name,
    project_frame,
    quarantine_frame,
    task_frame,
    unknown_currency_detail,
)
from pm_accounting_pipeline.core.fx import RateProvider, enrich
from pm_accounting_pipeline.core.fx_providers import attach_rates, convert_minor_expr
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.ledger import (
    LINE_AMOUNTS_SCHEMA,
    SOURCE_ROW_COLUMNS,
    LedgerBatch,
    _merge,
    assemble,
)
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rating import ZERO_TAX_PROFILES
from pm_accounting_pipeline.core.rounding import (
    div_round_expr,
    minor_to_decimal_expr,
    rescale_expr,
    scaled_to_decimal_expr,
)

RAW_TABLE = "raw.expenses"
STAGED_TABLE = "staging.expenses"

# Reasons of this layer, in priority order: the first that applies wins.
EXPENSE_REASONS: tuple[str, ...] = (
    "missing_required",
    "bad_amount",
    "bad_flag",
    "unknown_currency",
    "unknown_client",
    "unknown_project",
    "wrong_entity",
    "unknown_category",
    "duplicate_conflict",
    "duplicate_exact",
)
assert set(EXPENSE_REASONS) <= set(QUARANTINE_REASONS)

# The columns that make two rows with one source id "the same expense".
_CONTENT = (
    "entity", "spent_date", "client", "client_id", "project", "project_code", "person", "person_id",
    "category", "units_raw", "unit_price_raw", "total_cost_raw", "billable_raw", "approved_raw",
    "invoiced_raw", "receipt_url", "notes", "currency_raw",
)  # fmt: skip


@dataclass(frozen=True)
class ExpenseResult:
    expenses: pl.DataFrame
    quarantine: pl.DataFrame


def ledger_source_system(source_system: pl.Expr) -> pl.Expr:
    """The source system named on ledger and billing references to an expense: the API's
    expenses get their own name so their ids never meet time-entry ids of the same account."""
    return (
        pl.when(source_system == "harvest_api").then(pl.lit("harvest_api_expense")).otherwise(source_system)
    )


def _category_frame(mapping: MappingDocument) -> pl.DataFrame:
    cats = mapping.expenses.categories
    return pl.DataFrame(
        {
            "cat_name": [c.name for c in cats],
            "cat_item": [c.item for c in cats],
            "cat_markup_e4": [None if c.markup_pct is None else int(c.markup_pct.scaleb(4)) for c in cats],
            "cat_billable_default": [c.billable_by_default for c in cats],
        },
        schema={
            "cat_name": pl.String,
            "cat_item": pl.String,
            "cat_markup_e4": pl.Int64,
            "cat_billable_default": pl.Boolean,
        },
    ).with_columns(cat_key=normalise_name("cat_name"))


def stage_expenses(
    raw: pl.DataFrame,
    mapping: MappingDocument,
    provider: RateProvider,
    approvals: pl.DataFrame | None = None,
) -> ExpenseResult:
    """Turn `raw.expenses` rows into `staging.expenses` and `staging.quarantine` rows.

    `approvals` is the approval feed (core.approvals.read_feed) that may approve, name the
    approver of, or withdraw the approval of an expense, like a time entry."""
    raw_schema = polars_schema(RAW_TABLE)
    missing = [c for c in raw_schema if c not in raw.columns]
    if missing:
        raise ValueError(f"raw expenses lack column(s) {missing}")
    unknown_entities = sorted(set(raw["entity"].unique().to_list()) - set(mapping.entity_ids))
    if unknown_entities:
        raise ValueError(f"raw expenses belong to entities {unknown_entities} not in the mapping")
    settings = mapping.expenses
    mode = mapping.rounding.money_mode
    clients = client_frame(mapping)
    from pm_accounting_pipeline.core.dedupe import with_matched_names

    names = with_matched_names(_client_names(mapping), raw, mapping)
    seps = {e.id: e.harvest_csv.decimal_separator for e in mapping.entities}

    d = raw.select(raw_schema.names()).with_row_index("_row")
    d = d.with_columns(
        task=pl.lit(None, dtype=pl.String),
        _sep=pl.when(pl.col("source_system") == "harvest_expense_csv")
        # The separator of the account the file was landed for, whichever entity the row went to.
        .then(pl.coalesce("landing_entity", "entity").replace_strict(seps, return_dtype=pl.String))
        .otherwise(pl.lit(".")),
    )
    d = _map_references(
        d,
        clients=clients,
        client_names=names,
        projects=project_frame(mapping),
        tasks=task_frame(mapping).head(0),
    )
    d = _map_person(d)
    d = d.with_columns(
        **_flag_columns("billable", pl.col("billable_raw")),
        **_flag_columns("approved", pl.col("approved_raw")),
        **_currency_columns(pl.col("currency_raw")),
        **_number_columns("amount", _blank_to_null(pl.col("total_cost_raw")), pl.col("_sep"), 4, False),
        **_number_columns("units", _blank_to_null(pl.col("units_raw")), pl.col("_sep"), 4, False),
        category_s=_blank_to_null(pl.col("category")),
    )
    d = d.with_columns(cat_key=normalise_name(pl.col("category_s"))).join(
        _category_frame(mapping), on="cat_key", how="left"
    )
    client_markup = {n: int(p.scaleb(4)) for n, p in settings.client_markup_pct.items()}
    tax_e6 = {e.id: int(e.tax.rate.scaleb(6).to_integral_value()) for e in mapping.entities}
    d = d.with_columns(
        _missing=(pl.col("client_s").is_null() & pl.col("client_id_s").is_null())
        | (pl.col("project_s").is_null() & pl.col("project_code_s").is_null())
        | pl.col("category_s").is_null()
        | pl.col("_person_missing")
        | (pl.col("amount_e").is_null() & ~pl.col("amount_bad")),
        _bad_amount=pl.col("amount_bad")
        | pl.col("units_bad")
        | (pl.col("amount_e") < 0).fill_null(False)
        | (pl.col("units_e") < 0).fill_null(False),
        _unknown_category=pl.lit(settings.require_known_category) & pl.col("cat_name").is_null(),
        _markup_e4=pl.coalesce(
            pl.col("client_name").replace_strict(client_markup, default=None, return_dtype=pl.Int64)
            if client_markup
            else pl.lit(None, dtype=pl.Int64),
            pl.col("cat_markup_e4"),
            pl.lit(int(settings.markup_pct.scaleb(4)), dtype=pl.Int64),
        ),
    )
    d = _with_duplicates(d)
    conditions = {
        "missing_required": pl.col("_missing"),
        "bad_amount": pl.col("_bad_amount"),
        "bad_flag": pl.col("billable_bad") | pl.col("approved_bad"),
        "unknown_currency": pl.col("currency_bad"),
        "unknown_client": pl.col("client_idx").is_null(),
        "unknown_project": pl.col("project_idx").is_null() | pl.col("_project_elsewhere"),
        "wrong_entity": (pl.col("client_entity") != pl.col("entity")).fill_null(False),
        "unknown_category": pl.col("_unknown_category"),
        "duplicate_conflict": pl.col("_dup_reason") == "duplicate_conflict",
        "duplicate_exact": pl.col("_dup_reason") == "duplicate_exact",
    }
    d = d.with_columns(_reason=first_reason(conditions, EXPENSE_REASONS))
    bad = d.filter(pl.col("_reason").is_not_null())
    good, no_rate = _in_billing_currency(d.filter(pl.col("_reason").is_null()), mapping, provider)

    source_billable = pl.coalesce("billable_val", "cat_billable_default", pl.lit(True))
    approved = pl.col("approved_val").fill_null(False)
    status = billing_status(source_billable, approved)
    good = good.with_columns(
        billing_status=status,
        is_billable=pl.col("project_billable") & source_billable,
        is_approved=approved,
        approved_by=pl.lit(None, dtype=pl.String),
        approved_at=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
    )
    good = _with_approvals(good, raw, approvals, mapping)
    billed = pl.col("billing_status") == "billable"
    markup = div_round_expr(pl.col("expense_minor") * pl.col("_markup_e4"), pl.lit(1_000_000), mode)
    good = good.with_columns(markup_minor=pl.when(billed).then(markup).otherwise(0).cast(pl.Int64))
    good = good.with_columns(
        recharge_minor=pl.when(billed).then(pl.col("expense_minor") + pl.col("markup_minor")).otherwise(0)
    )
    recharge = {
        e: settings.recharge_account or mapping.account(e, "expense_recharge") for e in mapping.entity_ids
    }
    zero_tax = pl.col("tax_profile").is_in(list(ZERO_TAX_PROFILES))
    good = good.with_columns(
        expense_item_id=stable_id_expr(
            "source_system", "source_id", pl.lit(mapping.rule_version), prefix="expense"
        ),
        item=pl.coalesce("cat_item", "category_s"),
        category=pl.coalesce("cat_name", "category_s"),
        units=scaled_to_decimal_expr(pl.col("units_e"), 4, 12),
        markup_pct=scaled_to_decimal_expr(pl.col("_markup_e4"), 4, 9),
        tax_rate=scaled_to_decimal_expr(
            pl.when(zero_tax)
            .then(0)
            .otherwise(pl.col("entity").replace_strict(tax_e6, return_dtype=pl.Int64)),
            6,
            8,
        ),
        recharge_account=pl.col("entity").replace_strict(recharge, return_dtype=pl.String),
        cost_account=pl.lit(settings.cost_account),
        reimbursement_account=pl.lit(settings.reimbursement_account),
        project_code=pl.coalesce("mapped_project_code", "project_code_s"),
        person_id=pl.col("_person_id"),
        person_name=pl.col("_person_name"),
        currency=pl.col("client_currency"),
        rule_version=pl.lit(mapping.rule_version),
    )
    staged, fx_quarantine = _with_fx(good, mapping, provider)
    quarantine = pl.concat([_quarantine_rows(bad), no_rate, fx_quarantine], how="vertical")
    return ExpenseResult(expenses=staged, quarantine=quarantine)


def _with_approvals(
    good: pl.DataFrame, raw: pl.DataFrame, feed: pl.DataFrame | None, mapping: MappingDocument
) -> pl.DataFrame:
    """Who approved each expense and when, and the billing status decided again, exactly as for
    time entries (core.approvals.apply_approvals: the source row, then the approval feed, then
    `approval.require_approver` holding approved billable expenses without an approver as
    `held_no_approver`). The feed names an expense by its ledger source system
    (`harvest_api_expense` for the API's expenses)."""
    items = good.with_columns(
        _raw_system=pl.col("source_system"), source_system=ledger_source_system(pl.col("source_system"))
    )
    out = apply_approvals(items, raw, feed, mapping)
    return out.with_columns(source_system=pl.col("_raw_system")).drop("_raw_system")


def _in_billing_currency(
    good: pl.DataFrame, mapping: MappingDocument, provider: RateProvider
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The expense in the client's billing currency, whatever currency it was paid in.

    The original amount (the source's currency, else the billing currency) is rounded to its own
    minor unit, then converted at the rate of the spent date from the configured providers (same
    rate rules, fallback and quote convention as time: target units per one source unit), rounded
    once to the billing currency's minor unit through core.rounding; markup applies afterwards to
    the converted amount. The project cost in the entity's functional (and the reporting) currency
    converts the original amount directly, so an expense paid in the functional currency costs
    exactly what was paid. A row without one of these rates goes to quarantine
    (`missing_fx_rate`). Returns (rows with original_* and expense_* amounts, quarantine rows)."""
    functional = {e.id: e.functional_currency for e in mapping.entities}
    mode = mapping.rounding.money_mode
    d = good.with_columns(
        original_currency=pl.coalesce("row_currency", "client_currency"),
        _fn_currency=pl.col("entity").replace_strict(functional, return_dtype=pl.String),
        _rp_currency=pl.lit(mapping.reporting_currency),
    )
    customer = "customer_ref" if getattr(provider, "per_client", False) else None
    legs = {"_ob_": "client_currency", "_of_": "_fn_currency", "_or_": "_rp_currency"}
    for prefix, target in legs.items():
        d = attach_rates(
            d, provider, "original_currency", target, "spent_date", prefix, customer_col=customer
        )
    currencies = {mapping.reporting_currency, *functional.values()}
    currencies |= set(d["original_currency"].drop_nulls().to_list()) | set(d["client_currency"].to_list())
    dg = {c: minor_digits(c) for c in currencies}

    def digits(col: str) -> pl.Expr:
        return pl.col(col).replace_strict(dg, return_dtype=pl.Int32)

    d = d.with_columns(_no_rate=pl.any_horizontal(pl.col(f"{p}rate").is_null() for p in legs))
    ok = d.filter(~pl.col("_no_rate")).with_columns(
        original_minor=rescale_expr(pl.col("amount_e"), 4, digits("original_currency"), mode).cast(pl.Int64)
    )

    def convert(prefix: str, target: str) -> pl.Expr:
        return convert_minor_expr(
            pl.col("original_minor"),
            pl.col(f"{prefix}rate"),
            digits("original_currency"),
            digits(target),
            mode,
        ).cast(pl.Int64)

    ok = ok.with_columns(
        expense_minor=convert("_ob_", "client_currency"),
        expense_functional_minor=convert("_of_", "_fn_currency"),
        expense_reporting_minor=convert("_or_", "_rp_currency"),
        original_fx_rate=pl.col("_ob_rate"),
        original_fx_rate_direction=pl.lit("target_per_source"),
        original_fx_rate_date=pl.col("_ob_rate_date"),
        original_fx_rate_type=pl.col("_ob_rate_type"),
        original_fx_rate_source=pl.col("_ob_source"),
    )
    gaps = (
        pl.concat_list(
            [
                pl.when(pl.col(f"{p}rate").is_null()).then(pl.format("{}->{}", "original_currency", t))
                for p, t in legs.items()
            ]
        )
        .list.drop_nulls()
        .list.unique(maintain_order=True)
        .list.join(", ")
    )
    no_rate = quarantine_frame(
        d.filter(pl.col("_no_rate")),
        partition_date="spent_date",
        layer="expenses",
        reason=pl.lit("missing_fx_rate"),
        detail=pl.format(
            "no {} rate for {} on or shortly before {}: the expense cannot be valued in the "
            "billing currency {} of client '{}' and the entity's books",
            pl.lit(getattr(provider, "name", "configured")),
            gaps,
            pl.col("spent_date").cast(pl.String),
            "client_currency",
            "client_name",
        ),
    )
    return ok, no_rate


def _with_duplicates(d: pl.DataFrame) -> pl.DataFrame:
    """`_dup_reason`: a source id seen with different contents (every copy) or seen again (later copies)."""
    marks = copy_marks(_CONTENT, seed=0xE0E)
    return d.sort("source_file", "source_row").with_columns(
        _dup_reason=pl.when(marks["_variants"] > 1)
        .then(pl.lit("duplicate_conflict"))
        .when(~marks["_is_first"])
        .then(pl.lit("duplicate_exact")),
        _first_file=marks["_first_file"],
        _first_row=marks["_first_row"],
    )


def _quarantine_rows(bad: pl.DataFrame) -> pl.DataFrame:
    r = pl.col("_reason")
    missing_fields = pl.concat_str(
        [
            *missing_reference_labels(),
            pl.when(pl.col("category_s").is_null()).then(pl.lit("category")),
            pl.when(pl.col("_person_missing")).then(pl.lit("person")),
            pl.when(pl.col("amount_e").is_null() & ~pl.col("amount_bad")).then(pl.lit("amount")),
        ],
        separator=", ",
        ignore_nulls=True,
    )
    amount_is_bad = pl.col("amount_bad") | (pl.col("amount_e") < 0).fill_null(False)
    detail = (
        pl.when(r == "missing_required")
        .then(pl.concat_str([pl.lit("required field(s) empty: "), missing_fields]))
        .when(r == "bad_amount")
        .then(
            pl.when(amount_is_bad)
            .then(
                pl.concat_str(
                    [pl.lit("amount "), _q("total_cost_raw"), pl.lit(" is not a non-negative number")]
                )
            )
            .otherwise(
                pl.concat_str([pl.lit("units "), _q("units_raw"), pl.lit(" is not a non-negative number")])
            )
        )
        .when(r == "bad_flag")
        .then(bad_flag_detail())
        .when(r == "unknown_currency")
        .then(unknown_currency_detail())
        .when(r == "unknown_client")
        .then(pl.concat_str([pl.lit("client "), _q("client"), pl.lit(" has no mapping to a customer")]))
        .when(r == "unknown_project")
        .then(
            pl.concat_str(
                [
                    pl.lit("project "),
                    _q("project"),
                    pl.lit(" (code "),
                    _q("project_code"),
                    pl.lit(") of client '"),
                    pl.col("client_name").fill_null(""),
                    pl.lit("' has no mapping to a customer job"),
                ]
            )
        )
        .when(r == "wrong_entity")
        .then(
            pl.format(
                "client '{}' is mapped to entity '{}', not to this partition's entity '{}'",
                "client_name",
                "client_entity",
                "entity",
            )
        )
        .when(r == "unknown_category")
        .then(
            pl.concat_str(
                [pl.lit("category "), _q("category"), pl.lit(" is not listed under expenses.categories")]
            )
        )
        .when(r == "duplicate_conflict")
        .then(
            pl.format("source id '{}' appears with different contents; every copy is held back", "source_id")
        )
        .otherwise(
            pl.format(
                "source id '{}' already accepted from {} row {} with identical content",
                "source_id",
                "_first_file",
                "_first_row",
            )
        )
    )
    return quarantine_frame(
        bad.sort("_row"),
        partition_date="spent_date",
        layer="expenses",
        reason=pl.col("_reason"),
        detail=detail.fill_null(pl.col("_reason")),
    )


def _amount_text(minor: pl.Expr, digits: pl.Expr) -> pl.Expr:
    """Non-negative minor units as a plain decimal string with the currency's digits (20000 -> 200.00)."""
    unit = pl.lit(10, dtype=pl.Int64).pow(digits)
    return (
        pl.when(digits == 0)
        .then(minor.cast(pl.String))
        .otherwise(
            pl.concat_str(
                [
                    (minor // unit).cast(pl.String),
                    pl.lit("."),
                    (minor % unit).cast(pl.String).str.zfill(digits),
                ]
            )
        )
    )


def _conversion_text(digits: pl.Expr) -> pl.Expr:
    """ " (EUR 200.00 at 1.1 USD per EUR, ecb_offline spot rate of 2026-03-02)" for an expense paid
    in another currency than the billing currency, else "": on the invoice line's description.
    `digits` are the original currency's minor digits."""
    rate = pl.col("original_fx_rate").cast(pl.String).str.strip_chars_end("0").str.strip_chars_end(".")
    text = pl.format(
        " ({} {} at {} {} per {}, {} {} rate of {})",
        "original_currency",
        _amount_text(pl.col("original_minor"), digits),
        rate,
        "currency",
        "original_currency",
        "original_fx_rate_source",
        "original_fx_rate_type",
        pl.col("original_fx_rate_date").cast(pl.String),
    )
    foreign = pl.col("original_currency").is_not_null() & (pl.col("original_currency") != pl.col("currency"))
    return pl.when(foreign).then(text).otherwise(pl.lit(""))


def as_rated(staged: pl.DataFrame) -> pl.DataFrame:
    """Staged expense rows in `staging.rated_billables` shape, so FX enrichment, invoicing and
    billing treat an expense like a billable entry: quantity 1 at the recharge amount (exact, so
    line- and invoice-level rounding agree), item = the category's item, revenue account = the
    recharge account, no cost (expense cost is booked by the expense cost accrual)."""
    schema = polars_schema("staging.rated_billables")
    currencies = set(staged["currency"].unique().to_list())
    currencies |= set(staged["original_currency"].drop_nulls().unique().to_list())
    by_code = {c: minor_digits(c) for c in currencies}
    digits = pl.col("currency").replace_strict(by_code, return_dtype=pl.Int32)
    original_digits = pl.col("original_currency").replace_strict(by_code, default=None, return_dtype=pl.Int32)
    one = pl.lit(1).cast(pl.Decimal(12, 4))
    out = staged.select(
        pl.col("expense_item_id").alias("work_item_id"),
        "entity",
        pl.col("spent_date").alias("work_date"),
        ledger_source_system(pl.col("source_system")).alias("source_system"),
        "source_id",
        "source_file",
        "source_row",
        "extracted_at",
        "client_name",
        "customer_ref",
        "project_name",
        "project_code",
        "customer_job",
        pl.concat_str([pl.lit("Expenses: "), pl.col("category"), _conversion_text(original_digits)]).alias(
            "task_name"
        ),
        "item",
        pl.col("recharge_account").alias("revenue_account"),
        "person_id",
        "person_name",
        pl.concat_str(
            [pl.col("notes").fill_null(""), pl.lit(" [receipt: "), pl.col("receipt_url"), pl.lit("]")]
        )
        .fill_null(pl.col("notes"))
        .alias("notes"),
        one.alias("hours"),
        pl.lit(None, dtype=pl.Decimal(12, 4)).alias("hours_rounded_source"),
        "is_billable",
        "is_approved",
        "billing_status",
        "currency",
        pl.lit(None, dtype=pl.Decimal(18, 4)).alias("source_bill_rate"),
        pl.lit(None, dtype=pl.Decimal(18, 4)).alias("source_cost_rate"),
        "approved_by",
        "approved_at",
        "rule_version",
        one.alias("billed_hours"),
        minor_to_decimal_expr(pl.col("recharge_minor"), digits, 4).alias("bill_rate"),
        pl.lit("expense").alias("bill_rate_source"),
        pl.lit(0).cast(pl.Decimal(18, 4)).alias("cost_rate"),
        pl.lit("expense").alias("cost_rate_source"),
        pl.col("recharge_minor").alias("amount_minor"),
        pl.lit(0, dtype=pl.Int64).alias("cost_minor"),
        "tax_rate",
    )
    # Columns an expense has no value for (e.g. approval metadata of timesheets) stay empty.
    out = out.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in out.columns)
    return out.cast(dict(schema)).select(schema.names())


# The staged columns that FX enrichment adds.
_FX_COLUMNS = frozenset(
    {
        "functional_currency", "reporting_currency", "fx_rate_functional", "fx_rate_reporting", "fx_rate_date",
        "fx_rate_source", "fx_rate_type", "recharge_functional_minor", "recharge_reporting_minor",
    }
)  # fmt: skip


def _with_fx(
    good: pl.DataFrame, mapping: MappingDocument, provider: RateProvider
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rates for every row through `core.fx.enrich` (same providers, same conversion as time) for
    the recharge; the expense's functional and reporting amounts are already on the rows
    (`_in_billing_currency`)."""
    schema = polars_schema(STAGED_TABLE)
    pre = good.select([c for c in schema.names() if c not in _FX_COLUMNS])
    if pre.height == 0:
        return pl.DataFrame(schema=schema), pl.DataFrame(schema=polars_schema("staging.quarantine"))
    res = enrich(as_rated(pre), mapping, provider)
    fx = res.fx.select(
        pl.col("work_item_id").alias("expense_item_id"),
        "functional_currency",
        "reporting_currency",
        "fx_rate_functional",
        "fx_rate_reporting",
        "fx_rate_date",
        "fx_rate_source",
        "fx_rate_type",
        pl.col("amount_functional_minor").alias("recharge_functional_minor"),
        pl.col("amount_reporting_minor").alias("recharge_reporting_minor"),
    )
    staged = pre.join(fx, on="expense_item_id", how="inner")
    # enrich quarantined rows without a rate under the billable's source system name; report
    # them under the expense's own.
    quarantine = res.quarantine.with_columns(
        layer=pl.lit("expenses"),
        source_system=pl.when(pl.col("source_system") == "harvest_api_expense")
        .then(pl.lit("harvest_api"))
        .otherwise(pl.col("source_system")),
    )
    return staged.select(schema.names()).cast(dict(schema)).sort(
        "entity", "spent_date", "source_system", "source_row"
    ), quarantine


# --- accruals -------------------------------------------------------------------------------------


def build_expense_accruals(staged: pl.DataFrame, mapping: MappingDocument) -> LedgerBatch:
    """Expense recharge and cost accrual entries (see the module docstring)."""
    if staged.height == 0:
        return LedgerBatch.empty()
    entities = sorted(set(staged["entity"].unique()))
    unbilled = {e: mapping.account(e, "unbilled_receivables") for e in entities}
    rows = staged.with_row_index("_idx").with_columns(
        source_system=ledger_source_system(pl.col("source_system")),
        work_item_id=pl.col("expense_item_id"),
    )
    dims = ["customer_ref", "customer_job", "project_code"]
    none = pl.lit(None, dtype=pl.String)
    base = ["entity", "spent_date", "currency", "functional_currency", "reporting_currency", *dims]

    def grouped(where: pl.Expr, tx: str, fn: str, rp: str, extra: list[str]) -> pl.DataFrame:
        return (
            rows.filter(where)
            .group_by([*base, *extra], maintain_order=True)
            .agg(
                pl.col(tx).sum().alias("tx_minor"),
                pl.col(fn).sum().alias("fn_minor"),
                pl.col(rp).sum().alias("rp_minor"),
                pl.col("_idx").alias("rows"),
            )
            .with_columns(posting_date=pl.col("spent_date"), document_id=none)
        )

    rec = grouped(
        (pl.col("billing_status") == "billable") & (pl.col("recharge_minor") > 0),
        "recharge_minor",
        "recharge_functional_minor",
        "recharge_reporting_minor",
        ["recharge_account"],
    ).with_columns(
        entry_type=pl.lit("expense_recharge_accrual"),
        description=pl.format(
            "Expense recharge accrual: billable expenses of {} ({})", "spent_date", "currency"
        ),
        source_amount=pl.lit("recharge_minor"),
    )
    rec_credit = rec.with_columns(
        account=pl.col("recharge_account"), account_role=pl.lit("expense_recharge"), side=pl.lit("credit")
    )
    rec_debit = _merge(
        rec.with_columns(
            account=pl.col("entity").replace_strict(unbilled, return_dtype=pl.String),
            account_role=pl.lit("unbilled_receivables"),
            side=pl.lit("debit"),
        ).select(LINE_AMOUNTS_SCHEMA.names())
    )
    cost = grouped(
        pl.col("expense_minor") > 0,
        "expense_minor",
        "expense_functional_minor",
        "expense_reporting_minor",
        ["cost_account", "reimbursement_account"],
    ).with_columns(
        entry_type=pl.lit("expense_cost_accrual"),
        description=pl.format("Expense cost accrual: expenses of {} ({})", "spent_date", "currency"),
        source_amount=pl.lit("expense_minor"),
    )
    cost_debit = _merge(
        cost.with_columns(
            account=pl.col("cost_account"), account_role=pl.lit("project_expenses"), side=pl.lit("debit")
        ).select(LINE_AMOUNTS_SCHEMA.names())
    )
    cost_credit = _merge(
        cost.with_columns(
            account=pl.col("reimbursement_account"),
            account_role=pl.lit("reimbursements_payable"),
            side=pl.lit("credit"),
            customer_ref=none,
            customer_job=none,
            project_code=none,
        ).select(LINE_AMOUNTS_SCHEMA.names())
    )
    parts = [
        p.select(LINE_AMOUNTS_SCHEMA.names()).cast(dict(LINE_AMOUNTS_SCHEMA))
        for p in (rec_debit, _merge(rec_credit.select(LINE_AMOUNTS_SCHEMA.names())), cost_debit, cost_credit)
    ]
    source_rows = rows.select(*SOURCE_ROW_COLUMNS, "recharge_minor", "expense_minor")
    return assemble(pl.concat(parts, how="vertical"), source_rows, mapping.rule_version)


def expense_billables(staged: pl.DataFrame) -> pl.DataFrame:
    """Staged expenses in `staging.fx_billables` shape (see `as_rated`), with the recharge's
    functional and reporting amounts and rates: what invoicing and billing read beside time."""
    schema = polars_schema("staging.fx_billables")
    if staged.height == 0:
        return pl.DataFrame(schema=schema)
    rated = as_rated(staged)
    fx = staged.select(
        pl.col("expense_item_id").alias("work_item_id"),
        "functional_currency",
        "reporting_currency",
        "fx_rate_functional",
        "fx_rate_reporting",
        # No cost travels on the billable (the expense cost accrual books it): a unit rate.
        pl.lit(1).cast(pl.Decimal(28, 12)).alias("fx_rate_cost_reporting"),
        "fx_rate_date",
        "fx_rate_source",
        "fx_rate_type",
        pl.lit("target_per_source").alias("fx_rate_direction"),
        pl.col("recharge_functional_minor").alias("amount_functional_minor"),
        pl.col("recharge_reporting_minor").alias("amount_reporting_minor"),
        pl.lit(0, dtype=pl.Int64).alias("cost_reporting_minor"),
    )
    out = rated.join(fx, on="work_item_id", how="left", maintain_order="left")
    out = out.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in out.columns)
    return out.select(schema.names()).cast(dict(schema))
