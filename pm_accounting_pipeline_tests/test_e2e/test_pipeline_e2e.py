"""End to end on a small demo dataset: every generated entry is accepted exactly once, every
malformed row is quarantined, and the ledger's totals equal values computed here, independently of
the pipeline, from the generator's own records with Python Decimal arithmetic."""

from __future__ import annotations

import csv
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

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


def test_revenue_and_invoices_equal_an_independent_computation(con, demo_env) -> None:
    intact = _intact_entries(demo_env)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in intact.filter((pl.col("approval_status") == "approved") & pl.col("billable")).iter_rows(
        named=True
    ):
        expected[(row["entity"], row["currency"])] += _round(
            row["rounded_hours"] * row["billable_rate"], row["currency"]
        )
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
    assert invoiced == dict(expected)


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
    # Both months are invoiced in full, so the unbilled receivables balance is zero in every currency.
    left = con.sql(
        "SELECT entity, currency, sum(debit) - sum(credit) AS bal FROM ledger.journal_lines "
        "WHERE account_role = 'unbilled_receivables' GROUP BY 1, 2 HAVING bal <> 0"
    ).fetchall()
    assert left == []
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
