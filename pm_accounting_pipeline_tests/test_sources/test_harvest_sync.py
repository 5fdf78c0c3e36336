"""Incremental sync against the sandbox: exact data under faults, edits, approvals, backdating, deletions."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import RawTimeEntry
from pm_accounting_pipeline.sources.harvest_api.client import HarvestPermanentError
from pm_accounting_pipeline.sources.harvest_api.sync import (
    changes_since,
    load_state,
    load_store,
    read_partition,
    sync_account,
)
from pm_accounting_pipeline.sources.harvest_api.to_raw import canonical_json
from pm_accounting_pipeline_tests.test_sources.conftest import NOW, US

FAULTS = {
    "error_rate": 0.22,
    "drop_rate": 0.05,
    "truncate_rate": 0.05,
    "storm_rate": 0.015,
    "storm_seconds": 0.5,
}


def _clock(at: datetime = NOW):
    return lambda: at


def _live_store(sync_config, resource: str) -> dict[str, str]:
    store = load_store(sync_config, US.account_id, resource).filter(pl.col("tombstoned_at").is_null())
    return dict(store.select("source_id", "record").iter_rows())


def _served(sandbox, resource: str) -> dict[str, str]:
    return {str(o["id"]): canonical_json(o) for o in sandbox.objects(resource)}


def test_full_then_incremental_pull_under_faults_matches_the_sandbox_exactly(
    sandbox, make_client, sync_config
):
    sandbox.set_faults(seed=21, **FAULTS)
    client = make_client()
    first = sync_account(client, US, sync_config, clock=_clock())

    assert first.time_entries_raw.height == 120
    assert first.time_entries_raw["source_id"].n_unique() == 120
    RawTimeEntry.validate(first.time_entries_raw)
    assert _live_store(sync_config, "time_entries") == _served(sandbox, "time_entries")
    assert _live_store(sync_config, "expenses") == _served(sandbox, "expenses")
    assert first.expenses_raw.height == len(sandbox.objects("expenses"))

    entries = sorted(sandbox.objects("time_entries"), key=lambda o: o["id"])
    edited, deleted = entries[0], entries[5]
    late = next(e for e in entries[1:] if e["approval_status"] != "approved" and e is not deleted)
    sandbox.edit("time_entries", edited["id"], {"notes": "Rewritten after review", "hours": 2.5})
    sandbox.approve(late["id"])
    sandbox.delete("time_entries", deleted["id"])
    backdated = sandbox.add_backdated(date(2026, 10, 2), fields={"notes": "Forgot to log this"})
    deleted_expense = sandbox.objects("expenses")[0]
    sandbox.delete("expenses", deleted_expense["id"])

    second = sync_account(
        client, US, sync_config, clock=_clock(NOW + timedelta(hours=1)), check_deletions=True
    )
    assert client.stats.gave_up == 0
    assert sandbox.state()["faults_injected"]["error"] >= 10

    changes = {(r["source_id"], r["change"]) for r in second.changes.iter_rows(named=True)}
    assert changes == {
        (str(edited["id"]), "changed"),
        (str(late["id"]), "changed"),
        (str(backdated["id"]), "new"),
        (str(deleted["id"]), "tombstoned"),
        (str(deleted_expense["id"]), "tombstoned"),
    }
    raw = second.time_entries_raw.sort("source_id")
    assert raw["source_id"].to_list() == sorted([str(edited["id"]), str(late["id"]), str(backdated["id"])])
    by_id = {r["source_id"]: r for r in raw.iter_rows(named=True)}
    assert by_id[str(edited["id"])]["notes"] == "Rewritten after review"
    assert by_id[str(edited["id"])]["hours_raw"] == "2.5"
    assert by_id[str(late["id"])]["approved_raw"] == "approved"
    assert by_id[str(backdated["id"])]["work_date"] == date(2026, 10, 2)

    tombs = second.tombstones.sort("resource", "source_id")
    assert tombs.select("resource", "source_id").rows() == [
        ("expenses", str(deleted_expense["id"])),
        ("time_entries", str(deleted["id"])),
    ]
    assert tombs["tombstoned_at"].to_list() == [NOW + timedelta(hours=1)] * 2

    assert _live_store(sync_config, "time_entries") == _served(sandbox, "time_entries")
    assert _live_store(sync_config, "expenses") == _served(sandbox, "expenses")
    expected_dates = {
        (date.fromisoformat(e["spent_date"]), "us")
        for e in (edited, late, deleted, backdated, deleted_expense)
    }
    assert second.changed_dates == expected_dates


def test_unchanged_entries_are_not_reprocessed(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    again = sync_account(client, US, sync_config, clock=_clock(), check_deletions=False)
    assert again.time_entries_raw.height == 0
    assert again.changed_dates == set()
    assert again.stats[US.account_id]["time_entries"]["unchanged"] >= 1
    assert again.stats[US.account_id]["time_entries"]["new"] == 0


def test_incremental_pull_asks_from_the_high_water_mark_minus_the_overlap(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    hwm = load_state(sync_config, US.account_id)["high_water_mark"]["time_entries"]
    served_max = max(o["updated_at"] for o in sandbox.objects("time_entries"))
    assert hwm == served_max
    again = sync_account(client, US, sync_config, clock=_clock(), check_deletions=False)
    since = datetime.fromisoformat(hwm.replace("Z", "+00:00")) - timedelta(days=2)
    expected = sum(
        datetime.fromisoformat(o["updated_at"].replace("Z", "+00:00")) >= since
        for o in sandbox.objects("time_entries")
    )
    stats = again.stats[US.account_id]["time_entries"]
    assert stats["mode"] == "incremental"
    assert stats["pulled"] == expected < 120


def test_backdated_entry_outside_the_trailing_window_is_still_picked_up(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    old = sandbox.add_backdated(date(2026, 8, 3))  # long before the 60-day window
    result = sync_account(client, US, sync_config, clock=_clock(), check_deletions=False)
    assert result.time_entries_raw["source_id"].to_list() == [str(old["id"])]
    assert result.changed_dates == {(date(2026, 8, 3), "us")}


def test_moving_an_entry_to_another_day_touches_both_partitions(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    entry = sandbox.objects("time_entries")[3]
    sandbox.edit("time_entries", entry["id"], {"spent_date": "2026-11-02"})
    result = sync_account(client, US, sync_config, clock=_clock(), check_deletions=False)
    assert result.changed_dates == {
        (date.fromisoformat(entry["spent_date"]), "us"),
        (date(2026, 11, 2), "us"),
    }
    old_day, _ = read_partition(
        sync_config, [US], "time_entries", date.fromisoformat(entry["spent_date"]), "us"
    )
    assert str(entry["id"]) not in old_day.rows["source_id"].to_list()


def test_deletions_outside_a_window_check_wait_for_the_next_check(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    recent = max(sandbox.objects("time_entries"), key=lambda o: o["spent_date"])
    sandbox.delete("time_entries", recent["id"])
    skipped = sync_account(client, US, sync_config, clock=_clock(NOW + timedelta(hours=1)))
    assert skipped.tombstones.height == 0  # the last window check was an hour ago
    checked = sync_account(client, US, sync_config, clock=_clock(NOW + timedelta(hours=25)))
    assert checked.tombstones["source_id"].to_list() == [str(recent["id"])]
    assert checked.stats[US.account_id]["time_entries"]["mode"] == "incremental+window"


def test_a_deleted_then_restored_id_is_revived(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    entry = max(sandbox.objects("time_entries"), key=lambda o: o["spent_date"])
    sandbox.delete("time_entries", entry["id"])
    sync_account(client, US, sync_config, clock=_clock(), check_deletions=True)
    store = load_store(sync_config, US.account_id, "time_entries")
    assert store.filter(pl.col("source_id") == str(entry["id"]))["tombstoned_at"].item() == NOW
    # Harvest gives a re-created entry a new id; an entry restored (same id) comes back to life.
    sandbox.add_backdated(date.fromisoformat(entry["spent_date"]), fields={"id": entry["id"]})
    result = sync_account(client, US, sync_config, clock=_clock(), check_deletions=False)
    assert result.changes.filter(pl.col("source_id") == str(entry["id"]))["change"].to_list() == ["revived"]
    store = load_store(sync_config, US.account_id, "time_entries")
    assert store.filter(pl.col("source_id") == str(entry["id"]))["tombstoned_at"].item() is None


def test_changes_since_reports_partitions_per_batch(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    first_seq, everything = changes_since(sync_config, US.account_id, 0)
    assert len(everything) == len(
        {o["spent_date"] for o in sandbox.objects("time_entries")}
        | {o["spent_date"] for o in sandbox.objects("expenses")}
    )
    entry = sandbox.objects("time_entries")[7]
    sandbox.edit("time_entries", entry["id"], {"notes": "changed"})
    sync_account(client, US, sync_config, clock=_clock(), check_deletions=False)
    latest, changed = changes_since(sync_config, US.account_id, first_seq)
    assert latest == first_seq + 1
    assert changed == {(date.fromisoformat(entry["spent_date"]), "us")}


def test_read_partition_returns_the_current_rows_of_one_day(sandbox, make_client, sync_config):
    client = make_client(per_page=50)
    sync_account(client, US, sync_config, clock=_clock())
    day = date.fromisoformat(sandbox.objects("time_entries")[0]["spent_date"])
    raw, tombs = read_partition(sync_config, [US], "time_entries", day, "us")
    expected = sorted(
        str(o["id"]) for o in sandbox.objects("time_entries") if o["spent_date"] == day.isoformat()
    )
    assert raw.rows["source_id"].to_list() == expected
    assert raw.rows["source_row"].to_list() == list(range(1, len(expected) + 1))
    assert tombs.height == 0
    again, _ = read_partition(sync_config, [US], "time_entries", day, "us")
    assert again.rows.equals(raw.rows)  # same store, same bytes


def test_state_file_is_plain_json_with_a_high_water_mark_per_resource(sandbox, make_client, sync_config):
    sync_account(make_client(per_page=50), US, sync_config, clock=_clock())
    state = json.loads((sync_config.account_dir(US.account_id) / "state.json").read_text())
    assert set(state["high_water_mark"]) >= {
        "time_entries",
        "expenses",
        "clients",
        "projects",
        "tasks",
        "users",
    }
    assert state["last_window_check_at"]["time_entries"] == "2026-11-25T12:00:00Z"


def test_a_failing_resource_keeps_the_changes_already_synced(sandbox, make_client, sync_config):
    broken = dataclasses.replace(sync_config, resources=("time_entries", "no_such_resource"))
    with pytest.raises(HarvestPermanentError, match="no_such_resource"):
        sync_account(make_client(per_page=50), US, broken, clock=_clock())
    seq, changed = changes_since(sync_config, US.account_id, 0)
    assert seq == 1
    assert changed == {(date.fromisoformat(o["spent_date"]), "us") for o in sandbox.objects("time_entries")}
    assert _live_store(sync_config, "time_entries") == _served(sandbox, "time_entries")
