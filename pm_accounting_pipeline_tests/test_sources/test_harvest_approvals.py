"""The Harvest sync records when it first sees a time entry approved (the API does not say who
approved it or when) as an approval feed for core/approvals.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.sources.harvest_api.client import HarvestClient
from pm_accounting_pipeline.sources.harvest_api.sync import approvals_feed_path, sync_account
from pm_accounting_pipeline_tests.test_sources.conftest import NOW, US


def _clock(at: datetime = NOW):
    return lambda: at


def _first_sync(make_client, sync_config) -> tuple[HarvestClient, Path, pl.DataFrame]:
    """A first sync of the us account at NOW: its client, the approval feed's path and the feed read back."""
    client = make_client()
    sync_account(client, US, sync_config, clock=_clock())
    feed_path = approvals_feed_path(sync_config, US)
    return client, feed_path, pl.read_csv(feed_path, infer_schema=False)


def test_sync_records_when_it_first_sees_an_entry_approved(sandbox, make_client, sync_config):
    client, feed_path, feed = _first_sync(make_client, sync_config)
    first = feed.filter(pl.col("source_system") == "harvest_api")
    approved = {
        str(o["id"]): o["updated_at"]
        for o in sandbox.objects("time_entries")
        if o["approval_status"] == "approved"
    }
    assert dict(first.select("source_id", "approved_at").iter_rows()) == approved
    assert set(first["status"]) == {"approved"} and set(first["approved_by"]) == {f"harvest:{US.account_id}"}

    entries = sorted(sandbox.objects("time_entries"), key=lambda o: o["id"])
    late = next(e for e in entries if e["approval_status"] != "approved")
    already = next(e for e in entries if e["approval_status"] == "approved")
    sandbox.approve(late["id"])
    sandbox.edit("time_entries", already["id"], {"notes": "Marked after approval"})
    sync_account(client, US, sync_config, clock=_clock(NOW + timedelta(hours=1)))
    second = pl.read_csv(feed_path, infer_schema=False)
    added = second.slice(feed.height)
    now_late = next(o for o in sandbox.objects("time_entries") if o["id"] == late["id"])
    # only the newly approved entry is added, at the time of its approved version; the edited
    # entry keeps the time it was first seen approved
    assert added.select("source_id", "status", "approved_at").rows() == [
        (str(late["id"]), "approved", now_late["updated_at"])
    ]
    edited = next(o for o in sandbox.objects("time_entries") if o["id"] == already["id"])
    assert edited["updated_at"] != approved[str(already["id"])]


def test_sync_records_when_it_first_sees_an_expense_approved(sandbox, make_client, sync_config):
    client, feed_path, feed = _first_sync(make_client, sync_config)
    # Expenses are named harvest_api_expense: their ids are not the account's time-entry ids.
    first = feed.filter(pl.col("source_system") == "harvest_api_expense")
    expenses = sorted(sandbox.objects("expenses"), key=lambda o: o["id"])
    approved = {str(o["id"]): o["updated_at"] for o in expenses if o["approval_status"] == "approved"}
    assert approved
    assert dict(first.select("source_id", "approved_at").iter_rows()) == approved
    assert set(first["approved_by"]) == {f"harvest:{US.account_id}"}

    late = next(e for e in expenses if e["approval_status"] != "approved")
    sandbox.edit("expenses", late["id"], {"approval_status": "approved"})
    sync_account(client, US, sync_config, clock=_clock(NOW + timedelta(hours=1)))
    added = pl.read_csv(feed_path, infer_schema=False).slice(feed.height)
    now_late = next(o for o in sandbox.objects("expenses") if o["id"] == late["id"])
    assert added.select("source_system", "source_id", "status", "approved_at").rows() == [
        ("harvest_api_expense", str(late["id"]), "approved", now_late["updated_at"])
    ]
