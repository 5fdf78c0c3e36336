"""Capex vs opex: the cost of capitalisable work booked to an asset account and depreciated
straight-line over a configured useful life.

Capitalisable work (mapping `capex`): time on the listed projects (customer_job or project code)
or the listed tasks, on any project. At each month end its cost (as accrued, in the functional and
reporting currency) moves from `cost_of_services` to `capitalised_costs`, per project
(`capitalisation` entry); shared costs allocated to such projects are debited to
`capitalised_costs` directly by the allocation. Everything else stays expense.

Each (entity, project, month) of capitalised cost is one asset: its cost is the month's net
`capitalised_costs` postings, it enters service on the first day of the next month (or of the same
month, `depreciation_start: same_month`) and is depreciated over `useful_life_months`: after k
months the accumulated depreciation is round(cost x k / life) (half-up, in integers), so each
month's charge is the difference and the last month brings the total exactly to the cost
(separately in the functional and the reporting currency). `depreciation` entries: Dr
depreciation_expense / Cr accumulated_depreciation per project.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from pm_accounting_pipeline.config.group import group_account
from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.clean import normalise_name, normalise_text
from pm_accounting_pipeline.core.group_journal import Journal, assemble_signed, signed_frame
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.rounding import div_round_expr

PROJECT = ["customer_ref", "customer_job", "project_code"]


@dataclass(frozen=True)
class CapexResult:
    journal: Journal  # capitalisation (this month) and depreciation (this month)
    schedule: pl.DataFrame  # ledger.depreciation_schedule of the assets capitalised this month


def capitalisable_expr(mapping: MappingDocument, task: str | None = "task_name") -> pl.Expr:
    """True for rows of a capitalisable project (by customer_job or project code) or task."""
    cap = mapping.capex
    expr = pl.col("customer_job").is_in(list(cap.projects)) | pl.col("project_code").is_in(list(cap.projects))
    if task is not None and cap.tasks:
        expr = expr | normalise_name(task).is_in([normalise_text(t) for t in cap.tasks])
    return expr.fill_null(False)


def capitalise(fx_month: pl.DataFrame, mapping: MappingDocument, entity: str, period_end: date) -> Journal:
    """The month's capitalisation entry: Dr capitalised_costs / Cr cost_of_services per project."""
    cap = mapping.capex
    if not (cap.projects or cap.tasks):
        return Journal.empty()
    rows = fx_month.filter((pl.col("entity") == entity) & (pl.col("cost_minor") > 0)).filter(
        capitalisable_expr(mapping)
    )
    if rows.height == 0:
        return Journal.empty()
    fc = mapping.entity(entity).functional_currency
    per = (
        rows.group_by(PROJECT)
        .agg(pl.col("cost_minor").sum(), pl.col("cost_reporting_minor").sum())
        .sort(PROJECT, nulls_last=False)
    )
    common = {
        "entity": pl.lit(entity),
        "posting_date": pl.lit(period_end),
        "entry_type": pl.lit("capitalisation"),
        "currency": pl.lit(fc),
        "functional_currency": pl.lit(fc),
        "reporting_currency": pl.lit(mapping.reporting_currency),
        "entry_key": pl.lit(f"capex:{period_end:%Y-%m}"),
        "description": pl.lit(f"Capitalisation of development work in {period_end:%Y-%m}"),
        **{k: pl.col(k) for k in PROJECT},
    }
    signed = pl.concat(
        [
            per.select(
                signed_frame(
                    **common,
                    account=pl.lit(group_account(mapping, entity, "capitalised_costs")),
                    account_role=pl.lit("capitalised_costs"),
                    tx=pl.col("cost_minor"),
                    fn=pl.col("cost_minor"),
                    rp=pl.col("cost_reporting_minor"),
                )
            ),
            per.select(
                signed_frame(
                    **common,
                    account=pl.lit(mapping.account(entity, "cost_of_services")),
                    account_role=pl.lit("cost_of_services"),
                    tx=-pl.col("cost_minor"),
                    fn=-pl.col("cost_minor"),
                    rp=-pl.col("cost_reporting_minor"),
                )
            ),
        ]
    )
    return assemble_signed(signed, mapping.rule_version)


def _minor(debit: str, credit: str) -> pl.Expr:
    return (pl.col(debit) - pl.col(credit)).cast(pl.Decimal(38, 3)).to_physical().cast(pl.Int64)


def vintages(lines: pl.DataFrame, mapping: MappingDocument, entity: str) -> pl.DataFrame:
    """Assets from the net capitalised_costs postings per (project, month): cost in the functional
    and reporting currency (integers in minor units), in-service date."""
    from pm_accounting_pipeline.core.ledger import digits_expr

    sel = lines.filter((pl.col("entity") == entity) & (pl.col("account_role") == "capitalised_costs"))
    if sel.height == 0:
        return pl.DataFrame(
            schema={
                **{k: pl.String for k in PROJECT},
                "capitalised_in": pl.Date,
                "currency": pl.String,
                "cost_minor": pl.Int64,
                "cost_rp_minor": pl.Int64,
                "reporting_currency": pl.String,
            }
        )
    fcs = set(sel["functional_currency"])
    rcs = set(sel["reporting_currency"])
    fshift = pl.lit(10, dtype=pl.Int64).pow(3 - digits_expr("functional_currency", fcs))
    rshift = pl.lit(10, dtype=pl.Int64).pow(3 - digits_expr("reporting_currency", rcs))
    out = (
        sel.with_columns(
            capitalised_in=pl.col("posting_date").dt.truncate("1mo"),
            _fn=_minor("functional_debit", "functional_credit") // fshift,
            _rp=_minor("reporting_debit", "reporting_credit") // rshift,
        )
        .group_by(*PROJECT, "capitalised_in")
        .agg(
            pl.col("functional_currency").first().alias("currency"),
            pl.col("reporting_currency").first(),
            pl.col("_fn").sum().alias("cost_minor"),
            pl.col("_rp").sum().alias("cost_rp_minor"),
        )
        .filter((pl.col("cost_minor") != 0) | (pl.col("cost_rp_minor") != 0))
        .sort("capitalised_in", *PROJECT, nulls_last=False)
    )
    negative = out.filter((pl.col("cost_minor") < 0) | (pl.col("cost_rp_minor") < 0))
    if negative.height:
        raise ValueError(
            f"{entity}: capitalised cost is negative for {negative.select('customer_job', 'capitalised_in').rows()}"
        )
    return out


def schedule(assets: pl.DataFrame, mapping: MappingDocument, entity: str) -> pl.DataFrame:
    """The full straight-line schedule of each asset, one row per month of its useful life, with
    the reporting-currency charge in `_rp_dep` (not part of the contract)."""
    life = mapping.capex.useful_life_months
    offset = "1mo" if mapping.capex.depreciation_start == "next_month" else "0mo"
    mode = mapping.rounding.money_mode
    rows = assets.with_columns(
        entity=pl.lit(entity),
        in_service=pl.col("capitalised_in").dt.offset_by(offset),
        useful_life_months=pl.lit(life, dtype=pl.Int64),
        month_no=pl.int_ranges(1, life + 1, dtype=pl.Int64),
        asset_id=stable_id_expr(pl.lit(entity), "customer_job", "capitalised_in", prefix="asset"),
    ).explode("month_no")
    acc = div_round_expr(pl.col("cost_minor") * pl.col("month_no"), pl.lit(life), mode)
    acc_prev = div_round_expr(pl.col("cost_minor") * (pl.col("month_no") - 1), pl.lit(life), mode)
    racc = div_round_expr(pl.col("cost_rp_minor") * pl.col("month_no"), pl.lit(life), mode)
    racc_prev = div_round_expr(pl.col("cost_rp_minor") * (pl.col("month_no") - 1), pl.lit(life), mode)
    return rows.with_columns(
        period=pl.col("in_service").dt.offset_by(pl.format("{}mo", pl.col("month_no") - 1)),
        depreciation_minor=acc - acc_prev,
        accumulated_minor=acc,
        net_book_value_minor=pl.col("cost_minor") - acc,
        _rp_dep=racc - racc_prev,
    )


def contract_schedule(rows: pl.DataFrame) -> pl.DataFrame:
    schema = polars_schema("ledger.depreciation_schedule")
    return rows.select(schema.names()).cast(dict(schema)).sort("asset_id", "period")


def depreciate(
    sched: pl.DataFrame, mapping: MappingDocument, entity: str, period_start: date, period_end: date
) -> Journal:
    """The month's depreciation entry from the schedule rows of that month."""
    due = sched.filter((pl.col("period") == period_start) & (pl.col("depreciation_minor") != 0))
    if due.height == 0:
        return Journal.empty()
    fc = mapping.entity(entity).functional_currency
    common = {
        "entity": pl.lit(entity),
        "posting_date": pl.lit(period_end),
        "entry_type": pl.lit("depreciation"),
        "currency": pl.lit(fc),
        "functional_currency": pl.lit(fc),
        "reporting_currency": pl.lit(mapping.reporting_currency),
        "entry_key": pl.lit(f"depreciation:{period_start:%Y-%m}"),
        "description": pl.lit(f"Straight-line depreciation of capitalised work, {period_start:%Y-%m}"),
        **{k: pl.col(k) for k in PROJECT},
    }
    signed = pl.concat(
        [
            due.select(
                signed_frame(
                    **common,
                    account=pl.lit(group_account(mapping, entity, "depreciation_expense")),
                    account_role=pl.lit("depreciation_expense"),
                    tx=pl.col("depreciation_minor"),
                    fn=pl.col("depreciation_minor"),
                    rp=pl.col("_rp_dep"),
                )
            ),
            due.select(
                signed_frame(
                    **common,
                    account=pl.lit(group_account(mapping, entity, "accumulated_depreciation")),
                    account_role=pl.lit("accumulated_depreciation"),
                    tx=-pl.col("depreciation_minor"),
                    fn=-pl.col("depreciation_minor"),
                    rp=-pl.col("_rp_dep"),
                )
            ),
        ]
    )
    return assemble_signed(signed, mapping.rule_version)


def run_capex(
    fx_month: pl.DataFrame,
    other_lines: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_start: date,
    period_end: date,
) -> CapexResult:
    """Capitalise the month's capitalisable work and depreciate every asset in service.

    `other_lines`: the entity's journal lines posting to capitalised_costs other than this
    month's capitalisation entry (earlier months' capitalisations, allocations to capitalisable
    projects); lines after the month are ignored.
    """
    cap = capitalise(fx_month, mapping, entity, period_end)
    lines = pl.concat([other_lines.filter(pl.col("posting_date") <= period_end), cap.lines])
    assets = vintages(lines, mapping, entity)
    sched = schedule(assets, mapping, entity)
    dep = depreciate(sched, mapping, entity, period_start, period_end)
    mine = sched.filter(pl.col("capitalised_in") == period_start)
    return CapexResult(cap.concat(dep), contract_schedule(mine))
