"""Xero as a posting target: Invoices (ACCREC), CreditNotes (ACCRECCREDIT) and ManualJournals.

`CurrencyRate` is foreign units per one base unit (the inverse of QuickBooks' ExchangeRate); manual
journals are in the organisation's base currency, so they carry the functional amounts, debits
positive and credits negative, netting to zero. Dates use the `/Date(ms)/` form the official SDK
writes. Requests carry `Idempotency-Key` and `Xero-tenant-id`; elements are sent up to 50 per call
with `summarizeErrors=false` so each one answers on its own. `Reference` (or the journal's
narration) carries `pm:<document uid>` for reconciliation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import polars as pl

from pm_accounting_pipeline.core.money import Money, minor_digits
from pm_accounting_pipeline.posting.model import DocumentKind, OutboxItem, Outcome, SendResult
from pm_accounting_pipeline.posting.outbox import DocumentView
from pm_accounting_pipeline.posting.targets.base import (
    REMOTE_SCHEMA,
    HttpTarget,
    TargetLimits,
    amount,
    whole_request_failure,
)

XERO_LIMITS = TargetLimits(requests=60, period_s=60.0, batch_size=50, daily_requests=5000)
COLLECTIONS = {"Invoices": "InvoiceID", "CreditNotes": "CreditNoteID", "ManualJournals": "ManualJournalID"}
_REF = re.compile(r"pm:([0-9a-f-]{36})")
_MS = re.compile(r"^/Date\((-?\d+)")


def ms_date(value: date | str) -> str:
    """A date as the SDK serialises it: midnight UTC in milliseconds, `/Date(1767571200000)/`."""
    d = date.fromisoformat(value) if isinstance(value, str) else value
    return f"/Date({int(datetime.combine(d, time(tzinfo=UTC)).timestamp() * 1000)})/"


def parse_ms_date(value: str) -> date:
    m = _MS.match(value)
    if m:
        return datetime.fromtimestamp(int(m.group(1)) / 1000, tz=UTC).date()
    return date.fromisoformat(value[:10])


def currency_rate(content: dict[str, Any]) -> Decimal:
    """Transaction-currency units per one base (functional) unit, to 10 places, half-even."""
    tx = sum((Decimal(p["debit"]) for p in content["postings"]), Decimal(0))
    fn = sum((Decimal(p["functional_debit"]) for p in content["postings"]), Decimal(0))
    if fn == 0:
        return Decimal(1)
    with localcontext() as ctx:
        ctx.prec = 34
        return (tx / fn).quantize(Decimal("1E-10"), rounding=ROUND_HALF_EVEN).normalize()


def _split_tax(amounts: list[int], tax: int) -> list[int]:
    """Spread the invoice's tax over its lines pro rata (integer minor units, remainder on the last)."""
    total = sum(amounts)
    if not tax or not total:
        return [0] * len(amounts)
    shares = [tax * a // total for a in amounts]
    shares[-1] += tax - sum(shares)
    return shares


class XeroTarget(HttpTarget):
    name = "xero"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        companies: dict[str, str] | None = None,
        accounts: dict[str, str] | None = None,
        customers: dict[str, str] | None = None,
        items: dict[str, str] | None = None,
        limits: TargetLimits = XERO_LIMITS,
        timeout_s: float = 10.0,
        gzip_min_bytes: int = 2048,
    ) -> None:
        super().__init__(base_url, token, timeout_s, gzip_min_bytes)
        self.companies = companies or {}
        self.accounts = accounts or {}
        self.customers = customers or {}
        self.items = items or {}
        self.limits = limits

    def tenant(self, entity: str) -> str:
        return self.companies.get(entity, entity)

    # -- rendering -----------------------------------------------------------------------------------
    def render(self, doc: DocumentView) -> dict[str, Any]:
        c = doc.content
        kind = doc.effective_kind
        ref = f"pm:{doc.doc_uid}"
        number = str(c["number"])
        if doc.kind == DocumentKind.REVERSAL.value:
            number = "R" + number
        if kind in (DocumentKind.INVOICE.value, DocumentKind.CREDIT_MEMO.value) and "lines" in c:
            is_invoice = kind == DocumentKind.INVOICE.value
            collection = "Invoices" if is_invoice else "CreditNotes"
            body: dict[str, Any] = {
                "Type": "ACCREC" if is_invoice else "ACCRECCREDIT",
                "Contact": (
                    {"ContactID": self.customers[c["customer_ref"]]}
                    if c["customer_ref"] in self.customers
                    else {"Name": c["client_name"], "ContactNumber": c["customer_ref"]}
                ),
                ("InvoiceNumber" if is_invoice else "CreditNoteNumber"): number,
                "Reference": ref,
                "Date": ms_date(doc.posting_date),
                "CurrencyCode": doc.currency,
                "Status": "AUTHORISED",
                "LineItems": self._line_items(c, doc.currency),
                "LineAmountTypes": "Exclusive" if int(c["tax_minor"]) else "NoTax",
            }
            if is_invoice:
                body["DueDate"] = ms_date(c["due_date"])
            if doc.currency != c["functional_currency"]:
                body["CurrencyRate"] = currency_rate(c)
        else:
            collection = "ManualJournals"
            body = {
                "Narration": f"{c.get('description') or c['number']} [{ref}]",
                "Date": ms_date(doc.posting_date),
                "Status": "POSTED",
                "LineAmountTypes": "NoTax",
                "JournalLines": self._journal_lines(c, doc.kind == DocumentKind.REVERSAL.value),
            }
        return {"collection": collection, "tenant": self.tenant(doc.entity), "body": body}

    def _line_items(self, c: dict[str, Any], currency: str) -> list[dict[str, Any]]:
        amounts = [abs(int(line["amount_minor"])) for line in c["lines"]]
        taxes = _split_tax(amounts, abs(int(c["tax_minor"])))
        out = []
        for line, line_minor, tax_minor in zip(c["lines"], amounts, taxes, strict=True):
            item: dict[str, Any] = {
                "Description": line["description"],
                "Quantity": abs(Decimal(line["quantity"])).normalize(),
                "AccountCode": self.accounts.get(line["revenue_account"], line["revenue_account"]),
                "LineAmount": amount(line_minor, currency),
                "TaxType": "OUTPUT" if tax_minor or int(c["tax_minor"]) else "NONE",
                "TaxAmount": amount(tax_minor, currency),
            }
            if line.get("unit_price") is not None:
                item["UnitAmount"] = Decimal(line["unit_price"]).normalize()
            if line["item"] in self.items:
                item["ItemCode"] = self.items[line["item"]]
            out.append(item)
        return out

    def _journal_lines(self, c: dict[str, Any], swap: bool) -> list[dict[str, Any]]:
        quantum = Decimal(1).scaleb(-minor_digits(c["functional_currency"]))
        lines = []
        for p in c["postings"]:
            net = Decimal(p["functional_debit"]) - Decimal(p["functional_credit"])
            if swap:
                net = -net
            if net == 0:
                continue
            lines.append(
                {
                    "LineAmount": net.quantize(quantum),
                    "AccountCode": self.accounts.get(p["account"], p["account"]),
                    "Description": f"{p['account_role']} {p['account']}",
                }
            )
        return lines

    def payload_total(self, payload: dict[str, Any]) -> tuple[str, int]:
        body = payload["body"]
        if payload["collection"] == "ManualJournals":
            # Manual journals are in the organisation's base currency, which the payload does not name:
            # compared as thousandths of the base currency, as `remote_documents` reads them back.
            total = sum(
                (
                    Decimal(str(x["LineAmount"]))
                    for x in body["JournalLines"]
                    if Decimal(str(x["LineAmount"])) > 0
                ),
                Decimal(0),
            )
            return "", int(total.scaleb(3).to_integral_value())
        currency = body["CurrencyCode"]
        total = sum(
            (Decimal(str(x["LineAmount"])) + Decimal(str(x.get("TaxAmount", 0))) for x in body["LineItems"]),
            Decimal(0),
        )
        return currency, Money(total, currency).to_minor()

    # -- sending -------------------------------------------------------------------------------------------
    def group_key(self, item: OutboxItem) -> str:
        return f"{item.payload.get('tenant', item.entity)}/{item.payload.get('collection', '')}"

    def send(self, items: Sequence[OutboxItem], request_id: str) -> list[SendResult]:
        collection = items[0].payload["collection"]
        tenant = items[0].payload["tenant"]
        request = {collection: [i.payload["body"] for i in items]}
        status, data = self.request_json(
            "POST",
            f"/api.xro/2.0/{collection}",
            params={"summarizeErrors": "false"},
            headers={"Xero-tenant-id": tenant, "Idempotency-Key": request_id},
            body=request,
        )
        if status != 200:
            exc = whole_request_failure(items, status, data, request)
            return [
                SendResult(
                    i.outbox_id,
                    Outcome.PERMANENT,
                    status_code=status,
                    error=str(exc),
                    response=exc.response,
                    request=i.payload,
                    extra={"maybe_stored": status == 409},
                )
                for i in items
            ]
        elements = (data or {}).get(collection, [])
        if len(elements) != len(items):
            return [
                SendResult(
                    i.outbox_id,
                    Outcome.TRANSIENT,
                    status_code=status,
                    error=f"answer holds {len(elements)} elements for {len(items)} sent",
                    response=data,
                )
                for i in items
            ]
        results = []
        id_field = COLLECTIONS[collection]
        for item, element in zip(items, elements, strict=True):
            if element.get("StatusAttributeString") == "ERROR" or element.get("ValidationErrors"):
                msg = "; ".join(e.get("Message", "") for e in element.get("ValidationErrors", []))
                results.append(
                    SendResult(
                        item.outbox_id,
                        Outcome.PERMANENT,
                        status_code=400,
                        error=f"validation: {msg}",
                        response=element,
                        request=item.payload,
                    )
                )
            else:
                results.append(
                    SendResult(
                        item.outbox_id, Outcome.POSTED, remote_id=str(element[id_field]), status_code=status
                    )
                )
        return results

    # -- reading back ------------------------------------------------------------------------------------------
    def remote_documents(self, entities: Sequence[str]) -> pl.DataFrame:
        rows = []
        for entity in entities:
            tenant = self.tenant(entity)
            for collection, id_field in COLLECTIONS.items():
                page = 1
                while True:
                    data = self.read_json(
                        f"/api.xro/2.0/{collection}",
                        params={"page": str(page)},
                        headers={"Xero-tenant-id": tenant},
                    )
                    docs = (data or {}).get(collection, [])
                    for doc in docs:
                        text = (
                            doc.get("Narration", "")
                            if collection == "ManualJournals"
                            else doc.get("Reference", "")
                        )
                        m = _REF.search(str(text))
                        if collection == "ManualJournals":
                            currency = ""
                            total = sum(
                                (
                                    Decimal(str(x["LineAmount"]))
                                    for x in doc.get("JournalLines", [])
                                    if Decimal(str(x["LineAmount"])) > 0
                                ),
                                Decimal(0),
                            )
                            total_minor = int(total.scaleb(3).to_integral_value())
                        else:
                            currency = doc.get("CurrencyCode", "")
                            total_minor = Money(Decimal(str(doc.get("Total", 0))), currency).to_minor()
                        rows.append(
                            (
                                self.name,
                                m.group(1) if m else None,
                                str(doc.get(id_field)),
                                collection,
                                entity,
                                parse_ms_date(str(doc.get("Date"))),
                                currency,
                                total_minor,
                            )
                        )
                    if len(docs) < 100:
                        break
                    page += 1
        return pl.DataFrame(rows, schema=REMOTE_SCHEMA, orient="row")
