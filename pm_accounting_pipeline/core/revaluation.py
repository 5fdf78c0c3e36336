"""Foreign-currency receivables under IAS 21: customer payments with realised FX gain/loss, and the
period-end retranslation of open monetary items with unrealised gain/loss reversed next period.

Payments input: `data/landing/<entity>/payments/*.csv` with columns (by header name)
`invoice_number, date, amount, currency, reference`; ISO dates, '.' decimal separator, amounts in
the invoice currency with at most its minor-unit digits. Unusable rows go to staging.quarantine
(layer `payments`) with a reason code.

Payments match any receivable document the entity issued, by number: the documents of
`ledger.billing_documents` (invoices, supplementary invoices, retainer invoices; T = the amount
due after retainer drawdown, at most T less the credit memos applied to it can be paid; a credit
memo's number is quarantined as `not_receivable`), and, for months billing has not run for, the
invoices of `ledger.invoices`. An unknown number (`unknown_invoice`), another currency
(`currency_mismatch`) or more than is payable (`overpayment`) is quarantined with the reason.

Settlement of payment S (currency C) on an invoice of total T booked at Fh (functional) and Rh
(reporting): the payment entry (currency C) books Dr cash / Cr receivable at the payment date's
spot rate (Fc, Rc); the part of the invoice's historical amount it settles is pro rata,
round(Fh x paid-so-far / T) minus the same for the payments before it (the last payment settles
exactly what is left); a realised-FX entry (functional currency) moves the difference
Fc - carrying (and Rc - carrying in the reporting currency) between the receivable and
`realised_fx_gain_loss`, so a settled invoice's receivable is zero in every currency.

Revaluation at period end P, per entity: every item of a monetary role (account, customer,
document, counterparty) whose lines are in a currency C other than the functional currency has
open balance O (sum of its C lines) and carrying amounts (sum of all its functional / reporting
amounts, revaluations excluded). It is retranslated at the closing spot rate of P: unrealised =
round(O x rate) - carrying, per currency basis, booked on P (Dr/Cr the item / Cr/Dr
`unrealised_fx_gain_loss`) and reversed on P + 1 day, so the next period starts again from
historical amounts and settlement books the whole realised difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.group import group_account
from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.fx_providers import attach_rates, convert_minor_expr
from pm_accounting_pipeline.core.group_journal import Journal, assemble_signed, negate, signed_frame
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.ledger import digits_expr, money_expr
from pm_accounting_pipeline.core.rounding import div_round_expr

PAYMENT_COLUMNS = ("invoice_number", "date", "amount", "currency", "reference")
_REQUIRED = ("invoice_number", "date", "amount", "currency")
_AMOUNT_RE = r"^\d+(\.\d+)?$"
REVALUATION_TYPES = ("fx_revaluation", "fx_revaluation_reversal")


class MissingClosingRateError(ValueError):
    """No closing rate for a currency an open item is held in: the period cannot be revalued."""


@dataclass(frozen=True)
class PaymentInput:
    rows: pl.DataFrame  # typed rows: invoice_number, payment_date, amount_minor, currency, reference, ...
    quarantine: pl.DataFrame


@dataclass(frozen=True)
class SettlementResult:
    payments: pl.DataFrame  # ledger.payments
    journal: Journal
    links: pl.DataFrame  # ledger.entry_links (realised entry settles payment entry)
    quarantine: pl.DataFrame


@dataclass(frozen=True)
class RevaluationResult:
    revaluations: pl.DataFrame  # ledger.fx_revaluations
    journal: Journal  # revaluation (on P) and reversal (on P + 1)
    links: pl.DataFrame  # ledger.entry_links
    ic_links: pl.DataFrame  # ledger.intercompany_links for revalued intercompany lines


# --- payments input ------------------------------------------------------------------------------


def _quarantine(
    frame: pl.DataFrame, entity: str, partition_date: date, reason: pl.Expr, detail: pl.Expr
) -> pl.DataFrame:
    schema = polars_schema("staging.quarantine")
    return frame.select(
        pl.lit(entity).alias("entity"),
        pl.coalesce(pl.col("payment_date"), pl.lit(partition_date)).alias("partition_date"),
        pl.lit("payments").alias("layer"),
        pl.lit("payments_csv").alias("source_system"),
        pl.col("source_file"),
        pl.col("source_row"),
        pl.format("{}:{}", "source_file", "source_row").alias("source_id"),
        reason.alias("reason"),
        detail.alias("detail"),
        pl.col("_record").alias("source_record"),
    ).cast(dict(schema))


def read_payments(folder: Path, entity: str, partition_date: date) -> PaymentInput:
    """Parse every `*.csv` in `folder` (sorted by name); bad rows become quarantine rows."""
    frames = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
        raw = raw.rename({c: c.strip().lower() for c in raw.columns})
        record = pl.struct(pl.all()).struct.json_encode()
        raw = raw.with_columns(
            _record=record,
            source_file=pl.lit(path.name),
            source_row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
            **{c: pl.lit(None, dtype=pl.String) for c in PAYMENT_COLUMNS if c not in raw.columns},
        )
        frames.append(raw.select(*PAYMENT_COLUMNS, "_record", "source_file", "source_row"))
    if not frames:
        empty = pl.DataFrame(
            schema={
                **{c: pl.String for c in PAYMENT_COLUMNS},
                "_record": pl.String,
                "source_file": pl.String,
                "source_row": pl.Int64,
            }
        )
        frames = [empty]
    raw = pl.concat(frames).with_columns(pl.col(c).str.strip_chars() for c in PAYMENT_COLUMNS)
    raw = raw.with_columns(
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in PAYMENT_COLUMNS
    ).with_columns(
        currency=pl.col("currency").str.to_uppercase(),
        payment_date=pl.col("date").str.strptime(pl.Date, "%Y-%m-%d", strict=False),
    )
    from pm_accounting_pipeline.core.money import known_currencies, minor_digits

    known = sorted(known_currencies())
    digits = {c: minor_digits(c) for c in known}
    d = pl.col("currency").replace_strict(digits, default=None, return_dtype=pl.Int32)
    frac = pl.col("amount").str.extract(r"\.(\d+)$").fill_null("")
    whole = pl.col("amount").str.extract(r"^(\d+)").cast(pl.Int64, strict=False)
    frac_minor = (
        pl.when(d > 0)
        .then(frac.str.pad_end(3, "0").str.slice(0, d).cast(pl.Int64, strict=False))
        .otherwise(pl.lit(0, dtype=pl.Int64))
    )
    raw = raw.with_columns(
        amount_minor=whole * pl.lit(10, dtype=pl.Int64).pow(d) + frac_minor,
        _frac_len=frac.str.len_chars(),
        _digits=d,
    )
    missing = pl.any_horizontal([pl.col(c).is_null() for c in _REQUIRED])
    reason = (
        pl.when(missing)
        .then(pl.lit("missing_required"))
        .when(pl.col("payment_date").is_null())
        .then(pl.lit("bad_date"))
        .when(pl.col("_digits").is_null())
        .then(pl.lit("unknown_currency"))
        .when(
            ~pl.col("amount").str.contains(_AMOUNT_RE)
            | (pl.col("_frac_len") > pl.col("_digits"))
            | (pl.col("amount_minor") <= 0)
        )
        .then(pl.lit("bad_rate"))
    )
    detail = (
        pl.when(missing)
        .then(pl.lit(f"a payment needs {list(_REQUIRED)}"))
        .when(pl.col("payment_date").is_null())
        .then(pl.format("date '{}' is not YYYY-MM-DD", "date"))
        .when(pl.col("_digits").is_null())
        .then(pl.format("currency '{}' is not an ISO 4217 code", "currency"))
        .otherwise(
            pl.format(
                "amount '{}' is not a positive amount with at most {} decimals for {}",
                "amount",
                "_digits",
                "currency",
            )
        )
    )
    raw = raw.with_columns(_reason=reason, _detail=detail)
    bad = raw.filter(pl.col("_reason").is_not_null())
    rows = raw.filter(pl.col("_reason").is_null()).select(
        "invoice_number",
        "payment_date",
        "amount_minor",
        "currency",
        "reference",
        "source_file",
        "source_row",
        "_record",
    )
    return PaymentInput(rows, _quarantine(bad, entity, partition_date, pl.col("_reason"), pl.col("_detail")))


# --- settlement ----------------------------------------------------------------------------------


def invoice_carrying(invoices: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Invoices with the receivable their entry booked: total (transaction), functional, reporting."""
    ar = (
        lines.filter((pl.col("entry_type") == "invoice") & (pl.col("account_role") == "accounts_receivable"))
        .group_by(pl.col("document_id").alias("invoice_id"))
        .agg(
            pl.col("functional_currency").first(),
            pl.col("reporting_currency").first(),
            pl.col("account").first().alias("ar_account"),
            _signed_minor("functional_debit", "functional_credit", "functional_currency", lines)
            .sum()
            .alias("fh"),
            _signed_minor("reporting_debit", "reporting_credit", "reporting_currency", lines)
            .sum()
            .alias("rh"),
        )
    )
    return invoices.join(ar, on="invoice_id", how="inner")


def receivable_documents(
    invoices: pl.DataFrame,
    lines: pl.DataFrame,
    documents: pl.DataFrame | None,
    settlements: pl.DataFrame | None,
    mapping: MappingDocument,
    entity: str,
) -> pl.DataFrame:
    """What an entity's payments can settle, one row per document number: invoice_id (the document
    id), invoice_number, document_type, customer_ref, currency, total_minor (the receivable booked,
    basis of the pro-rata carrying), fh / rh (its functional / reporting carrying), payable_minor
    (total less credit memos applied), ar_account, issue_date. Billing documents replace the
    `ledger.invoices` invoices of the months billing ran for."""
    cols = [
        "invoice_id",
        "invoice_number",
        "document_type",
        "customer_ref",
        "currency",
        "total_minor",
        "payable_minor",
        "fh",
        "rh",
        "ar_account",
        "issue_date",
    ]
    inv = invoice_carrying(invoices.filter(pl.col("entity") == entity), lines)
    if documents is None or documents.height == 0:
        return inv.with_columns(
            document_type=pl.lit("invoice"), payable_minor=pl.col("total_minor").cast(pl.Int64)
        ).select(cols)
    docs = documents.filter(pl.col("entity") == entity)
    billed_months = docs.select(pl.col("issued_in").alias("_month")).unique()
    inv = inv.with_columns(_month=pl.col("period_start").dt.truncate("1mo")).join(
        billed_months, on="_month", how="anti"
    )
    credited = (
        settlements.filter((pl.col("entity") == entity) & (pl.col("kind") == "credit_applied"))
        .group_by("document_id")
        .agg(pl.col("amount_minor").sum().alias("_credited"))
        if settlements is not None and settlements.height
        else pl.DataFrame(schema={"document_id": pl.String, "_credited": pl.Int64})
    )
    from_docs = (
        docs.join(credited, on="document_id", how="left")
        .with_columns(
            invoice_id=pl.col("document_id"),
            invoice_number=pl.col("document_number"),
            total_minor=pl.col("amount_due_minor"),
            payable_minor=pl.col("amount_due_minor") + pl.col("_credited").fill_null(0),
            fh=pl.col("ar_functional_minor"),
            rh=pl.col("ar_reporting_minor"),
            ar_account=pl.lit(mapping.account(entity, "accounts_receivable")),
        )
        .select(cols)
    )
    legacy = inv.with_columns(
        document_type=pl.lit("invoice"), payable_minor=pl.col("total_minor").cast(pl.Int64)
    ).select(cols)
    return pl.concat([from_docs, legacy.cast(dict(from_docs.schema))], how="vertical")


def _signed_minor(debit: str, credit: str, currency_col: str, frame: pl.DataFrame) -> pl.Expr:
    """debit - credit of a Decimal(18, 3) pair as integer minor units of the row's currency."""
    currencies = set(frame[currency_col].unique()) if frame.height else {"USD"}
    shift = pl.lit(10, dtype=pl.Int64).pow(pl.lit(3, dtype=pl.Int32) - digits_expr(currency_col, currencies))
    milli = (pl.col(debit) - pl.col(credit)).cast(pl.Decimal(38, 3)).to_physical().cast(pl.Int64)
    return milli // shift


def settle(
    payments: PaymentInput,
    invoices: pl.DataFrame,
    lines: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    provider: object,
    period_start: date,
    period_end: date,
    documents: pl.DataFrame | None = None,
    settlements: pl.DataFrame | None = None,
) -> SettlementResult:
    """Apply an entity's payments to its receivable documents and book payments dated in [start, end].

    `payments` holds every payment of the entity up to period_end (earlier ones are needed to
    know what is still open); `invoices` the entity's ledger.invoices and `lines` its invoice
    journal lines; `documents` / `settlements` the billing documents and settlements
    (`receivable_documents`). Payments are applied in (date, file, row) order.
    """
    ent = mapping.entity(entity)
    fc, rc = ent.functional_currency, mapping.reporting_currency
    mode = mapping.rounding.money_mode
    inv = receivable_documents(invoices, lines, documents, settlements, mapping, entity)
    rows = payments.rows.filter(pl.col("payment_date") <= period_end).join(
        inv.select(
            "invoice_number",
            "invoice_id",
            "document_type",
            "customer_ref",
            pl.col("currency").alias("invoice_currency"),
            "total_minor",
            "payable_minor",
            "fh",
            "rh",
            "ar_account",
            "issue_date",
        ),
        on="invoice_number",
        how="left",
    )
    rows = rows.sort("payment_date", "source_file", "source_row").with_columns(
        _cum=pl.col("amount_minor")
        .cum_sum()
        .over("invoice_id", order_by=["payment_date", "source_file", "source_row"])
    )
    reason = (
        pl.when(pl.col("invoice_id").is_null())
        .then(pl.lit("unknown_invoice"))
        .when(pl.col("document_type") == "credit_memo")
        .then(pl.lit("not_receivable"))
        .when(pl.col("currency") != pl.col("invoice_currency"))
        .then(pl.lit("currency_mismatch"))
        .when(pl.col("_cum") > pl.col("payable_minor"))
        .then(pl.lit("overpayment"))
    )
    detail = (
        pl.when(pl.col("invoice_id").is_null())
        .then(pl.format("entity {} issued no invoice numbered '{}'", pl.lit(entity), "invoice_number"))
        .when(pl.col("document_type") == "credit_memo")
        .then(pl.format("'{}' is a credit memo: it is refunded, not paid", "invoice_number"))
        .when(pl.col("currency") != pl.col("invoice_currency"))
        .then(
            pl.format("payment in {} for invoice {} in {}", "currency", "invoice_number", "invoice_currency")
        )
        .otherwise(
            pl.format(
                "payments of invoice {} reach {} minor units, more than the {} payable (amount due less credits applied; this and later payments held)",
                "invoice_number",
                "_cum",
                "payable_minor",
            )
        )
    )
    rows = rows.with_columns(_reason=reason, _detail=detail)
    in_period = pl.col("payment_date").is_between(period_start, period_end)
    quarantine = pl.concat(
        [
            payments.quarantine.filter(pl.col("partition_date").is_between(period_start, period_end)),
            _quarantine(
                rows.filter(pl.col("_reason").is_not_null() & in_period),
                entity,
                period_start,
                pl.col("_reason"),
                pl.col("_detail"),
            ),
        ]
    )
    good = rows.filter(pl.col("_reason").is_null())
    good = good.with_columns(
        _prev=pl.col("_cum") - pl.col("amount_minor"),
        functional_currency=pl.lit(fc),
        reporting_currency=pl.lit(rc),
    ).with_columns(
        carrying_functional_minor=div_round_expr(pl.col("fh") * pl.col("_cum"), pl.col("total_minor"), mode)
        - div_round_expr(pl.col("fh") * pl.col("_prev"), pl.col("total_minor"), mode),
        carrying_reporting_minor=div_round_expr(pl.col("rh") * pl.col("_cum"), pl.col("total_minor"), mode)
        - div_round_expr(pl.col("rh") * pl.col("_prev"), pl.col("total_minor"), mode),
        open_after_minor=pl.col("payable_minor") - pl.col("_cum"),
    )
    good = good.filter(in_period)
    good = attach_rates(good, provider, "currency", "functional_currency", "payment_date", "_fn_")
    good = attach_rates(good, provider, "currency", "reporting_currency", "payment_date", "_rp_")
    no_rate = good.filter(pl.col("_fn_rate").is_null() | pl.col("_rp_rate").is_null())
    if no_rate.height:
        quarantine = pl.concat(
            [
                quarantine,
                _quarantine(
                    no_rate,
                    entity,
                    period_start,
                    pl.lit("missing_fx_rate"),
                    pl.format("no rate for {} on or shortly before {}", "currency", "payment_date"),
                ),
            ]
        )
        good = good.filter(pl.col("_fn_rate").is_not_null() & pl.col("_rp_rate").is_not_null())
    currencies = set(good["currency"]) | {fc, rc}

    def digits(col: str) -> pl.Expr:
        return digits_expr(col, currencies)

    good = good.with_columns(
        functional_minor=convert_minor_expr(
            pl.col("amount_minor"),
            pl.col("_fn_rate"),
            digits("currency"),
            digits("functional_currency"),
            mode,
        ),
        reporting_minor=convert_minor_expr(
            pl.col("amount_minor"), pl.col("_rp_rate"), digits("currency"), digits("reporting_currency"), mode
        ),
        payment_id=stable_id_expr(
            pl.lit(entity), "source_file", "source_row", "invoice_id", prefix="payment"
        ),
    ).with_columns(
        realised_functional_minor=pl.col("functional_minor") - pl.col("carrying_functional_minor"),
        realised_reporting_minor=pl.col("reporting_minor") - pl.col("carrying_reporting_minor"),
    )
    cash = group_account(mapping, entity, "cash")
    gain = group_account(mapping, entity, "realised_fx_gain_loss")
    common = {
        "entity": pl.lit(entity),
        "posting_date": pl.col("payment_date"),
        "functional_currency": pl.lit(fc),
        "reporting_currency": pl.lit(rc),
        "document_id": pl.col("invoice_id"),
        "entry_key": pl.col("payment_id"),
        "customer_ref": pl.col("customer_ref"),
    }
    pay_desc = pl.format(
        "Payment {} on invoice {} ({})", pl.col("reference").fill_null("-"), "invoice_number", "currency"
    )
    payment_lines = pl.concat(
        [
            good.select(
                signed_frame(
                    **common,
                    entry_type=pl.lit("payment"),
                    currency=pl.col("currency"),
                    description=pay_desc,
                    account=pl.lit(cash),
                    account_role=pl.lit("cash"),
                    tx=pl.col("amount_minor"),
                    fn=pl.col("functional_minor"),
                    rp=pl.col("reporting_minor"),
                )
            ),
            good.select(
                signed_frame(
                    **common,
                    entry_type=pl.lit("payment"),
                    currency=pl.col("currency"),
                    description=pay_desc,
                    account=pl.col("ar_account"),
                    account_role=pl.lit("accounts_receivable"),
                    tx=-pl.col("amount_minor"),
                    fn=-pl.col("functional_minor"),
                    rp=-pl.col("reporting_minor"),
                )
            ),
        ]
    )
    realised = good.filter(
        (pl.col("realised_functional_minor") != 0) | (pl.col("realised_reporting_minor") != 0)
    )
    real_desc = pl.format(
        "Realised FX on invoice {} settled by payment {}",
        "invoice_number",
        pl.col("reference").fill_null("-"),
    )
    realised_lines = pl.concat(
        [
            realised.select(
                signed_frame(
                    **common,
                    entry_type=pl.lit("fx_realised"),
                    currency=pl.lit(fc),
                    description=real_desc,
                    account=pl.col("ar_account"),
                    account_role=pl.lit("accounts_receivable"),
                    tx=pl.col("realised_functional_minor"),
                    fn=pl.col("realised_functional_minor"),
                    rp=pl.col("realised_reporting_minor"),
                )
            ),
            realised.select(
                signed_frame(
                    **common,
                    entry_type=pl.lit("fx_realised"),
                    currency=pl.lit(fc),
                    description=real_desc,
                    account=pl.lit(gain),
                    account_role=pl.lit("realised_fx_gain_loss"),
                    tx=-pl.col("realised_functional_minor"),
                    fn=-pl.col("realised_functional_minor"),
                    rp=-pl.col("realised_reporting_minor"),
                )
            ),
        ]
    )
    journal = assemble_signed(pl.concat([payment_lines, realised_lines]), mapping.rule_version)
    entry_of = (
        journal.keys.join(journal.entries.select("entry_id", "entry_type"), on="entry_id")
        .select(pl.col("entry_key").alias("payment_id"), "entry_id", "entry_type")
        .unique()
    )
    pay_entry = entry_of.filter(pl.col("entry_type") == "payment").select("payment_id", "entry_id")
    real_entry = entry_of.filter(pl.col("entry_type") == "fx_realised").select(
        "payment_id", pl.col("entry_id").alias("realised_entry_id")
    )
    schema = polars_schema("ledger.payments")
    out = (
        good.join(pay_entry, on="payment_id", how="left")
        .join(real_entry, on="payment_id", how="left")
        .with_columns(
            entity=pl.lit(entity),
            amount=money_expr("amount_minor", "currency", currencies),
            fx_rate_functional=pl.col("_fn_rate"),
            fx_rate_reporting=pl.col("_rp_rate"),
            rate_direction=pl.format(
                "{}->{} and {}->{}", "currency", "functional_currency", "currency", "reporting_currency"
            ),
            fx_rate_date=pl.min_horizontal("_fn_rate_date", "_rp_rate_date"),
            fx_rate_source=pl.coalesce(
                pl.when(pl.col("_fn_source") != "identity").then(pl.col("_fn_source")), pl.col("_rp_source")
            ),
            fx_rate_type=pl.col("_fn_rate_type"),
        )
        .sort("payment_date", "source_file", "source_row")
        .select(schema.names())
        .cast(dict(schema))
    )
    links = (
        out.filter(pl.col("realised_entry_id").is_not_null())
        .select(
            pl.col("realised_entry_id").alias("entry_id"),
            "entity",
            pl.lit("settles").alias("link_type"),
            pl.col("entry_id").alias("linked_entry_id"),
            pl.format("realised FX of payment {}", "payment_id").alias("reason"),
        )
        .cast(dict(polars_schema("ledger.entry_links")))
    )
    return SettlementResult(out, journal, links, quarantine)


# --- period-end revaluation ----------------------------------------------------------------------


def open_items(
    lines: pl.DataFrame, ic_links: pl.DataFrame, mapping: MappingDocument, entity: str, period_end: date
) -> pl.DataFrame:
    """Foreign-currency monetary items of an entity at `period_end` with their open and carrying
    amounts (revaluation entries excluded: each is reversed the next day)."""
    ent = mapping.entity(entity)
    roles = list(mapping.group.revaluation.monetary_roles)
    sel = lines.filter(
        (pl.col("entity") == entity)
        & (pl.col("posting_date") <= period_end)
        & pl.col("account_role").is_in(roles)
        & ~pl.col("entry_type").is_in(REVALUATION_TYPES)
    )
    sel = sel.join(ic_links.select("line_id", "counterparty_entity"), on="line_id", how="left").with_columns(
        _tx=pl.col("debit_minor") - pl.col("credit_minor"),
        _fn=_signed_minor("functional_debit", "functional_credit", "functional_currency", sel),
        _rp=_signed_minor("reporting_debit", "reporting_credit", "reporting_currency", sel),
        _foreign=pl.col("currency") != pl.lit(ent.functional_currency),
    )
    key = ["account", "account_role", "customer_ref", "document_id", "counterparty_entity"]
    items = sel.group_by(key).agg(
        pl.col("currency").filter(pl.col("_foreign")).unique().alias("_currencies"),
        pl.col("_tx").filter(pl.col("_foreign")).sum().alias("open_minor"),
        pl.col("_fn").sum().alias("carrying_functional_minor"),
        pl.col("_rp").sum().alias("carrying_reporting_minor"),
    )
    mixed = items.filter(pl.col("_currencies").list.len() > 1)
    if mixed.height:
        raise ValueError(
            f"{entity}: monetary items held in more than one foreign currency: "
            f"{mixed.select(key).head(5).rows()}"
        )
    items = items.filter(pl.col("_currencies").list.len() == 1).with_columns(
        currency=pl.col("_currencies").list.first()
    )
    return (
        items.filter(
            (pl.col("open_minor") != 0)
            | (pl.col("carrying_functional_minor") != 0)
            | (pl.col("carrying_reporting_minor") != 0)
        )
        .drop("_currencies")
        .sort(key, nulls_last=False)
    )


def revalue(
    lines: pl.DataFrame,
    ic_links: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_end: date,
    provider: object,
) -> RevaluationResult:
    """Retranslate an entity's open foreign-currency monetary items at the closing rate of
    `period_end`; book the unrealised difference on period_end and its reversal the next day."""
    ent = mapping.entity(entity)
    fc, rc = ent.functional_currency, mapping.reporting_currency
    mode = mapping.rounding.money_mode
    items = open_items(lines, ic_links, mapping, entity, period_end).with_columns(
        functional_currency=pl.lit(fc), reporting_currency=pl.lit(rc), period_end=pl.lit(period_end)
    )
    items = attach_rates(
        items, provider, "currency", "functional_currency", "period_end", "_fn_", rate_type="spot"
    )
    items = attach_rates(
        items, provider, "currency", "reporting_currency", "period_end", "_rp_", rate_type="spot"
    )
    missing = items.filter(pl.col("_fn_rate").is_null() | pl.col("_rp_rate").is_null())
    if missing.height:
        raise MissingClosingRateError(
            f"{entity}: no closing rate on or shortly before {period_end} for "
            f"{sorted(set(missing['currency']))} -> {fc}/{rc}; add a manual override or a rate source"
        )
    currencies = set(items["currency"]) | {fc, rc}
    items = items.with_columns(
        revalued_functional_minor=convert_minor_expr(
            pl.col("open_minor"),
            pl.col("_fn_rate"),
            digits_expr("currency", currencies),
            digits_expr("functional_currency", currencies),
            mode,
        ),
        revalued_reporting_minor=convert_minor_expr(
            pl.col("open_minor"),
            pl.col("_rp_rate"),
            digits_expr("currency", currencies),
            digits_expr("reporting_currency", currencies),
            mode,
        ),
    ).with_columns(
        unrealised_functional_minor=pl.col("revalued_functional_minor") - pl.col("carrying_functional_minor"),
        unrealised_reporting_minor=pl.col("revalued_reporting_minor") - pl.col("carrying_reporting_minor"),
        _line_key=pl.concat_str(
            [pl.col("document_id").fill_null(""), pl.col("counterparty_entity").fill_null("")], separator="|"
        ),
    )
    gain = group_account(mapping, entity, "unrealised_fx_gain_loss")
    booked = items.filter(
        (pl.col("unrealised_functional_minor") != 0) | (pl.col("unrealised_reporting_minor") != 0)
    )
    common = {
        "entity": pl.lit(entity),
        "posting_date": pl.lit(period_end),
        "entry_type": pl.lit("fx_revaluation"),
        "currency": pl.lit(fc),
        "functional_currency": pl.lit(fc),
        "reporting_currency": pl.lit(rc),
        "entry_key": pl.lit(f"revaluation:{period_end}"),
        "description": pl.lit(f"IAS 21 revaluation of foreign-currency monetary items at {period_end}"),
    }
    signed = pl.concat(
        [
            booked.select(
                signed_frame(
                    **common,
                    account=pl.col("account"),
                    account_role=pl.col("account_role"),
                    customer_ref=pl.col("customer_ref"),
                    line_key=pl.col("_line_key"),
                    tx=pl.col("unrealised_functional_minor"),
                    fn=pl.col("unrealised_functional_minor"),
                    rp=pl.col("unrealised_reporting_minor"),
                )
            ),
            booked.select(
                signed_frame(
                    **common,
                    account=pl.lit(gain),
                    account_role=pl.lit("unrealised_fx_gain_loss"),
                    line_key=pl.col("currency"),
                    tx=-pl.col("unrealised_functional_minor"),
                    fn=-pl.col("unrealised_functional_minor"),
                    rp=-pl.col("unrealised_reporting_minor"),
                )
            ),
        ]
    )
    journal = assemble_signed(signed, mapping.rule_version)
    reversal, links = negate(
        journal,
        "fx_revaluation_reversal",
        period_end + timedelta(days=1),
        mapping.rule_version,
        f"revaluation at {period_end} reversed at the start of the next period",
    )
    entry_id = journal.entries["entry_id"].first() if journal.entries.height else None
    reversal_id = reversal.entries["entry_id"].first() if reversal.entries.height else None
    schema = polars_schema("ledger.fx_revaluations")
    revaluations = (
        items.with_columns(
            entity=pl.lit(entity),
            revaluation_id=stable_id_expr(
                pl.lit(entity),
                "period_end",
                "account",
                "customer_ref",
                "document_id",
                "counterparty_entity",
                prefix="reval",
            ),
            closing_rate_functional=pl.col("_fn_rate"),
            closing_rate_reporting=pl.col("_rp_rate"),
            rate_direction=pl.format(
                "{}->{} and {}->{}", "currency", "functional_currency", "currency", "reporting_currency"
            ),
            rate_date=pl.min_horizontal("_fn_rate_date", "_rp_rate_date"),
            rate_source=pl.col("_fn_source"),
            entry_id=pl.when(
                (pl.col("unrealised_functional_minor") != 0) | (pl.col("unrealised_reporting_minor") != 0)
            ).then(pl.lit(entry_id)),
        )
        .with_columns(reversal_entry_id=pl.when(pl.col("entry_id").is_not_null()).then(pl.lit(reversal_id)))
        .select(schema.names())
        .cast(dict(schema))
    )
    both = journal.concat(reversal)
    # Revalued intercompany lines keep their counterparty (for eliminations); a reversal line is
    # keyed by the line it reverses.
    ic_items = booked.filter(pl.col("counterparty_entity").is_not_null()).select(
        "_line_key", "counterparty_entity", "account_role"
    )
    on_reval = journal.keys.join(ic_items, left_on="line_key", right_on="_line_key", how="inner")
    on_reval = on_reval.join(journal.lines.select("line_id", "account_role"), on=["line_id", "account_role"])
    on_reversal = reversal.keys.join(
        on_reval.select(pl.col("line_id").alias("line_key"), "counterparty_entity", "account_role"),
        on="line_key",
        how="inner",
    )
    ic_schema = polars_schema("ledger.intercompany_links")
    ic = (
        pl.concat(
            [
                on_reval.select("line_id", "counterparty_entity", "account_role"),
                on_reversal.select("line_id", "counterparty_entity", "account_role"),
            ]
        )
        .join(both.lines.select("line_id", "entry_id", "entity", "posting_date"), on="line_id", how="inner")
        .select(
            "line_id",
            "entry_id",
            "entity",
            "counterparty_entity",
            "account_role",
            pl.lit(None, dtype=pl.String).alias("agreement_id"),
            pl.col("posting_date").dt.truncate("1mo").alias("period"),
        )
        .cast(dict(ic_schema))
    )
    return RevaluationResult(revaluations, both, links, ic)
