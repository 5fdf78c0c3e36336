"""Billing cycles: weekly invoices (ISO weeks split at month end) and on-demand billing requests.

Acme bills 150.00 USD/h with 8% tax (helpers.mapping_with). Calendar: 1 March 2026 is a Sunday,
Monday 30 March to Sunday 5 April is the week crossing the month end.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import parse_mapping
from pm_accounting_pipeline.core.billing.cycles import month_periods
from pm_accounting_pipeline.lib.billing import record_request
from pm_accounting_pipeline_tests.test_billing.helpers import (
    APRIL,
    MARCH,
    Books,
    acme,
    acme_cycle_data,
    acme_cycle_mapping,
    balances,
    invoke_billing_cli,
    write_env,
)

UNBILLED, RECEIVABLE = ("1210", "USD"), ("1200", "USD")


def _docs(books: Books) -> list[tuple]:
    return (
        books.table("ledger.billing_documents")
        .sort("issue_date", "document_number")
        .select(
            "document_number",
            "period_start",
            "period_end",
            "issue_date",
            "due_date",
            "subtotal_minor",
            "total_minor",
        )
        .rows()
    )


def test_month_periods_split_iso_weeks_at_month_end() -> None:
    assert month_periods("weekly", date(2026, 3, 1), date(2026, 3, 31)) == [
        (date(2026, 3, 1), date(2026, 3, 1)),
        (date(2026, 3, 2), date(2026, 3, 8)),
        (date(2026, 3, 9), date(2026, 3, 15)),
        (date(2026, 3, 16), date(2026, 3, 22)),
        (date(2026, 3, 23), date(2026, 3, 29)),
        (date(2026, 3, 30), date(2026, 3, 31)),
    ]
    assert month_periods("weekly", date(2026, 4, 1), date(2026, 4, 30))[0] == (
        date(2026, 4, 1),
        date(2026, 4, 5),
    )
    assert month_periods("monthly", date(2026, 2, 1), date(2026, 2, 28)) == [
        (date(2026, 2, 1), date(2026, 2, 28))
    ]
    assert month_periods("on_demand", date(2026, 2, 1), date(2026, 2, 28)) == []


WEEKLY_ROWS = [
    acme("w0", "1", 1),  # Sun 1 March: week 23 Feb - 1 Mar, March part = 1 March: 150.00
    acme("w1", "7.5", 2),  # Mon 2 March: week 2-8 March: 1125.00
    acme("w2", "2", 31),  # Tue 31 March: week 30 Mar - 5 Apr, March part 30-31: 300.00
    acme("w3", "4", 2, month=4),  # Thu 2 April: same week, April part 1-5 April: 600.00
]


def test_weekly_invoices_split_the_week_that_crosses_the_month_end(tmp_path: Path) -> None:
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    books.load(WEEKLY_ROWS, [MARCH, APRIL])
    march_base = books.invoice(MARCH)
    march = books.bill(MARCH)
    books.close(APRIL)
    d = date
    assert _docs(books) == [
        # net, + 8% tax; issued on the period end, due 30 days later; numbered in issue order
        ("us-202603-0001", d(2026, 3, 1), d(2026, 3, 1), d(2026, 3, 1), d(2026, 3, 31), 15000, 16200),
        ("us-202603-0002", d(2026, 3, 2), d(2026, 3, 8), d(2026, 3, 8), d(2026, 4, 7), 112500, 121500),
        ("us-202603-0003", d(2026, 3, 30), d(2026, 3, 31), d(2026, 3, 31), d(2026, 4, 30), 30000, 32400),
        ("us-202604-0001", d(2026, 4, 1), d(2026, 4, 5), d(2026, 4, 5), d(2026, 5, 5), 60000, 64800),
    ]
    # ledger/invoices cut the same periods: billing finalises each of its invoices (same id and number)
    assert sorted(march_base.invoices.select("invoice_id", "invoice_number").rows()) == sorted(
        march.state.documents.select("document_id", "document_number").rows()
    )
    assert march.drift.height == 0
    # each invoice's lines keep their source rows
    srcs = books.table("ledger.billing_line_sources").join(
        books.table("ledger.billing_documents").select("document_id", "document_number"), on="document_id"
    )
    assert sorted(srcs.select("document_number", "source_id").rows()) == [
        ("us-202603-0001", "w0"),
        ("us-202603-0002", "w1"),
        ("us-202603-0003", "w2"),
        ("us-202604-0001", "w3"),
    ]
    tb = balances(books.journal())
    assert tb.get(UNBILLED, Decimal(0)) == 0
    assert tb[RECEIVABLE] == Decimal("162.00") + Decimal("1215.00") + Decimal("324.00") + Decimal("648.00")
    meta_cycles = books.table("ledger.billing_documents")["period_end"].dt.month().to_list()
    assert sorted(meta_cycles) == [3, 3, 3, 4]


def test_weekly_rerun_is_idempotent(tmp_path: Path) -> None:
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    books.load(WEEKLY_ROWS, [MARCH])
    books.close(MARCH)
    before = books.table("ledger.billing_documents")
    again = books.close(MARCH)
    assert again.new_documents == 0
    assert books.table("ledger.billing_documents").equals(before)


ON_DEMAND_ROWS = [
    acme("d1", "7.5", 2),  # 1125.00
    acme("d2", "2", 31),  # 300.00
    acme("d3", "4", 2, month=4),  # 600.00
    acme("d4", "1", 20, month=4),  # 150.00, after the request's date
]


def test_on_demand_work_waits_unbilled_until_a_request_bills_it(tmp_path: Path) -> None:
    mapping = acme_cycle_mapping("on_demand")
    books = Books(tmp_path, mapping)
    books.load(ON_DEMAND_ROWS, [MARCH, APRIL])
    march_base = books.invoice(MARCH)
    march = books.bill(MARCH)
    # No invoice by the calendar: the work is visible in unbilled receivables.
    assert march_base.invoices.height == 0 and march.state.documents.height == 0
    # (March and April are both accrued: 1125.00 + 300.00 + 600.00 + 150.00)
    assert balances(books.journal())[UNBILLED] == Decimal("2175.00")

    assert record_request(tmp_path, mapping, "C-ACME", date(2026, 4, 10), "ann") == (
        "us",
        "C-ACME-2026-04-10",
        True,
    )
    assert record_request(tmp_path, mapping, "C-ACME", date(2026, 4, 10))[2] is False  # recorded once
    books.close(APRIL)
    d = date
    # d1 + d2 + d3 = 2025.00, tax 162.00; period from the first unbilled work to the request's date
    assert _docs(books) == [
        ("us-202604-0001", d(2026, 3, 2), d(2026, 4, 10), d(2026, 4, 10), d(2026, 5, 10), 202500, 218700),
    ]
    tb = balances(books.journal())
    assert tb[UNBILLED] == Decimal("150.00")  # d4 waits for the next request
    assert tb[RECEIVABLE] == Decimal("2187.00")
    # Re-running April issues nothing new: the request is fulfilled, d4 still waits.
    assert books.bill(APRIL).new_documents == 0
    assert len(_docs(books)) == 1
    from pm_accounting_pipeline.lib.warehouse import connect_in_memory

    con = connect_in_memory(books.lake)
    assert con.sql(
        "SELECT customer_ref, entries, first_work_date, amount_minor FROM analytics.unbilled_work"
    ).fetchall() == [("C-ACME", 1, date(2026, 4, 20), 15000)]


def test_requests_for_other_clients_are_refused_or_rejected(tmp_path: Path) -> None:
    mapping = acme_cycle_mapping("on_demand")
    with pytest.raises(ValueError, match="C-TOKYO is billed monthly"):
        record_request(tmp_path, mapping, "C-TOKYO", date(2026, 4, 10))
    with pytest.raises(ValueError, match="no client with customer_ref 'C-NOPE'"):
        record_request(tmp_path, mapping, "C-NOPE", date(2026, 4, 10))
    folder = tmp_path / "landing" / "us" / "billing_requests"
    folder.mkdir(parents=True)
    (folder / "hand.csv").write_text(
        "request_id,customer_ref,date\nr1,C-NOPE,2026-04-10\nr2,C-TOKYO,2026-04-11\nr3,C-ACME,10.04.2026\n"
    )
    books = Books(tmp_path, mapping)
    books.load(ON_DEMAND_ROWS, [APRIL])
    result = books.close(APRIL)
    assert result.state.documents.height == 0
    rejected = result.state.rejections.sort("source_row").select("input", "source_row", "reason").rows()
    assert rejected == [
        ("billing_requests", 1, "unknown_client"),
        ("billing_requests", 2, "not_on_demand"),
        ("billing_requests", 3, "bad_date"),
    ]
    assert pl.Series(result.state.rejections["detail"]).str.contains("C-TOKYO is billed monthly").any()


@pytest.fixture
def on_demand_env(tmp_path: Path) -> dict[str, str]:
    data = acme_cycle_data("on_demand")
    env = write_env(tmp_path, data)
    books = Books(tmp_path, parse_mapping(data))
    books.load([acme("d1", "7.5", 2), acme("d2", "2", 25)], [MARCH])
    books.invoice(MARCH)
    return env


def test_cli_bills_an_on_demand_client_through_a_date(on_demand_env, monkeypatch) -> None:
    def cli(*args: str):  # type: ignore[no-untyped-def]
        return invoke_billing_cli(monkeypatch, list(args), on_demand_env)

    run = cli("run", "--client", "C-ACME", "--through", "2026-03-20")
    assert run.exit_code == 0, run.output
    assert "request C-ACME-2026-03-20 recorded for us" in run.output
    assert "us 2026-03: 1 new document(s)" in run.output
    # d1 only (2 March): 1125.00 + 8% = 1215.00; d2 (25 March) waits for the next request
    assert "us-202603-0001" in run.output and "1215.000" in run.output
    assert "2026-03-02" in run.output and "2026-03-20" in run.output  # the invoice's period
    unbilled = cli("unbilled")
    assert unbilled.exit_code == 0, unbilled.output
    assert "C-ACME" in unbilled.output and "2026-03-25" in unbilled.output and "30000" in unbilled.output
    later = cli("run", "--client", "C-ACME", "--through", "2026-04-10")
    assert later.exit_code == 1
    assert "issued by the 2026-04 billing run" in later.output
    requests = (
        Path(on_demand_env["PM_ACCOUNTING_DATA"]) / "landing/us/billing_requests/requests.csv"
    ).read_text()
    assert requests.splitlines()[1:] == [
        "C-ACME-2026-03-20,C-ACME,2026-03-20,,",
        "C-ACME-2026-04-10,C-ACME,2026-04-10,,",
    ]
    monthly = cli("run", "--client", "C-TOKYO", "--through", "2026-03-20")
    assert monthly.exit_code == 2 and "C-TOKYO is billed monthly" in monthly.output


def test_dagster_job_records_and_issues_an_on_demand_request(on_demand_env) -> None:
    from pm_accounting_pipeline.defs.billing import bill_on_demand_job
    from pm_accounting_pipeline.defs.resources import PipelineResource

    data_dir = on_demand_env["PM_ACCOUNTING_DATA"]
    result = bill_on_demand_job.execute_in_process(
        run_config={
            "ops": {"issue_on_demand_request": {"config": {"client": "C-ACME", "through": "2026-03-31"}}}
        },
        resources={
            "pipeline": PipelineResource(data_dir=data_dir, config_path=on_demand_env["PM_ACCOUNTING_CONFIG"])
        },
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("issue_on_demand_request")
    assert mat.partition == "2026-03-01|us"
    assert mat.metadata["invoices_by_cycle"].value == {"on_demand": 1}
    docs = Books(Path(data_dir), parse_mapping(yaml_load(on_demand_env))).table("ledger.billing_documents")
    # d1 + d2 = 1425.00 + 8% = 1539.00, period 2 March .. 31 March
    assert docs.select("period_start", "period_end", "total_minor").rows() == [
        (date(2026, 3, 2), date(2026, 3, 31), 153900)
    ]


def yaml_load(env: dict[str, str]) -> dict:
    import yaml

    return yaml.safe_load(Path(env["PM_ACCOUNTING_CONFIG"]).read_text())
