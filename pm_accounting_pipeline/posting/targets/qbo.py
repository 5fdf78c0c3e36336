"""QuickBooks Online as a posting target: Invoice, CreditMemo and JournalEntry payloads, batch of 30.

`ExchangeRate` is home-currency units per one foreign unit (the entity's functional currency is the
company's home currency), omitted for home-currency documents. Single documents carry their own
idempotency key as `?requestid=`; a batch carries the key derived from its members (<= 36 chars).
Each payload notes `pm:<document uid>` in `PrivateNote`, which is how reconciliation finds it again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from pm_accounting_pipeline.core.money import Money
from pm_accounting_pipeline.posting.model import (
    DocumentKind,
    OutboxItem,
    Outcome,
    PermanentSendError,
    SendResult,
)
from pm_accounting_pipeline.posting.outbox import DocumentView
from pm_accounting_pipeline.posting.targets.base import (
    REMOTE_SCHEMA,
    HttpTarget,
    TargetLimits,
    amount,
    functional_rate,
    whole_request_failure,
)

QBO_LIMITS = TargetLimits(requests=500, period_s=60.0, batch_size=30, batch_requests=40, batch_period_s=60.0)
_NOTE = re.compile(r"pm:([0-9a-f-]{36})")
AR_ROLES = frozenset({"accounts_receivable", "unbilled_receivables", "intercompany_receivable"})


class QboTarget(HttpTarget):
    name = "qbo"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        companies: dict[str, str] | None = None,
        accounts: dict[str, str] | None = None,
        customers: dict[str, str] | None = None,
        items: dict[str, str] | None = None,
        limits: TargetLimits = QBO_LIMITS,
        timeout_s: float = 10.0,
        gzip_min_bytes: int = 2048,
        minor_version: str = "75",
    ) -> None:
        super().__init__(base_url, token, timeout_s, gzip_min_bytes)
        self.companies = companies or {}
        self.accounts = accounts or {}
        self.customers = customers or {}
        self.items = items or {}
        self.limits = limits
        self.minor_version = minor_version

    # -- rendering ------------------------------------------------------------------------------------
    def realm(self, entity: str) -> str:
        return self.companies.get(entity, entity)

    def render(self, doc: DocumentView) -> dict[str, Any]:
        c = doc.content
        kind = doc.effective_kind
        note = f"pm:{doc.doc_uid}" + (f" reverses pm:{doc.reverses_uid}" if doc.reverses_uid else "")
        number = str(c["number"])
        if doc.kind == DocumentKind.REVERSAL.value:
            number = "R" + number
        body: dict[str, Any] = {
            "TxnDate": doc.posting_date.isoformat(),
            "DocNumber": number[:21],
            "PrivateNote": note,
            "CurrencyRef": {"value": doc.currency},
        }
        if doc.currency != c["functional_currency"]:
            body["ExchangeRate"] = functional_rate(c)
        if kind in (DocumentKind.INVOICE.value, DocumentKind.CREDIT_MEMO.value) and "lines" in c:
            entity_type = "Invoice" if kind == DocumentKind.INVOICE.value else "CreditMemo"
            body.update(self._sales(c, doc.currency, entity_type))
        else:
            entity_type = "JournalEntry"
            body["Line"] = self._journal_lines(c, doc.currency, doc.kind == DocumentKind.REVERSAL.value)
        return {"type": entity_type, "realm": self.realm(doc.entity), "body": body}

    def _sales(self, c: dict[str, Any], currency: str, entity_type: str) -> dict[str, Any]:
        tax_minor = abs(int(c["tax_minor"]))
        lines = []
        for line in c["lines"]:
            detail: dict[str, Any] = {
                "ItemRef": {"value": self.items.get(line["item"], line["item"])},
                "Qty": abs(Decimal(line["quantity"])).normalize(),
                "TaxCodeRef": {"value": "TAX" if tax_minor else "NON"},
                "ServiceDate": c["period_end"],
            }
            if line.get("unit_price") is not None:
                detail["UnitPrice"] = Decimal(line["unit_price"]).normalize()
            lines.append(
                {
                    "Amount": amount(abs(int(line["amount_minor"])), currency),
                    "Description": line["description"],
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": detail,
                }
            )
        out: dict[str, Any] = {
            "CustomerRef": {
                "value": self.customers.get(c["customer_ref"], c["customer_ref"]),
                "name": c["client_name"],
            },
            "Line": lines,
        }
        if entity_type == "Invoice":
            out["DueDate"] = c["due_date"]
        if tax_minor:
            out["TxnTaxDetail"] = {"TotalTax": amount(tax_minor, currency)}
        return out

    def _journal_lines(self, c: dict[str, Any], currency: str, swap: bool) -> list[dict[str, Any]]:
        lines = []
        for p in c["postings"]:
            dr, cr = int(p["debit_minor"]), int(p["credit_minor"])
            if swap:
                dr, cr = cr, dr
            for value, posting in ((dr, "Debit"), (cr, "Credit")):
                if value == 0:
                    continue
                detail: dict[str, Any] = {
                    "PostingType": posting,
                    "AccountRef": {"value": self.accounts.get(p["account"], p["account"])},
                }
                if p["account_role"] in AR_ROLES and p.get("customer_ref"):
                    detail["Entity"] = {
                        "Type": "Customer",
                        "EntityRef": {"value": self.customers.get(p["customer_ref"], p["customer_ref"])},
                    }
                lines.append(
                    {
                        "Description": f"{p['account_role']} {p['account']}",
                        "Amount": amount(value, currency),
                        "DetailType": "JournalEntryLineDetail",
                        "JournalEntryLineDetail": detail,
                    }
                )
        return lines

    def payload_total(self, payload: dict[str, Any]) -> tuple[str, int]:
        body = payload["body"]
        currency = body["CurrencyRef"]["value"]
        if payload["type"] == "JournalEntry":
            total = sum(
                (
                    Decimal(str(x["Amount"]))
                    for x in body["Line"]
                    if x["JournalEntryLineDetail"]["PostingType"] == "Debit"
                ),
                Decimal(0),
            )
        else:
            total = sum((Decimal(str(x["Amount"])) for x in body["Line"]), Decimal(0))
            total += Decimal(str((body.get("TxnTaxDetail") or {}).get("TotalTax", 0)))
        return currency, Money(total, currency).to_minor()

    # -- sending ---------------------------------------------------------------------------------------
    def group_key(self, item: OutboxItem) -> str:
        return str(item.payload.get("realm", item.entity))

    def send(self, items: Sequence[OutboxItem], request_id: str) -> list[SendResult]:
        realm = items[0].payload["realm"]
        if len(items) == 1 and request_id == items[0].idempotency_key:
            return [self._send_one(items[0], realm)]
        request = {
            "BatchItemRequest": [
                {"bId": i.idempotency_key, "operation": "create", i.payload["type"]: i.payload["body"]}
                for i in items
            ]
        }
        status, data = self.request_json(
            "POST",
            f"/v3/company/{realm}/batch",
            params={"requestid": request_id, "minorversion": self.minor_version},
            body=request,
        )
        if status != 200:
            exc = whole_request_failure(items, status, data, request)
            return [self._refused(i, exc, status) for i in items]
        answers = {a.get("bId"): a for a in (data or {}).get("BatchItemResponse", [])}
        results = []
        for item in items:
            answer = answers.get(item.idempotency_key)
            entity_type = item.payload["type"]
            if answer is None:
                results.append(
                    SendResult(
                        item.outbox_id,
                        Outcome.TRANSIENT,
                        status_code=status,
                        error="batch answer has no item for this document",
                        response=data,
                        request=item.payload,
                    )
                )
            elif "Fault" in answer:
                results.append(
                    SendResult(
                        item.outbox_id,
                        Outcome.PERMANENT,
                        status_code=400,
                        error=_fault_text(answer["Fault"]),
                        response=answer,
                        request=item.payload,
                    )
                )
            else:
                results.append(
                    SendResult(
                        item.outbox_id,
                        Outcome.POSTED,
                        remote_id=str(answer[entity_type]["Id"]),
                        status_code=status,
                    )
                )
        return results

    def _send_one(self, item: OutboxItem, realm: str) -> SendResult:
        entity_type = item.payload["type"]
        status, data = self.request_json(
            "POST",
            f"/v3/company/{realm}/{entity_type.lower()}",
            params={"requestid": item.idempotency_key, "minorversion": self.minor_version},
            body=item.payload["body"],
        )
        if status == 200 and isinstance(data, dict) and entity_type in data:
            return SendResult(
                item.outbox_id, Outcome.POSTED, remote_id=str(data[entity_type]["Id"]), status_code=status
            )
        return self._refused(item, whole_request_failure([item], status, data, item.payload["body"]), status)

    @staticmethod
    def _refused(item: OutboxItem, exc: PermanentSendError, status: int) -> SendResult:
        error = str(exc)
        if isinstance(exc.response, dict):
            body = exc.response.get("body")
            if isinstance(body, dict) and "Fault" in body:
                error = f"HTTP {status}: {_fault_text(body['Fault'])}"
        # 409: the request id was used before with another body, so the target may hold the document.
        return SendResult(
            item.outbox_id,
            Outcome.PERMANENT,
            status_code=status,
            error=error,
            response=exc.response,
            request=item.payload,
            extra={"maybe_stored": status == 409},
        )

    # -- reading back --------------------------------------------------------------------------------------
    def remote_documents(self, entities: Sequence[str]) -> pl.DataFrame:
        rows = []
        realms = {self.realm(e): e for e in entities}
        for realm, entity in realms.items():
            for entity_type in ("Invoice", "CreditMemo", "JournalEntry"):
                start = 1
                while True:
                    data = self.read_json(
                        f"/v3/company/{realm}/query",
                        params={
                            "query": f"select * from {entity_type} startposition {start} maxresults 1000",
                            "minorversion": self.minor_version,
                        },
                    )
                    page = (data or {}).get("QueryResponse", {}).get(entity_type, [])
                    for doc in page:
                        m = _NOTE.search(str(doc.get("PrivateNote", "")))
                        currency = (doc.get("CurrencyRef") or {}).get("value", "")
                        rows.append(
                            (
                                self.name,
                                m.group(1) if m else None,
                                str(doc.get("Id")),
                                entity_type,
                                entity,
                                date.fromisoformat(doc["TxnDate"]),
                                currency,
                                Money(Decimal(str(doc.get("TotalAmt", 0))), currency).to_minor(),
                            )
                        )
                    if len(page) < 1000:
                        break
                    start += len(page)
        return pl.DataFrame(rows, schema=REMOTE_SCHEMA, orient="row")


def _fault_text(fault: Any) -> str:
    errors = fault.get("Error", []) if isinstance(fault, dict) else []
    return "; ".join(f"{e.get('code')}: {e.get('Message')} ({e.get('Detail')})" for e in errors) or str(fault)
