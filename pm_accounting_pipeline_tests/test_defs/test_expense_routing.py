"""Expenses are assigned to their legal entity like time entries: an expense dropped in us's folder
for a client billed by uk is written once, to (day, uk), with `entity_rule` and `landing_entity`,
staged there (not quarantined as wrong_entity), and the landing sensor requests uk's partition."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.contracts.expenses import RawExpense
from pm_accounting_pipeline.core.expenses import stage_expenses
from pm_accounting_pipeline.core.fx_providers import provider_for
from pm_accounting_pipeline.defs.expenses.assets import build_expense_assets
from pm_accounting_pipeline.defs.jobs import daily_job
from pm_accounting_pipeline.defs.partitions import build_partitions, range_tags
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.test_defs.routing import (
    landed_env,
    materialize,
    rows_accounted_for,
    sensor_once,
    without_fallback_rules,
)

HEADER = (
    "Date,Client,Project,Project Code,Category,Notes,Amount,Units,Billable?,Invoiced?,Approved?,"
    "First Name,Last Name,Employee?,Currency,Receipt URL"
)
US_FILE = [  # dropped in landing/us
    "2026-03-02,Acme Corporation,Website,,Travel,Train,100.00,,Yes,No,Yes,Ada,Lovelace,Yes,USD,",
    "2026-03-02,Britannia Ltd,Migration,,Travel,Hotel,80.00,,Yes,No,Yes,Ada,Lovelace,Yes,GBP,",
    "2026-03-03,Britannia Ltd,Migration,,Travel,Taxi,12.50,,Yes,No,Yes,Ada,Lovelace,Yes,GBP,",
    "2026-03-02,Nobody Ltd,Moonshot,,Travel,Lunch,9.00,,Yes,No,Yes,Ada,Lovelace,Yes,USD,",
]
UK_FILE = [  # uk writes decimal commas
    '2026-03-02,Britannia Ltd,Migration,,Travel,Parking,"4,00",,Yes,No,Yes,Alan,Turing,Yes,GBP,'
]


@pytest.fixture
def env(tmp_path: Path) -> tuple[PipelineResource, Path]:
    return landed_env(tmp_path, HEADER, {"us": US_FILE, "uk": UK_FILE}, suffix="-expenses")


def _raw(resource: PipelineResource, entity: str, day: str) -> pl.DataFrame:
    return Lake(Path(resource.data_dir) / "lake").read("raw.expenses", [(entity, day)], writer="expense_csv")


def _materialize(resource: PipelineResource, config: Path, **kwargs) -> dg.ExecuteInProcessResult:
    raw_asset = build_expense_assets(build_partitions(load_mapping(config)))[0]
    return materialize(raw_asset, resource, **kwargs)


def test_an_expense_landed_for_us_for_uks_client_goes_to_uk_exactly_once(env):
    resource, config = env
    us_run = _materialize(resource, config, partition_key="2026-03-02|us")
    us = _raw(resource, "us", "2026-03-02")
    assert sorted(us["notes"]) == ["Lunch", "Train"]  # Nobody Ltd stays with its folder (pm_account)
    check = rows_accounted_for(us_run)
    assert check.passed
    assert {
        k: check.metadata[k].value for k in ("rows_read", "written", "other_partitions", "quarantined")
    } == {
        "rows_read": 4,  # Train, Hotel, Lunch from us's file (03-02) and Parking from uk's
        "written": 2,
        "other_partitions": 2,  # Hotel and Parking belong to (03-02, uk)
        "quarantined": 0,
    }
    _materialize(resource, config, partition_key="2026-03-02|uk")
    uk = _raw(resource, "uk", "2026-03-02").sort("notes")
    RawExpense.validate(uk)
    assert uk.select("notes", "entity", "entity_rule", "landing_entity").rows() == [
        ("Hotel", "uk", "client", "us"),
        ("Parking", "uk", "client", "uk"),
    ]
    # Staged in uk's books, with the landing account's number format, not held as wrong_entity.
    mapping = load_mapping(config)
    staged = stage_expenses(uk, mapping, provider_for(mapping, Path(resource.data_dir)))
    assert staged.quarantine.height == 0, staged.quarantine.select("reason", "detail").rows()
    assert sorted(staged.expenses.select("notes", "entity", "expense_minor").rows()) == [
        ("Hotel", "uk", 8000),
        ("Parking", "uk", 400),
    ]
    both = pl.concat([us, uk])
    assert sorted(both["notes"]) == ["Hotel", "Lunch", "Parking", "Train"]


def test_one_run_over_both_entities_writes_every_expense_once(env):
    resource, config = env
    result = _materialize(resource, config, tags=range_tags("2026-03-02|uk", "2026-03-03|us"))
    assert rows_accounted_for(result).passed
    assert rows_accounted_for(result).metadata["other_partitions"].value == 0
    assert sorted(_raw(resource, "uk", "2026-03-02")["notes"]) == ["Hotel", "Parking"]
    assert _raw(resource, "uk", "2026-03-03")["notes"].to_list() == ["Taxi"]
    assert _raw(resource, "us", "2026-03-03").height == 0


def test_expenses_no_entity_can_be_given_are_quarantined_under_their_landing_entity(env):
    resource, config = env
    resource = without_fallback_rules(resource, config)
    result = _materialize(resource, config, partition_key="2026-03-02|us")
    assert rows_accounted_for(result).passed
    assert _raw(resource, "us", "2026-03-02")["notes"].to_list() == ["Train"]
    q = Lake(Path(resource.data_dir) / "lake").read(
        "staging.quarantine", [("us", "2026-03-02")], writer="expense_raw"
    )
    assert q.select("reason", "layer").rows() == [("no_entity", "raw")]
    assert '"Notes":"Lunch"' in q["source_record"][0]


def test_sensor_requests_the_partitions_expenses_are_assigned_to(env):
    resource, config = env
    result = sensor_once(resource, config)
    daily = {r.partition_key for r in result.run_requests if r.job_name == daily_job.name}
    # us's file: Train, Lunch -> (03-02, us); Hotel -> (03-02, uk); Taxi -> (03-03, uk) (not 03-03|us).
    assert daily == {"2026-03-02|us", "2026-03-02|uk", "2026-03-03|uk"}
