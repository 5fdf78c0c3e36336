"""Journal entries for billing documents, as differences to what `ledger/invoices` already booked.

For each document the complete entry it needs is computed (its *target*), as signed credits
(negative = debit) per account and dimensions, in the transaction, functional and reporting
currency:
- unbilled receivables per project: the relief of its items (exact per item in all currencies);
- service revenue: the document's rounding (line amounts - item amounts), the frozen-rate
  difference (amount charged - amount accrued) and, with inclusive pricing, minus the tax;
- tax payable: the tax; discounts, credit lines: their amounts; retainer liability: a retainer
  invoice's fee (credit) or a drawdown (debit);
- accounts receivable: the amount due (debit), in the functional and reporting currencies the
  balancing sum, so every entry balances in all three.
Amounts other than item reliefs and retainer movements convert at the document's rate: the
items' relief (functional / transaction, as `ledger/invoices` does), for a manual credit the rate
of the invoice it credits, else the provider's rate on the issue date.

When the document finalises an invoice of `ledger.invoices` (same id), its entry
(`invoice_adjustment`) books target - the invoice entry already booked, line by line; a
`ledger.invoices` invoice that billing does not issue (its work was billed elsewhere) is reversed.
A plain invoice (no discount, retainer, correction or other rule) therefore books nothing. A
weekly invoice issued by an interim run (billing as of a date, before `ledger/invoices` invoiced
the month) books its whole entry as `invoice_adjustment` until the month's `ledger.invoices`
invoice exists; from then on the same entry books only the difference, so nothing is booked twice.
Other documents book their whole target: `invoice` (supplementary invoices), `retainer_invoice`,
`credit_memo`. Corrections without a document line (`rate_frozen`) book `billing_correction`
entries (Dr revenue / Cr unbilled at the accrued amounts), refunds `refund` entries (Dr receivable
at its carrying rate / Cr bank at the refund date's rate, the difference to FX gain/loss).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.billing.amounts import Fraction
from pm_accounting_pipeline.core.billing.state import BillingState
from pm_accounting_pipeline.core.fx import FX_SCALE, RateProvider
from pm_accounting_pipeline.core.ledger import LINE_AMOUNTS_SCHEMA, SOURCE_ROW_COLUMNS, LedgerBatch, assemble
from pm_accounting_pipeline.core.money import minor_digits

DIMS = ("account", "account_role", "customer_ref", "customer_job", "project_code")
Dim = tuple[str, str, str | None, str | None, str | None]


class MissingRateError(ValueError):
    """The provider has no exchange rate for a conversion billing needs."""


def provider_fraction(provider: RateProvider, from_currency: str, to_currency: str, on: date) -> Fraction:
    """minor units of `from_currency` -> minor units of `to_currency` at the provider's rate on `on`."""
    if from_currency == to_currency:
        return Fraction(1, 1)
    answer = provider.rates(
        pl.DataFrame(
            {"from_currency": [from_currency], "to_currency": [to_currency], "date": [on]},
            schema={"from_currency": pl.String, "to_currency": pl.String, "date": pl.Date},
        )
    )
    rate = answer["rate"][0] if answer.height else None
    if rate is None:
        raise MissingRateError(
            f"no {getattr(provider, 'name', 'provider')} rate {from_currency}->{to_currency} on {on}"
        )
    scaled = int(Decimal(rate).scaleb(FX_SCALE).to_integral_value())
    return Fraction(scaled * 10 ** minor_digits(to_currency), 10 ** (FX_SCALE + minor_digits(from_currency)))


@dataclass
class _Entry:
    """One entry being built: signed credits per dimension (tx, fn, rp) and the links per dimension."""

    entity: str
    posting_date: date
    entry_type: str
    currency: str
    document_id: str
    description: str
    amounts: dict[Dim, list[int]]
    links: dict[Dim, str]

    def add(self, dim: Dim, tx: int, fn: int, rp: int, link: str = "all") -> None:
        cur = self.amounts.setdefault(dim, [0, 0, 0])
        cur[0] += tx
        cur[1] += fn
        cur[2] += rp
        self.links.setdefault(dim, link)

    def balance_to(self, dim: Dim) -> None:
        """Put the negated sum of every other dimension on `dim` (the receivable)."""
        tx = sum(v[0] for d, v in self.amounts.items() if d != dim)
        fn = sum(v[1] for d, v in self.amounts.items() if d != dim)
        rp = sum(v[2] for d, v in self.amounts.items() if d != dim)
        self.amounts[dim] = [-tx, -fn, -rp]
        self.links.setdefault(dim, "all")


def _minor_of(money: pl.Expr, digits: pl.Expr) -> pl.Expr:
    """A Decimal(18, 3) contract amount back to integer minor units (exact for 0..3 digits)."""
    scaled = money.cast(pl.Decimal(38, 3)).to_physical().cast(pl.Int128)
    return (scaled // pl.lit(10, dtype=pl.Int128).pow(pl.lit(3, dtype=pl.Int32) - digits)).cast(pl.Int64)


def base_amounts(base_lines: pl.DataFrame) -> dict[str, dict[Dim, list[int]]]:
    """Signed credits per dimension of each `ledger.invoices` entry, by its document (invoice) id."""
    if base_lines.height == 0:
        return {}
    currencies = set(base_lines["functional_currency"].unique()) | set(
        base_lines["reporting_currency"].unique()
    )
    table = {c: minor_digits(c) for c in currencies}
    fd = pl.col("functional_currency").replace_strict(table, return_dtype=pl.Int32)
    rd = pl.col("reporting_currency").replace_strict(table, return_dtype=pl.Int32)
    signed = base_lines.select(
        "document_id",
        *DIMS,
        (pl.col("credit_minor") - pl.col("debit_minor")).alias("tx"),
        (_minor_of(pl.col("functional_credit"), fd) - _minor_of(pl.col("functional_debit"), fd)).alias("fn"),
        (_minor_of(pl.col("reporting_credit"), rd) - _minor_of(pl.col("reporting_debit"), rd)).alias("rp"),
    )
    sums = signed.group_by("document_id", *DIMS).agg(
        pl.col("tx").sum(), pl.col("fn").sum(), pl.col("rp").sum()
    )
    out: dict[str, dict[Dim, list[int]]] = defaultdict(dict)
    for r in sums.iter_rows(named=True):
        out[r["document_id"]][tuple(r[d] for d in DIMS)] = [r["tx"], r["fn"], r["rp"]]  # type: ignore[index]
    return dict(out)


def build_entries(
    partition: BillingState,
    all_documents: pl.DataFrame,
    base_invoices: pl.DataFrame,
    base_lines: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_end: date,
    provider: RateProvider,
    through: date | None = None,
) -> tuple[LedgerBatch, dict[str, tuple[int, int]]]:
    """The billing journal of one partition and the receivable (functional, reporting) per document.
    `through`: the last issue date of an interim run (billing as of a date); a `ledger.invoices`
    invoice dated after it is reversed too (the journal follows what was issued) until a later run
    issues it."""
    mode = mapping.rounding.money_mode
    ent = mapping.entity(entity)
    fn_cur, rp_cur = ent.functional_currency, mapping.reporting_currency
    acct = {
        r: mapping.account(entity, r)
        for r in (
            "accounts_receivable",
            "unbilled_receivables",
            "service_revenue",
            "tax_payable",
            "retainer_liability",
            "fx_gain_loss",
        )
    }
    sources = partition.sources.with_row_index("_pos")
    billed = sources.filter(pl.col("line_no") >= 1)
    per_doc = {
        r["document_id"]: r
        for r in billed.group_by("document_id")
        .agg(
            pl.col("relief_minor").sum().alias("rt"),
            pl.col("relief_functional_minor").sum().alias("rf"),
            pl.col("relief_reporting_minor").sum().alias("rr"),
            pl.col("charge_minor").sum().alias("ch"),
            pl.col("_pos").alias("pos"),
        )
        .iter_rows(named=True)
    }
    per_job: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in (
        billed.group_by("document_id", "customer_job", "project_code")
        .agg(
            pl.col("relief_minor").sum().alias("rt"),
            pl.col("relief_functional_minor").sum().alias("rf"),
            pl.col("relief_reporting_minor").sum().alias("rr"),
            pl.col("_pos").alias("pos"),
        )
        .sort("document_id", "customer_job", "project_code", nulls_last=False)
        .iter_rows(named=True)
    ):
        per_job[r["document_id"]].append(r)
    line_sums: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for doc, kind, account, amount in (
        partition.lines.group_by("document_id", "line_type", "account")
        .agg(pl.col("amount_minor").sum())
        .sort("document_id", "line_type", "account")
        .iter_rows()
    ):
        line_sums[doc][(kind, account)] = int(amount)
    movements: dict[tuple[str, str], tuple[int, int, int]] = {}
    for doc, kind, tx, fn, rp in (
        partition.retainer_movements.group_by("document_id", "kind")
        .agg(pl.col("amount_minor").sum(), pl.col("functional_minor").sum(), pl.col("reporting_minor").sum())
        .iter_rows()
    ):
        movements[(doc, kind)] = (int(tx), int(fn), int(rp))
    stored_ar = {
        r["document_id"]: r
        for r in all_documents.select(
            "document_id", "amount_due_minor", "ar_functional_minor", "ar_reporting_minor"
        ).iter_rows(named=True)
    }
    bases = base_amounts(base_lines)
    entries: list[_Entry] = []
    links_pos: dict[tuple[str, Dim], list[int]] = {}
    ar_out: dict[str, tuple[int, int]] = {}

    docs = partition.documents.sort("issue_date", "document_number")
    for d in docs.iter_rows(named=True):
        doc_id, cur = d["document_id"], d["currency"]
        ref = d["customer_ref"]
        items = per_doc.get(doc_id)
        if items is not None and items["rt"] != 0:
            f_fn, f_rp = Fraction(items["rf"], items["rt"]), Fraction(items["rr"], items["rt"])
        elif (
            d["document_type"] == "credit_memo"
            and d["corrects_document_id"] in stored_ar
            and (stored_ar[d["corrects_document_id"]]["amount_due_minor"] not in (0, None))
        ):
            orig = stored_ar[d["corrects_document_id"]]
            f_fn = Fraction(orig["ar_functional_minor"], orig["amount_due_minor"])
            f_rp = Fraction(orig["ar_reporting_minor"], orig["amount_due_minor"])
        else:
            f_fn = provider_fraction(provider, cur, fn_cur, d["issue_date"])
            f_rp = provider_fraction(provider, cur, rp_cur, d["issue_date"])

        def conv(amount: int, f_fn: Fraction = f_fn, f_rp: Fraction = f_rp) -> tuple[int, int, int]:
            return amount, f_fn.convert(amount, mode), f_rp.convert(amount, mode)

        has_base = d["base_invoice_id"] is not None
        entry_type = {
            "invoice": "invoice_adjustment" if has_base else "invoice",
            "retainer_invoice": "retainer_invoice",
            "credit_memo": "credit_memo",
        }[d["document_type"]]
        what = {"invoice": "Invoice", "retainer_invoice": "Retainer invoice", "credit_memo": "Credit memo"}[
            d["document_type"]
        ]
        description = f"{what} {d['document_number']} to {ref} ({cur})" + (
            ""
            if not has_base
            else ": billing rules applied to the invoice entry"
            if d["base_invoice_id"] in bases
            else ": the whole invoice entry (ledger/invoices has not invoiced the period yet)"
        )
        e = _Entry(entity, d["issue_date"], entry_type, cur, doc_id, description, {}, {})
        for job in per_job.get(doc_id, []):
            dim: Dim = (
                acct["unbilled_receivables"],
                "unbilled_receivables",
                ref,
                job["customer_job"],
                job["project_code"],
            )
            e.add(dim, job["rt"], job["rf"], job["rr"], link="job")
            links_pos[(doc_id, dim)] = list(job["pos"])
        sums = line_sums.get(doc_id, {})
        lines_total = sum(v for (k, _), v in sums.items() if k in ("time", "adjustment"))
        charges = items["ch"] if items is not None else 0
        relief = items["rt"] if items is not None else 0
        revenue: Dim = (acct["service_revenue"], "service_revenue", ref, None, None)
        for part in (lines_total - charges, charges - relief):
            if part:
                e.add(revenue, *conv(part))
        tax = int(d["tax_minor"])
        if tax:
            e.add((acct["tax_payable"], "tax_payable", ref, None, None), *conv(tax))
            if d["pricing"] == "inclusive":
                e.add(revenue, *conv(-tax))
        for (kind, account), amount in sorted(sums.items()):
            if kind in ("discount", "credit") and amount:
                role = "discounts" if kind == "discount" else _role_of(mapping, entity, account)
                e.add((account, role, ref, None, None), *conv(amount))
        liability: Dim = (acct["retainer_liability"], "retainer_liability", ref, None, None)
        if (doc_id, "issued") in movements:
            e.add(liability, *movements[(doc_id, "issued")])
        if (doc_id, "drawn") in movements:
            e.add(liability, *movements[(doc_id, "drawn")])
        receivable: Dim = (acct["accounts_receivable"], "accounts_receivable", ref, None, None)
        e.balance_to(receivable)
        due = -e.amounts[receivable][0]
        if due != d["amount_due_minor"]:
            raise AssertionError(
                f"{d['document_number']}: receivable {due} != amount due {d['amount_due_minor']}"
            )
        ar_out[doc_id] = (-e.amounts[receivable][1], -e.amounts[receivable][2])
        if has_base:
            for dim, (tx, fn, rp) in bases.pop(d["base_invoice_id"], {}).items():
                e.add(dim, -tx, -fn, -rp)
        entries.append(e)

    # Invoices of ledger/invoices that billing does not issue: reversed.
    numbers = (
        dict(base_invoices.select("invoice_id", "invoice_number").iter_rows()) if base_invoices.height else {}
    )
    currencies = (
        dict(base_invoices.select("invoice_id", "currency").iter_rows()) if base_invoices.height else {}
    )
    issued_on = (
        dict(base_invoices.select("invoice_id", "issue_date").iter_rows()) if base_invoices.height else {}
    )
    for invoice_id, amounts in sorted(bases.items()):
        not_yet = through is not None and issued_on.get(invoice_id, period_end) > through
        e = _Entry(
            entity,
            period_end,
            "invoice_adjustment",
            currencies.get(invoice_id, ""),
            invoice_id,
            f"Invoice {numbers.get(invoice_id, invoice_id)}: not issued as of {through}; reversed until it is"
            if not_yet
            else f"Invoice {numbers.get(invoice_id, invoice_id)}: its work was billed on other documents; reversed",
            {},
            {},
        )
        for dim, (tx, fn, rp) in amounts.items():
            e.add(dim, -tx, -fn, -rp)
        entries.append(e)

    # Corrections without a document line: the accrual was re-rated, the invoice keeps its rate.
    frozen = sources.filter(pl.col("line_no") == 0)
    if frozen.height:
        for (doc_id, cur), group in frozen.group_by(["document_id", "currency"], maintain_order=True):
            e = _Entry(
                entity,
                period_end,
                "billing_correction",
                str(cur),
                str(doc_id),
                "Accruals re-rated after invoicing: the invoiced rate stays frozen",
                {},
                {},
            )
            ref = str(group["customer_ref"][0])
            by_job = group.group_by("customer_job", "project_code", maintain_order=True).agg(
                pl.col("relief_minor").sum(),
                pl.col("relief_functional_minor").sum(),
                pl.col("relief_reporting_minor").sum(),
                pl.col("_pos"),
            )
            for job, code, rt, rf, rr, pos in by_job.iter_rows():
                dim = (acct["unbilled_receivables"], "unbilled_receivables", ref, job, code)
                e.add(dim, int(rt), int(rf), int(rr), link="job")
                links_pos[(str(doc_id), dim)] = list(pos)
                e.add(
                    (acct["service_revenue"], "service_revenue", ref, None, None),
                    -int(rt),
                    -int(rf),
                    -int(rr),
                )
            entries.append(e)

    # Refunds: money paid back on a document with a credit balance.
    bank = mapping.billing.bank_account
    all_ar = {
        **{
            k: (v["amount_due_minor"], v["ar_functional_minor"], v["ar_reporting_minor"])
            for k, v in stored_ar.items()
        }
    }
    for doc_id, (fn, rp) in ar_out.items():
        due = int(partition.documents.filter(pl.col("document_id") == doc_id)["amount_due_minor"][0])
        all_ar[doc_id] = (due, fn, rp)
    for s in (
        partition.settlements.filter(pl.col("kind") == "refund")
        .sort("settlement_date", "settlement_id")
        .iter_rows(named=True)
    ):
        due, ar_fn, ar_rp = all_ar[s["document_id"]]
        amount = int(s["amount_minor"])
        e = _Entry(
            entity,
            s["settlement_date"],
            "refund",
            s["currency"],
            s["settlement_id"],
            f"Refund {s['reference'] or ''} of {s['document_number']} to {s['customer_ref']}".replace(
                "  ", " "
            ),
            {},
            {},
        )
        carried = (
            -amount,
            -Fraction(ar_fn, due).convert(amount, mode),
            -Fraction(ar_rp, due).convert(amount, mode),
        )
        paid = (
            amount,
            provider_fraction(provider, s["currency"], fn_cur, s["settlement_date"]).convert(amount, mode),
            provider_fraction(provider, s["currency"], rp_cur, s["settlement_date"]).convert(amount, mode),
        )
        e.add((acct["accounts_receivable"], "accounts_receivable", s["customer_ref"], None, None), *carried)
        e.add((bank, "cash", None, None, None), *paid)
        e.balance_to((acct["fx_gain_loss"], "fx_gain_loss", None, None, None))
        entries.append(e)

    return _assemble(entries, sources, links_pos, per_doc, fn_cur, rp_cur, mapping.rule_version), ar_out


def _role_of(mapping: MappingDocument, entity: str, account: str) -> str:
    for role in ("service_revenue", "discounts", "expense_recharge", "retainer_liability"):
        if mapping.account(entity, role) == account:
            return role
    return "service_revenue"


def _assemble(
    entries: list[_Entry],
    sources: pl.DataFrame,
    links_pos: dict[tuple[str, Dim], list[int]],
    per_doc: dict[str, dict[str, object]],
    fn_cur: str,
    rp_cur: str,
    rule_version: str,
) -> LedgerBatch:
    rows = []
    for e in entries:
        doc_positions = list(per_doc.get(e.document_id, {}).get("pos", []) or [])  # type: ignore[arg-type]
        for dim, (tx, fn, rp) in sorted(
            e.amounts.items(), key=lambda kv: tuple("" if x is None else x for x in kv[0])
        ):
            if tx == 0 and fn == 0 and rp == 0:
                continue
            positions = (
                links_pos.get((e.document_id, dim), doc_positions)
                if e.links.get(dim) == "job"
                else doc_positions
            )
            for side, sign in (("credit", 1), ("debit", -1)):
                part = [max(sign * v, 0) for v in (tx, fn, rp)]
                if any(part):
                    rows.append(
                        {
                            "entity": e.entity,
                            "posting_date": e.posting_date,
                            "entry_type": e.entry_type,
                            "currency": e.currency,
                            "document_id": e.document_id,
                            "description": e.description,
                            "functional_currency": fn_cur,
                            "reporting_currency": rp_cur,
                            "account": dim[0],
                            "account_role": dim[1],
                            "side": side,
                            "customer_ref": dim[2],
                            "customer_job": dim[3],
                            "project_code": dim[4],
                            "tx_minor": part[0],
                            "fn_minor": part[1],
                            "rp_minor": part[2],
                            "rows": positions,
                            "source_amount": "relief_minor"
                            if dim[1] == "unbilled_receivables"
                            else "charge_minor",
                        }
                    )
    if not rows:
        return LedgerBatch.empty()
    line_amounts = pl.DataFrame(rows, schema=LINE_AMOUNTS_SCHEMA)
    # An entry needs both sides; one whose lines cancel to nothing books nothing.
    line_amounts = line_amounts.filter(
        pl.col("side").n_unique().over("document_id", "entry_type", "posting_date") == 2
    )
    source_rows = sources.select(*SOURCE_ROW_COLUMNS, "relief_minor", "charge_minor")
    return assemble(line_amounts, source_rows, rule_version)


def empty_ar() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"document_id": pl.String, "ar_functional_minor": pl.Int64, "ar_reporting_minor": pl.Int64}
    )


__all__ = [
    "MissingRateError",
    "base_amounts",
    "build_entries",
    "empty_ar",
    "polars_schema",
    "provider_fraction",
]
