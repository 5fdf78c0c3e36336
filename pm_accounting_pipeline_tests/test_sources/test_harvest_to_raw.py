"""API objects -> raw.time_entries: lossless source records, string columns, and quarantine of bad objects."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from pm_accounting_pipeline.contracts.layers import Quarantine, RawTimeEntry
from pm_accounting_pipeline.sandboxes.harvest_store import HarvestStore
from pm_accounting_pipeline.sources.harvest_api.to_raw import (
    canonical_records,
    expenses_to_raw,
    time_entries_to_raw,
)
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import US_ACCOUNT

AT = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def entries(dataset) -> list[dict]:
    return HarvestStore.from_dataset(dataset, US_ACCOUNT).objects("time_entries")


def test_time_entries_map_to_the_raw_contract_with_lineage(entries):
    batch = time_entries_to_raw(canonical_records(entries), "us", US_ACCOUNT, "batch-1", AT)
    RawTimeEntry.validate(batch.rows)
    assert batch.quarantine.height == 0
    first = batch.rows.row(0, named=True)
    source = entries[0]
    assert first["source_system"] == "harvest_api"
    assert first["source_file"] == "harvest_api:1001"
    assert first["source_id"] == str(source["id"])
    assert first["source_row"] == 1
    assert first["file_hash"] == "batch-1"
    assert first["work_date"] == date.fromisoformat(source["spent_date"])
    assert first["client"] == source["client"]["name"]
    assert first["currency_raw"] == source["client"]["currency"]
    assert first["person"] == source["user"]["name"]
    assert first["approved_raw"] == source["approval_status"]
    assert first["hours_raw"] == str(source["hours"])
    assert first["billable_raw"] == ("true" if source["billable"] else "false")


def test_source_record_is_the_whole_object_with_sorted_keys_and_decimal_strings(entries):
    obj = copy.deepcopy(entries[0])
    obj["hours"] = Decimal("1.50")
    batch = time_entries_to_raw(canonical_records([obj]), "us", US_ACCOUNT, "b", AT)
    text = batch.rows["source_record"][0]
    assert list(json.loads(text)) == sorted(obj)
    assert '"hours":"1.50"' in text  # trailing zero kept: the exact text Harvest sent
    assert json.loads(text)["user_assignment"] == json.loads(json.dumps(obj["user_assignment"], default=str))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda o: o.pop("spent_date"), "missing_required"),
        (lambda o: o.update(spent_date="25/11/2026"), "bad_date"),
        (lambda o: o.update(hours="seven"), "bad_hours"),
        (lambda o: o.update(hours=Decimal("-1.5")), "negative_hours"),
        (lambda o: o.update(billable_rate="lots"), "bad_rate"),
        (lambda o: o["client"].update(currency="XYZ"), "unknown_currency"),
        (lambda o: o["client"].pop("currency"), "missing_required"),
        (lambda o: o.update(user="Jane Doe"), "missing_required"),  # wrong type: a string, not an object
        (lambda o: o.update(id="abc"), "missing_required"),
        (lambda o: o.update(billable="yes"), "missing_required"),
    ],
)
def test_bad_objects_are_quarantined_and_the_rest_of_the_page_is_kept(entries, mutate, reason):
    page = copy.deepcopy(entries[:10])
    mutate(page[4])
    batch = time_entries_to_raw(canonical_records(page), "us", US_ACCOUNT, "b", AT)
    assert batch.rows.height == 9
    assert str(page[4].get("id")) not in batch.rows["source_id"].to_list()
    assert batch.quarantine.height == 1
    row = batch.quarantine.row(0, named=True)
    assert row["reason"] == reason
    assert row["layer"] == "raw" and row["source_row"] == 5
    assert json.loads(row["source_record"]) == json.loads(canonical_records([page[4]])[0])
    Quarantine.validate(batch.quarantine)


def test_quarantined_object_without_a_date_is_filed_under_the_pull_date(entries):
    broken = copy.deepcopy(entries[0])
    broken["spent_date"] = None
    batch = time_entries_to_raw(canonical_records([broken]), "us", US_ACCOUNT, "b", AT)
    assert batch.quarantine["partition_date"].to_list() == [date(2026, 11, 25)]


def test_expenses_map_to_raw_rows_with_receipts_referenced(dataset):
    expenses = HarvestStore.from_dataset(dataset, US_ACCOUNT).objects("expenses")
    batch = expenses_to_raw(canonical_records(expenses), "us", US_ACCOUNT, "b", AT)
    assert batch.rows.height == len(expenses) and batch.quarantine.height == 0
    with_receipt = next(e for e in expenses if e["receipt"])
    row = batch.rows.filter(batch.rows["source_id"] == str(with_receipt["id"])).row(0, named=True)
    assert row["receipt_url"] == with_receipt["receipt"]["url"]
    assert row["total_cost_raw"] == str(with_receipt["total_cost"])
    assert row["category"] == with_receipt["expense_category"]["name"]


def test_expense_with_a_negative_total_is_quarantined(dataset):
    expenses = copy.deepcopy(HarvestStore.from_dataset(dataset, US_ACCOUNT).objects("expenses"))
    expenses[0]["total_cost"] = Decimal("-3.00")
    batch = expenses_to_raw(canonical_records(expenses), "us", US_ACCOUNT, "b", AT)
    assert batch.quarantine["reason"].to_list() == ["bad_rate"]
    assert batch.rows.height == len(expenses) - 1
