"""Expenses end to end on the small demo: the generator's Harvest expense exports are landed next
to the time exports and September is run through the pipeline (daily layers, invoices, billing,
analytics). Every expense row is accepted or quarantined with the reason the generator planted, and
the recharge, cost and invoiced amounts equal values computed here from the CSV files with Decimal."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline.lib.warehouse import connect_in_memory
from pm_accounting_pipeline_tests.conftest import fast_instance, make_demo_env

SEPT = (date(2026, 9, 1), date(2026, 9, 30))
MARKUP = {"Mileage": Decimal(0), "Software": Decimal(5)}  # demo/expenses.py; the default is 10 %
KNOWN = {"Travel", "Mileage", "Meals", "Lodging", "Software"}
STRPTIME = {
    "YYYY-MM-DD": "%Y-%m-%d",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD/MM/YYYY": "%d/%m/%Y",
    "DD.MM.YYYY": "%d.%m.%Y",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    from pm_accounting_pipeline.config.schema import load_mapping
    from pm_accounting_pipeline.demo.expenses import write_expense_csvs
    from pm_accounting_pipeline.demo.generator import write_approvals
    from pm_accounting_pipeline.extract.landing import land_files
    from pm_accounting_pipeline.lib.runner import run_range

    root = tmp_path_factory.mktemp("expenses")
    demo = make_demo_env(root)
    mapping = load_mapping(demo.config)
    files = write_expense_csvs(demo.dataset, root / "expense-exports", demo.demo_config)
    # The demo's approval log covers the approved expenses too (as `pm-accounting demo` writes it).
    logs = write_approvals(demo.dataset, files, demo.data_dir / "landing")
    assert {p.parent.parent.name for p in logs} == {p.parent.name for p in files}
    for entity in mapping.entity_ids:
        results = land_files([p for p in files if p.parent.name == entity], entity, demo.data_dir, mapping)
        assert all(r.format == "harvest_expense_csv" and r.error is None for r in results)
    with fast_instance() as instance:
        outcome = run_range(demo.data_dir, demo.config, *SEPT, instance=instance)
    assert outcome.success, outcome.runs
    for r in outcome.runs:
        assert not r.failed_steps and not r.failed_checks, r
    con = connect_in_memory(Lake(demo.data_dir / "lake"))
    yield mapping, files, con
    con.close()


def _expected(mapping, files: list[Path]) -> dict[str, object]:
    """From the CSV files alone: rows of September per entity, the quarantine reasons planted, and
    per (entity, currency) the cost of accepted expenses and the recharge of billable ones."""
    clients = {c.name: c for c in mapping.clients}
    projects = {p.code: p for p in mapping.projects if p.code}
    by_name = {(p.client, p.name): p for p in mapping.projects}
    rows: dict[str, int] = defaultdict(int)
    reasons: dict[str, list[str]] = defaultdict(list)
    cost: dict[tuple[str, str], int] = defaultdict(int)
    recharge: dict[tuple[str, str], int] = defaultdict(int)
    invoiced: dict[tuple[str, str], int] = defaultdict(int)
    waiting: dict[tuple[str, str], int] = defaultdict(int)
    for path in files:
        entity = path.parent.name
        ent = mapping.entity(entity)
        fmt, sep = STRPTIME[ent.harvest_csv.date_format], ent.harvest_csv.decimal_separator
        with path.open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                day = datetime.strptime(r["Date"], fmt).date()
                if not SEPT[0] <= day <= SEPT[1]:
                    continue
                rows[entity] += 1
                text = r["Amount"].replace("." if sep == "," else ",", "").replace(",", ".")
                client = clients.get(r["Client"]) or next(
                    (c for c in mapping.clients if r["Client"] in c.aliases), None
                )
                if not text.replace(".", "").isdigit():
                    reasons[entity].append("bad_amount")
                    continue
                if client is None:
                    reasons[entity].append("unknown_client")
                    continue
                if r["Category"] not in KNOWN:
                    reasons[entity].append("unknown_category")
                    continue
                project = projects.get(r["Project Code"]) or by_name[(client.name, r["Project"])]
                digits = minor_digits(client.currency)
                amount = int(Decimal(text).scaleb(digits).to_integral_value(ROUND_HALF_UP))
                cost[(entity, client.currency)] += amount
                if project.billable and r["Billable?"] == "Yes" and r["Approved?"] == "Yes":
                    pct = MARKUP.get(r["Category"], Decimal(10))
                    markup = int((Decimal(amount) * pct / 100).to_integral_value(ROUND_HALF_UP))
                    recharge[(entity, client.currency)] += amount + markup
                    # An on-demand client's recharges wait for a billing request (none here).
                    if client.billing_cycle != "on_demand":
                        invoiced[(entity, client.currency)] += amount + markup
                    else:
                        waiting[(entity, client.currency)] += amount + markup
    return {
        "rows": rows,
        "reasons": reasons,
        "cost": cost,
        "recharge": recharge,
        "invoiced": invoiced,
        "waiting": waiting,
    }


def _by_key(con: duckdb.DuckDBPyConnection, sql: str) -> dict[tuple[str, str], int]:
    return {(e, c): int(v) for e, c, v in con.sql(sql).fetchall() if v}


def test_every_expense_row_is_accepted_or_quarantined_with_the_planted_reason(env) -> None:
    mapping, files, con = env
    exp = _expected(mapping, files)
    raw = dict(con.sql("SELECT entity, count(*) FROM raw.expenses GROUP BY 1").fetchall())
    staged = dict(con.sql("SELECT entity, count(*) FROM staging.expenses GROUP BY 1").fetchall())
    quarantined = con.sql(
        "SELECT entity, reason FROM staging.quarantine WHERE layer = 'expenses' ORDER BY entity, source_row"
    ).fetchall()
    assert raw == exp["rows"]
    assert sum(raw.values()) > 150  # a few hundred expenses over the demo's two months
    got: dict[str, list[str]] = defaultdict(list)
    for entity, reason in quarantined:
        got[entity].append(reason)
    assert {e: sorted(v) for e, v in got.items()} == {e: sorted(v) for e, v in exp["reasons"].items()}
    assert {e: sorted(v) for e, v in got.items()} == {
        e: ["bad_amount", "unknown_category", "unknown_client"] for e in mapping.entity_ids
    }
    assert {e: staged[e] + len(got[e]) for e in staged} == raw
    statuses = {s for (s,) in con.sql("SELECT DISTINCT billing_status FROM staging.expenses").fetchall()}
    assert statuses == {"billable", "held_unapproved", "non_billable", "internal"}


def test_accruals_and_invoices_carry_exactly_the_expected_amounts(env) -> None:
    mapping, files, con = env
    exp = _expected(mapping, files)
    digits = "CASE currency WHEN 'JPY' THEN 0 WHEN 'KWD' THEN 3 ELSE 2 END"
    recharge = _by_key(
        con,
        f"SELECT entity, currency, sum(credit * 10 ** {digits}) FROM ledger.journal_lines "
        "WHERE entry_type = 'expense_recharge_accrual' AND account_role = 'expense_recharge' GROUP BY 1, 2",
    )
    cost = _by_key(
        con,
        f"SELECT entity, currency, sum(debit * 10 ** {digits}) FROM ledger.journal_lines "
        "WHERE entry_type = 'expense_cost_accrual' AND account_role = 'project_expenses' GROUP BY 1, 2",
    )
    invoiced = _by_key(
        con,
        "SELECT l.entity, i.currency, sum(l.amount_minor) FROM ledger.invoice_lines l "
        "JOIN ledger.invoices i USING (invoice_id) WHERE l.task_name LIKE 'Expenses: %' GROUP BY 1, 2",
    )
    billed = _by_key(
        con,
        "SELECT d.entity, d.currency, sum(l.amount_minor) FROM ledger.billing_document_lines l "
        "JOIN ledger.billing_documents d USING (document_id) WHERE l.description LIKE '%Expenses: %' "
        "GROUP BY 1, 2",
    )
    assert recharge == dict(exp["recharge"])
    assert cost == dict(exp["cost"])
    assert invoiced == billed == dict(exp["invoiced"])
    assert {k: recharge.get(k, 0) - invoiced.get(k, 0) for k in recharge} == {
        k: exp["waiting"].get(k, 0) for k in recharge
    }
    # Unbilled receivables from expenses are relieved by the invoices: what remains is the time's
    # own (checked by the time end-to-end test); every entity's books balance.
    out = con.sql("SELECT entity, out_of_balance FROM analytics.trial_balance_check").fetchall()
    assert out and all(v == 0 for _, v in out)


def test_project_profitability_includes_expense_cost_and_recharge(env) -> None:
    _, _, con = env
    view = dict(
        (e, (Decimal(r), Decimal(c)))
        for e, r, c in con.sql(
            "SELECT entity, sum(recharge_revenue), sum(expense_cost) FROM analytics.project_profitability GROUP BY 1"
        ).fetchall()
    )
    ledger = dict(
        (e, (Decimal(r), Decimal(c)))
        for e, r, c in con.sql(
            "SELECT entity, sum(CASE WHEN account_role = 'expense_recharge' THEN functional_credit ELSE 0 END), "
            "sum(CASE WHEN account_role = 'project_expenses' THEN functional_debit ELSE 0 END) "
            "FROM ledger.journal_lines WHERE entry_type LIKE 'expense_%' AND customer_job IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    assert view == ledger
    assert all(r > 0 and c > 0 for r, c in view.values())


def test_demo_approval_log_names_who_approved_every_billed_expense_and_when(env) -> None:
    _, _, con = env
    rows = con.sql(
        "select billing_status, approved_by is not null, approved_at is not null, count(*) "
        "from staging.expenses group by all order by all"
    ).fetchall()
    statuses = {(s, by, at) for s, by, at, _ in rows}
    # Approved demo expenses are named in the log (the entity's manager, the Monday after).
    assert ("billable", True, True) in statuses and ("billable", False, False) not in statuses
    assert not [r for r in statuses if r[0] == "held_unapproved" and r[1]]
    mondays = con.sql(
        "select distinct dayofweek(approved_at), hour(approved_at) from staging.expenses "
        "where approved_at is not null"
    ).fetchall()
    assert mondays == [(1, 9)]
    billed = con.sql(
        "select count(*), count(approved_by) from ledger.invoice_lines where task_name like 'Expenses: %'"
    ).fetchone()
    assert billed[0] > 0 and billed[0] == billed[1]
