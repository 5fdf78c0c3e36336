"""The raw asset and the landing sensor route each row to the partition of the entity it is assigned
to: a row dropped in us's folder for a client billed by uk is written once, to (day, uk)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.jobs import daily_job, invoice_job
from pm_accounting_pipeline.defs.partitions import build_partitions, range_tags
from pm_accounting_pipeline.defs.raw.assets import build_raw_assets
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.extract.landing import land_files
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.test_defs.routing import (
    landed_env,
    landing_sensor,
    materialize,
    rows_accounted_for,
    sensor_once,
    without_fallback_rules,
)

HEADER = (
    "source_id,date,client,client_id,project,project_code,task,person,person_id,email,notes,hours,"
    "rounded_hours,billable,approved,invoiced,bill_rate,cost_rate,currency"
)
US_FILE = [  # dropped in landing/us
    "a1,2026-03-02,Acme Corporation,,Website,,Development,Ada Lovelace,,,,1,,yes,yes,no,,,",
    "b1,2026-03-02,Britannia Ltd,,Migration,,Development,Ada Lovelace,,,,2,,yes,yes,no,,,",
    "b2,2026-03-03,Britannia Ltd,,Migration,,Development,Ada Lovelace,,,,3,,yes,yes,no,,,",
    "n1,2026-03-02,Nobody Ltd,,Moonshot,,Development,Ada Lovelace,,,,1,,yes,yes,no,,,",
]
UK_FILE = ["c1,2026-03-02,Britannia Ltd,,Migration,,Development,Alan Turing,,,,4,,yes,yes,no,,,"]


@pytest.fixture
def env(tmp_path: Path) -> tuple[PipelineResource, Path]:
    return landed_env(tmp_path, HEADER, {"us": US_FILE, "uk": UK_FILE})


def _raw(resource: PipelineResource, entity: str, day: str) -> pl.DataFrame:
    return Lake(Path(resource.data_dir) / "lake").read("raw.time_entries", [(entity, day)], writer="raw")


def _materialize(resource: PipelineResource, config: Path, **kwargs) -> dg.ExecuteInProcessResult:
    (asset,) = build_raw_assets(build_partitions(load_mapping(config)))
    return materialize(asset, resource, **kwargs)


def test_each_partition_gets_its_entitys_rows_exactly_once_whatever_folder_they_came_from(env):
    resource, config = env
    us_run = _materialize(resource, config, partition_key="2026-03-02|us")
    # Only its own partition is written; b1 (uk's client) is counted as another partition's row.
    assert sorted(_raw(resource, "us", "2026-03-02")["source_id"]) == ["a1", "n1"]
    assert _raw(resource, "uk", "2026-03-02").height == 0
    check = rows_accounted_for(us_run)
    assert check.passed
    assert {
        k: check.metadata[k].value for k in ("rows_read", "written", "other_partitions", "quarantined")
    } == {
        "rows_read": 4,  # a1, b1, n1 from us's file and c1 from uk's
        "written": 2,
        "other_partitions": 2,
        "quarantined": 0,
    }
    (event,) = us_run.get_asset_materialization_events()
    assert event.materialization.metadata["rows_by_entity_rule"].value == {"client": 1, "pm_account": 1}

    _materialize(resource, config, partition_key="2026-03-02|uk")
    uk = _raw(resource, "uk", "2026-03-02").sort("source_id")
    assert uk.select("source_id", "entity", "entity_rule", "landing_entity").rows() == [
        ("b1", "uk", "client", "us"),
        ("c1", "uk", "client", "uk"),
    ]
    # Over both partitions of the day every dropped row is there once.
    both = pl.concat([_raw(resource, "us", "2026-03-02"), uk])
    assert sorted(both["source_id"]) == ["a1", "b1", "c1", "n1"]


def test_one_run_over_both_entities_writes_the_same_rows(env):
    resource, config = env
    result = _materialize(resource, config, tags=range_tags("2026-03-02|uk", "2026-03-02|us"))
    assert rows_accounted_for(result).passed
    assert sorted(_raw(resource, "uk", "2026-03-02")["source_id"]) == ["b1", "c1"]
    assert sorted(_raw(resource, "us", "2026-03-02")["source_id"]) == ["a1", "n1"]
    assert rows_accounted_for(result).metadata["other_partitions"].value == 0


def test_rows_no_entity_can_be_given_are_quarantined_under_their_landing_entity(env):
    resource, config = env
    resource = without_fallback_rules(resource, config)
    result = _materialize(resource, config, partition_key="2026-03-02|us")
    assert rows_accounted_for(result).passed
    assert _raw(resource, "us", "2026-03-02")["source_id"].to_list() == ["a1"]
    q = Lake(Path(resource.data_dir) / "lake").read(
        "staging.quarantine", [("us", "2026-03-02")], writer="raw"
    )
    assert q.select("source_id", "reason", "layer").rows() == [("n1", "no_entity", "raw")]


def test_sensor_requests_the_partitions_rows_are_assigned_to(env):
    resource, config = env
    result = sensor_once(resource, config)
    daily = {r.partition_key for r in result.run_requests if r.job_name == daily_job.name}
    # us's file: a1, n1 -> (03-02, us); b1 -> (03-02, uk); b2 -> (03-03, uk). uk's file: c1 -> (03-02, uk).
    assert daily == {"2026-03-02|us", "2026-03-02|uk", "2026-03-03|uk"}
    monthly = {r.partition_key for r in result.run_requests if r.job_name == invoice_job.name}
    assert monthly == {"2026-03-01|us", "2026-03-01|uk"}
    assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)


def test_sensor_does_not_request_the_folders_entity_when_no_row_stays_there(env, tmp_path):
    resource, config = env
    sensor = landing_sensor(config)
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, resources={"pipeline": resource}))
        src = tmp_path / "late.csv"
        src.write_text(
            HEADER
            + "\nb9,2026-03-09,Britannia Ltd,,Migration,,Development,Ada Lovelace,,,,1,,yes,yes,no,,,\n",
            encoding="utf-8",
        )
        land_files([src], "us", Path(resource.data_dir), load_mapping(config))
        second = sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"pipeline": resource})
        )
    assert {r.partition_key for r in second.run_requests if r.job_name == daily_job.name} == {"2026-03-09|uk"}
