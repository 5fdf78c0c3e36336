"""Harvest API expenses through the Dagster assets: the connector's raw asset writes them to
raw.expenses, the staging and accrual assets value and book them, and an expense deleted in Harvest
(found by the trailing re-pull, a tombstone) leaves the day's staged expenses and accruals when the
day is materialised again."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.defs.expenses import build_expense_assets
from pm_accounting_pipeline.defs.partitions import build_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources import build_harvest_api_assets
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.test_sources.harvest_setup import (
    by_spent_date,
    harvest_resource,
    write_two_entity_mapping,
)


def _mapping(tmp_path: Path, expenses: list[dict], uk_clients: frozenset[str] = frozenset()) -> str:
    """Every client and project the sandbox's expenses name, mapped to the us entity (those in
    `uk_clients` to uk)."""
    clients = {o["client"]["name"]: o["client"]["currency"] for o in expenses}
    projects = {(o["client"]["name"], o["project"]["name"], o["project"]["code"]) for o in expenses}
    return write_two_entity_mapping(
        tmp_path,
        clients=[
            {"name": n, "customer_ref": f"C-{i}", "entity": "uk" if n in uk_clients else "us", "currency": c}
            for i, (n, c) in enumerate(sorted(clients.items()))
        ],
        projects=[
            {"name": p, "client": c, **({"code": code} if code else {}), "customer_job": f"{c}:{p}"}
            for c, p, code in sorted(projects, key=str)
        ],
        expenses={"markup_pct": "10"},
    )


def test_api_expenses_are_staged_and_accrued_and_a_deleted_one_leaves_the_day(
    sandbox, tmp_path: Path
) -> None:
    expenses = sandbox.objects("expenses")
    by_day = by_spent_date(expenses)
    # The newest day with two expenses, so the deletion falls inside the re-checked trailing window.
    day = max(d for d, objs in by_day.items() if len(objs) >= 2)
    of_day = sorted(by_day[day], key=lambda o: o["id"])
    config = _mapping(tmp_path, expenses)
    mapping = load_mapping(config)
    harvest = harvest_resource(sandbox, tmp_path / "data")
    parts = build_partitions(mapping)
    raw_asset = build_harvest_api_assets(parts.daily)[0]
    _, staged_asset, accrual_asset = build_expense_assets(parts)
    resources = {
        "pipeline": PipelineResource(data_dir=harvest.data_dir, config_path=config),
        "harvest": harvest,
    }
    lake = Lake(Path(harvest.data_dir) / "lake")
    key = f"{day}|us"

    def run() -> tuple[pl.DataFrame, pl.DataFrame]:
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [raw_asset, staged_asset, accrual_asset],
                partition_key=key,
                resources=resources,
                instance=instance,
            )
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
        staged = lake.read("staging.expenses", [("us", day)], writer="expenses")
        lines = lake.read("ledger.journal_lines", [("us", day)], writer="expense_accrual")
        return staged, lines

    harvest.sync()
    staged, lines = run()
    raw = lake.read("raw.expenses", [("us", day)], writer="harvest_api")
    assert sorted(raw["source_id"].to_list()) == sorted(str(o["id"]) for o in of_day)
    assert set(raw["source_system"]) == {"harvest_api"}
    assert sorted(staged["source_id"].to_list()) == sorted(str(o["id"]) for o in of_day)
    assert_balanced(lines)
    total = sum(int(Decimal(str(o["total_cost"])) * 100) for o in of_day)
    cost = lines.filter(pl.col("account_role") == "project_expenses")["debit_minor"].sum()
    assert cost == total
    approved_billable = [o for o in of_day if o["billable"] and o.get("approval_status") == "approved"]
    assert approved_billable  # the day has re-invoiced expenses
    assert sorted(staged.filter(pl.col("billing_status") == "billable")["source_id"].to_list()) == sorted(
        str(o["id"]) for o in approved_billable
    )

    # The first expense of the day is deleted in Harvest; the trailing re-pull finds it missing.
    gone = of_day[0]
    sandbox.delete("expenses", gone["id"])
    harvest.sync(check_deletions=True)
    staged, lines = run()
    assert str(gone["id"]) not in staged["source_id"].to_list()
    assert staged.height == len(of_day) - 1
    assert_balanced(lines)
    cost_after = lines.filter(pl.col("account_role") == "project_expenses")["debit_minor"].sum()
    assert cost_after == total - int(Decimal(str(gone["total_cost"])) * 100)
    tombs = pl.read_parquet(
        Path(harvest.data_dir) / "lake/raw/harvest_api_tombstones/us" / f"{day}.harvest_api.parquet"
    )
    assert (str(gone["id"]), "expenses") in tombs.select("source_id", "resource").rows()


def test_an_api_expense_of_the_us_account_for_a_uk_client_goes_to_uk_once(sandbox, tmp_path: Path) -> None:
    expenses = sandbox.objects("expenses")
    by_day = by_spent_date(expenses)
    # A day with expenses of at least two clients: one of them is billed by uk.
    day, of_day = next(
        (d, objs) for d, objs in sorted(by_day.items()) if len({o["client"]["name"] for o in objs}) >= 2
    )
    uk_client = sorted({o["client"]["name"] for o in of_day})[0]
    config = _mapping(tmp_path, expenses, frozenset({uk_client}))
    mapping = load_mapping(config)
    harvest = harvest_resource(sandbox, tmp_path / "data")
    raw_asset = build_harvest_api_assets(build_partitions(mapping).daily)[0]
    resources = {
        "pipeline": PipelineResource(data_dir=harvest.data_dir, config_path=config),
        "harvest": harvest,
    }
    lake = Lake(Path(harvest.data_dir) / "lake")
    harvest.sync()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_asset], partition_key=f"{day}|us", resources=resources, instance=instance
        )
        (check,) = [
            c for c in result.get_asset_check_evaluations() if c.check_name == "expenses_accounted_for"
        ]
        assert check.passed
        assert {k: check.metadata[k].value for k in ("rows_read", "written", "other_partitions")} == {
            "rows_read": len(of_day),
            "written": sum(o["client"]["name"] != uk_client for o in of_day),
            "other_partitions": sum(o["client"]["name"] == uk_client for o in of_day),
        }
        dg.materialize([raw_asset], partition_key=f"{day}|uk", resources=resources, instance=instance)
    us = lake.read("raw.expenses", [("us", day)], writer="harvest_api")
    uk = lake.read("raw.expenses", [("uk", day)], writer="harvest_api")
    expected_uk = sorted(str(o["id"]) for o in of_day if o["client"]["name"] == uk_client)
    assert sorted(uk["source_id"]) == expected_uk
    assert set(uk.select("entity", "entity_rule", "landing_entity").rows()) == {("uk", "client", "us")}
    assert sorted(us["source_id"]) == sorted(str(o["id"]) for o in of_day if o["client"]["name"] != uk_client)
