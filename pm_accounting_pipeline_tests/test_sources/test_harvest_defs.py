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
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import US_ACCOUNT
from pm_accounting_pipeline_tests.test_sources.harvest_setup import harvest_resource, write_two_entity_mapping

PARTITIONS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2026-08-01"),
        "entity": dg.StaticPartitionsDefinition(["uk", "us"]),
    }
)


@pytest.fixture
def harvest(sandbox, tmp_path: Path) -> HarvestApiResource:
    return harvest_resource(sandbox, tmp_path / "data")


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


def _mapping(tmp_path: Path, clients: list[dict] | None = None) -> str:
    """A mapping document with the two entities (and `clients`); the asset assigns entities with it."""
    return write_two_entity_mapping(tmp_path, clients=clients or [])


def _tick(sensor, harvest, instance, cursor=None, clients: list[dict] | None = None) -> dg.SensorResult:
    # The mapping document (entity assignment) sits beside the data directory.
    config = _mapping(Path(harvest.data_dir).parent, clients)
    pipeline = PipelineResource(data_dir=harvest.data_dir, config_path=config)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"harvest": harvest, "pipeline": pipeline}
    )
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


def test_sensor_also_requests_the_partitions_of_the_entity_changed_rows_are_assigned_to(
    sandbox, harvest, sensor, instance
):
    objects = sandbox.objects("time_entries") + sandbox.objects("expenses")
    client = sorted({o["client"]["name"] for o in objects})[0]
    currency = next(o["client"]["currency"] for o in objects if o["client"]["name"] == client)
    uk_days = {o["spent_date"] for o in objects if o["client"]["name"] == client}
    first = _tick(
        sensor,
        harvest,
        instance,
        clients=[{"name": client, "customer_ref": "C-UK", "entity": "uk", "currency": currency}],
    )
    days = {o["spent_date"] for o in objects}
    # Every changed account partition (us) plus uk's partitions of the days with uk's client's rows.
    assert sorted(r.partition_key for r in first.run_requests) == sorted(
        [f"{d}|us" for d in days] + [f"{d}|uk" for d in uk_days]
    )


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
    pipeline = PipelineResource(data_dir=harvest.data_dir, config_path=_mapping(tmp_path))
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


def test_asset_routes_time_entries_of_another_entitys_client_to_that_entity(
    sandbox, harvest, tmp_path, instance
):
    # Account 1001 belongs to us; the mapping says "Client US 1" is billed by uk. Its entries of the
    # day land in (day, uk) with entity_rule client, once; the rest stay in (day, us) by PM account.
    entries = sandbox.objects("time_entries")
    clients_by_day: dict[str, set[str]] = {}
    for o in entries:
        clients_by_day.setdefault(o["spent_date"], set()).add(o["client"]["name"])
    day = min(d for d, names in clients_by_day.items() if "Client US 1" in names and len(names) > 1)
    of_day = [o for o in entries if o["spent_date"] == day]
    to_uk = sorted(str(o["id"]) for o in of_day if o["client"]["name"] == "Client US 1")
    stay = sorted(str(o["id"]) for o in of_day if o["client"]["name"] != "Client US 1")
    assert to_uk and stay  # the dataset has both on its newest day
    config = _mapping(
        tmp_path, [{"name": "Client US 1", "customer_ref": "C-002", "entity": "uk", "currency": "USD"}]
    )
    (asset,) = build_harvest_api_assets(PARTITIONS)
    resources = {
        "pipeline": PipelineResource(data_dir=harvest.data_dir, config_path=config),
        "harvest": harvest,
    }
    harvest.sync()
    lake = Lake(Path(harvest.data_dir) / "lake")
    # Two runs, one per partition: each writes only its own rows, nothing twice.
    for entity in ("us", "uk"):
        result = dg.materialize(
            [asset], partition_key=f"{day}|{entity}", resources=resources, instance=instance
        )
        assert result.success
        (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "rows_accounted_for"]
        assert check.passed
    uk = lake.read("raw.time_entries", [("uk", day)], writer="harvest_api")
    us = lake.read("raw.time_entries", [("us", day)], writer="harvest_api")
    assert sorted(uk["source_id"].to_list()) == to_uk
    assert set(uk["entity_rule"]) == {"client"} and set(uk["landing_entity"]) == {"us"}
    assert sorted(us["source_id"].to_list()) == stay
    assert set(us["entity_rule"]) == {"pm_account"}
