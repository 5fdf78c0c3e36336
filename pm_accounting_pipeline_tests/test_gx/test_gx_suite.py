"""The great-expectations ledger suite: what passes, what fails (and under which expectation name),
and the Data Docs it renders."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.defs.ledger.gx_suite import (
    ENTRY_BALANCE_SUITE,
    INVOICES_SUITE,
    LINES_SUITE,
    SuiteOutcome,
    validate_ledger,
)
from pm_accounting_pipeline_tests.test_gx.conftest import (
    balanced_rows,
    invoice,
    invoices_frame,
    line,
    lines_frame,
)

pytestmark = [pytest.mark.gx, pytest.mark.xdist_group("gx"), pytest.mark.usefixtures("gx_loaded")]

USD = {"USD", "EUR"}


def _only_failure(outcome: SuiteOutcome, suite: str, expectation: str, column: str | None) -> dict:
    hits = [
        f
        for f in outcome.failed
        if (f["suite"], f["expectation"], f["column"]) == (suite, expectation, column)
    ]
    assert len(hits) == 1, outcome.failed
    return hits[0]


def test_balanced_ledger_with_invoices_passes_every_expectation(tmp_path: Path) -> None:
    outcome = validate_ledger(
        lines_frame(balanced_rows()), invoices_frame([invoice("ACME-202603-0001")]), tmp_path, currencies=USD
    )

    assert outcome.failed == []
    assert outcome.success is True
    lines, entries, invoices = (
        outcome.statistics["suites"][s] for s in (LINES_SUITE, ENTRY_BALANCE_SUITE, INVOICES_SUITE)
    )
    assert (lines["rows"], entries["rows"], invoices["rows"]) == (5, 2, 1)
    assert (
        outcome.evaluated
        == lines["evaluated_expectations"]
        + entries["evaluated_expectations"]
        + invoices["evaluated_expectations"]
    )
    assert outcome.evaluated == 21 + 10 + 16
    assert outcome.statistics["unsuccessful_expectations"] == 0


def test_frames_built_for_the_tests_carry_the_contract_dtypes() -> None:
    assert lines_frame(balanced_rows()).schema == empty_frame("ledger.journal_lines").schema
    assert invoices_frame([invoice("X-1")]).schema == empty_frame("ledger.invoices").schema


def test_empty_partition_passes(tmp_path: Path) -> None:
    outcome = validate_ledger(empty_frame("ledger.journal_lines"), empty_frame("ledger.invoices"), None)

    assert outcome.success is True, outcome.failed
    assert outcome.statistics["suites"][LINES_SUITE]["rows"] == 0


def test_unbalanced_entry_fails_the_entry_balance_expectation_naming_the_entry() -> None:
    rows = balanced_rows()
    rows[2] = line("E2", 1, debit=12_005, account="1200")  # debits exceed credits by 0.05

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    assert outcome.success is False
    failure = _only_failure(
        outcome, ENTRY_BALANCE_SUITE, "expect_column_values_to_be_in_set", "imbalance_minor"
    )
    assert (failure["unexpected_count"], failure["sample"], failure["rows"]) == (1, "5", "E2")
    functional = _only_failure(
        outcome, ENTRY_BALANCE_SUITE, "expect_column_values_to_be_in_set", "functional_imbalance_milli"
    )
    assert functional["sample"] == "50"  # 0.050 in thousandths
    # the lines themselves are fine: only the per-entry batch fails
    assert outcome.statistics["suites"][LINES_SUITE]["success"] is True


def test_negative_debit_fails_the_non_negative_expectation() -> None:
    rows = balanced_rows()
    rows[0] = line("E1", 1, debit=-15_000, account="1210")
    rows[1] = line("E1", 2, credit=-15_000, account="4000")  # still balances: only the signs are wrong

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    assert outcome.success is False
    debit_minor = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_between", "debit_minor")
    assert (debit_minor["unexpected_count"], debit_minor["sample"], debit_minor["rows"]) == (
        1,
        "-15000",
        "E1-L1",
    )
    debit = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_between", "debit")
    assert debit["sample"] == "-150000"  # -150.000 as exact thousandths
    assert (
        _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_between", "credit_minor")["rows"]
        == "E1-L2"
    )
    assert all(f["suite"] == LINES_SUITE for f in outcome.failed)


def test_line_with_both_debit_and_credit_fails_the_one_side_expectation() -> None:
    rows = balanced_rows()
    rows[0] = line("E1", 1, debit=15_000, credit=5_000, account="1210")
    rows[1] = line("E1", 2, debit=5_000, credit=15_000, account="4000")  # entry still balances

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    failure = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_in_set", "gx_nonzero_sides")
    assert (failure["unexpected_count"], failure["sample"], failure["rows"]) == (2, "2, 2", "E1-L1, E1-L2")
    assert len(outcome.failed) == 1


def test_line_with_neither_debit_nor_credit_fails_the_one_side_expectation() -> None:
    rows = [*balanced_rows(), line("E1", 3, account="4000")]

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    failure = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_in_set", "gx_nonzero_sides")
    assert (failure["sample"], failure["rows"]) == ("0", "E1-L3")


def test_null_account_fails_the_not_null_expectation() -> None:
    rows = balanced_rows()
    rows[3] = line("E2", 2, credit=10_000, account=None)

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    failure = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_not_be_null", "account")
    assert (failure["unexpected_count"], failure["rows"]) == (1, "E2-L2")
    assert len(outcome.failed) == 1


def test_duplicate_line_id_fails_the_unique_expectation() -> None:
    rows = [*balanced_rows(), line("E1", 2, credit=0, debit=0)]
    rows[-1]["debit_minor"], rows[-1]["credit_minor"] = 0, 1  # a real line, same id as E1-L2

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    failure = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_unique", "line_id")
    assert (failure["unexpected_count"], failure["sample"]) == (2, "E1-L2, E1-L2")


def test_currency_outside_the_mapping_fails_the_currency_set_expectation() -> None:
    rows = balanced_rows()
    rows[0] = line("E1", 1, debit=15_000, currency="GBP")
    rows[1] = line("E1", 2, credit=15_000, currency="GBP", account="4000")

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)
    anything_iso = validate_ledger(lines_frame(rows), None, None, currencies=None)

    failure = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_in_set", "currency")
    assert (failure["unexpected_count"], failure["sample"]) == (2, "GBP, GBP")
    assert anything_iso.success is True, anything_iso.failed


def test_entry_mixing_currencies_fails_the_one_currency_expectation() -> None:
    rows = balanced_rows()
    rows[1] = line("E1", 2, credit=15_000, currency="EUR", account="4000")

    outcome = validate_ledger(lines_frame(rows), None, None, currencies=USD)

    failure = _only_failure(
        outcome, ENTRY_BALANCE_SUITE, "expect_column_values_to_be_in_set", "currency_count"
    )
    assert (failure["sample"], failure["rows"]) == ("2", "E1")


def test_posting_date_outside_the_plausible_range_fails() -> None:
    rows = balanced_rows()
    rows[4] = line("E2", 3, credit=2_000, account="2200", posting_date=date(1926, 3, 31))  # a year typo

    outcome = validate_ledger(
        lines_frame(rows),
        None,
        None,
        currencies=USD,
        posting_date_range=(date(2026, 1, 1), date(2026, 12, 31)),
    )

    failure = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_be_between", "posting_date")
    assert (failure["sample"], failure["rows"]) == ("1926-03-31", "E2-L3")


def test_missing_contract_column_fails_the_column_set_expectation_without_raising() -> None:
    outcome = validate_ledger(lines_frame(balanced_rows()).drop("account"), None, None, currencies=USD)

    failure = _only_failure(outcome, LINES_SUITE, "expect_table_columns_to_match_set", None)
    assert failure["observed"] == "missing: ['account']"
    not_null = _only_failure(outcome, LINES_SUITE, "expect_column_values_to_not_be_null", "account")
    assert "account" in not_null["exception"]


def test_duplicate_invoice_number_fails_the_unique_expectation() -> None:
    invoices = invoices_frame(
        [invoice("ACME-202603-0001"), invoice("ACME-202603-0001", subtotal=500, tax=100)]
    )

    outcome = validate_ledger(lines_frame(balanced_rows()), invoices, None, currencies=USD)

    failure = _only_failure(outcome, INVOICES_SUITE, "expect_column_values_to_be_unique", "invoice_number")
    assert (failure["unexpected_count"], failure["sample"]) == (2, "ACME-202603-0001, ACME-202603-0001")
    assert [f["column"] for f in outcome.failed] == ["invoice_number"]


def test_invoice_total_not_equal_to_subtotal_plus_tax_fails_the_total_expectation() -> None:
    invoices = invoices_frame([invoice("A-1"), invoice("A-2", subtotal=10_000, tax=2_000, total=12_001)])

    outcome = validate_ledger(lines_frame(balanced_rows()), invoices, None, currencies=USD)

    minor = _only_failure(
        outcome, INVOICES_SUITE, "expect_column_values_to_be_in_set", "gx_total_mismatch_minor"
    )
    assert (minor["sample"], minor["rows"]) == ("1", "A-2")
    milli = _only_failure(
        outcome, INVOICES_SUITE, "expect_column_values_to_be_in_set", "gx_total_mismatch_milli"
    )
    assert milli["sample"] == "10"  # 0.01 in thousandths


def test_failures_are_flat_scalars_that_make_a_polars_frame() -> None:
    rows = balanced_rows()
    rows[3] = line("E2", 2, credit=10_000, account=None)
    invoices = invoices_frame([invoice("A-1"), invoice("A-1", subtotal=1)])

    outcome = validate_ledger(lines_frame(rows), invoices, None, currencies=USD)

    frame = pl.DataFrame(outcome.failed).cast(pl.String)
    assert frame.columns == [
        "suite",
        "expectation",
        "column",
        "unexpected_count",
        "unexpected_percent",
        "observed",
        "sample",
        "rows",
        "exception",
    ]
    assert frame.get_column("suite").to_list() == [LINES_SUITE, INVOICES_SUITE]


def test_data_docs_index_links_every_validation_and_is_rewritten_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "reports" / "gx"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    rows = balanced_rows()
    rows[3] = line("E2", 2, credit=10_000, account=None)

    first = validate_ledger(lines_frame(rows), invoices_frame([invoice("A-1")]), docs, currencies=USD)
    pages = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.html"))
    second = validate_ledger(lines_frame(rows), invoices_frame([invoice("A-1")]), docs, currencies=USD)

    assert first.docs_index == docs / "index.html"
    index = first.docs_index.read_text()
    validations = [p for p in pages if p.startswith("validations/")]
    assert validations == [
        "validations/ledger_suite/entry_balance/ledger/20260331T000000.000000Z/ledger-entry_balances.html",
        "validations/ledger_suite/invoices/ledger/20260331T000000.000000Z/ledger-invoices.html",
        "validations/ledger_suite/ledger/20260331T000000.000000Z/ledger-journal_lines.html",
    ]
    assert all(v in index for v in validations)
    lines_page = (docs / validations[2]).read_text()
    assert "exactly one of debit_minor and credit_minor" in lines_page
    # the same data and run name give the same pages, not a second wall-clock-stamped set
    assert second.docs_index == first.docs_index
    assert sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.html")) == pages
    assert list(tmpdir.iterdir()) == []  # no default temporary site was built beside it


def test_no_docs_dir_writes_nothing_not_even_a_temporary_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))

    outcome = validate_ledger(lines_frame(balanced_rows()), None, None, currencies=USD)

    assert outcome.docs_index is None
    assert list(workdir.iterdir()) == []
    assert list(tmpdir.iterdir()) == []
