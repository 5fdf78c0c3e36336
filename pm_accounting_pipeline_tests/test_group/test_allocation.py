"""Shared-cost allocation against hand-computed splits: every driver, exact to the cent by largest
remainder, metadata kept, bad rows quarantined, and a re-run under new rules reversing the old
allocation and posting the new one, linked. Then capex: capitalisation and the straight-line
depreciation schedule."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.core.allocation import allocate, largest_remainder, read_costs, read_usage
from pm_accounting_pipeline.core.capex import run_capex
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.group_journal import Journal
from pm_accounting_pipeline_tests.test_core.builders import assert_contract, one
from pm_accounting_pipeline_tests.test_group.builders import daily, group_mapping, hand_rates, write_csv

MAR = (date(2026, 3, 1), date(2026, 3, 31))
APR = (date(2026, 4, 1), date(2026, 4, 30))
COST_HEADER = "document,date,account,description,amount,currency"
# Hours per project on 2 Mar: Website 1 h, Mobile 2 h (two people), Import 4 h.
WORK = [
    {"entity": "us", "project": "Website", "hours_raw": "1"},
    {"entity": "us", "project": "Mobile App", "hours_raw": "1"},
    {"entity": "us", "project": "Mobile App", "hours_raw": "1", "person": "Grace Hopper"},
    {"entity": "us", "client": "Tokyo Trading KK", "project": "Import", "hours_raw": "4"},
]


def _pool(**kw: object) -> dict[str, object]:
    return {
        "allocations": {
            "version": kw.pop("version", "1"),
            "pools": [{"id": "rent", "entity": "us", "accounts": ["6100"], **kw}],
        }
    }


def _run(
    tmp_path: Path,
    mapping_kw: dict[str, object],
    *cost_rows: str,
    existing=None,
    usage: list[str] | None = None,
):
    m = group_mapping(**mapping_kw)
    p = hand_rates()
    fx = daily(WORK, m, p).fx
    write_csv(tmp_path / "overheads" / "gl.csv", COST_HEADER, *cost_rows)
    if usage:
        write_csv(tmp_path / "usage" / "u.csv", "period,pool,project,quantity", *usage)
    costs = read_costs(tmp_path / "overheads", m, "us", MAR[0])
    prior = existing or (
        empty_frame("ledger.allocations"),
        Journal.empty(),
        empty_frame("ledger.entry_links"),
    )
    return m, fx, allocate(costs, fx, read_usage(tmp_path / "usage"), m, "us", *MAR, *prior, p)


def _split(res) -> dict[str, int]:
    active = res.allocations.filter(pl.col("status") == "active")
    return dict(active.group_by("customer_job").agg(pl.col("allocated_minor").sum()).iter_rows())


def test_hours_driver_splits_by_hours_with_the_missing_cent_to_the_largest_remainder(tmp_path: Path):
    _, _, res = _run(tmp_path, _pool(driver="hours"), "R-1,2026-03-31,6100,Rent March,100.00,USD")
    # 100.00 x 1/7, 2/7, 4/7 = 14.2857, 28.5714, 57.1428: floors 14.28 + 28.57 + 57.14 = 99.99;
    # remainders .57, .14, .28 -> the cent goes to Website.
    assert _split(res) == {"ACME:Website": 1429, "ACME:Mobile": 2857, "TOKYO:Import": 5714}
    row = one(res.allocations, customer_job="ACME:Mobile")
    assert (row["source_document"], row["source_account"], row["source_description"], row["source_date"]) == (
        "R-1", "6100", "Rent March", date(2026, 3, 31),
    )  # fmt: skip
    assert (row["source_amount_minor"], str(row["driver_quantity"]), str(row["driver_total"])) == (
        10000,
        "2.0000",
        "7.0000",
    )
    assert row["methodology"].startswith(
        "rent: share of the hours worked on each project in 2026-03 (all work)"
    )
    assert "largest remainder" in row["methodology"]
    assert (row["generation"], row["status"], row["target_account"]) == (1, "active", "5900")
    assert_contract("ledger.allocations", res.allocations)
    assert_balanced(res.journal.lines)


def test_each_cost_row_and_the_pool_are_allocated_exactly(tmp_path: Path):
    amounts = ["0.01", "0.02", "1.00", "99.99", "12345.67", "-50.00", "7.77"]
    rows = [f"D-{i},2026-03-{10 + i},6100,,{a},USD" for i, a in enumerate(amounts)]
    _, _, res = _run(tmp_path, _pool(driver="hours"), *rows)
    sums = res.allocations.group_by("source_document").agg(
        pl.col("source_amount_minor").first(), pl.col("allocated_minor").sum()
    )
    assert (sums["source_amount_minor"] == sums["allocated_minor"]).all()
    assert res.allocations["allocated_minor"].sum() == 1240446  # the pool: sum of the rows (12,404.46)
    credit = one(res.allocations.filter(pl.col("customer_job") == "TOKYO:Import"), source_document="D-5")
    assert credit["allocated_minor"] == -2857  # -50.00 x 4/7 = -28.5714 -> -28.57
    lines = res.journal.lines
    assert (
        lines.filter(pl.col("account") == "6100")["credit"].sum()
        - lines.filter(pl.col("account") == "6100")["debit"].sum()
        == pl.Series([12404.46]).cast(pl.Decimal(18, 3))[0]
    )


def test_largest_remainder_breaks_ties_by_project():
    costs = pl.DataFrame({"_cost": [0], "pool": ["p"], "source_amount_minor": [100]})
    weights = pl.DataFrame({"pool": ["p"] * 3, "customer_job": ["C", "A", "B"], "weight": [1, 1, 1]})
    out = largest_remainder(costs, weights, ["pool"]).sort("customer_job")
    assert out["allocated_minor"].to_list() == [34, 33, 33]


def test_headcount_revenue_fixed_and_usage_drivers(tmp_path: Path):
    rent = "R-1,2026-03-31,6100,Rent,90.00,USD"
    # Headcount: Website 1 person, Mobile 2, Import 1 -> 22.50 / 45.00 / 22.50.
    _, _, res = _run(tmp_path / "h", _pool(driver="headcount"), rent)
    assert _split(res) == {"ACME:Website": 2250, "ACME:Mobile": 4500, "TOKYO:Import": 2250}
    # Revenue (USD functional): Website 150.00, Mobile 2 x 150.00, Import 4 h x 12,345 JPY =
    # 49,380 JPY x 0.006875 = 339.49 USD; total 789.49.
    _, _, res = _run(tmp_path / "r", _pool(driver="revenue"), rent)
    assert _split(res) == {"ACME:Website": 1710, "ACME:Mobile": 3420, "TOKYO:Import": 3870}
    # Fixed 1 : 2 -> 30.00 / 60.00, by project code or customer job.
    _, _, res = _run(
        tmp_path / "f", _pool(driver="fixed", fixed_split={"ACM-1": "1", "TOKYO:Import": "2"}), rent
    )
    assert _split(res) == {"ACME:Website": 3000, "TOKYO:Import": 6000}
    # Usage quantities from the usage input, March only.
    usage = ["2026-03,rent,ACM-1,2.5", "2026-03,rent,ACME:Mobile,0.5", "2026-04,rent,ACME:Mobile,100"]
    _, _, res = _run(tmp_path / "u", _pool(driver="usage"), rent, usage=usage)
    assert _split(res) == {"ACME:Website": 7500, "ACME:Mobile": 1500}


def test_pool_restricted_to_projects_and_billable_work(tmp_path: Path):
    _, _, res = _run(
        tmp_path,
        _pool(driver="hours", projects=["ACME:Website", "TOKYO:Import"]),
        "R-1,2026-03-31,6100,,50.00,USD",
    )
    assert _split(res) == {"ACME:Website": 1000, "TOKYO:Import": 4000}


def test_unusable_cost_rows_are_quarantined_with_their_reason(tmp_path: Path):
    _, _, res = _run(
        tmp_path,
        _pool(driver="hours"),
        "R-1,2026-03-31,6100,ok,10.00,USD",
        "R-2,2026-03-31,6200,phone,5.00,USD",
        "R-3,2026-03-31,6100,euro,5.00,EUR",
        "R-4,2026-03-32,6100,date,5.00,USD",
        "R-5,2026-03-31,6100,cents,5.001,USD",
        ",2026-03-31,6100,no document,5.00,USD",
    )
    got = dict(zip(res.quarantine["source_row"].to_list(), res.quarantine["reason"].to_list(), strict=True))
    assert got == {
        2: "unknown_pool",
        3: "currency_mismatch",
        4: "bad_date",
        5: "bad_rate",
        6: "missing_required",
    }
    assert set(res.allocations["source_document"]) == {"R-1"}
    assert_contract("staging.quarantine", res.quarantine)


def test_a_pool_without_driver_quantities_is_quarantined(tmp_path: Path):
    _, _, res = _run(tmp_path, _pool(driver="usage"), "R-1,2026-03-31,6100,,10.00,USD")
    assert res.quarantine["reason"].to_list() == ["no_allocation_basis"]
    assert res.allocations.height == 0


def test_rerun_with_new_rules_reverses_the_old_allocation_and_posts_the_new_one_linked(tmp_path: Path):
    rent = "R-1,2026-03-31,6100,Rent,100.00,USD"
    _, _, first = _run(tmp_path, _pool(driver="hours"), rent)
    old_entry = first.allocations["entry_id"].unique().to_list()
    prior = (first.allocations, first.journal, first.links)
    # Same rules, same inputs: nothing changes.
    _, _, same = _run(tmp_path, _pool(driver="hours"), rent, existing=prior)
    assert not same.changed and same.allocations.equals(first.allocations)
    # New rule version (fixed 1:1 split): generation 2.
    _, _, second = _run(
        tmp_path,
        _pool(driver="fixed", fixed_split={"ACM-1": "1", "TOKYO:Import": "1"}, version="2"),
        rent,
        existing=prior,
    )
    assert second.changed and second.generation == 2
    assert _split(second) == {"ACME:Website": 5000, "TOKYO:Import": 5000}
    old = second.allocations.filter(pl.col("generation") == 1)
    assert set(old["status"]) == {"reversed"} and old.height == 3
    types = second.journal.entries.sort("entry_type")["entry_type"].to_list()
    assert types == ["allocation", "allocation", "allocation_reversal"]
    reversal = one(second.journal.entries, entry_type="allocation_reversal")["entry_id"]
    assert set(old["reversal_entry_id"]) == {reversal}
    links = {(r["link_type"], r["linked_entry_id"]) for r in second.links.iter_rows(named=True)}
    assert ("reverses", old_entry[0]) in links and ("supersedes", old_entry[0]) in links
    assert_balanced(second.journal.lines)
    # The period now carries exactly the new allocation: per project, old + reversal + new = new.
    net = (
        second.journal.lines.filter(pl.col("account") == "5900")
        .group_by("customer_job")
        .agg((pl.col("debit") - pl.col("credit")).sum())
    )
    assert {k: str(v) for k, v in net.iter_rows()} == {
        "ACME:Website": "50.000", "ACME:Mobile": "0.000", "TOKYO:Import": "50.000",
    }  # fmt: skip
    assert "generation 2" in one(second.links, link_type="supersedes")["reason"]


def test_allocation_to_a_capitalisable_project_is_booked_to_the_asset_account(tmp_path: Path):
    kw = {**_pool(driver="hours"), "capex": {"projects": ["ACME:Mobile"], "useful_life_months": 3}}
    _, _, res = _run(tmp_path, kw, "R-1,2026-03-31,6100,Rent,70.00,USD")
    mobile = one(res.allocations, customer_job="ACME:Mobile")
    assert (mobile["capitalised"], mobile["target_account"], mobile["allocated_minor"]) == (
        True,
        "1800",
        2000,
    )
    assert one(res.journal.lines, account="1800")["account_role"] == "capitalised_costs"


# --- capex ---------------------------------------------------------------------------------------


def test_capitalisable_work_is_moved_to_the_asset_account_and_depreciated_straight_line(tmp_path: Path):
    kw = {
        **_pool(driver="fixed", fixed_split={"ACME:Mobile": "1"}),
        "capex": {"projects": ["ACME:Mobile"], "useful_life_months": 3},
    }
    m, fx, alloc = _run(tmp_path, kw, "R-1,2026-03-31,6100,Rent,20.00,USD")
    march = run_capex(fx, alloc.journal.lines, m, "us", *MAR)
    cap = march.journal.lines.filter(pl.col("entry_type") == "capitalisation")
    # Mobile: 2 h at cost 40 USD = 80.00 moves from cost of services to capitalised costs.
    assert _pairs(cap) == [
        ("1800", "capitalised_costs", "80.000", "0.000"),
        ("5000", "cost_of_services", "0.000", "80.000"),
    ]
    assert (
        march.journal.entries.filter(pl.col("entry_type") == "depreciation").height == 0
    )  # in service from April
    sched = march.schedule.sort("month_no")
    # Cost 100.00 (80.00 time + 20.00 rent) over 3 months: accumulated round(10000 x k / 3) =
    # 3333, 6667, 10000 -> 33.33, 33.34, 33.33.
    assert sched.select(
        "period", "depreciation_minor", "accumulated_minor", "net_book_value_minor"
    ).rows() == [
        (date(2026, 4, 1), 3333, 3333, 6667),
        (date(2026, 5, 1), 3334, 6667, 3333),
        (date(2026, 6, 1), 3333, 10000, 0),
    ]
    assert (sched["in_service"][0], sched["cost_minor"][0], sched["useful_life_months"][0]) == (
        date(2026, 4, 1),
        10000,
        3,
    )
    assert_contract("ledger.depreciation_schedule", march.schedule)
    history = pl.concat([alloc.journal.lines, march.journal.lines])
    may = run_capex(fx.clear(), history, m, "us", date(2026, 5, 1), date(2026, 5, 31))
    dep = may.journal.lines.filter(pl.col("entry_type") == "depreciation")
    assert _pairs(dep) == [
        ("6800", "depreciation_expense", "33.340", "0.000"),
        ("1890", "accumulated_depreciation", "0.000", "33.340"),
    ]
    assert one(dep, account="6800")["customer_job"] == "ACME:Mobile"
    assert_balanced(may.journal.lines)


def test_same_month_depreciation_starts_in_the_month_of_capitalisation(tmp_path: Path):
    m = group_mapping(
        capex={"tasks": ["Development"], "useful_life_months": 12, "depreciation_start": "same_month"}
    )
    fx = daily(WORK[:1], m, hand_rates()).fx
    res = run_capex(fx, empty_frame("ledger.journal_lines"), m, "us", *MAR)
    # Website 1 h x 40 = 40.00 over 12 months: round(4000 x 1 / 12) = 333 in March.
    assert one(res.journal.lines, account="6800")["debit"] == pl.Series([3.33]).cast(pl.Decimal(18, 3))[0]
    assert res.schedule["depreciation_minor"].sum() == 4000


def _pairs(lines: pl.DataFrame) -> list[tuple[str, str, str, str]]:
    return [
        (r["account"], r["account_role"], str(r["debit"]), str(r["credit"]))
        for r in lines.sort("line_no").iter_rows(named=True)
    ]


@pytest.mark.parametrize("life", [1, 7, 36])
def test_depreciation_sums_exactly_to_the_cost_for_any_life(tmp_path: Path, life: int):
    m = group_mapping(capex={"projects": ["ACME:Website"], "useful_life_months": life})
    fx = daily(WORK[:1], m, hand_rates()).fx
    res = run_capex(fx, empty_frame("ledger.journal_lines"), m, "us", *MAR)
    assert res.schedule.height == life and res.schedule["depreciation_minor"].sum() == 4000
    assert res.schedule.sort("month_no")["net_book_value_minor"][-1] == 0
