"""Documents built from the ledger tables: one per invoice and per non-invoice entry, canonical content."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import TABLES
from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.documents import LedgerTables, build_documents, read_ledger
from pm_accounting_pipeline.posting.model import LedgerInputError, UnbalancedEntryError
from pm_accounting_pipeline.posting.sample import sample_ledger


def test_sample_ledger_satisfies_the_layer_contracts() -> None:
    led = sample_ledger(5, 6, 4)
    for table, frame in (
        ("ledger.journal_entries", led.journal_entries),
        ("ledger.journal_lines", led.journal_lines),
        ("ledger.invoices", led.invoices),
        ("ledger.invoice_lines", led.invoice_lines),
    ):
        TABLES[table].validate(frame, lazy=True)


def test_one_document_per_invoice_and_per_accrual_entry_not_per_invoice_entry() -> None:
    led = sample_ledger(5, 6, 4)
    docs = build_documents(led)
    assert docs.height == 6 + 4  # the invoices' own entries travel inside the invoice documents
    assert sorted(docs.filter(pl.col("kind") == "invoice")["document_id"].to_list()) == sorted(
        led.invoices["invoice_id"].to_list()
    )
    inv = docs.filter(pl.col("kind") == "invoice").row(0, named=True)
    content = jsonutil.loads(inv["content"])
    source = led.invoices.filter(pl.col("invoice_id") == inv["document_id"]).row(0, named=True)
    assert content["total_minor"] == source["total_minor"] == inv["total_minor"]
    assert sum(p["debit_minor"] for p in content["postings"]) == sum(
        p["credit_minor"] for p in content["postings"]
    )
    assert len(content["lines"]) == source["line_count"]


def test_content_hash_is_stable_and_changes_with_an_amount() -> None:
    a = build_documents(sample_ledger(9, 3, 1))
    b = build_documents(sample_ledger(9, 3, 1))
    c = build_documents(sample_ledger(9, 3, 1, bump={0: 1}))
    assert a["content_hash"].to_list() == b["content_hash"].to_list()
    changed = set(a["content_hash"].to_list()) ^ set(c["content_hash"].to_list())
    assert len(changed) == 2  # exactly the bumped invoice, old and new hash


def test_amounts_in_content_are_exact_strings_never_floats() -> None:
    docs = build_documents(sample_ledger(2, 2, 0, currencies=("KWD",)))
    content = jsonutil.loads(docs["content"][0])
    assert isinstance(content["total"], str) and Decimal(content["total"]) * 1000 == content["total_minor"]


def test_unbalanced_entry_is_refused_with_its_id() -> None:
    led = sample_ledger(3, 1, 1)
    lines = led.journal_lines.with_columns(
        pl.when(pl.col("line_no") == 1)
        .then(pl.col("debit_minor") + 1)
        .otherwise(pl.col("debit_minor"))
        .alias("debit_minor")
    )
    with pytest.raises(UnbalancedEntryError, match="do not balance"):
        build_documents(LedgerTables(led.journal_entries, lines, led.invoices, led.invoice_lines))


def test_invoice_without_lines_is_a_clear_error() -> None:
    led = sample_ledger(3, 2, 0)
    with pytest.raises(LedgerInputError, match="invoices without invoice lines"):
        build_documents(
            LedgerTables(led.journal_entries, led.journal_lines, led.invoices, led.invoice_lines.head(0))
        )


def test_credit_memo_kind_column_marks_a_credit_memo() -> None:
    led = sample_ledger(4, 2, 0)
    invoices = led.invoices.with_columns(pl.Series("kind", ["credit_memo", "invoice"]))
    docs = build_documents(LedgerTables(led.journal_entries, led.journal_lines, invoices, led.invoice_lines))
    assert sorted(docs["kind"].to_list()) == ["credit_memo", "invoice"]


def test_read_ledger_reads_the_lake_layout_and_empty_tables(tmp_path: Path) -> None:
    led = sample_ledger(6, 3, 2)
    for table in ("journal_entries", "journal_lines", "invoices", "invoice_lines"):
        for entity in ("acme", "beta"):
            part = getattr(led, table).filter(pl.col("entity") == entity)
            target = tmp_path / "ledger" / table / entity / "2026-01.ledger_invoices.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            part.write_parquet(target)
    back = read_ledger(tmp_path)
    assert back.invoices.height == 3 and back.journal_entries.height == led.journal_entries.height
    assert (
        build_documents(back)["content_hash"].sort().to_list()
        == build_documents(led)["content_hash"].sort().to_list()
    )
    assert read_ledger(tmp_path / "nowhere").journal_lines.height == 0
