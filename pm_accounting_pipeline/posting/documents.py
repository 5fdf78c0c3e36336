"""Turn the ledger tables (journal entries and lines, invoices and invoice lines) into documents to post.

A document is one invoice (or credit memo) with its lines and the journal lines of its entry, or one
journal entry that is not an invoice's (the accruals). Its content is canonical JSON (sorted keys,
amounts as exact strings and integer minor units), so the same ledger rows always give the same
content hash. Frames are built with vectorised polars; only the per-document canonicalisation and
hashing touch Python, once per document rather than per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.model import DocumentKind, LedgerInputError, UnbalancedEntryError

LEDGER_TABLES = ("journal_entries", "journal_lines", "invoices", "invoice_lines")

DOCUMENT_SCHEMA = pl.Schema(
    {
        "document_id": pl.String,
        "kind": pl.String,
        "entity": pl.String,
        "posting_date": pl.Date,
        "currency": pl.String,
        "total_minor": pl.Int64,
        "content": pl.String,
        "content_hash": pl.String,
    }
)


@dataclass(frozen=True)
class LedgerTables:
    """The four ledger tables posting reads (eager frames matching the layer contracts)."""

    journal_entries: pl.DataFrame
    journal_lines: pl.DataFrame
    invoices: pl.DataFrame
    invoice_lines: pl.DataFrame

    @classmethod
    def empty(cls) -> LedgerTables:
        return cls(*(empty_frame(f"ledger.{t}") for t in LEDGER_TABLES))


def read_ledger(lake_root: Path, entities: list[str] | None = None) -> LedgerTables:
    """Read the ledger tables from `<lake_root>/ledger/<table>/<entity>/<partition>.<writer>.parquet`.

    A table without files reads as an empty frame with the contract's schema.
    """
    frames: list[pl.DataFrame] = []
    for table in LEDGER_TABLES:
        empty = empty_frame(f"ledger.{table}")
        folder = Path(lake_root) / "ledger" / table
        files = sorted(p for p in folder.glob("**/*.parquet")) if folder.exists() else []
        if not files:
            frames.append(empty)
            continue
        lf = pl.scan_parquet(
            [str(p) for p in files], missing_columns="insert", extra_columns="ignore", schema=None
        )
        if entities is not None:
            lf = lf.filter(pl.col("entity").is_in(entities))
        frames.append(pl.concat([empty, lf.collect()], how="diagonal_relaxed"))
    return LedgerTables(*frames)


def _dec(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String)


def _postings(lines: pl.DataFrame) -> pl.DataFrame:
    """Journal lines grouped per entry, with balance totals checked per currency view."""
    sums = lines.group_by("entry_id").agg(
        pl.col("debit_minor").sum().alias("_dr"),
        pl.col("credit_minor").sum().alias("_cr"),
        pl.col("functional_debit").sum().alias("_fdr"),
        pl.col("functional_credit").sum().alias("_fcr"),
        pl.col("reporting_debit").sum().alias("_rdr"),
        pl.col("reporting_credit").sum().alias("_rcr"),
    )
    bad = sums.filter(
        (pl.col("_dr") != pl.col("_cr"))
        | (pl.col("_fdr") != pl.col("_fcr"))
        | (pl.col("_rdr") != pl.col("_rcr"))
    )
    if bad.height:
        ids = sorted(bad["entry_id"].to_list())
        raise UnbalancedEntryError(
            f"{len(ids)} journal entr{'y' if len(ids) == 1 else 'ies'} do not balance "
            f"(debits != credits in transaction, functional or reporting currency): {ids[:10]}"
        )
    return (
        lines.sort("entry_id", "line_no")
        .group_by("entry_id", maintain_order=True)
        .agg(
            pl.col("functional_currency").first(),
            pl.col("reporting_currency").first(),
            pl.struct(
                "line_no",
                "account",
                "account_role",
                "debit_minor",
                "credit_minor",
                _dec("debit"),
                _dec("credit"),
                _dec("functional_debit"),
                _dec("functional_credit"),
                _dec("reporting_debit"),
                _dec("reporting_credit"),
                "customer_ref",
                "customer_job",
                "project_code",
            ).alias("postings"),
        )
    )


def build_documents(ledger: LedgerTables) -> pl.DataFrame:
    """One row per document to post (schema DOCUMENT_SCHEMA), ordered by entity, date and id.

    Raises UnbalancedEntryError for an entry whose lines do not balance and LedgerInputError when an
    invoice has no lines or no journal lines, or an entry has no lines.
    """
    entries, lines, invoices, inv_lines = (
        ledger.journal_entries,
        ledger.journal_lines,
        ledger.invoices,
        ledger.invoice_lines,
    )
    postings = _postings(lines)

    missing_lines = entries.join(postings.select("entry_id"), on="entry_id", how="anti")
    if missing_lines.height:
        raise LedgerInputError(
            f"journal entries without lines: {sorted(missing_lines['entry_id'].to_list())[:10]}"
        )

    grouped_inv_lines = (
        inv_lines.sort("invoice_id", "line_no")
        .group_by("invoice_id", maintain_order=True)
        .agg(
            pl.struct(
                "line_no",
                "item",
                "description",
                "project_code",
                "customer_job",
                "task_name",
                "revenue_account",
                _dec("quantity"),
                _dec("unit_price"),
                "amount_minor",
                _dec("amount"),
            ).alias("lines")
        )
    )
    inv = invoices.join(grouped_inv_lines, on="invoice_id", how="left").join(
        postings, on="entry_id", how="left"
    )
    no_lines = inv.filter(pl.col("lines").is_null() | pl.col("postings").is_null())
    if no_lines.height:
        raise LedgerInputError(
            "invoices without invoice lines or without journal lines for their entry_id: "
            f"{sorted(no_lines['invoice_id'].to_list())[:10]}"
        )
    is_credit = pl.col("total_minor") < 0
    if "kind" in inv.columns:
        is_credit = is_credit | (pl.col("kind") == DocumentKind.CREDIT_MEMO.value)
    inv_docs = inv.select(
        pl.col("invoice_id").alias("document_id"),
        pl.when(is_credit)
        .then(pl.lit(DocumentKind.CREDIT_MEMO.value))
        .otherwise(pl.lit(DocumentKind.INVOICE.value))
        .alias("kind"),
        "entity",
        pl.col("issue_date").alias("posting_date"),
        "currency",
        "total_minor",
        pl.struct(
            pl.col("invoice_id").alias("document_id"),
            "entity",
            pl.col("issue_date").cast(pl.String).alias("date"),
            pl.col("due_date").cast(pl.String),
            pl.col("period_start").cast(pl.String),
            pl.col("period_end").cast(pl.String),
            "currency",
            "functional_currency",
            "reporting_currency",
            pl.col("invoice_number").alias("number"),
            "customer_ref",
            "client_name",
            "subtotal_minor",
            "tax_minor",
            "total_minor",
            _dec("subtotal"),
            _dec("tax"),
            _dec("total"),
            _dec("tax_rate"),
            "entry_id",
            "rule_version",
            "lines",
            "postings",
        )
        .struct.json_encode()
        .alias("content"),
    )

    invoice_entry_ids = invoices.select("entry_id")
    je = entries.join(invoice_entry_ids, on="entry_id", how="anti").join(postings, on="entry_id", how="inner")
    je_docs = je.select(
        pl.col("entry_id").alias("document_id"),
        pl.lit(DocumentKind.JOURNAL_ENTRY.value).alias("kind"),
        "entity",
        "posting_date",
        "currency",
        pl.col("total_debit_minor").alias("total_minor"),
        pl.struct(
            pl.col("entry_id").alias("document_id"),
            "entity",
            pl.col("posting_date").cast(pl.String).alias("date"),
            "currency",
            "functional_currency",
            "reporting_currency",
            pl.col("entry_id").alias("number"),
            "entry_type",
            "description",
            pl.col("document_id").alias("source_document_id"),
            pl.col("total_debit_minor").alias("total_minor"),
            "rule_version",
            "postings",
        )
        .struct.json_encode()
        .alias("content"),
    )
    docs = pl.concat([inv_docs, je_docs], how="vertical").sort("entity", "posting_date", "document_id")
    dup = docs.filter(pl.col("document_id").is_duplicated())
    if dup.height:
        raise LedgerInputError(f"document ids used twice: {sorted(set(dup['document_id'].to_list()))[:10]}")
    # Canonical text (sorted keys) so the hash does not depend on column order or the JSON writer.
    canonical = [jsonutil.dumps(jsonutil.loads(text)) for text in docs["content"].to_list()]
    hashes = [jsonutil.sha256_hex(text) for text in canonical]
    return docs.with_columns(
        pl.Series("content", canonical, dtype=pl.String), pl.Series("content_hash", hashes, dtype=pl.String)
    ).select(list(DOCUMENT_SCHEMA))


def empty_documents() -> pl.DataFrame:
    return pl.DataFrame(schema=DOCUMENT_SCHEMA)
