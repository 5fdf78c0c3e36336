"""Billing as of a date: `run_partition(..., through=DATE)` issues the month's documents dated on or
before DATE, needs only the days up to it, and later runs keep what it issued.

Acme bills 150.00 USD/h, Trusted Client 100.00 USD/h (default card), both with 8% tax
(helpers.mapping_with). March 2026: Sunday 1 March, then ISO weeks 2-8, 9-15, 16-22, 23-29, 30-31.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import parse_mapping
from pm_accounting_pipeline.lib.billing import IncompletePeriodError, record_request
from pm_accounting_pipeline_tests.test_billing.helpers import (
    MARCH,
    Books,
    acme,
    acme_cycle_data,
    acme_cycle_mapping,
    balances,
    invoke_billing_cli,
    write_env,
)

UNBILLED, RECEIVABLE, TAX = ("1210", "USD"), ("1200", "USD"), ("2200", "USD")
D = date


def trust(source_id: str, hours: str, day: int) -> dict:
    return acme(source_id, hours, day, client="Trusted Client", project="Retainer")


def _docs(books: Books) -> list[tuple]:
    return (
        books.table("ledger.billing_documents")
        .sort("document_number")
        .select("document_number", "customer_ref", "period_start", "period_end", "issue_date", "total_minor")
        .rows()
    )


def _frozen_view(books: Books, ids: list[str]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Documents, lines and register rows of the given documents, as stored."""
    docs = (
        books.table("ledger.billing_documents").filter(pl.col("document_id").is_in(ids)).sort("document_id")
    )
    lines = books.table("ledger.billing_document_lines").filter(pl.col("document_id").is_in(ids))
    srcs = books.table("ledger.billing_line_sources").filter(pl.col("document_id").is_in(ids))
    return (
        docs.rows(),
        lines.sort("document_id", "line_no").rows(),
        srcs.sort("document_id", "source_id").rows(),
    )


WEEKLY = [
    acme("a1", "2", 3),  # Tue 3 March, week 2-8: 300.00 + 24.00 tax = 324.00
    acme("a2", "4", 10),  # Tue 10 March, week 9-15: 600.00 + 48.00 = 648.00
    acme("a3", "1", 17),  # Tue 17 March, week 16-22: 150.00 + 12.00 = 162.00
    trust("t1", "5", 4),  # Wed 4 March, monthly: 500.00 + 40.00 = 540.00
]


def test_weekly_invoices_mid_month_then_the_close_continues_the_numbering(tmp_path: Path) -> None:
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    books.load(WEEKLY, [MARCH], through=D(2026, 3, 15))  # only 1-15 March exist
    interim = books.bill(MARCH, through=D(2026, 3, 15))
    assert interim.new_documents == 2
    # the two weeks that ended by the 15th; nothing monthly (Trusted) before the month end
    assert _docs(books) == [
        ("us-202603-0001", "C-ACME", D(2026, 3, 2), D(2026, 3, 8), D(2026, 3, 8), 32400),
        ("us-202603-0002", "C-ACME", D(2026, 3, 9), D(2026, 3, 15), D(2026, 3, 15), 64800),
    ]
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("972.00")  # 324.00 + 648.00
    assert tb[TAX] == Decimal("-72.00")  # 24.00 + 48.00
    assert tb[UNBILLED] == Decimal("500.00")  # t1 accrued, not invoiced yet
    ids = books.table("ledger.billing_documents")["document_id"].to_list()
    issued = _frozen_view(books, ids)

    # The same through date again: nothing new, the same files.
    again = books.bill(MARCH, through=D(2026, 3, 15))
    assert again.new_documents == 0
    assert _frozen_view(books, ids) == issued

    # The rest of the month, ledger/invoices and the close.
    books.load(WEEKLY, [MARCH])
    base = books.invoice(MARCH)
    close = books.bill(MARCH)
    assert close.new_documents == 2
    assert _docs(books) == [
        ("us-202603-0001", "C-ACME", D(2026, 3, 2), D(2026, 3, 8), D(2026, 3, 8), 32400),
        ("us-202603-0002", "C-ACME", D(2026, 3, 9), D(2026, 3, 15), D(2026, 3, 15), 64800),
        ("us-202603-0003", "C-ACME", D(2026, 3, 16), D(2026, 3, 22), D(2026, 3, 22), 16200),
        ("us-202603-0004", "C-TRUST", D(2026, 3, 1), D(2026, 3, 31), D(2026, 3, 31), 54000),
    ]
    assert _frozen_view(books, ids) == issued  # issued documents are frozen
    # Here the issue order is ledger/invoices' order: both tables carry the same ids and numbers.
    assert sorted(base.invoices.select("invoice_id", "invoice_number").rows()) == sorted(
        close.state.documents.select("document_id", "document_number").rows()
    )
    assert close.drift.height == 0
    # Journal: every invoice once (324 + 648 + 162 + 540), nothing left unbilled.
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("1674.00")
    assert tb[TAX] == Decimal("-124.00")
    assert tb.get(UNBILLED, Decimal(0)) == 0

    # The same month closed without the interim run: the same documents and balances.
    direct = Books(tmp_path / "direct", acme_cycle_mapping("weekly"))
    direct.load(WEEKLY, [MARCH])
    direct.close(MARCH)
    assert _docs(direct) == _docs(books)
    assert sorted(direct.table("ledger.billing_documents")["document_id"].to_list()) == sorted(
        books.table("ledger.billing_documents")["document_id"].to_list()
    )
    assert balances(direct.journal()) == balances(books.journal())


def test_late_work_for_an_issued_week_goes_on_a_supplementary_invoice(tmp_path: Path) -> None:
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    rows = WEEKLY[:3]
    books.load(rows, [MARCH], through=D(2026, 3, 15))
    books.bill(MARCH, through=D(2026, 3, 15))
    first = books.table("ledger.billing_documents").filter(pl.col("document_number") == "us-202603-0001")
    issued = _frozen_view(books, first["document_id"].to_list())

    late = [*rows, acme("a4", "1", 5)]  # Thu 5 March, week 2-8 already invoiced: 150.00 + 12.00
    books.load(late, [MARCH], through=D(2026, 3, 22))
    second = books.bill(MARCH, through=D(2026, 3, 22))
    # In issue order: the supplement of week 2-8 (issued on its period end), then week 16-22.
    assert [r for r in _docs(books) if r[0] > "us-202603-0002"] == [
        ("us-202603-0003", "C-ACME", D(2026, 3, 2), D(2026, 3, 8), D(2026, 3, 8), 16200),
        ("us-202603-0004", "C-ACME", D(2026, 3, 16), D(2026, 3, 22), D(2026, 3, 22), 16200),
    ]
    assert second.new_documents == 2
    assert _frozen_view(books, first["document_id"].to_list()) == issued  # never edited
    supplement = books.table("ledger.billing_documents").filter(pl.col("document_number") == "us-202603-0003")
    srcs = books.table("ledger.billing_line_sources").filter(
        pl.col("document_id") == supplement["document_id"][0]
    )
    assert srcs.select("source_id", "charge_minor").rows() == [("a4", 15000)]

    books.load(late, [MARCH])
    close = books.close(MARCH)
    assert close.new_documents == 0
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("1296.00")  # 324 + 648 + 162 + 162
    assert tb[TAX] == Decimal("-96.00")
    assert tb.get(UNBILLED, Decimal(0)) == 0


def test_interim_numbers_follow_the_issue_runs(tmp_path: Path) -> None:
    """An earlier run gave ledger/invoices' third number to a supplement: the close numbers its
    documents after the month's last (ledger/invoices order), with no gap."""
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    rows = [*WEEKLY[:3], acme("a4", "1", 5), trust("t1", "5", 4)]
    books.load(WEEKLY[:2], [MARCH], through=D(2026, 3, 15))
    books.bill(MARCH, through=D(2026, 3, 15))  # 0001 week 2-8, 0002 week 9-15
    books.load(rows, [MARCH], through=D(2026, 3, 15))
    books.bill(MARCH, through=D(2026, 3, 15))  # 0003 supplement of week 2-8 (a4)
    books.load(rows, [MARCH])
    base = books.invoice(MARCH)
    # ledger/invoices: week 2-8 = 1, week 9-15 = 2, week 16-22 = 3, Trusted = 4
    assert base.invoices.sort("invoice_number")["total_minor"].to_list() == [48600, 64800, 16200, 54000]
    books.bill(MARCH)
    assert [(*r[0:2], r[5]) for r in _docs(books)] == [
        ("us-202603-0001", "C-ACME", 32400),
        ("us-202603-0002", "C-ACME", 64800),
        ("us-202603-0003", "C-ACME", 16200),  # the supplement (a4)
        ("us-202603-0004", "C-ACME", 16200),  # week 16-22 (ledger/invoices: 3, taken)
        ("us-202603-0005", "C-TRUST", 54000),
    ]
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("1836.00")  # 324 + 648 + 162 + 162 + 540
    assert tb.get(UNBILLED, Decimal(0)) == 0


def test_on_demand_request_mid_month_is_issued_at_once(tmp_path: Path) -> None:
    mapping = acme_cycle_mapping("on_demand")
    books = Books(tmp_path, mapping)
    rows = [acme("d1", "7.5", 2), trust("t1", "5", 4), acme("d2", "2", 25)]
    books.load(rows, [MARCH], through=D(2026, 3, 12))
    record_request(tmp_path, mapping, "C-ACME", D(2026, 3, 10), "ann")
    result = books.bill(MARCH, through=D(2026, 3, 10))
    # d1 only: 1125.00 + 90.00 tax, issued on the request's date
    assert _docs(books) == [
        ("us-202603-0001", "C-ACME", D(2026, 3, 2), D(2026, 3, 10), D(2026, 3, 10), 121500)
    ]
    assert result.new_documents == 1
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("1215.00")
    assert tb[UNBILLED] == Decimal("500.00")  # t1 (monthly) waits for the close

    books.load(rows, [MARCH])
    books.close(MARCH)
    assert _docs(books) == [
        ("us-202603-0001", "C-ACME", D(2026, 3, 2), D(2026, 3, 10), D(2026, 3, 10), 121500),
        ("us-202603-0002", "C-TRUST", D(2026, 3, 1), D(2026, 3, 31), D(2026, 3, 31), 54000),
    ]
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("1755.00")  # 1215.00 + 540.00
    assert tb[UNBILLED] == Decimal("300.00")  # d2 waits for the next request


def test_missing_days_up_to_the_through_date_are_named(tmp_path: Path) -> None:
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    books.load(WEEKLY, [MARCH], through=D(2026, 3, 15))
    books.lake.path("staging.fx_billables", "us", "2026-03-12", "fx").unlink()
    with pytest.raises(
        IncompletePeriodError, match=r"2026-03 through 2026-03-15 .* 1 day\(s\) .*\(2026-03-12\)"
    ):
        books.bill(MARCH, through=D(2026, 3, 15))
    assert books.table("ledger.billing_documents").height == 0
    # Days after the through date are not needed.
    assert books.bill(MARCH, through=D(2026, 3, 11)).new_documents == 1
    with pytest.raises(ValueError, match="2026-04-02 is not a day of 2026-03"):
        books.bill(MARCH, through=D(2026, 4, 2))


@pytest.fixture
def weekly_env(tmp_path: Path) -> dict[str, str]:
    data = acme_cycle_data("weekly")
    env = write_env(tmp_path, data)
    Books(tmp_path, parse_mapping(data)).load(WEEKLY, [MARCH], through=D(2026, 3, 15))
    return env


def test_cli_bills_a_month_through_a_date(weekly_env, monkeypatch) -> None:
    def cli(*args: str):  # type: ignore[no-untyped-def]
        return invoke_billing_cli(monkeypatch, list(args), weekly_env)

    run = cli("run", "--month", "2026-03", "--through", "2026-03-15", "--entity", "us")
    assert run.exit_code == 0, run.output
    assert "us 2026-03: 2 new document(s)" in run.output and "as of 2026-03-15" in run.output
    assert "us-202603-0002" in run.output and "648.000" in run.output
    close = cli("run", "--month", "2026-03", "--entity", "us")
    assert close.exit_code == 1 and "16 day(s) are not materialised" in close.output
    wrong = cli("run", "--month", "2026-03", "--through", "2026-04-01")
    assert wrong.exit_code == 2 and "not a day of --month 2026-03" in wrong.output


def test_dagster_bill_through_job(weekly_env) -> None:
    from pm_accounting_pipeline.defs.billing import bill_through_job
    from pm_accounting_pipeline.defs.resources import PipelineResource

    data_dir = weekly_env["PM_ACCOUNTING_DATA"]
    result = bill_through_job.execute_in_process(
        run_config={
            "ops": {"issue_documents_through": {"config": {"through": "2026-03-15", "entities": ["us"]}}}
        },
        resources={
            "pipeline": PipelineResource(data_dir=data_dir, config_path=weekly_env["PM_ACCOUNTING_CONFIG"])
        },
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("issue_documents_through")
    assert mat.partition == "2026-03-01|us"
    assert mat.metadata["invoices_by_cycle"].value == {"weekly": 2}
    docs = Books(Path(data_dir), acme_cycle_mapping("weekly")).table("ledger.billing_documents")
    assert sorted(docs.select("document_number", "total_minor").rows()) == [
        ("us-202603-0001", 32400),
        ("us-202603-0002", 64800),
    ]


def test_discount_and_retainer_across_an_interim_run_match_a_direct_close(tmp_path: Path) -> None:
    data = acme_cycle_data("weekly")
    data["retainers"] = [
        {"id": "r1", "client": "Acme Corporation", "amount": "500.00", "issue_date": "2026-03-05"}
    ]
    data["discounts"] = [
        {"id": "acme10", "scope": "client", "client": "Acme Corporation", "kind": "percentage", "value": "10"}
    ]
    mapping = parse_mapping(data)
    cols = ["document_number", "document_type", "issue_date", "total_minor", "retainer_applied_minor"]
    books = Books(tmp_path / "interim", mapping)
    books.load(WEEKLY, [MARCH], through=D(2026, 3, 15))
    books.bill(MARCH, through=D(2026, 3, 15))
    # retainer 500.00 (5 March); week 2-8: 300 - 30 + 8% = 291.60, all drawn from the retainer;
    # week 9-15: 600 - 60 + 8% = 583.20, drawn 208.40 (what is left)
    assert books.table("ledger.billing_documents").sort("document_number").select(cols).rows() == [
        ("us-202603-0001", "retainer_invoice", D(2026, 3, 5), 50000, 0),
        ("us-202603-0002", "invoice", D(2026, 3, 8), 29160, 29160),
        ("us-202603-0003", "invoice", D(2026, 3, 15), 58320, 20840),
    ]
    assert balances(books.journal())[RECEIVABLE] == Decimal("874.80")  # 500 + 291.60 + 583.20 - 500
    assert not books.table("ledger.journal_entries")["entry_id"].is_duplicated().any()
    books.load(WEEKLY, [MARCH])
    books.close(MARCH)
    direct = Books(tmp_path / "direct", mapping)
    direct.load(WEEKLY, [MARCH])
    direct.close(MARCH)
    # The same documents and amounts; the numbers follow the issue runs (the retainer invoice was
    # issued first here, after the ledger/invoices invoices in a direct close).
    key = ["document_id", "document_type", "issue_date", "total_minor", "retainer_applied_minor"]
    assert (
        books.table("ledger.billing_documents")
        .select(key)
        .sort("document_id")
        .equals(direct.table("ledger.billing_documents").select(key).sort("document_id"))
    )
    assert books.table("ledger.billing_documents").sort("document_number")["document_type"].to_list() == [
        "retainer_invoice",
        "invoice",
        "invoice",
        "invoice",
        "invoice",
    ]
    tb = balances(books.journal())
    assert tb == balances(direct.journal())
    # one entry per id across ledger/invoices and billing (posting keys documents on it)
    assert not books.table("ledger.journal_entries")["entry_id"].is_duplicated().any()
    # 500 + 291.60 + 583.20 + 145.80 (week 16-22: 150 - 15 + 8%) + 540.00 - 500 drawn
    assert tb[RECEIVABLE] == Decimal("1560.60")
    assert tb.get(UNBILLED, Decimal(0)) == 0


def test_journal_follows_issued_documents_when_ledger_invoices_ran_mid_month(tmp_path: Path) -> None:
    books = Books(tmp_path, acme_cycle_mapping("weekly"))
    books.load(WEEKLY, [MARCH], through=D(2026, 3, 15))
    books.invoice(MARCH)  # ledger/invoices of half a month: weeks 2-8, 9-15 and Trusted's month
    interim = books.bill(MARCH, through=D(2026, 3, 15))
    assert _docs(books) == [
        ("us-202603-0001", "C-ACME", D(2026, 3, 2), D(2026, 3, 8), D(2026, 3, 8), 32400),
        ("us-202603-0002", "C-ACME", D(2026, 3, 9), D(2026, 3, 15), D(2026, 3, 15), 64800),
    ]
    # Trusted's invoice (31 March) is not issued yet: its ledger/invoices entry is reversed for now.
    assert interim.ledger.entries.select("entry_type", "posting_date").rows() == [
        ("invoice_adjustment", D(2026, 3, 31))
    ]
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("972.00") and tb[UNBILLED] == Decimal("500.00")
    books.load(WEEKLY, [MARCH])
    books.close(MARCH)
    tb = balances(books.journal())
    assert tb[RECEIVABLE] == Decimal("1674.00") and tb.get(UNBILLED, Decimal(0)) == 0
    # An interim run on the closed month issues nothing and leaves the journal as it was.
    lines = books.table("ledger.journal_lines").sort("line_id")
    assert books.bill(MARCH, through=D(2026, 3, 15)).new_documents == 0
    assert books.table("ledger.journal_lines").sort("line_id").equals(lines)
