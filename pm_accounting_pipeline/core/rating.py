"""Rating: work items get billed hours, a bill rate, a cost rate, amounts and a tax rate.

Hours: `hours_rounded_source` when `rounding.use_source_rounded_hours` and the source sent it,
else `hours`; then the mapping's time rounding (increment, mode, minimum). Amounts are
billed_hours (10^-4) x rate (10^-4), exact at 10^-8 in integers, rounded once to the currency's
minor unit with `rounding.money_mode`. Partially billable work (`billable_percentages`) bills
that share of the rounded hours (`billed_hours`, see core/billing/partial.py); cost is on all of them.

Rate precedence (first that applies wins), for bill and cost rates separately:

1. a rate card scoped to the person and the task (other scopes may be set too),
2. a card scoped to the person (without task),
3. a card scoped to the task (without person),
4. a card scoped to the project (without person or task),
5. a card scoped to the client only,
6. the rate carried by the source row (`source_bill_rate` / `source_cost_rate`),
7. a default card (no scope).

A card applies when every scope it sets matches the row (client by mapped client name, project
by mapped project code or name, task by normalised task name, person by source person id or
normalised person name), the work date lies in [valid_from, valid_to] (open ends allowed) and its
currency fits: a bill rate must be in the row's transaction currency and a cost rate in the
entity's functional currency; a card without a currency is in the entity's functional currency.
Within one level a card scoping more fields wins, then equal-sized scopes in the order client,
project, task, person; within one scope the latest valid_from, then the smallest id.

Only `billable` rows are billed; held rows (`held_unapproved`, `held_no_approver`) keep the rate they would get (bill_rate)
with bill_rate_source "held" and amount 0; non-billable and internal rows have no bill rate
("not_billable"). Every row carries cost (cost_rate 0 with source "none" when nothing applies).
A billable row with no bill rate goes to quarantine as `missing_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import combinations

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument, RateCard
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.billing.partial import with_billable_share
from pm_accounting_pipeline.core.clean import normalise_name, normalise_text, project_frame
from pm_accounting_pipeline.core.frames import lookup_distinct
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import (
    decimal_to_scaled_expr,
    div_round_expr,
    round_hours_expr,
    scaled_to_decimal_expr,
)

RATE_SCALE = 4
ZERO_TAX_PROFILES = ("exempt", "zero_rated", "reverse_charge")

# Scope fields in their fixed tie-break order and the row column each one matches.
_SCOPES = ("client", "project", "task", "person")
_ROW_KEY = {"client": "client_name", "project": "customer_job", "task": "_task_key"}


@dataclass(frozen=True)
class RateResult:
    rated: pl.DataFrame
    quarantine: pl.DataFrame


def _level(scope: tuple[str, ...]) -> int:
    """Precedence level of a card scope (1 = most specific, 7 = default), see the module docstring."""
    if "person" in scope and "task" in scope:
        return 1
    if "person" in scope:
        return 2
    if "task" in scope:
        return 3
    if "project" in scope:
        return 4
    if "client" in scope:
        return 5
    return 7


def _scope_order() -> list[tuple[str, ...]]:
    scopes = [c for n in range(len(_SCOPES) + 1) for c in combinations(_SCOPES, n)]
    return sorted(scopes, key=lambda s: (_level(s), -len(s), [_SCOPES.index(f) for f in s]))


def _card_frame(mapping: MappingDocument, kind: str) -> pl.DataFrame:
    """Cards carrying a `kind` ("bill" or "cost") rate, with their scope resolved to row keys."""
    projects = project_frame(mapping)
    by_code = {
        c: j for c, j in zip(projects["mapped_project_code"], projects["customer_job"], strict=True) if c
    }
    by_name = dict(zip(projects["project_name"], projects["customer_job"], strict=True))
    rows = []
    for i, card in enumerate(mapping.rate_cards):
        rate = card.bill_rate if kind == "bill" else card.cost_rate
        if rate is None:
            continue
        job = None
        if card.project is not None:
            job = by_code.get(card.project) or by_name.get(card.project)
            if job is None:
                raise ValueError(
                    f"rate_cards[{i}].project: {card.project!r} is neither a mapped project code nor name"
                )
        rows.append(_card_row(card, rate_e=int(rate.scaleb(RATE_SCALE).to_integral_value()), job=job))
    schema = {
        "card_id": pl.String,
        "rate_e": pl.Int64,
        "card_currency": pl.String,
        "client": pl.String,
        "project": pl.String,
        "task": pl.String,
        "person": pl.String,
        "person_key": pl.String,
        "valid_from": pl.Date,
        "valid_to": pl.Date,
        "scope": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def _card_row(card: RateCard, rate_e: int, job: str | None) -> tuple[object, ...]:
    scope = tuple(f for f in _SCOPES if getattr(card, f) is not None)
    return (
        card.id,
        rate_e,
        card.currency,
        card.client,
        job,
        normalise_text(card.task) if card.task is not None else None,
        card.person,
        normalise_text(card.person) if card.person is not None else None,
        card.valid_from,
        card.valid_to,
        ",".join(scope),
    )


# Everything a card can match on; rates are resolved once per distinct combination of these.
def _resolve_key(mapping: MappingDocument) -> list[str]:
    """The row columns rates depend on under this mapping: what its cards can match on.

    Task, person and date only join the key when some card is scoped to a task or a person or is
    effective-dated, so a mapping without such cards resolves per client and job, not per row.
    """
    cards = mapping.rate_cards
    key = ["client_name", "customer_job", "currency", "entity"]
    if any(c.task is not None for c in cards):
        key.append("task_name")
    if any(c.person is not None for c in cards):
        key += ["person_id", "person_name"]
    if any(c.valid_from is not None or c.valid_to is not None for c in cards):
        key.append("work_date")
    return key


def _resolve_all(distinct: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    """Everything that depends only on the resolve key: card winners, minor digits, tax rate."""
    functional = {e.id: e.functional_currency for e in mapping.entities}
    tax_e6 = {e.id: int(e.tax.rate.scaleb(6).to_integral_value()) for e in mapping.entities}
    zero_tax = [c.name for c in mapping.clients if c.tax_profile in ZERO_TAX_PROFILES]
    currencies = set(distinct["currency"].unique().to_list()) | set(functional.values())
    divisors = {c: 10 ** (8 - minor_digits(c)) for c in currencies}
    optional = {
        "_task_key": _normalised(distinct, "task_name") if "task_name" in distinct.columns else None,
        "_person_key": _normalised(distinct, "person_name") if "person_name" in distinct.columns else None,
        # Without effective-dated cards every card is in force: an unknown date says so.
        "work_date": None if "work_date" in distinct.columns else pl.lit(None, dtype=pl.Date),
    }
    out = distinct.with_columns(
        functional_currency=pl.col("entity").replace_strict(functional, return_dtype=pl.String),
        **{k: v for k, v in optional.items() if v is not None},
    )
    for kind in ("bill", "cost"):
        out = _resolve(out, _card_frame(mapping, kind), kind)
    tax = (
        pl.when(pl.col("client_name").is_in(zero_tax))
        .then(0)
        .otherwise(pl.col("entity").replace_strict(tax_e6))
    )
    out = out.with_columns(
        # Divisors from 10^-8 (hours x rate) to each currency's minor unit.
        _tx_div=pl.col("currency").replace_strict(divisors, return_dtype=pl.Int128),
        _fn_div=pl.col("functional_currency").replace_strict(divisors, return_dtype=pl.Int128),
        tax_rate=scaled_to_decimal_expr(tax, 6, 8),
        **{
            f"{kind}_{level}_origin": pl.concat_str([pl.lit("rate_card:"), pl.col(f"{kind}_{level}_id")])
            for kind in ("bill", "cost")
            for level in ("specific", "default")
        },
    )
    added = ("_task_key", "_person_key", "work_date")
    return out.drop([c for c in added if c in out.columns and c not in distinct.columns])


def _normalised(frame: pl.DataFrame, col: str) -> pl.Series:
    """normalise_name over a column, computed once per distinct value."""
    values = frame.select(pl.col(col).unique())
    table = values.with_columns(_key=normalise_name(pl.col(col)))
    return frame.select(col).join(table, on=col, how="left", maintain_order="left", nulls_equal=True)["_key"]


def _resolve(rows: pl.DataFrame, cards: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Add `<kind>_specific_id/_rate_e` (levels 1-5) and `<kind>_default_id/_rate_e` per row.

    Each card scope is matched with a join on the keys it needs; scopes are then taken in
    precedence order (see the module docstring).
    """
    currency_col = "currency" if kind == "bill" else "functional_currency"
    picks: list[tuple[int, str, str]] = []
    out = rows
    for n, scope in enumerate(_scope_order()):
        subset = cards.filter(pl.col("scope") == ",".join(scope))
        if subset.height == 0:
            continue
        keys = [_ROW_KEY[f] for f in scope if f != "person"]
        need = list(dict.fromkeys([*keys, currency_col, "functional_currency", "work_date"]))
        if "person" in scope:
            need += ["person_id", "_person_key"]
        best = _best_card(
            out.select(need).unique(), subset=subset, scope=scope, currency_col=currency_col, n=n
        )
        out = out.join(best, on=need, how="left", nulls_equal=True, maintain_order="left")
        picks.append((_level(scope), f"_id{n}", f"_rate{n}"))
    specific = [p for p in picks if p[0] < 7]
    default = [p for p in picks if p[0] == 7]

    def first(idx: int, only: list[tuple[int, str, str]]) -> pl.Expr:
        return pl.coalesce([pl.col(p[idx]) for p in only]) if only else pl.lit(None)

    out = out.with_columns(
        first(1, specific).cast(pl.String).alias(f"{kind}_specific_id"),
        first(2, specific).cast(pl.Int64).alias(f"{kind}_specific_rate_e"),
        first(1, default).cast(pl.String).alias(f"{kind}_default_id"),
        first(2, default).cast(pl.Int64).alias(f"{kind}_default_rate_e"),
    )
    return out.drop([c for p in picks for c in (p[1], p[2])])


def _best_card(
    distinct: pl.DataFrame, subset: pl.DataFrame, scope: tuple[str, ...], currency_col: str, n: int
) -> pl.DataFrame:
    """The winning card of one scope for each distinct row key (null columns when none applies)."""
    need = distinct.columns
    keys = [_ROW_KEY[f] for f in scope if f != "person"]
    card_on = [f for f in scope if f != "person"]
    joins = []
    if "person" in scope:
        joins.append(distinct.join(subset, left_on=[*keys, "person_id"], right_on=[*card_on, "person"]))
        joins.append(distinct.join(subset, left_on=[*keys, "_person_key"], right_on=[*card_on, "person_key"]))
    elif keys:
        joins.append(distinct.join(subset, left_on=keys, right_on=card_on))
    else:
        joins.append(distinct.join(subset, how="cross"))
    fits_currency = pl.coalesce("card_currency", "functional_currency") == pl.col(currency_col)
    in_force = (pl.col("valid_from").is_null() | (pl.col("valid_from") <= pl.col("work_date"))) & (
        pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.col("work_date"))
    )
    picked = [*need, "card_id", "rate_e", "card_currency", "valid_from", "valid_to"]
    cand = pl.concat([j.select(picked) for j in joins], how="vertical").filter(fits_currency & in_force)
    best = (
        cand.sort(
            [*need, "valid_from", "card_id"], descending=[False] * len(need) + [True, False], nulls_last=True
        )
        .unique(need, keep="first", maintain_order=True)
        .select([*need, pl.col("card_id").alias(f"_id{n}"), pl.col("rate_e").alias(f"_rate{n}")])
    )
    return distinct.join(best, on=need, how="left", nulls_equal=True)


def _choose(kind: str, source_col: str) -> tuple[pl.Expr, pl.Expr]:
    """(rate at 10^-4, rate source) for `kind`: specific card > source row > default card."""
    source_e = decimal_to_scaled_expr(pl.col(source_col), RATE_SCALE)
    rate = pl.coalesce(pl.col(f"{kind}_specific_rate_e"), source_e, pl.col(f"{kind}_default_rate_e"))
    origin = pl.coalesce(
        pl.col(f"{kind}_specific_origin"),
        pl.when(source_e.is_not_null()).then(pl.lit("source_row")),
        pl.col(f"{kind}_default_origin"),
    )
    return rate.cast(pl.Int64), origin


def rate(work_items: pl.DataFrame, mapping: MappingDocument) -> RateResult:
    """Resolve rates and amounts for `staging.work_items`; see the module docstring for the rules."""
    rounding = mapping.rounding
    df = lookup_distinct(work_items, _resolve_key(mapping), partial(_resolve_all, mapping=mapping))

    hours_e4 = decimal_to_scaled_expr(pl.col("hours"), 4)
    if rounding.use_source_rounded_hours:
        hours_e4 = pl.coalesce(decimal_to_scaled_expr(pl.col("hours_rounded_source"), 4), hours_e4)
    billed_e4 = round_hours_expr(
        hours_e4, rounding.time_increment_minutes, rounding.time_mode, rounding.minimum_minutes
    )
    bill_e4, bill_origin = _choose("bill", "source_bill_rate")
    cost_e4, cost_origin = _choose("cost", "source_cost_rate")
    status = pl.col("billing_status")
    df = df.with_columns(
        _billed_e4=billed_e4,
        _bill_e4=pl.when(status.is_in(["billable", "held_unapproved", "held_no_approver"])).then(bill_e4),
        _bill_origin=pl.when(status == "billable")
        .then(bill_origin)
        .when(status.is_in(["held_unapproved", "held_no_approver"]))
        .then(pl.lit("held"))
        .otherwise(pl.lit("not_billable")),
        _cost_e4=pl.coalesce(cost_e4, pl.lit(0, dtype=pl.Int64)),
        _cost_origin=pl.coalesce(cost_origin, pl.lit("none")),
    )
    # Partially billable work bills a share of the hours (core/billing/partial.py); cost stays on all.
    df = with_billable_share(df, mapping)
    missing = df.select((status == "billable") & pl.col("_bill_e4").is_null()).to_series()
    bad = df.filter(missing).lazy()
    # Usually every billable row has a rate: then the wide frame need not be filtered at all.
    lf = (df.filter(~missing) if missing.any() else df).lazy()

    billed = pl.col("_billed_e4").cast(pl.Int128)
    amount = div_round_expr(
        pl.col("_bill_hours_e4").cast(pl.Int128) * pl.col("_bill_e4").cast(pl.Int128),
        pl.col("_tx_div"),
        rounding.money_mode,
    )
    cost = div_round_expr(billed * pl.col("_cost_e4").cast(pl.Int128), pl.col("_fn_div"), rounding.money_mode)

    schema = polars_schema("staging.rated_billables")
    rated = lf.with_columns(
        billed_hours=scaled_to_decimal_expr(pl.col("_bill_hours_e4"), 4, 12),
        bill_rate=scaled_to_decimal_expr(pl.col("_bill_e4"), RATE_SCALE, 18),
        bill_rate_source=pl.col("_bill_origin"),
        cost_rate=scaled_to_decimal_expr(pl.col("_cost_e4"), RATE_SCALE, 18),
        cost_rate_source=pl.col("_cost_origin"),
        amount_minor=pl.when(status == "billable").then(amount).otherwise(pl.lit(0, dtype=pl.Int64)),
        cost_minor=cost,
    )
    rated = rated.select(schema.names()).cast(dict(schema)).collect()
    return RateResult(rated=rated, quarantine=_missing_rate_rows(bad))


def _missing_rate_rows(bad: pl.LazyFrame) -> pl.DataFrame:
    schema = polars_schema("staging.quarantine")
    out = bad.select(
        "entity",
        pl.col("work_date").alias("partition_date"),
        pl.lit("rate").alias("layer"),
        "source_system",
        "source_file",
        "source_row",
        "source_id",
        pl.lit("missing_rate").alias("reason"),
        pl.format(
            "no {} bill rate for client '{}', project '{}', task '{}', person '{}' on {}: no rate card applies and the"
            " source row carries none",
            "currency",
            "client_name",
            "customer_job",
            "task_name",
            "person_name",
            "work_date",
        ).alias("detail"),
        pl.lit(None, dtype=pl.String).alias("source_record"),
    )
    return out.cast(dict(schema)).select(schema.names()).collect()
