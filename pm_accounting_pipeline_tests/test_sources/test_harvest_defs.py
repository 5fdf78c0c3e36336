"""The Dagster shell of the Harvest connector: the sensor requests exactly the changed partitions,
and the raw asset writes one (date, entity) partition to the lake, tombstones included."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.sources import (
    HARVEST_API_RAW,
    HarvestApiResource,
    build_harvest_api_assets,
    build_harvest_sensor,
)
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import TOKEN, US_ACCOUNT

PARTITIONS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2026-08-01"),
        "entity": dg.StaticPartitionsDefinition(["uk", "us"]),
    }
)


@pytest.fixture
def harvest(sandbox, tmp_path: Path) -> HarvestApiResource:
    return HarvestApiResource(
        token=TOKEN,
        accounts={US_ACCOUNT: "us"},
        data_dir=str(tmp_path / "data"),
        base_url=sandbox.url,
        per_page=50,
        retry_wait_initial_s=0.005,
        retry_wait_max_s=0.02,
    )


@pytest.fixture
def sensor() -> dg.SensorDefinition:
    assets = build_harvest_api_assets(PARTITIONS)
    job = dg.define_asset_job("harvest_api_job", selection=dg.AssetSelection.assets(*assets))
    return build_harvest_sensor(job, PARTITIONS, minimum_interval_seconds=60)


@pytest.fixture(scope="module")
def instance():
    # One instance for every tick: building an ephemeral one per context costs seconds.
    with dg.instance_for_test() as inst:
        yield inst


def _tick(sensor, harvest, instance, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"harvest": harvest})
    return sensor(context)


def test_sensor_requests_exactly_the_changed_partitions_and_advances_its_cursor(
    sandbox, harvest, sensor, instance
):
    first = _tick(sensor, harvest, instance)
    days = {o["spent_date"] for o in sandbox.objects("time_entries")} | {
        o["spent_date"] for o in sandbox.objects("expenses")
    }
    assert sorted(r.partition_key for r in first.run_requests) == sorted(f"{d}|us" for d in days)
    assert all(r.run_key.startswith(f"harvest_api:{r.partition_key}:") for r in first.run_requests)

    quiet = _tick(sensor, harvest, instance, first.cursor)
    assert quiet.run_requests == [] and quiet.skip_reason is not None

    entry = sandbox.objects("time_entries")[2]
    sandbox.edit("time_entries", entry["id"], {"notes": "approved late"})
    changed = _tick(sensor, harvest, instance, quiet.cursor)
    assert [r.partition_key for r in changed.run_requests] == [f"{entry['spent_date']}|us"]

    # Replaying the same tick (same cursor, same batches) yields the same run keys: de-duplicated.
    replay = _tick(sensor, harvest, instance, quiet.cursor)
    assert [r.run_key for r in replay.run_requests] == [r.run_key for r in changed.run_requests]


def test_sensor_reports_an_account_that_cannot_be_synced(sandbox, harvest, sensor, instance):
    broken = HarvestApiResource(
        token="revoked", accounts={US_ACCOUNT: "us"}, data_dir=harvest.data_dir, base_url=sandbox.url
    )
    result = _tick(sensor, broken, instance)
    assert result.run_requests == []
    message = result.skip_reason.skip_message
    assert "account 1001" in message and "HTTP 401" in message


def test_sensor_rejects_a_partitions_definition_without_date_and_entity():
    job = dg.define_asset_job("other_job")
    other = dg.MultiPartitionsDefinition(
        {
            "day": dg.DailyPartitionsDefinition(start_date="2026-01-01"),
            "x": dg.StaticPartitionsDefinition(["a"]),
        }
    )
    with pytest.raises(ValueError, match="date x entity"):
        build_harvest_sensor(job, other)


def test_asset_writes_one_partition_with_tombstones(sandbox, harvest, tmp_path, instance):
    # The newest day, so the deletion falls inside the trailing window that is re-checked.
    entries = sorted(sandbox.objects("time_entries"), key=lambda o: o["spent_date"], reverse=True)
    day = entries[0]["spent_date"]
    same_day = sorted(str(o["id"]) for o in entries if o["spent_date"] == day)
    (asset,) = build_harvest_api_assets(PARTITIONS)
    pipeline = PipelineResource(data_dir=harvest.data_dir, config_path=str(tmp_path / "unused.yaml"))
    resources = {"pipeline": pipeline, "harvest": harvest}
    key = f"{day}|us"
    harvest.sync()  # what the sensor does first; then the entry is deleted in Harvest
    sandbox.delete("time_entries", entries[0]["id"])
    harvest.sync(check_deletions=True)
    second = dg.materialize([asset], partition_key=key, resources=resources, instance=instance)
    assert second.success
    raw = Lake(Path(harvest.data_dir) / "lake").read("raw.time_entries", [("us", day)], writer="harvest_api")
    assert sorted(raw["source_id"].to_list()) == [i for i in same_day if i != str(entries[0]["id"])]
    tombs = pl.read_parquet(
        Path(harvest.data_dir) / "lake/raw/harvest_api_tombstones/us" / f"{day}.harvest_api.parquet"
    )
    assert tombs["source_id"].to_list() == [str(entries[0]["id"])]
    (event,) = second.get_asset_materialization_events()
    assert event.asset_key == HARVEST_API_RAW
    assert event.materialization.metadata["tombstones"].value == 1
    assert date.fromisoformat(day) == tombs["spent_date"][0]
