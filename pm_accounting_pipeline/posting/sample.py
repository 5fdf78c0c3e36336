"""Small, seeded, contract-valid ledgers for posting tests, the chaos harness and the benchmark.

Ids are derived from the seed and the document's index, so regenerating with `bump` (an amount
change) or `drop` (a deleted source) yields the same document ids with changed content: exactly what
an edited or tombstoned time entry looks like to posting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.ids import stable_id
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import round_to_minor
from pm_accounting_pipeline.posting.documents import LedgerTables

RULE_VERSION = "v1-sample"


@dataclass(frozen=True)
class SampleEntity:
    id: str
    functional_currency: str
    reporting_currency: str = "USD"


DEFAULT_ENTITIES = (SampleEntity("acme", "USD"), SampleEntity("beta", "EUR"))
# Units of the functional/reporting currency per one unit of the transaction currency.
_RATES = {
    ("USD", "USD"): Decimal(1),
    ("EUR", "EUR"): Decimal(1),
    ("EUR", "USD"): Decimal("1.0850"),
    ("USD", "EUR"): Decimal("0.9217"),
    ("JPY", "USD"): Decimal("0.006650"),
    ("JPY", "EUR"): Decimal("0.006130"),
    ("KWD", "USD"): Decimal("3.2550"),
    ("KWD", "EUR"): Decimal("3.0000"),
    ("GBP", "USD"): Decimal("1.2700"),
    ("GBP", "EUR"): Decimal("1.1700"),
}


def _amount(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_digits(currency)).quantize(Decimal("0.001"))


def _convert(minor: int, src: str, dst: str) -> int:
    return round_to_minor(_amount(minor, src) * _RATES[(src, dst)], dst)


def _lines_for(
    entry_id: str,
    entity: SampleEntity,
    posting_date: date,
    entry_type: str,
    currency: str,
    legs: list[tuple[str, str, int, int]],
    customer_ref: str | None,
    job: str | None,
    document_id: str | None,
) -> list[dict]:
    """Journal lines for (account, role, debit_minor, credit_minor) legs; FX rounding lands on leg 1."""
    rows = []
    conv: dict[str, list[tuple[int, int]]] = {}
    for target in (entity.functional_currency, entity.reporting_currency):
        pairs = [(_convert(d, currency, target), _convert(c, currency, target)) for _, _, d, c in legs]
        # Balance the converted legs by moving the rounding residue onto the first leg.
        diff = sum(c for _, c in pairs) - sum(d for d, _ in pairs)
        d0, c0 = pairs[0]
        pairs[0] = (d0 + diff, c0) if d0 else (d0, c0 - diff)
        conv[target] = pairs
    for i, (account, role, dr, cr) in enumerate(legs):
        fd, fc = conv[entity.functional_currency][i]
        rd, rc = conv[entity.reporting_currency][i]
        rows.append(
            {
                "line_id": stable_id("sample-line", entry_id, i + 1),
                "entry_id": entry_id,
                "line_no": i + 1,
                "entity": entity.id,
                "posting_date": posting_date,
                "entry_type": entry_type,
                "account": account,
                "account_role": role,
                "currency": currency,
                "debit_minor": dr,
                "credit_minor": cr,
                "debit": _amount(dr, currency),
                "credit": _amount(cr, currency),
                "functional_currency": entity.functional_currency,
                "functional_debit": _amount(fd, entity.functional_currency),
                "functional_credit": _amount(fc, entity.functional_currency),
                "reporting_currency": entity.reporting_currency,
                "reporting_debit": _amount(rd, entity.reporting_currency),
                "reporting_credit": _amount(rc, entity.reporting_currency),
                "customer_ref": customer_ref,
                "project_code": None,
                "customer_job": job,
                "document_id": document_id,
                "source_count": 1,
                "rule_version": RULE_VERSION,
            }
        )
    return rows


def sample_ledger(
    seed: int,
    n_invoices: int = 4,
    n_entries: int = 3,
    *,
    entities: tuple[SampleEntity, ...] = DEFAULT_ENTITIES,
    start: date = date(2026, 1, 5),
    days: int = 3,
    bump: dict[int, int] | None = None,
    drop: set[int] | frozenset[int] = frozenset(),
    currencies: tuple[str, ...] = ("USD", "EUR", "JPY", "KWD", "GBP"),
) -> LedgerTables:
    """A ledger of `n_invoices` invoices and `n_entries` accrual entries across the given entities.

    `bump` adds minor units to an invoice's first line (index -> minor units); `drop` leaves the given
    invoice indexes out, as if their source rows had been deleted.
    """
    bump = bump or {}
    rng = random.Random(seed)
    entries, lines, invoices, inv_lines = [], [], [], []
    for i in range(n_invoices):
        entity = entities[rng.randrange(len(entities))]
        currency = currencies[rng.randrange(len(currencies))]
        posting_date = start + timedelta(days=rng.randrange(days))
        customer = f"C{rng.randrange(1, 6):03d}"
        n_lines = rng.randrange(1, 4)
        invoice_id = stable_id("sample-invoice", seed, i)
        entry_id = stable_id("sample-invoice-entry", seed, i)
        digits = minor_digits(currency)
        line_rows = []
        for n in range(n_lines):
            qty = Decimal(rng.randrange(1, 40)) / 4
            price = Decimal(rng.randrange(50, 300))
            amount_minor = round_to_minor(qty * price, currency)
            if n == 0:
                amount_minor += bump.get(i, 0)
            line_rows.append((qty, price, amount_minor))
        if i in drop:
            continue
        subtotal = sum(a for _, _, a in line_rows)
        tax = round_to_minor(_amount(subtotal, currency) * Decimal("0.1"), currency) if i % 2 else 0
        total = subtotal + tax
        for n, (qty, price, amount_minor) in enumerate(line_rows):
            inv_lines.append(
                {
                    "invoice_id": invoice_id,
                    "line_no": n + 1,
                    "entity": entity.id,
                    "item": "Consulting",
                    "description": f"Consulting hours line {n + 1}",
                    "project_code": None,
                    "customer_job": f"{customer}:Job",
                    "task_name": "Consulting",
                    "revenue_account": "4000",
                    "quantity": qty,
                    "unit_price": price,
                    "amount_minor": amount_minor,
                    "amount": _amount(amount_minor, currency),
                    "source_count": 1,
                }
            )
        invoices.append(
            {
                "invoice_id": invoice_id,
                "invoice_number": f"{entity.id.upper()}-{seed}-{i:04d}",
                "entity": entity.id,
                "customer_ref": customer,
                "client_name": f"Client {customer}",
                "currency": currency,
                "period_start": posting_date.replace(day=1),
                "period_end": posting_date,
                "issue_date": posting_date,
                "due_date": posting_date + timedelta(days=30),
                "subtotal_minor": subtotal,
                "tax_minor": tax,
                "total_minor": total,
                "subtotal": _amount(subtotal, currency),
                "tax": _amount(tax, currency),
                "total": _amount(total, currency),
                "tax_rate": Decimal("0.1") if tax else Decimal(0),
                "line_count": n_lines,
                "entry_id": entry_id,
                "rule_version": RULE_VERSION,
            }
        )
        legs = [("1200", "accounts_receivable", total, 0)]
        legs += [("4000", "service_revenue", 0, a) for _, _, a in line_rows]
        if tax:
            legs.append(("2200", "tax_payable", 0, tax))
        lines += _lines_for(
            entry_id, entity, posting_date, "invoice", currency, legs, customer, f"{customer}:Job", invoice_id
        )
        entries.append(
            _entry(
                entry_id,
                entity,
                posting_date,
                "invoice",
                currency,
                f"Invoice {invoice_id}",
                invoice_id,
                len(legs),
                total,
            )
        )
        del digits
    for j in range(n_entries):
        entity = entities[rng.randrange(len(entities))]
        posting_date = start + timedelta(days=rng.randrange(days))
        entry_type = "revenue_accrual" if j % 2 == 0 else "cost_accrual"
        amount = rng.randrange(1_000, 500_000)
        entry_id = stable_id("sample-accrual", seed, j)
        if entry_type == "revenue_accrual":
            legs = [("1210", "unbilled_receivables", amount, 0), ("4000", "service_revenue", 0, amount)]
        else:
            legs = [("5000", "cost_of_services", amount, 0), ("2100", "payroll_clearing", 0, amount)]
        cur = entity.functional_currency
        lines += _lines_for(entry_id, entity, posting_date, entry_type, cur, legs, None, None, None)
        entries.append(
            _entry(
                entry_id,
                entity,
                posting_date,
                entry_type,
                cur,
                f"{entry_type} {posting_date}",
                None,
                len(legs),
                amount,
            )
        )
    return LedgerTables(
        journal_entries=pl.DataFrame(entries, schema=polars_schema("ledger.journal_entries"), orient="row"),
        journal_lines=pl.DataFrame(lines, schema=polars_schema("ledger.journal_lines"), orient="row"),
        invoices=pl.DataFrame(invoices, schema=polars_schema("ledger.invoices"), orient="row"),
        invoice_lines=pl.DataFrame(inv_lines, schema=polars_schema("ledger.invoice_lines"), orient="row"),
    )


def _entry(
    entry_id: str,
    entity: SampleEntity,
    posting_date: date,
    entry_type: str,
    currency: str,
    description: str,
    document_id: str | None,
    line_count: int,
    total: int,
) -> dict:
    return {
        "entry_id": entry_id,
        "entity": entity.id,
        "posting_date": posting_date,
        "entry_type": entry_type,
        "currency": currency,
        "description": description,
        "document_id": document_id,
        "line_count": line_count,
        "total_debit_minor": total,
        "rule_version": RULE_VERSION,
    }
