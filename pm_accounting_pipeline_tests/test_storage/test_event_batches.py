"""The project's event log stores a range run's per-partition asset events in batches, losing none."""

import os
import tempfile
from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.lib.instance import storage_overrides

DAYS = dg.DailyPartitionsDefinition(start_date="2026-09-01", end_date="2026-09-21")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def days_seen(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})


@dg.asset(partitions_def=DAYS, deps=[days_seen], backfill_policy=dg.BackfillPolicy.single_run())
def days_after(context: dg.AssetExecutionContext) -> None:
    context.log.info("%d partitions", len(context.partition_keys))


def test_a_range_run_records_every_partition_once_through_the_batched_path(monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    with (
        tempfile.TemporaryDirectory() as home,
        dg.instance_for_test(overrides=storage_overrides(Path(home)), temp_dir=home) as instance,
    ):
        storage = instance.event_log_storage
        calls: list[int] = []
        original = storage.store_event_batch

        def spy(events):  # type: ignore[no-untyped-def]
            calls.append(len(events))
            return original(events)

        monkeypatch.setattr(storage, "store_event_batch", spy)
        # Creating the instance switched batching on for this process.
        assert int(os.environ["DAGSTER_EVENT_BATCH_SIZE"]) > 1
        keys = DAYS.get_partition_keys()
        assert len(keys) == 20
        result = dg.materialize(
            [days_seen, days_after],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        assert result.success
        # Planned events at run creation and materialisations per step arrived as batches.
        assert calls and max(calls) >= len(keys)
        for key in (days_seen.key, days_after.key):
            assert instance.get_materialized_partitions(key) == set(keys)
            records = instance.fetch_materializations(key, limit=100).records
            assert sorted(r.partition_key for r in records) == sorted(keys)
            planned = instance.get_event_records(
                dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key),
                limit=100,
            )
            assert len(planned) == len(keys)
        for key in (days_seen.key, days_after.key):
            # The asset's row (written once per batch) names the newest event of the log.
            latest = instance.get_latest_materialization_event(key)
            newest = instance.fetch_materializations(key, limit=1).records[0]
            assert latest is not None and latest.asset_materialization is not None
            assert latest.asset_materialization.partition == newest.partition_key
            assert latest.timestamp == newest.timestamp
            assert instance.get_asset_records([key])[
                0
            ].asset_entry.last_materialization_record.storage_id == (newest.storage_id)
