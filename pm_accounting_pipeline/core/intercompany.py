"""Intercompany: people of one legal entity working on projects billed by another, the recharge
between the two, the elimination entries for consolidation, and the consolidated trial balance.

Work is accrued by the billing entity (the recipient B) like any other work: revenue, and cost at
the rated cost rate in B's functional currency. When the person is employed by another entity A
(the mapping document's `group.people`), the month's recharge per project, posted at month end
under the A->B agreement (`group.intercompany`), makes both books right:

- B, `ic_cost_transfer` (B's currency): Dr payroll_clearing / Cr cost_of_services - B does not pay
  the person, so the at-cost accrual of A's people leaves B;
- B, `ic_recharge` (recharge currency): Dr intercompany_cost per project / Cr intercompany_payable;
- A, `ic_recharge` (recharge currency): Dr intercompany_receivable / Cr intercompany_revenue per
  project;
- A, `ic_cost_transfer` (A's currency): Dr cost_of_services per project / Cr payroll_clearing - the
  person's cost, converted at the month-end rate, is A's payroll cost.

Recharge amount per (agreement, project, month): `cost` = the rated cost; `cost_plus` =
round(cost x (1 + markup)); `transfer_rate` = round(hours worked x transfer_rate), each rounded
once per project. Cost bases are in the currency the cost was rated in (B's functional
currency), transfer rates in the agreement's currency. Both sides translate the same amount with
the same month-end rate, so A's revenue equals B's cost to the cent in the reporting currency.
Every intercompany line is tagged with its counterparty in `ledger.intercompany_links`.

Eliminations (consolidation entity, reporting currency, one entry per entity, counterparty and
month): each side's intercompany lines of the month, grouped by (entity, counterparty, role), are
reversed; what does not cancel within a side (revaluation of intercompany balances held in a
foreign currency) goes to `consolidation_difference`. Over the entities plus the eliminations, intercompany
revenue, cost, receivables and payables are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import polars as pl

from pm_accounting_pipeline.config.group import group_account
from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.clean import normalise_name, normalise_text
from pm_accounting_pipeline.core.fx_providers import attach_rates, convert_minor_expr
from pm_accounting_pipeline.core.group_journal import Journal, assemble_signed, signed_frame
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.ledger import digits_expr
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.revaluation import _signed_minor
from pm_accounting_pipeline.core.rounding import (
    decimal_to_scaled_expr,
    div_round_expr,
    rescale_expr,
    scaled_to_decimal_expr,
)

IC_ROLES = ("intercompany_receivable", "intercompany_payable", "intercompany_revenue", "intercompany_cost")
PROJECT = ["customer_ref", "customer_job", "project_code"]


class MissingAgreementError(ValueError):
    """Work of one entity's people for another entity with no intercompany agreement covering it."""


@dataclass(frozen=True)
class RechargeResult:
    recharges: pl.DataFrame  # ledger.intercompany_recharges
    journal: Journal
    ic_links: pl.DataFrame  # ledger.intercompany_links


def employer_frame(mapping: MappingDocument) -> pl.DataFrame:
    """group.people as (person_id, person_key, employer)."""
    people = mapping.group.people
    return pl.DataFrame(
        {
            "person_id": [p.person_id for p in people],
            "person_key": [normalise_text(p.person) for p in people],
            "employer": [p.employer for p in people],
        },
        schema={"person_id": pl.String, "person_key": pl.String, "employer": pl.String},
    )


def with_employer(fx: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    """Add `employer`: the person's employing entity (by person id, else by normalised name), or
    the row's own entity when the person is not listed in group.people."""
    people = employer_frame(mapping)
    by_id = people.filter(pl.col("person_id").is_not_null()).select(
        "person_id", pl.col("employer").alias("_by_id")
    )
    by_name = people.filter(pl.col("person_id").is_null()).select(
        "person_key", pl.col("employer").alias("_by_name")
    )
    names = fx.select("person_name").unique().with_columns(person_key=normalise_name("person_name"))
    return (
        fx.join(by_id, on="person_id", how="left", maintain_order="left")
        .join(names, on="person_name", how="left", maintain_order="left")
        .join(by_name, on="person_key", how="left", maintain_order="left")
        .with_columns(employer=pl.coalesce("_by_id", "_by_name", "entity"))
        .drop("_by_id", "_by_name", "person_key")
    )


def _agreements(mapping: MappingDocument) -> pl.DataFrame:
    rows = [
        (
            a.id,
            a.provider,
            a.recipient,
            a.basis,
            int((a.markup or Decimal(0)).scaleb(6).to_integral_value()),
            int((a.transfer_rate or Decimal(0)).scaleb(4).to_integral_value()),
            a.currency,
            a.valid_from,
            a.valid_to,
        )
        for a in mapping.group.intercompany
    ]
    return pl.DataFrame(
        rows,
        schema={
            "agreement_id": pl.String,
            "employer": pl.String,
            "entity": pl.String,
            "basis": pl.String,
            "markup_e6": pl.Int64,
            "transfer_rate_e4": pl.Int64,
            "agreement_currency": pl.String,
            "valid_from": pl.Date,
            "valid_to": pl.Date,
        },
        orient="row",
    )


def build_recharges(
    fx_month: pl.DataFrame,
    mapping: MappingDocument,
    recipient: str,
    period_start: date,
    period_end: date,
    provider: object,
) -> RechargeResult:
    """Recharges for work billed by `recipient` in the month and done by other entities' people."""
    rows = with_employer(
        fx_month.filter(
            (pl.col("entity") == recipient) & pl.col("work_date").is_between(period_start, period_end)
        ),
        mapping,
    ).filter(pl.col("employer") != pl.col("entity"))
    if rows.height == 0:
        return RechargeResult(
            pl.DataFrame(schema=polars_schema("ledger.intercompany_recharges")),
            Journal.empty(),
            pl.DataFrame(schema=polars_schema("ledger.intercompany_links")),
        )
    # The agreement valid on each work date (the most recent valid_from when several are),
    # resolved once per distinct (employer, entity, work date).
    combos = rows.select("employer", "entity", "work_date").unique()
    chosen = (
        combos.join(_agreements(mapping), on=["employer", "entity"], how="inner")
        .filter(
            (pl.col("valid_from").is_null() | (pl.col("work_date") >= pl.col("valid_from")))
            & (pl.col("valid_to").is_null() | (pl.col("work_date") <= pl.col("valid_to")))
        )
        .sort(pl.col("valid_from").fill_null(date.min), "agreement_id", descending=[True, False])
        .unique(["employer", "entity", "work_date"], keep="first")
        .drop("valid_from", "valid_to")
    )
    uncovered = rows.join(chosen, on=["employer", "entity", "work_date"], how="anti")
    if uncovered.height:
        ex = (
            uncovered.select("employer", "entity", "person_name", "work_date").unique().sort(pl.all()).head(5)
        )
        raise MissingAgreementError(
            "no intercompany agreement (group.intercompany) covers work of one entity's people for "
            "another: "
            + "; ".join(f"{e} employs {p!r}, billed by {r} on {d}" for e, r, p, d in ex.iter_rows())
        )
    matched = rows.join(chosen, on=["employer", "entity", "work_date"], how="inner")
    ent_b = mapping.entity(recipient)
    fc_b, rc = ent_b.functional_currency, mapping.reporting_currency
    mode = mapping.rounding.money_mode
    hours_e4 = decimal_to_scaled_expr(pl.col("hours"), 4)
    grouped = matched.group_by(
        "agreement_id",
        "employer",
        "entity",
        "basis",
        "markup_e6",
        "transfer_rate_e4",
        "agreement_currency",
        *PROJECT,
    ).agg(
        pl.col("cost_minor").sum().alias("cost_minor"),
        hours_e4.sum().alias("_hours_e4"),
        pl.len().cast(pl.Int64).alias("work_items"),
    )
    currency = pl.coalesce("agreement_currency", pl.lit(fc_b))
    grouped = grouped.with_columns(
        currency=currency,
        cost_currency=pl.lit(fc_b),
        period=pl.lit(period_start),
        period_end=pl.lit(period_end),
        reporting_currency=pl.lit(rc),
    )
    all_currencies = set(grouped["currency"]) | {e.functional_currency for e in mapping.entities} | {rc}
    grouped = grouped.with_columns(
        recharge_minor=pl.when(pl.col("basis") == "cost")
        .then(pl.col("cost_minor"))
        .when(pl.col("basis") == "cost_plus")
        .then(
            div_round_expr(pl.col("cost_minor") * (pl.col("markup_e6") + 1_000_000), pl.lit(1_000_000), mode)
        )
        .otherwise(
            rescale_expr(
                pl.col("_hours_e4") * pl.col("transfer_rate_e4"),
                8,
                digits_expr("currency", all_currencies),
                mode,
            )
        ),
        provider_currency=pl.col("employer").replace_strict(
            {e.id: e.functional_currency for e in mapping.entities}, return_dtype=pl.String
        ),
        hours=scaled_to_decimal_expr(pl.col("_hours_e4"), 4, 12),
    )
    # Month-end rates: recharge currency -> each side's functional and the reporting currency,
    # and the cost's currency -> the provider's functional currency.
    grouped = grouped.with_columns(recipient_currency=pl.lit(fc_b))
    for col, prefix in (
        ("provider_currency", "_pf_"),
        ("recipient_currency", "_rf_"),
        ("reporting_currency", "_rp_"),
    ):
        grouped = attach_rates(grouped, provider, "currency", col, "period_end", prefix, rate_type="spot")
    grouped = attach_rates(
        grouped, provider, "cost_currency", "provider_currency", "period_end", "_pc_", rate_type="spot"
    )
    missing = grouped.filter(
        pl.any_horizontal([pl.col(f"{p}rate").is_null() for p in ("_pf_", "_rf_", "_rp_", "_pc_")])
    )
    if missing.height:
        raise ValueError(
            f"intercompany {recipient}: no month-end rate on {period_end} for "
            f"{sorted(set(missing['currency']) | set(missing['provider_currency']))}"
        )

    def conv(minor: str, rate: str, frm: str, to: str) -> pl.Expr:
        return convert_minor_expr(
            pl.col(minor),
            pl.col(rate),
            digits_expr(frm, all_currencies),
            digits_expr(to, all_currencies),
            mode,
        )

    grouped = grouped.with_columns(
        _rc_pf=conv("recharge_minor", "_pf_rate", "currency", "provider_currency"),
        _rc_rf=conv("recharge_minor", "_rf_rate", "currency", "recipient_currency"),
        _rc_rp=conv("recharge_minor", "_rp_rate", "currency", "reporting_currency"),
        provider_cost_minor=conv("cost_minor", "_pc_rate", "cost_currency", "provider_currency"),
    )
    # The cost in the reporting currency: what B's accruals booked for these rows.
    cost_rp = matched.group_by("agreement_id", *PROJECT).agg(
        pl.col("cost_reporting_minor").sum().alias("_cost_rp")
    )
    grouped = (
        grouped.join(cost_rp, on=["agreement_id", *PROJECT], how="left", nulls_equal=True)
        .with_columns(
            # Moving the cost between entities keeps its reporting amount (what B's accruals booked),
            # so the group's cost in the reporting currency does not change.
            _pc_rp=pl.col("_cost_rp"),
            document_id=pl.format("ic:{}>{}:{}", "employer", "entity", "period"),
        )
        .sort("agreement_id", *PROJECT, nulls_last=False)
    )
    journal = assemble_signed(_recharge_lines(grouped, mapping, period_end), mapping.rule_version)
    ic_links = _links(journal, period_start)
    schema = polars_schema("ledger.intercompany_recharges")
    recharges = (
        grouped.with_columns(
            provider=pl.col("employer"),
            recipient=pl.col("entity"),
            recharge_id=stable_id_expr("agreement_id", "period", *PROJECT, prefix="recharge"),
        )
        .select(schema.names())
        .cast(dict(schema))
    )
    return RechargeResult(recharges, journal, ic_links)


def _recharge_lines(g: pl.DataFrame, mapping: MappingDocument, period_end: date) -> pl.DataFrame:
    entities = {e.id: e.functional_currency for e in mapping.entities}

    def acct(entity_col: str, role: str, group: bool = False) -> pl.Expr:
        table = {
            e: (group_account(mapping, e, role) if group else mapping.account(e, role)) for e in entities
        }
        return pl.col(entity_col).replace_strict(table, return_dtype=pl.String)

    rc = mapping.reporting_currency
    desc = pl.format("Intercompany recharge {} -> {} ({}, {})", "employer", "entity", "agreement_id", "basis")
    cost_desc = pl.format("Cost of {} people's time billed by {} moves to its employer", "employer", "entity")
    base = {
        "posting_date": pl.lit(period_end),
        "reporting_currency": pl.lit(rc),
        "document_id": pl.col("document_id"),
        "entry_key": pl.col("agreement_id"),
    }
    proj = {k: pl.col(k) for k in PROJECT}
    parts = [
        # Recipient: Dr intercompany cost per project / Cr intercompany payable (counterparty A).
        g.select(signed_frame(**base, **proj, entity=pl.col("entity"), entry_type=pl.lit("ic_recharge"),
                              currency=pl.col("currency"), functional_currency=pl.col("recipient_currency"),
                              description=desc, account=acct("entity", "intercompany_cost", True),
                              account_role=pl.lit("intercompany_cost"), line_key=pl.col("employer"),
                              tx=pl.col("recharge_minor"), fn=pl.col("_rc_rf"), rp=pl.col("_rc_rp"))),
        g.select(signed_frame(**base, entity=pl.col("entity"), entry_type=pl.lit("ic_recharge"),
                              currency=pl.col("currency"), functional_currency=pl.col("recipient_currency"),
                              description=desc, account=acct("entity", "intercompany_payable"),
                              account_role=pl.lit("intercompany_payable"), line_key=pl.col("employer"),
                              tx=-pl.col("recharge_minor"), fn=-pl.col("_rc_rf"), rp=-pl.col("_rc_rp"))),
        # Provider: Dr intercompany receivable (counterparty B) / Cr intercompany revenue per project.
        g.select(signed_frame(**base, entity=pl.col("employer"), entry_type=pl.lit("ic_recharge"),
                              currency=pl.col("currency"), functional_currency=pl.col("provider_currency"),
                              description=desc, account=acct("employer", "intercompany_receivable"),
                              account_role=pl.lit("intercompany_receivable"), line_key=pl.col("entity"),
                              tx=pl.col("recharge_minor"), fn=pl.col("_rc_pf"), rp=pl.col("_rc_rp"))),
        g.select(signed_frame(**base, **proj, entity=pl.col("employer"), entry_type=pl.lit("ic_recharge"),
                              currency=pl.col("currency"), functional_currency=pl.col("provider_currency"),
                              description=desc, account=acct("employer", "intercompany_revenue", True),
                              account_role=pl.lit("intercompany_revenue"), line_key=pl.col("entity"),
                              tx=-pl.col("recharge_minor"), fn=-pl.col("_rc_pf"), rp=-pl.col("_rc_rp"))),
        # Recipient: the at-cost accrual of the provider's people leaves B.
        g.select(signed_frame(**base, entity=pl.col("entity"), entry_type=pl.lit("ic_cost_transfer"),
                              currency=pl.col("recipient_currency"), functional_currency=pl.col("recipient_currency"),
                              description=cost_desc, account=acct("entity", "payroll_clearing"),
                              account_role=pl.lit("payroll_clearing"), line_key=pl.col("employer"),
                              tx=pl.col("cost_minor"), fn=pl.col("cost_minor"), rp=pl.col("_pc_rp"))),
        g.select(signed_frame(**base, **proj, entity=pl.col("entity"), entry_type=pl.lit("ic_cost_transfer"),
                              currency=pl.col("recipient_currency"), functional_currency=pl.col("recipient_currency"),
                              description=cost_desc, account=acct("entity", "cost_of_services"),
                              account_role=pl.lit("cost_of_services"), line_key=pl.col("employer"),
                              tx=-pl.col("cost_minor"), fn=-pl.col("cost_minor"), rp=-pl.col("_pc_rp"))),
        # Provider: the person's cost is its payroll cost, on the project worked for.
        g.select(signed_frame(**base, **proj, entity=pl.col("employer"), entry_type=pl.lit("ic_cost_transfer"),
                              currency=pl.col("provider_currency"), functional_currency=pl.col("provider_currency"),
                              description=cost_desc, account=acct("employer", "cost_of_services"),
                              account_role=pl.lit("cost_of_services"), line_key=pl.col("entity"),
                              tx=pl.col("provider_cost_minor"), fn=pl.col("provider_cost_minor"), rp=pl.col("_pc_rp"))),
        g.select(signed_frame(**base, entity=pl.col("employer"), entry_type=pl.lit("ic_cost_transfer"),
                              currency=pl.col("provider_currency"), functional_currency=pl.col("provider_currency"),
                              description=cost_desc, account=acct("employer", "payroll_clearing"),
                              account_role=pl.lit("payroll_clearing"), line_key=pl.col("entity"),
                              tx=-pl.col("provider_cost_minor"), fn=-pl.col("provider_cost_minor"), rp=-pl.col("_pc_rp"))),
    ]  # fmt: skip
    return pl.concat(parts)


def _links(journal: Journal, period_start: date) -> pl.DataFrame:
    """Counterparty of every intercompany line (the recharge lines keep it in line_key)."""
    schema = polars_schema("ledger.intercompany_links")
    return (
        journal.lines.filter(pl.col("account_role").is_in(IC_ROLES))
        .join(journal.keys.select("line_id", "entry_key", "line_key"), on="line_id")
        .select(
            "line_id",
            "entry_id",
            "entity",
            pl.col("line_key").alias("counterparty_entity"),
            "account_role",
            pl.col("entry_key").alias("agreement_id"),
            pl.lit(period_start).alias("period"),
        )
        .cast(dict(schema))
    )


# --- consolidation -------------------------------------------------------------------------------


def eliminate(
    lines: pl.DataFrame,
    ic_links: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_start: date,
    period_end: date,
) -> Journal:
    """Elimination entries (consolidation entity, reporting currency) for `entity`'s side of its
    intercompany lines of the month, one entry per counterparty: each (counterparty, role) total
    is reversed and what does not cancel within the side (revaluation of intercompany balances)
    goes to consolidation_difference. Both sides' entries together eliminate the pair."""
    rc = mapping.reporting_currency
    group = mapping.group.consolidation_entity
    tagged = lines.filter(
        (pl.col("entity") == entity) & pl.col("posting_date").is_between(period_start, period_end)
    ).join(ic_links.select("line_id", "counterparty_entity"), on="line_id", how="inner")
    if tagged.height == 0:
        return Journal.empty()
    tagged = tagged.with_columns(
        _rp=_signed_minor("reporting_debit", "reporting_credit", "reporting_currency", tagged),
        _pair=pl.format("{}>{}", "entity", "counterparty_entity"),
    )
    per = tagged.group_by("_pair", "entity", "counterparty_entity", "account_role").agg(pl.col("_rp").sum())
    accounts = {
        r: group_account(mapping, entity, r)
        if r in ("intercompany_revenue", "intercompany_cost")
        else mapping.account(entity, r)
        for r in IC_ROLES
    }
    common = {
        "entity": pl.lit(group),
        "posting_date": pl.lit(period_end),
        "entry_type": pl.lit("ic_elimination"),
        "currency": pl.lit(rc),
        "functional_currency": pl.lit(rc),
        "reporting_currency": pl.lit(rc),
        "document_id": pl.format("elim:{}:{}", "_pair", pl.lit(f"{period_start:%Y-%m}")),
        "entry_key": pl.col("_pair"),
        "description": pl.format(
            "Elimination of {}'s intercompany balances and transactions with {} ({})",
            "entity",
            "counterparty_entity",
            pl.lit(f"{period_start:%Y-%m}"),
        ),
    }
    reversal = per.select(
        signed_frame(
            **common,
            account=pl.col("account_role").replace_strict(accounts, return_dtype=pl.String),
            account_role=pl.col("account_role"),
            line_key=pl.col("_pair"),
            tx=-pl.col("_rp"),
            fn=-pl.col("_rp"),
            rp=-pl.col("_rp"),
        )
    )
    plug = (
        per.group_by("_pair", "entity", "counterparty_entity")
        .agg(pl.col("_rp").sum())
        .select(
            signed_frame(
                **common,
                account=pl.lit(group_account(mapping, group, "consolidation_difference")),
                account_role=pl.lit("consolidation_difference"),
                line_key=pl.col("_pair"),
                tx=pl.col("_rp"),
                fn=pl.col("_rp"),
                rp=pl.col("_rp"),
            )
        )
    )
    return assemble_signed(pl.concat([reversal, plug]), mapping.rule_version)


def consolidated_trial_balance(lines: pl.DataFrame, elimination_lines: pl.DataFrame) -> pl.DataFrame:
    """Reporting-currency balance (debit - credit, minor units) per account role over every
    entity plus the eliminations; intercompany roles are zero when eliminations are complete."""
    both = pl.concat([lines, elimination_lines]) if elimination_lines.height else lines
    if both.height == 0:
        return pl.DataFrame(
            schema={"account_role": pl.String, "reporting_currency": pl.String, "balance_minor": pl.Int64}
        )
    rc = both["reporting_currency"].unique().to_list()
    if len(rc) != 1:
        raise ValueError(f"lines in several reporting currencies: {sorted(rc)}")
    digits = minor_digits(rc[0])
    return (
        both.with_columns(
            _rp=(pl.col("reporting_debit") - pl.col("reporting_credit"))
            .cast(pl.Decimal(38, 3))
            .to_physical()
            .cast(pl.Int64)
            // (10 ** (3 - digits))
        )
        .group_by("account_role", "reporting_currency")
        .agg(pl.col("_rp").sum().alias("balance_minor"))
        .sort("account_role")
    )
