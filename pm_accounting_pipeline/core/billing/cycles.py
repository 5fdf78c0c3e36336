"""Billing cycles: which invoice period a client's work belongs to, and on-demand billing requests.

`clients[].billing_cycle` decides how a client's work is cut into invoices inside a month:

- `monthly` (default): one invoice per client and currency for the calendar month;
- `weekly`: ISO weeks (Monday to Sunday), **split at month end**: a week that crosses a month
  boundary gives two invoices, one per month (e.g. Mon 30 March to Sun 5 April 2026 becomes
  30-31 March, issued 31 March with the March close, and 1-5 April, issued 5 April). Every invoice
  therefore falls in one accounting period, and a monthly close never waits for a week to end;
- `on_demand`: never invoiced by the calendar. The work stays in unbilled receivables until a
  billing request (`billing_requests/*.csv` in the entity's landing folder, written by
  `pm-accounting billing run --client REF --through DATE`) asks for it: the request bills every
  unbilled item of the client dated on or before `through`, on an invoice issued on `through`
  (period = first unbilled work date .. `through`), in the month partition that contains `through`.

An invoice's period (`period_start`, `period_end`) is recorded on the document; its issue date is
the period end. The invoice id is uuid5 of (entity, customer, currency, period start, period end),
so a monthly invoice keeps the id it always had.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument

CYCLES = ("monthly", "weekly", "on_demand")


def cycle_of(mapping: MappingDocument) -> dict[str, str]:
    """customer_ref -> billing cycle of the mapping document's clients."""
    return {c.customer_ref: c.billing_cycle for c in mapping.clients}


def cycle_expr(mapping: MappingDocument, ref: str = "customer_ref") -> pl.Expr:
    """The billing cycle of each row's customer (`monthly` for customers the mapping does not name)."""
    return pl.col(ref).replace_strict(cycle_of(mapping), default="monthly", return_dtype=pl.String)


def with_periods(frame: pl.DataFrame, mapping: MappingDocument, m0: date, m1: date) -> pl.DataFrame:
    """Rows dated in [m0, m1] with `period_start` / `period_end` of the invoice they go on
    (monthly: the month; weekly: the ISO week clipped to the month) and `billing_cycle`.
    On-demand rows get null periods: requests decide their invoice (`assign_requests`)."""
    cycle = cycle_expr(mapping)
    monday = pl.col("work_date") - pl.duration(days=pl.col("work_date").dt.weekday() - 1)
    week_start = pl.max_horizontal(monday, pl.lit(m0))
    week_end = pl.min_horizontal(monday + pl.duration(days=6), pl.lit(m1))
    return frame.with_columns(billing_cycle=cycle).with_columns(
        period_start=pl.when(pl.col("billing_cycle") == "weekly")
        .then(week_start)
        .when(pl.col("billing_cycle") == "monthly")
        .then(pl.lit(m0))
        .cast(pl.Date),
        period_end=pl.when(pl.col("billing_cycle") == "weekly")
        .then(week_end)
        .when(pl.col("billing_cycle") == "monthly")
        .then(pl.lit(m1))
        .cast(pl.Date),
    )


def month_periods(cycle: str, m0: date, m1: date) -> list[tuple[date, date]]:
    """The invoice periods of a calendar month for a cycle (on-demand: none by the calendar)."""
    if cycle == "monthly":
        return [(m0, m1)]
    if cycle != "weekly":
        return []
    out: list[tuple[date, date]] = []
    start = m0
    while start <= m1:
        sunday = date.fromordinal(start.toordinal() + 7 - start.isoweekday())
        end = min(sunday, m1)
        out.append((start, end))
        start = date.fromordinal(end.toordinal() + 1)
    return out


def assign_requests(items: pl.DataFrame, requests: pl.DataFrame, m0: date, m1: date) -> pl.DataFrame:
    """On-demand items (ITEM_SCHEMA rows of on-demand customers, never billed) with the request that
    bills them: the earliest request of the customer dated (`date` = through) in [m0, m1] on or
    after the item's work date gives `period_end` and `request_id`; items no request covers are
    dropped (they stay unbilled). `period_start` is the earliest work date a request bills."""
    reqs = (
        requests.filter(pl.col("date").is_between(m0, m1))
        .sort("date", "request_id")
        .unique(["customer_ref", "date"], keep="first", maintain_order=True)
        .select("customer_ref", pl.col("date").alias("period_end"), "request_id")
    )
    if items.height == 0 or reqs.height == 0:
        return items.head(0).with_columns(
            period_start=pl.lit(None, dtype=pl.Date),
            period_end=pl.lit(None, dtype=pl.Date),
            request_id=pl.lit(None, dtype=pl.String),
        )
    matched = (
        items.sort("work_date")
        .join_asof(
            reqs,
            left_on="work_date",
            right_on="period_end",
            by="customer_ref",
            strategy="forward",
            check_sortedness=False,  # both sides are sorted on the key just above
        )
        .filter(pl.col("period_end").is_not_null())
    )
    return matched.with_columns(period_start=pl.col("work_date").min().over("customer_ref", "period_end"))
