"""Approvals: who approved each entry and when (source rows, approval feeds, Harvest API), carried
onto billed lines; feeds approve or withdraw approval; `require_approver` holds nameless approvals."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import parse_mapping
from pm_accounting_pipeline.core.approvals import ApprovalFeedError, apply_approvals, read_feed
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline.extract.parse import parse_file
from pm_accounting_pipeline_tests.test_billing.helpers import (
    MARCH,
    PROVIDER,
    Books,
    acme,
    bill_month,
    mapping_with,
)
from pm_accounting_pipeline_tests.test_core.builders import make_raw, mapping_dict


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _record(**fields: str) -> str:
    return json.dumps(fields, sort_keys=True)


def _feed(tmp_path: Path, text: str) -> pl.DataFrame:
    folder = tmp_path / "landing" / "us" / "approvals"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.csv").write_text(text)
    return read_feed([folder])


def test_canonical_csv_columns_reach_the_work_items(tmp_path: Path) -> None:
    path = tmp_path / "time.csv"
    path.write_text(
        "source_id,date,client,project,task,person,hours,approved,approved_by,approved_at\n"
        "t1,2026-03-02,Acme Corporation,Website,Development,Ada Lovelace,2,true,Grace Hopper,2026-03-06T16:30:00+01:00\n"
        "t2,2026-03-03,Acme Corporation,Website,Development,Ada Lovelace,1,true,,\n"
    )
    mapping = mapping_with()
    parsed = parse_file(path, "us", mapping, extracted_at=datetime(2026, 3, 10, tzinfo=UTC))
    items = apply_approvals(clean_and_map(parsed.rows, mapping).work_items, parsed.rows, None, mapping)
    got = items.sort("source_id").select("source_id", "approved_by", "approved_at", "billing_status").rows()
    assert got == [
        ("t1", "Grace Hopper", _ts("2026-03-06T15:30:00+00:00"), "billable"),
        ("t2", None, None, "billable"),
    ]


def test_harvest_api_rows_name_the_account_and_the_update_time() -> None:
    raw = make_raw(
        [
            acme(
                "2400000001",
                "2",
                2,
                source_system="harvest_api",
                source_file="harvest_api:123456",
                approved_raw="approved",
                source_record=_record(approval_status="approved", updated_at="2026-03-06T17:00:00Z"),
            ),
            acme(
                "2400000002",
                "1",
                3,
                source_system="harvest_api",
                source_file="harvest_api:123456",
                approved_raw="submitted",
                source_record=_record(approval_status="submitted", updated_at="2026-03-04T08:00:00Z"),
            ),
        ]
    )
    mapping = mapping_with()
    items = apply_approvals(clean_and_map(raw, mapping).work_items, raw, None, mapping)
    assert items.sort("source_id").select("approved_by", "approved_at", "billing_status").rows() == [
        ("harvest:123456", _ts("2026-03-06T17:00:00+00:00"), "billable"),
        (None, None, "held_unapproved"),
    ]


RAW = [
    acme("a1", "7.5", 2, approved_raw="No"),  # approved by the feed: billed
    acme("a2", "2", 3, task="Design"),  # approved in the source, withdrawn by the feed: held
    acme("a3", "1", 4),  # approved in the source, no feed row: billed, approver unknown
]
FEED = (
    "source_system,source_id,status,approved_by,approved_at\n"
    "canonical_csv,a1,approved,Grace Hopper,2026-03-06T10:00:00Z\n"
    "canonical_csv,a2,approved,Grace Hopper,2026-03-06T10:00:00Z\n"
    "canonical_csv,a2,rejected,Grace Hopper,2026-03-07T09:00:00Z\n"  # later row wins
)


def test_feed_approves_and_withdraws_and_billed_lines_carry_the_approval(tmp_path: Path) -> None:
    mapping = mapping_with()
    feed = _feed(tmp_path, FEED)
    daily = run_daily(make_raw(RAW), mapping, PROVIDER, approvals=feed)
    assert daily.work_items.sort("source_id").select(
        "source_id", "is_approved", "approved_by", "billing_status"
    ).rows() == [
        ("a1", True, "Grace Hopper", "billable"),
        ("a2", False, None, "held_unapproved"),
        ("a3", True, None, "billable"),
    ]
    books = Books(tmp_path, mapping)
    books.lake.write_partitions(
        "staging.fx_billables",
        daily.fx,
        [("us", d.isoformat()) for d in (date(2026, 3, day) for day in range(1, 32))],
        "fx",
        pl.col("work_date").cast(pl.String),
    )
    base = books.invoice(MARCH)
    result = books.bill(MARCH)
    # register: every billed entry with its approval; document and invoice lines aggregate it
    sources = result.state.sources.sort("source_id").select("source_id", "approved_by", "approved_at").rows()
    assert sources == [("a1", "Grace Hopper", _ts("2026-03-06T10:00:00+00:00")), ("a3", None, None)]
    lines = result.state.lines.sort("line_no").select("approved_by", "approved_at").rows()
    assert lines == [("Grace Hopper", _ts("2026-03-06T10:00:00+00:00"))]  # one line: a1 and a3 (Development)
    assert base.invoice_lines.select("approved_by", "approved_at").rows() == lines


def test_require_approver_holds_nameless_approvals_until_a_feed_names_someone(tmp_path: Path) -> None:
    data = copy.deepcopy(mapping_dict())
    data["approval"] = {"require_approval": True, "require_approver": True}
    mapping = parse_mapping(data)
    raw = make_raw([acme("n1", "1", 2), acme("n2", "1", 3)])
    before = run_daily(raw, mapping, PROVIDER)
    assert before.fx.sort("source_id")["billing_status"].to_list() == ["held_no_approver", "held_no_approver"]
    assert before.fx["amount_minor"].to_list() == [0, 0]  # held: nothing accrued or billed yet
    feed = _feed(tmp_path, "source_system,source_id,status,approved_by\ncanonical_csv,n1,approved,Ann Lee\n")
    after = run_daily(raw, mapping, PROVIDER, approvals=feed)
    assert after.fx.sort("source_id").select("billing_status", "amount_minor", "approved_by").rows() == [
        ("billable", 15000, "Ann Lee"),
        ("held_no_approver", 0, None),
    ]
    result, _ = bill_month(mapping, [acme("n1", "1", 2), acme("n2", "1", 3)], MARCH)
    assert result.state.documents.height == 0  # without the feed nothing can be billed
    # a client that does not require a name is billed without one
    data["clients"][0]["require_approver"] = False
    assert run_daily(raw, parse_mapping(data), PROVIDER).fx["billing_status"].to_list() == ["billable"] * 2


def test_unusable_feed_rows_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ApprovalFeedError) as exc:
        _feed(
            tmp_path,
            "source_system,source_id,status,approved_by,approved_at\n"
            "canonical_csv,a1,approved,Ann,2026-13-45\n"
            "canonical_csv,,approved,Ann,\n"
            "canonical_csv,a3,maybe,Ann,\n",
        )
    assert str(exc.value).splitlines()[1:] == [
        "log.csv row 1: approved_at '2026-13-45' is not an ISO timestamp",
        "log.csv row 2: source_system and source_id are required",
        "log.csv row 3: status 'maybe' is not approved, unapproved or rejected",
    ]


def test_demo_writes_an_approval_log_of_the_approved_entries(tmp_path: Path) -> None:
    from pm_accounting_pipeline.demo.generator import (
        DemoConfig,
        generate,
        write_approvals,
        write_harvest_csvs,
    )

    config = DemoConfig(entries=400)
    ds = generate(config)
    exports = write_harvest_csvs(ds, tmp_path / "exports", config)
    written = write_approvals(ds, exports, tmp_path / "landing")
    assert {p.parent.parent.name for p in written} == set(ds.entities["entity"].to_list())
    mapping = parse_mapping(__import__("yaml").safe_load(ds.mapping_yaml))
    feed = read_feed(sorted({p.parent for p in written}))
    parsed = pl.concat(
        [
            parse_file(p, p.parent.name, mapping, extracted_at=datetime(2026, 1, 1, tzinfo=UTC)).rows
            for p in exports
        ]
    )
    approved = parsed.filter(pl.col("approved_raw").str.to_lowercase() == "yes")
    assert feed.height == approved["source_id"].n_unique() > 0
    assert set(feed["source_id"]) == set(approved["source_id"])
    assert feed["approved"].all() and feed["approved_by"].null_count() == 0
    # approved on the Monday after the work, at 09:00 UTC
    dated = feed.join(approved.select("source_id", "work_date").unique("source_id"), on="source_id")
    assert (dated["approved_at"].dt.weekday() == 1).all() and (dated["approved_at"].dt.hour() == 9).all()
    days = (dated["approved_at"].dt.date() - dated["work_date"]).dt.total_days()
    assert days.min() >= 1 and days.max() <= 7
