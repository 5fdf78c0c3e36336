"""The end-of-run summary printed by `pm-accounting run` and `pm-accounting demo`.

Figures come from the same views analysts use, scoped to the run's dates and entities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl
from rich.console import Console
from rich.table import Table

from pm_accounting_pipeline.core.money import Money
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline.lib.runner import RunOutcome
from pm_accounting_pipeline.lib.settings import Paths
from pm_accounting_pipeline.lib.warehouse import connect_in_memory


@dataclass(frozen=True)
class SummaryFigures:
    rows_in: int
    accepted: int
    quarantined: int
    by_status: pl.DataFrame
    by_reason: pl.DataFrame
    ledger: pl.DataFrame
    balance: pl.DataFrame
    top_projects: pl.DataFrame
    expenses: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Billing documents per entity and billing cycle, and the on-demand clients' unbilled work.
    by_cycle: pl.DataFrame = field(default_factory=pl.DataFrame)
    on_demand_unbilled: pl.DataFrame = field(default_factory=pl.DataFrame)


def _scope(start: date, end: date, entities: list[str], col: str) -> str:
    ents = ", ".join(f"'{e}'" for e in entities)
    return f"{col} BETWEEN DATE '{start}' AND DATE '{end}' AND entity IN ({ents})"


def collect(
    paths: Paths, start: date, end: date, entities: list[str], cycles: dict[str, str] | None = None
) -> SummaryFigures:
    """The summary's figures; `cycles` (customer_ref -> billing cycle, `monthly` when not named) adds
    the billing documents by cycle and the on-demand clients' unbilled work."""
    con = connect_in_memory(Lake(paths.lake))
    try:
        w_work = _scope(start, end, entities, "work_date")
        w_q = _scope(start, end, entities, "partition_date")
        ents = ", ".join(f"'{e}'" for e in entities)
        raw = con.sql(f"SELECT count(*) FROM raw.time_entries WHERE {w_work}").fetchone()[0]
        unroutable = con.sql(
            f"SELECT count(*) FROM staging.quarantine WHERE layer = 'raw' AND entity IN ({ents})"
        ).fetchone()[0]
        accepted = con.sql(f"SELECT count(*) FROM staging.fx_billables WHERE {w_work}").fetchone()[0]
        by_status = con.sql(
            f"SELECT billing_status, count(*) AS entries, sum(billed_hours) AS hours "
            f"FROM staging.fx_billables WHERE {w_work} GROUP BY 1 ORDER BY 1"
        ).pl()
        # Expenses have their own figures (expense_figures); their quarantine rows are not time rows.
        not_expense = "layer <> 'expenses' AND coalesce(source_system, '') <> 'harvest_expense_csv'"
        by_reason = con.sql(
            f"SELECT layer, reason, count(*) AS rows FROM staging.quarantine "
            f"WHERE (({w_q} AND layer <> 'raw') OR (layer = 'raw' AND entity IN ({ents}))) AND {not_expense} "
            f"GROUP BY 1, 2 ORDER BY 3 DESC"
        ).pl()
        ledger = con.sql(
            f"""
            SELECT entity,
                   count(*) FILTER (WHERE entry_type <> 'invoice') AS accrual_entries,
                   count(*) FILTER (WHERE entry_type = 'invoice') AS invoice_entries
            FROM ledger.journal_entries WHERE {_scope(start, end, entities, "posting_date")}
            GROUP BY 1 ORDER BY 1
            """
        ).pl()
        invoices = con.sql(
            f"SELECT entity, currency, count(*) AS n, sum(total_minor)::BIGINT AS total_minor "
            f"FROM ledger.invoices WHERE {_scope(start, end, entities, 'period_start')} GROUP BY 1, 2 ORDER BY 1, 2"
        ).pl()
        per_entity: dict[str, tuple[int, list[str]]] = {}
        for entity, ccy, n, minor in invoices.iter_rows():
            count, totals = per_entity.get(entity, (0, []))
            per_entity[entity] = (count + n, [*totals, str(Money.from_minor(int(minor), ccy))])
        ledger = ledger.with_columns(
            pl.col("entity")
            .map_elements(lambda e: per_entity.get(e, (0, []))[0], return_dtype=pl.Int64)
            .alias("invoices"),
            pl.col("entity")
            .map_elements(lambda e: ", ".join(per_entity.get(e, (0, []))[1]), return_dtype=pl.String)
            .alias("invoiced (incl. tax)"),
        )
        balance = con.sql(f"SELECT * FROM analytics.trial_balance_check WHERE entity IN ({ents})").pl()
        top = con.sql(
            f"SELECT entity, project, functional_currency AS ccy, sum(revenue)::DECIMAL(18,2) AS revenue, "
            f"sum(cost)::DECIMAL(18,2) AS cost, sum(margin)::DECIMAL(18,2) AS margin, "
            f"reporting_currency AS rep, sum(margin_reporting)::DECIMAL(18,2) AS margin_reporting "
            f"FROM analytics.project_profitability WHERE {_scope(start, end, entities, 'month')} "
            f"GROUP BY ALL ORDER BY margin_reporting DESC LIMIT 5"
        ).pl()
        expenses = expense_figures(con, start, end, entities)
        by_cycle, on_demand_unbilled = (
            billing_by_cycle(con, start, end, entities, cycles)
            if cycles is not None
            else (pl.DataFrame(),) * 2
        )
    finally:
        con.close()
    quarantined = int(by_reason["rows"].sum()) if by_reason.height else 0
    return SummaryFigures(
        raw + unroutable,
        accepted,
        quarantined,
        by_status,
        by_reason,
        ledger,
        balance,
        top,
        expenses,
        by_cycle,
        on_demand_unbilled,
    )


def _money_list(frame: pl.DataFrame, minor: str, keys: list[str], alias: str) -> pl.DataFrame:
    """Per `keys`, the sums of `minor` per currency as one text (`1200.00 USD, 90.00 GBP`)."""
    by = list(dict.fromkeys([*keys, "currency"]))
    sums = frame.group_by(by).agg(pl.col(minor).sum()).sort(by)
    text = [str(Money.from_minor(int(m), c)) for c, m in sums.select("currency", minor).iter_rows()]
    return (
        sums.with_columns(pl.Series(alias, text, dtype=pl.String))
        .group_by(keys, maintain_order=True)
        .agg(pl.col(alias).str.join(", "))
    )


def billing_by_cycle(
    con: object, start: date, end: date, entities: list[str], cycles: dict[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Billing documents issued in [start, end] per entity and the customer's billing cycle (count
    and totals incl. tax per currency), and the unbilled work of on-demand clients (per client and
    currency: entries, first work date, amount)."""
    cycle = pl.col("customer_ref").replace_strict(cycles, default="monthly", return_dtype=pl.String)
    docs = con.sql(  # type: ignore[attr-defined]
        f"SELECT entity, customer_ref, currency, total_minor FROM ledger.billing_documents "
        f"WHERE {_scope(start, end, entities, 'issue_date')}"
    ).pl()
    docs = docs.with_columns(cycle.alias("cycle"))
    counts = docs.group_by("entity", "cycle").agg(pl.len().alias("documents"))
    by_cycle = (
        counts.join(
            _money_list(docs, "total_minor", ["entity", "cycle"], "total (incl. tax)"), on=["entity", "cycle"]
        )
        .sort("entity", "cycle")
        .select("entity", "cycle", "documents", "total (incl. tax)")
    )
    on_demand = sorted(ref for ref, c in cycles.items() if c == "on_demand")
    ents = ", ".join(f"'{e}'" for e in entities)
    unbilled = con.sql(  # type: ignore[attr-defined]
        f"SELECT entity, customer_ref, currency, entries, first_work_date, amount_minor "
        f"FROM analytics.unbilled_work WHERE entity IN ({ents})"
    ).pl()
    unbilled = unbilled.filter(pl.col("customer_ref").is_in(on_demand))
    amounts = _money_list(unbilled, "amount_minor", ["entity", "customer_ref", "currency"], "amount")
    unbilled = (
        unbilled.join(amounts, on=["entity", "customer_ref", "currency"])
        .sort("entity", "customer_ref", "currency")
        .select("entity", "customer_ref", "entries", "first_work_date", "amount")
    )
    return by_cycle, unbilled


def expense_figures(con: object, start: date, end: date, entities: list[str]) -> pl.DataFrame:
    """Per entity: expense rows in (raw rows + rows a file could not route to a day), accepted,
    quarantined (and why), by billing status, and what the period's invoices bill for expenses."""
    ents = ", ".join(f"'{e}'" for e in entities)
    w_spent = _scope(start, end, entities, "spent_date")
    w_q = _scope(start, end, entities, "partition_date")
    w_inv = _scope(start, end, entities, "i.period_start").replace("entity IN", "i.entity IN")
    return con.sql(  # type: ignore[attr-defined]
        f"""
        WITH raw AS (SELECT entity, count(*) AS n FROM raw.expenses WHERE {w_spent} GROUP BY 1),
        q AS (
            SELECT entity, count(*) AS n,
                   count(*) FILTER (WHERE layer = 'raw') AS unroutable,
                   string_agg(DISTINCT reason, ', ' ORDER BY reason) AS reasons
            FROM staging.quarantine
            WHERE ({w_q} AND layer = 'expenses')
               OR (layer = 'raw' AND source_system = 'harvest_expense_csv' AND entity IN ({ents}))
            GROUP BY 1
        ),
        s AS (
            SELECT entity, count(*) AS n,
                   count(*) FILTER (WHERE billing_status = 'billable') AS billable,
                   count(*) FILTER (WHERE billing_status IN ('held_unapproved', 'held_no_approver')) AS held,
                   count(*) FILTER (WHERE billing_status IN ('non_billable', 'internal')) AS cost_only
            FROM staging.expenses WHERE {w_spent} GROUP BY 1
        ),
        billed AS (
            SELECT entity, string_agg(currency || ' ' || rtrim(rtrim(CAST(amount AS VARCHAR), '0'), '.'), ', ' ORDER BY currency) AS billed
            FROM (
                SELECT l.entity, i.currency, sum(l.amount) AS amount
                FROM ledger.invoice_lines l JOIN ledger.invoices i USING (invoice_id)
                WHERE l.task_name LIKE 'Expenses: %' AND {w_inv}
                GROUP BY 1, 2
            ) GROUP BY 1
        )
        SELECT e.entity, coalesce(raw.n, 0) + coalesce(q.unroutable, 0) AS "in",
               coalesce(s.n, 0) AS accepted, coalesce(q.n, 0) AS quarantined,
               coalesce(s.billable, 0) AS billable, coalesce(s.held, 0) AS held,
               coalesce(s.cost_only, 0) AS "cost only", billed.billed AS "billed (excl. tax)",
               q.reasons AS "quarantine reasons"
        FROM (SELECT unnest([{ents}]) AS entity) e
        LEFT JOIN raw USING (entity) LEFT JOIN q USING (entity) LEFT JOIN s USING (entity)
        LEFT JOIN billed USING (entity)
        WHERE coalesce(raw.n, 0) + coalesce(q.n, 0) > 0
        ORDER BY 1
        """
    ).pl()


def _table(title: str, df: pl.DataFrame) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    for c in df.columns:
        t.add_column(c, justify="right" if df[c].dtype.is_numeric() or df[c].dtype == pl.Decimal else "left")
    for row in df.iter_rows():
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def render(console: Console, outcome: RunOutcome, fig: SummaryFigures, paths: Paths) -> None:
    runs = Table(title="Runs", title_justify="left", show_edge=False)
    for c in ("job", "partitions", "seconds", "result"):
        runs.add_column(c)
    for r in outcome.runs:
        result = "ok" if r.success and not r.failed_checks else f"FAILED {r.failed_steps + r.failed_checks}"
        runs.add_row(r.job, str(r.partitions), f"{r.seconds:.1f}", result)
    console.print(runs)
    console.print(
        f"\n[bold]Rows[/bold]: {fig.rows_in:,} in = {fig.accepted:,} accepted + {fig.quarantined:,} quarantined"
        + ("" if fig.rows_in == fig.accepted + fig.quarantined else "  [red](does not add up)[/red]")
    )
    console.print(_table("Accepted rows by billing status", fig.by_status))
    console.print(_table("Quarantined rows by reason", fig.by_reason))
    console.print(_table("Ledger per entity", fig.ledger))
    ok = fig.balance.height > 0 and (fig.balance["out_of_balance"] == 0).all()
    console.print(_table("Trial balance check (functional currency)", fig.balance))
    console.print(
        "Trial balance: " + ("[green]every entity balances[/green]" if ok else "[red]OUT OF BALANCE[/red]")
    )
    if fig.expenses.height:
        exp = fig.expenses
        adds_up = (exp["in"] == exp["accepted"] + exp["quarantined"]).all()
        console.print(
            _table(
                "Expenses (in = accepted + quarantined)", exp.drop("billed (excl. tax)", "quarantine reasons")
            )
        )
        for entity, billed, reasons in exp.select(
            "entity", "billed (excl. tax)", "quarantine reasons"
        ).iter_rows():
            console.print(
                f"  {entity}: billed on invoices {billed or 'nothing'} (excl. tax)"
                + (f"; quarantined: {reasons}" if reasons else "")
            )
        if not adds_up:
            console.print("[red]expense rows do not add up[/red]")
    if fig.by_cycle.height:
        console.print(_table("Billing documents by cycle", fig.by_cycle))
        for entity, ref, n, first, amount in fig.on_demand_unbilled.iter_rows():
            console.print(f"  {entity} {ref} (on demand): {amount} unbilled, {n} entries from {first}")
    console.print(_table("Top projects by margin (reporting currency)", fig.top_projects))
    console.print(
        "\n[bold]Next steps[/bold]\n"
        "  * Dagster UI (lineage, partitions, checks, metadata): make dev, then open http://127.0.0.1:3000\n"
        f'  * Query DuckDB: duckdb {paths.warehouse} -c "SELECT * FROM analytics.project_profitability LIMIT 10"\n'
        f'  * Quarantine:   duckdb {paths.warehouse} -c "SELECT * FROM analytics.quarantine_summary"\n'
        f"  * Ledger data-quality report: {paths.reports / 'gx' / 'index.html'}\n"
        "  * Land more files: pm-accounting ingest FILE... --entity ENTITY; then pm-accounting run --start ... --end ..."
    )
