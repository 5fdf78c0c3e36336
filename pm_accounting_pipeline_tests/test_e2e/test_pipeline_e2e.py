"""End to end on a small demo dataset: every generated entry is accepted exactly once, every
malformed row is quarantined, and the ledger's totals equal values computed here, independently of
the pipeline, from the generator's own records with Python Decimal arithmetic: monthly clients per
calendar month, weekly clients per ISO week split at month end, the on-demand client only through
its billing request's date."""

from __future__ import annotations

import calendar
import csv
import shutil
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline.lib.warehouse import connect_in_memory

DIGITS = {"JPY": 0, "KWD": 3}


def _round(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-DIGITS.get(currency, 2)), rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def con(demo_env, demo_run) -> duckdb.DuckDBPyConnection:
    assert demo_run.success, demo_run.runs
    c = connect_in_memory(Lake(demo_env.data_dir / "lake"))
    yield c
    c.close()


def _csv_rows(demo_env) -> int:
    total = 0
    for path in demo_env.exports:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            total += sum(1 for _ in csv.DictReader(fh))
    return total


def test_every_run_and_blocking_check_passed(demo_run) -> None:
    assert [r.job for r in demo_run.runs] == [
        "daily_pipeline",
        "monthly_billing",
        "billing_documents",
        "analytics_refresh",
    ]
    for r in demo_run.runs:
        assert r.success and not r.failed_steps and not r.failed_checks, r


def test_every_source_row_is_accepted_or_quarantined(con, demo_env) -> None:
    rows_in = _csv_rows(demo_env)
    accepted = con.sql("SELECT count(*) FROM staging.fx_billables").fetchone()[0]
    quarantined = con.sql("SELECT count(*) FROM staging.quarantine").fetchone()[0]
    assert rows_in == accepted + quarantined
    assert quarantined > 0


def _intact_entries(demo_env) -> pl.DataFrame:
    """The generated entries that reached the CSVs unharmed: in-place malformed kinds replaced the
    entry rendered at their row (files hold one entity-month each, rows in generation order)."""
    te = demo_env.dataset.time_entries.with_columns(
        pl.col("spent_date").dt.strftime("%Y-%m").alias("_month"),
        (pl.int_range(pl.len()).over("entity", pl.col("spent_date").dt.strftime("%Y-%m")) + 1).alias("_row"),
    )
    hit = (
        demo_env.manifest.filter(pl.col("kind") != "duplicate_row")
        .with_columns(
            pl.col("file").str.extract(r"_([a-z]+)_\d{4}-\d{2}\.csv$", 1).alias("entity"),
            pl.col("file").str.extract(r"_(\d{4}-\d{2})\.csv$", 1).alias("_month"),
            pl.col("source_row").cast(pl.Int64).alias("_row"),
        )
        .select("entity", "_month", "_row")
    )
    assert hit.height > 0
    return te.join(hit, on=["entity", "_month", "_row"], how="anti")


def test_each_generated_entry_is_accepted_exactly_once(con, demo_env) -> None:
    intact = _intact_entries(demo_env)
    expected = dict(intact.group_by("entity").len().iter_rows())
    got = dict(con.sql("SELECT entity, count(*) FROM staging.fx_billables GROUP BY 1").fetchall())
    assert got == expected
    statuses = dict(
        con.sql("SELECT billing_status, count(*) FROM staging.fx_billables GROUP BY 1").fetchall()
    )
    held = intact.filter((pl.col("approval_status") != "approved") & pl.col("billable"))
    assert statuses.get("held_unapproved", 0) == held.height


def test_every_injected_malformed_row_is_quarantined_with_its_reason(con, demo_env) -> None:
    from pm_accounting_pipeline.demo.generator import EXPECTED_REASON

    got = {
        (f.split("-", 1)[1], row): reason
        for f, row, reason in con.sql(
            "SELECT source_file, source_row, reason FROM staging.quarantine"
        ).fetchall()
    }
    for file, row, kind, _ in demo_env.manifest.iter_rows():
        assert got.get((file, row)) == EXPECTED_REASON[kind], (file, row, kind)
    assert len(got) == demo_env.manifest.height


def _cycles(demo_env) -> dict[str, str]:
    """customer_ref -> billing cycle, as the generated mapping document names it (monthly by default)."""
    import yaml

    doc = yaml.safe_load(demo_env.config.read_text())
    return {c["customer_ref"]: c.get("billing_cycle", "monthly") for c in doc["clients"]}


def _period(day: date, cycle: str) -> tuple[date, date]:
    """The invoice period of a work day: its month, or its ISO week (Monday to Sunday) cut at the
    month's first and last day."""
    first = day.replace(day=1)
    last = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    if cycle == "monthly":
        return first, last
    monday = day - timedelta(days=day.weekday())
    return max(monday, first), min(monday + timedelta(days=6), last)


def _billed_items(demo_env) -> list[tuple[str, str, str, date, Decimal]]:
    """(entity, customer_ref, currency, work date, amount) of every approved billable intact entry."""
    refs = dict(demo_env.dataset.clients.select("client_id", "customer_ref").iter_rows())
    intact = _intact_entries(demo_env).filter((pl.col("approval_status") == "approved") & pl.col("billable"))
    return [
        (
            row["entity"],
            refs[row["client_id"]],
            row["currency"],
            row["spent_date"],
            _round(row["rounded_hours"] * row["billable_rate"], row["currency"]),
        )
        for row in intact.iter_rows(named=True)
    ]


def test_the_demo_bills_two_clients_weekly_and_one_on_demand(demo_env) -> None:
    cycles = _cycles(demo_env)
    assert sorted(c for c in cycles.values() if c != "monthly") == ["on_demand", "weekly", "weekly"]
    ref, through = demo_env.dataset.on_demand_request
    assert cycles[ref] == "on_demand" and through == date(2026, 9, 15)


def test_revenue_and_invoices_equal_an_independent_computation(con, demo_env) -> None:
    cycles = _cycles(demo_env)
    items = _billed_items(demo_env)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    invoiced_expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    per_invoice: dict[tuple[str, str, date, date], Decimal] = defaultdict(Decimal)
    for entity, ref, ccy, day, amount in items:
        expected[(entity, ccy)] += amount
        if cycles[ref] != "on_demand":  # on-demand work waits for a billing request
            invoiced_expected[(entity, ccy)] += amount
            per_invoice[(ref, ccy, *_period(day, cycles[ref]))] += amount
    revenue = {
        (e, c): Decimal(v)
        for e, c, v in con.sql(
            "SELECT entity, currency, sum(credit) - sum(debit) FROM ledger.journal_lines "
            "WHERE entry_type = 'revenue_accrual' AND account_role = 'service_revenue' GROUP BY 1, 2"
        ).fetchall()
    }
    assert revenue == dict(expected)
    invoiced = {
        (e, c): Decimal(v)
        for e, c, v in con.sql(
            "SELECT entity, currency, sum(subtotal) FROM ledger.invoices GROUP BY 1, 2"
        ).fetchall()
    }
    assert invoiced == dict(invoiced_expected)
    invoices = {
        (ref, ccy, start, end): Decimal(v)
        for ref, ccy, start, end, v in con.sql(
            "SELECT customer_ref, currency, period_start, period_end, subtotal FROM ledger.invoices"
        ).fetchall()
    }
    assert invoices == dict(per_invoice)
    weekly = {k for k in per_invoice if cycles[k[0]] == "weekly"}
    # Both weekly clients get several week parts per month, including one cut at 30 September.
    assert len(weekly) > 8 and any(k[2:] == (date(2026, 9, 28), date(2026, 9, 30)) for k in weekly)
    # The issued documents finalise exactly these invoices (no discount or other rule in the demo).
    documents = {
        (ref, ccy, start, end): Decimal(v)
        for ref, ccy, start, end, v in con.sql(
            "SELECT customer_ref, currency, period_start, period_end, subtotal FROM ledger.billing_documents "
            "WHERE document_type = 'invoice'"
        ).fetchall()
    }
    assert documents == dict(per_invoice)


def test_invoice_tax_and_totals_add_up_and_unbilled_is_cleared(con, demo_env) -> None:
    import yaml

    mapping = yaml.safe_load(demo_env.config.read_text())
    rates = {e["id"]: Decimal(str(e.get("tax", {}).get("rate", "0"))) for e in mapping["entities"]}
    profiles = {c["customer_ref"]: c.get("tax_profile", "standard") for c in mapping["clients"]}
    for entity, ref, ccy, subtotal, tax, total in con.sql(
        "SELECT entity, customer_ref, currency, subtotal, tax, total FROM ledger.invoices"
    ).fetchall():
        rate = rates[entity] if profiles[ref] == "standard" else Decimal(0)
        assert tax == _round(subtotal * rate, ccy), (entity, ref)
        assert total == subtotal + tax
    # Both months are invoiced in full, except the on-demand client's work (no request yet): the
    # unbilled receivables balance is exactly that work, zero in every other currency.
    cycles = _cycles(demo_env)
    waiting: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entity, ref, ccy, _, amount in _billed_items(demo_env):
        if cycles[ref] == "on_demand":
            waiting[(entity, ccy)] += amount
    left = con.sql(
        "SELECT entity, currency, sum(debit) - sum(credit) AS bal FROM ledger.journal_lines "
        "WHERE account_role = 'unbilled_receivables' GROUP BY 1, 2 HAVING bal <> 0"
    ).fetchall()
    assert {(e, c): Decimal(v) for e, c, v in left} == dict(waiting)
    assert waiting and all(v > 0 for v in waiting.values())
    ar = dict(
        ((e, c), v)
        for e, c, v in con.sql(
            "SELECT entity, currency, sum(debit) FROM ledger.journal_lines "
            "WHERE account_role = 'accounts_receivable' GROUP BY 1, 2"
        ).fetchall()
    )
    totals = dict(
        ((e, c), v)
        for e, c, v in con.sql(
            "SELECT entity, currency, sum(total) FROM ledger.invoices GROUP BY 1, 2"
        ).fetchall()
    )
    assert ar == totals


def test_every_entry_balances_and_every_entity_trial_balance_is_zero(con) -> None:
    unbalanced = con.sql(
        "SELECT entry_id FROM ledger.journal_lines GROUP BY entry_id "
        "HAVING sum(debit) <> sum(credit) OR sum(functional_debit) <> sum(functional_credit) "
        "OR sum(reporting_debit) <> sum(reporting_credit)"
    ).fetchall()
    assert unbalanced == []
    assert all(row[4] == 0 for row in con.sql("SELECT * FROM analytics.trial_balance_check").fetchall())


def test_money_columns_are_decimal_never_double(con) -> None:
    types = dict(
        con.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'journal_lines'"
        ).fetchall()
    )
    for col in (
        "debit",
        "credit",
        "functional_debit",
        "functional_credit",
        "reporting_debit",
        "reporting_credit",
    ):
        assert types[col].startswith("DECIMAL"), (col, types[col])


def test_every_revenue_line_traces_back_to_timesheet_rows(con) -> None:
    untraced = con.sql(
        "SELECT count(*) FROM ledger.journal_lines l LEFT JOIN ledger.line_sources s USING (line_id) "
        "WHERE l.entry_type = 'revenue_accrual' AND s.line_id IS NULL"
    ).fetchone()[0]
    assert untraced == 0
    mismatched = con.sql(
        """
        SELECT l.line_id FROM ledger.journal_lines l JOIN ledger.line_sources s USING (line_id)
        WHERE l.entry_type = 'revenue_accrual' AND l.account_role = 'service_revenue'
        GROUP BY l.line_id, l.credit_minor HAVING sum(s.amount_minor) <> l.credit_minor
        """
    ).fetchall()
    assert mismatched == []
    orphan = con.sql(
        "SELECT count(*) FROM ledger.line_sources s LEFT JOIN staging.work_items w USING (work_item_id) "
        "WHERE w.work_item_id IS NULL"
    ).fetchone()[0]
    assert orphan == 0


def test_analytics_views_answer(con) -> None:
    for view in (
        "project_profitability",
        "quarantine_summary",
        "trial_balance",
        "ar_aging",
        "billing_status",
    ):
        assert con.sql(f"SELECT count(*) FROM analytics.{view}").fetchone()[0] > 0, view


def test_the_on_demand_request_bills_the_client_through_its_date_only(con, demo_env, tmp_path) -> None:
    """`pm-accounting billing run --client REF --through DATE` on a copy of the demo's books (what
    `pm-accounting demo` issues): one invoice with the client's work up to that date; the later work
    stays unbilled, in analytics.unbilled_work and in unbilled receivables."""
    from typer.testing import CliRunner

    from pm_accounting_pipeline.cli import app

    data = tmp_path / "data"
    shutil.copytree(demo_env.data_dir, data, ignore=shutil.ignore_patterns("warehouse.*", "reports"))
    env = {"PM_ACCOUNTING_DATA": str(data), "PM_ACCOUNTING_CONFIG": str(data / "mapping.yaml")}
    ref, through = demo_env.dataset.on_demand_request
    before = con.sql("SELECT count(*) FROM ledger.billing_documents").fetchone()[0]
    result = CliRunner().invoke(app, ["billing", "run", "--client", ref, "--through", str(through)], env=env)
    assert result.exit_code == 0, result.output
    assert f"request {ref}-{through} recorded" in result.output

    billed: dict[str, Decimal] = defaultdict(Decimal)
    later: dict[tuple[str, str], list[object]] = {}
    first_day: dict[str, date] = {}
    for entity, r, ccy, day, amount in _billed_items(demo_env):
        if r != ref:
            continue
        if day <= through:
            billed[ccy] += amount
            first_day[ccy] = min(first_day.get(ccy, day), day)
        else:
            n, first, total = later.get((entity, ccy), [0, day, Decimal(0)])
            later[(entity, ccy)] = [n + 1, min(first, day), total + amount]
    assert billed and later

    books = connect_in_memory(Lake(Path(data) / "lake"))
    try:
        assert books.sql("SELECT count(*) FROM ledger.billing_documents").fetchone()[0] == before + len(
            billed
        )
        got = {
            ccy: (start, end, issued, Decimal(sub))
            for ccy, start, end, issued, sub in books.sql(
                "SELECT currency, period_start, period_end, issue_date, subtotal FROM ledger.billing_documents "
                f"WHERE customer_ref = '{ref}'"
            ).fetchall()
        }
        assert got == {ccy: (first_day[ccy], through, through, v) for ccy, v in billed.items()}
        digits = {c: DIGITS.get(c, 2) for _, c in later}
        unbilled = {
            (e, c): [n, first, Decimal(minor).scaleb(-digits[c])]
            for e, c, n, first, minor in books.sql(
                "SELECT entity, currency, entries, first_work_date, amount_minor FROM analytics.unbilled_work "
                f"WHERE customer_ref = '{ref}'"
            ).fetchall()
        }
        assert unbilled == later
        left = {
            (e, c): Decimal(v)
            for e, c, v in books.sql(
                "SELECT entity, currency, sum(debit) - sum(credit) AS bal FROM ledger.journal_lines "
                "WHERE account_role = 'unbilled_receivables' GROUP BY 1, 2 HAVING bal <> 0"
            ).fetchall()
        }
        assert left == {k: v[2] for k, v in later.items()}
        out = books.sql("SELECT out_of_balance FROM analytics.trial_balance_check").fetchall()
        assert out and all(v == 0 for (v,) in out)
    finally:
        books.close()


def test_summary_counts_billing_documents_by_cycle_and_the_waiting_on_demand_work(
    con, demo_env, demo_run
) -> None:
    """The run summary's "Billing documents by cycle" table: per entity and cycle, the documents
    computed here (one per month or week part and currency; none yet for the on-demand client) with
    their totals, and the on-demand client's unbilled work; it fits 80 columns."""
    from rich.console import Console

    from pm_accounting_pipeline.lib import summary
    from pm_accounting_pipeline.lib.settings import Paths

    cycles = _cycles(demo_env)
    docs: dict[tuple[str, str], set[tuple[str, str, date, date]]] = defaultdict(set)
    waiting: dict[tuple[str, str], list[object]] = {}
    for entity, ref, ccy, day, amount in _billed_items(demo_env):
        if cycles[ref] == "on_demand":
            n, first, total = waiting.get((entity, ref), [0, day, Decimal(0)])
            waiting[(entity, ref)] = [n + 1, min(first, day), total + amount]
        else:
            docs[(entity, cycles[ref])].add((ref, ccy, *_period(day, cycles[ref])))
    cfg = demo_env.demo_config
    entities = sorted({e for e, _ in docs})
    fig = summary.collect(Paths(demo_env.data_dir), cfg.start, cfg.end, entities, cycles)
    got = {(e, c): n for e, c, n, _ in fig.by_cycle.iter_rows()}
    assert got == {k: len(v) for k, v in docs.items()}
    assert {c for _, c in got} == {"monthly", "weekly"}
    ((entity, ref),) = waiting
    n, first, total = waiting[(entity, ref)]
    ccy = next(c for e, r, c, *_ in _billed_items(demo_env) if r == ref)
    assert fig.on_demand_unbilled.rows() == [(entity, ref, n, first, f"{_round(total, ccy)} {ccy}")]
    console = Console(width=80, record=True, force_terminal=False)
    summary.render(console, demo_run, fig, Paths(demo_env.data_dir))
    text = console.export_text()
    assert "Billing documents by cycle" in text
    assert (
        f"{entity} {ref} (on demand): {_round(total, ccy)} {ccy} unbilled, {n} entries from {first}" in text
    )
    table = text[text.index("Billing documents by cycle") : text.index("Top projects")]
    assert max(len(line) for line in table.splitlines()) <= 80
