"""The group layer end to end in Dagster over a small demo month: a us consultant employed by uk,
a foreign-currency invoice paid half in the next month, rent allocated by hours, a capitalisable
project; then the month-end job, the analysts' views, and an allocation re-run under new rules."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from pm_accounting_pipeline.cli.group import run_group_job
from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.core.fx import EcbOfflineProvider
from pm_accounting_pipeline.core.intercompany import IC_ROLES, consolidated_trial_balance
from pm_accounting_pipeline.core.invoicing import build_invoices
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline.extract.landing import list_landing_files
from pm_accounting_pipeline.extract.raw import extract_raw
from pm_accounting_pipeline.lib.lake import Lake, clear_memo
from pm_accounting_pipeline.lib.warehouse import connect_in_memory
from pm_accounting_pipeline_tests.conftest import fast_instance, make_demo_env
from pm_accounting_pipeline_tests.test_group.builders import write_csv

SEP, OCT = date(2026, 9, 1), date(2026, 10, 1)


def _daily_and_billing(data_dir: Path, config: Path) -> None:
    """The upstream layers of September written straight from the pure core (the same functions
    the daily and billing assets call), so this test spends its time on the group layer."""
    mapping = load_mapping(config)
    lake = Lake(data_dir / "lake")
    lake.ensure_schema_files()
    days = [date(2026, 9, d) for d in range(1, 31)]
    for entity in mapping.entity_ids:
        raw, _ = extract_raw(list_landing_files(data_dir, entity), entity, mapping, set(days))
        res = run_daily(raw, mapping, EcbOfflineProvider())
        wanted = [(entity, d.isoformat()) for d in days]
        by_day = pl.col("posting_date").cast(pl.String)
        lake.write_partitions(
            "staging.fx_billables", res.fx, wanted, "fx", pl.col("work_date").cast(pl.String)
        )
        lake.write_partitions("ledger.journal_entries", res.ledger.entries, wanted, "accrual", by_day)
        lake.write_partitions("ledger.journal_lines", res.ledger.lines, wanted, "accrual", by_day)
        inv = build_invoices(res.fx, mapping, entity, SEP, days[-1])
        month = [(entity, SEP.isoformat())]
        key = pl.lit(SEP.isoformat())
        lake.write_partitions("ledger.journal_entries", inv.entries, month, "invoice", key)
        lake.write_partitions("ledger.journal_lines", inv.lines, month, "invoice", key)
        lake.write_partitions("ledger.invoices", inv.invoices, month, "invoice", key)


def _group_sections(capex_job: str) -> dict[str, object]:
    return {
        "group": {
            "people": [{"person": "Robert Rodriguez", "employer": "uk"}],
            "intercompany": [
                {"id": "uk-us", "provider": "uk", "recipient": "us", "basis": "cost_plus", "markup": "0.08"}
            ],
        },
        "allocations": {
            "version": "1",
            "pools": [{"id": "rent", "entity": "us", "accounts": ["6100"], "driver": "hours"}],
        },
        "capex": {"projects": [capex_job], "useful_life_months": 24},
    }


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("group")
    env = make_demo_env(root, start=SEP, end=date(2026, 9, 30), n_clients=8, n_people=8)
    doc = yaml.safe_load(env.config.read_text())
    capex_job = next(p["customer_job"] for p in doc["projects"] if p["client"] == doc["clients"][0]["name"])
    doc.update(_group_sections(capex_job))
    env.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    with fast_instance() as instance:
        _daily_and_billing(env.data_dir, env.config)
        lake = Lake(env.data_dir / "lake")
        invoices = lake.read("ledger.invoices")
        functional = {e["id"]: e["functional_currency"] for e in doc["entities"]}
        foreign = invoices.filter(pl.col("currency") != pl.col("entity").replace_strict(functional)).sort(
            "invoice_number"
        )
        paid = foreign.row(0, named=True)
        half = paid["total_minor"] // 2
        digits = {"JPY": 0}.get(paid["currency"], 2)
        amount = f"{half / 10**digits:.{digits}f}"
        write_csv(
            env.data_dir / "landing" / paid["entity"] / "payments" / "bank.csv",
            "invoice_number,date,amount,currency,reference",
            f"{paid['invoice_number']},2026-10-15,{amount},{paid['currency']},WIRE-1",
        )
        write_csv(
            env.data_dir / "landing" / "us" / "overheads" / "gl-2026-09.csv",
            "document,date,account,description,amount,currency",
            "RENT-09,2026-09-30,6100,Office rent September,1000.00,USD",
        )
        ok, failures = run_group_job("group_month_end", [SEP, OCT], None, env.data_dir, env.config, instance)
        yield env, doc, paid, ok, failures, instance


def test_month_end_job_succeeds_with_every_check(closed):
    _, _, _, ok, failures, _ = closed
    assert ok, failures


def test_recharges_and_eliminations_net_to_zero_in_the_consolidated_trial_balance(closed):
    env = closed[0]
    lake = Lake(env.data_dir / "lake")
    recharges = lake.read("ledger.intercompany_recharges")
    assert (
        recharges.height > 0
        and set(recharges["provider"]) == {"uk"}
        and set(recharges["recipient"]) == {"us"}
    )
    lines = lake.read("ledger.journal_lines")
    tb = consolidated_trial_balance(lines, lake.read("ledger.elimination_lines"))
    balances = dict(tb.select("account_role", "balance_minor").iter_rows())
    assert all(balances.get(r, 0) == 0 for r in IC_ROLES), balances
    assert balances["intercompany_revenue"] == 0 and "intercompany_revenue" in balances
    # Every legal entity's books balance on their own, in their functional currency.
    per_entity = lines.group_by("entity").agg(
        pl.col("functional_debit").sum(), pl.col("functional_credit").sum()
    )
    assert (per_entity["functional_debit"] == per_entity["functional_credit"]).all()


def test_foreign_invoice_is_revalued_reversed_and_half_paid_with_realised_fx(closed):
    env, _, paid, _, _, _ = closed
    lake = Lake(env.data_dir / "lake")
    reval = lake.read("ledger.fx_revaluations").filter(pl.col("document_id") == paid["invoice_id"])
    assert reval.sort("period_end")["period_end"].to_list() == [date(2026, 9, 30), date(2026, 10, 31)]
    assert reval.sort("period_end")["open_minor"].to_list() == [
        paid["total_minor"],
        paid["total_minor"] - paid["total_minor"] // 2,
    ]
    entries = lake.read("ledger.journal_entries")
    sept = entries.filter(
        (pl.col("entity") == paid["entity"]) & (pl.col("entry_type") == "fx_revaluation_reversal")
    )
    assert date(2026, 10, 1) in set(sept["posting_date"])
    pay = lake.read("ledger.payments").row(0, named=True)
    assert (pay["invoice_number"], pay["open_after_minor"]) == (
        paid["invoice_number"],
        paid["total_minor"] - paid["total_minor"] // 2,
    )
    assert pay["realised_functional_minor"] == pay["functional_minor"] - pay["carrying_functional_minor"]
    assert pay["fx_rate_source"] == "ecb_offline" and pay["fx_rate_date"] == date(2026, 10, 15)


def test_allocation_and_capex_outputs(closed):
    env = closed[0]
    lake = Lake(env.data_dir / "lake")
    alloc = lake.read("ledger.allocations")
    assert alloc["allocated_minor"].sum() == 100000 and set(alloc["status"]) == {"active"}
    assert set(alloc["source_document"]) == {"RENT-09"}
    sched = lake.read("ledger.depreciation_schedule")
    assert sched.height > 0 and set(sched["useful_life_months"]) == {24}
    per_asset = sched.group_by("asset_id").agg(
        pl.col("cost_minor").first(), pl.col("depreciation_minor").sum()
    )
    assert (per_asset["cost_minor"] == per_asset["depreciation_minor"]).all()
    dep = lake.read("ledger.journal_entries").filter(pl.col("entry_type") == "depreciation")
    assert set(dep["posting_date"]) == {date(2026, 10, 31)}  # in service from October


def test_analyst_views_over_the_group_tables(closed):
    env = closed[0]
    con = connect_in_memory(Lake(env.data_dir / "lake"))
    try:
        cons = con.sql("SELECT * FROM analytics.consolidated_trial_balance").pl()
        ic = cons.filter(pl.col("account_role").is_in(IC_ROLES))
        assert ic.height > 0 and (ic["balance"] == 0).all()
        pnl = con.sql("SELECT * FROM analytics.pnl_consolidated").pl()
        assert set(pnl["line"]) >= {"service_revenue", "cost_of_services", "allocated_overhead"}
        prof = con.sql(
            "SELECT * FROM analytics.project_profitability_full WHERE allocated_overhead <> 0"
        ).pl()
        alloc = Lake(env.data_dir / "lake").read("ledger.allocations")
        opex = alloc.filter(~pl.col("capitalised"))["allocated_minor"].sum()
        assert 0 < opex < 100000  # the capitalisable project's share went to the asset account
        assert int(prof["allocated_overhead"].sum() * 100) == opex
        exposure = con.sql("SELECT * FROM analytics.fx_exposure").pl()
        assert exposure.height > 0 and (exposure["currency"] != exposure["functional_currency"]).all()
        assert con.sql("SELECT COUNT(*) FROM analytics.pnl_by_entity").fetchone()[0] > 0
    finally:
        con.close()


def test_allocation_rerun_with_new_rules_reverses_and_reposts(closed):
    env, doc, _, _, _, instance = closed
    doc["allocations"]["version"] = "2"
    doc["allocations"]["pools"][0]["driver"] = "headcount"
    env.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    clear_memo()
    ok, failures = run_group_job("allocation_rerun", [SEP], ["us"], env.data_dir, env.config, instance)
    assert ok, failures
    lake = Lake(env.data_dir / "lake")
    alloc = lake.read("ledger.allocations")
    assert sorted(set(alloc["generation"])) == [1, 2]
    assert set(alloc.filter(pl.col("generation") == 1)["status"]) == {"reversed"}
    assert alloc.filter(pl.col("status") == "active")["allocated_minor"].sum() == 100000
    links = lake.read("ledger.entry_links")
    assert {"reverses", "supersedes"} <= set(links["link_type"])
    # Running it again with the same rules changes nothing.
    ok, _ = run_group_job("allocation_rerun", [SEP], ["us"], env.data_dir, env.config, instance)
    assert ok and lake.read("ledger.allocations").height == alloc.height


def test_docs_path_exists():
    assert Path(__file__).resolve().parents[2].joinpath("docs", "multi-currency-and-allocations.md").exists()
