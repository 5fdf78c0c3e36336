"""A local Xero Accounting API sandbox: Invoices (ACCREC), CreditNotes (ACCRECCREDIT), ManualJournals.

Vendor rules it enforces: `Authorization: Bearer <token>` and a `Xero-tenant-id` header;
`Idempotency-Key` (<= 128 characters; the same key with the same body answers the original
response, with another body 409); 60 calls per minute and 5,000 per day per organisation (429 with
`Retry-After` and `X-Rate-Limit-Problem`); manual journal lines must net to zero; with
`summarizeErrors=false` each element answers OK or ERROR on its own, otherwise one invalid element
refuses the whole request. Faults are injected as described in `qbo_xero_http`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pm_accounting_pipeline.sandboxes.faults import RateLimit, SlidingWindowLimiter
from pm_accounting_pipeline.sandboxes.qbo_xero_http import (
    AccountingFaults,
    AccountingSandbox,
    Request,
    SandboxHandle,
    VendorError,
    run_until_interrupted,
    start,
)

DEFAULT_RATE_LIMIT = RateLimit(60, 60.0)
DEFAULT_DAY_LIMIT = RateLimit(5000, 86400.0)
PAGE_SIZE = 100
COLLECTIONS = {
    "Invoices": ("Invoice", "InvoiceID"),
    "CreditNotes": ("CreditNote", "CreditNoteID"),
    "ManualJournals": ("ManualJournal", "ManualJournalID"),
}
_PATH = re.compile(r"^/api\.xro/2\.0/(?P<collection>Invoices|CreditNotes|ManualJournals)/?$")
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def _now_ms() -> str:
    return f"/Date({int(datetime.now(UTC).timestamp() * 1000)}+0000)/"


def _check_date(value: Any, where: str) -> None:
    text = str(value)
    if _MS_DATE.match(text):
        return
    try:
        date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"{where}: date {value!r} is neither /Date(ms)/ nor YYYY-MM-DD") from None


def _dec(value: Any, where: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{where}: {value!r} is not a number") from None
    if not out.is_finite():
        raise ValueError(f"{where}: {value!r} is not a number")
    return out


class XeroSandbox(AccountingSandbox):
    vendor = "xero"
    max_key_length = 128

    def __init__(
        self,
        token: str,
        rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
        seed: int = 42,
        day_limit: RateLimit = DEFAULT_DAY_LIMIT,
        faults: AccountingFaults | None = None,
        accounts: set[str] | None = None,
        max_concurrent: int | None = 5,
    ) -> None:
        super().__init__(token, rate_limit, seed, max_concurrent, faults, accounts)
        self.day_limiter = SlidingWindowLimiter(day_limit)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.day_limiter.reset()

    def company_of(self, req: Request) -> str:
        return req.headers.get("xero-tenant-id", "-")

    def idempotency_key_of(self, req: Request) -> str | None:
        return req.headers.get("idempotency-key") or None

    def auth_error(self) -> VendorError:
        return VendorError(
            401,
            {"Type": None, "Title": "Unauthorized", "Status": 401, "Detail": "AuthenticationUnsuccessful"},
        )

    def rate_limit_error(self, retry_after: int, problem: str) -> VendorError:
        return VendorError(
            429,
            {"Title": "Too Many Requests", "Status": 429, "Detail": f"Rate limit exceeded ({problem})"},
            {"Retry-After": str(retry_after), "X-Rate-Limit-Problem": problem},
        )

    def server_error(self, status: int) -> VendorError:
        return VendorError(
            status,
            {
                "Title": "An error occurred",
                "Status": status,
                "Detail": "An error occurred in Xero. Check the API Status page",
            },
        )

    def conflict_error(self, key: str) -> VendorError:
        return VendorError(
            409,
            {
                "Title": "Conflict",
                "Status": 409,
                "Detail": f"Idempotency-Key {key} was already used with a different request",
            },
        )

    def bad_request_body(self, message: str) -> dict[str, Any]:
        return {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message}

    def extra_limit(self, req: Request) -> VendorError | None:
        retry = self.day_limiter.admit(self.company_of(req))
        return None if retry is None else self.rate_limit_error(retry, "day")

    def route(self, req: Request) -> tuple[int, dict[str, Any]]:
        if not req.headers.get("xero-tenant-id"):
            raise VendorError(
                403,
                {
                    "Type": None,
                    "Title": "Forbidden",
                    "Status": 403,
                    "Detail": "AuthorizationUnsuccessful: Xero-tenant-id header is missing",
                },
            )
        m = _PATH.match(req.path)
        if not m:
            raise VendorError(
                404, {"Title": "Not Found", "Status": 404, "Detail": f"unknown resource {req.path}"}
            )
        collection = m["collection"]
        tenant = self.company_of(req)
        if req.method == "GET":
            page = max(1, int(req.query.get("page", "1") or 1))
            docs = self.list_documents(tenant, collection)
            return 200, {
                "Id": self.new_id(numeric=False),
                "Status": "OK",
                "DateTimeUTC": _now_ms(),
                collection: docs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            }
        body = req.body
        elements = body.get(collection) if isinstance(body, dict) and collection in body else [body]
        if not isinstance(elements, list) or not elements or not all(isinstance(e, dict) for e in elements):
            raise VendorError(
                400, self.bad_request_body(f"{collection} must be an object or a list of objects")
            )
        summarize = req.query.get("summarizeErrors", "true").lower() != "false"
        checked: list[tuple[dict[str, Any], list[str], dict[str, Any]]] = []
        for element in elements:
            errors: list[str] = []
            totals: dict[str, Any] = {}
            try:
                totals = self._validate(collection, element)
            except ValueError as exc:
                errors.append(str(exc))
            checked.append((element, errors, totals))
        if summarize and any(errors for _, errors, _ in checked):
            raise VendorError(
                400,
                {
                    "ErrorNumber": 10,
                    "Type": "ValidationException",
                    "Message": "A validation exception occurred",
                    "Elements": [
                        dict(e, ValidationErrors=[{"Message": m} for m in errs])
                        for e, errs, _ in checked
                        if errs
                    ],
                },
            )
        _singular, id_field = COLLECTIONS[collection]
        out = []
        for element, errors, totals in checked:
            if errors:
                out.append(
                    dict(
                        element,
                        StatusAttributeString="ERROR",
                        ValidationErrors=[{"Message": m} for m in errors],
                    )
                )
                continue
            doc = dict(element)
            doc.update(totals)
            doc.update(
                {
                    id_field: self.new_id(numeric=False),
                    "StatusAttributeString": "OK",
                    "UpdatedDateUTC": _now_ms(),
                }
            )
            self.store(tenant, collection, doc)
            out.append(doc)
        return 200, {
            "Id": self.new_id(numeric=False),
            "Status": "OK",
            "ProviderName": "pm-accounting",
            "DateTimeUTC": _now_ms(),
            collection: out,
        }

    def _validate(self, collection: str, el: dict[str, Any]) -> dict[str, Any]:
        singular = COLLECTIONS[collection][0]
        _check_date(el.get("Date"), f"{singular}.Date")
        if collection == "ManualJournals":
            if not el.get("Narration"):
                raise ValueError("ManualJournal.Narration is required")
            lines = el.get("JournalLines")
            if not isinstance(lines, list) or len(lines) < 2:
                raise ValueError("ManualJournal.JournalLines needs at least two lines")
            total = Decimal(0)
            for i, line in enumerate(lines):
                self._account(line.get("AccountCode"), f"JournalLines[{i}]")
                if len(line.get("Tracking") or []) > 2:
                    raise ValueError(f"JournalLines[{i}]: at most two tracking categories")
                total += _dec(line.get("LineAmount"), f"JournalLines[{i}].LineAmount")
            if total != 0:
                raise ValueError(f"The total debits and credits must be equal (lines net to {total})")
            return {"Status": el.get("Status", "DRAFT")}
        expected = "ACCREC" if collection == "Invoices" else "ACCRECCREDIT"
        if el.get("Type") != expected:
            raise ValueError(f"{singular}.Type must be {expected} in this sandbox, got {el.get('Type')!r}")
        contact = el.get("Contact") or {}
        if not (contact.get("ContactID") or contact.get("Name")):
            raise ValueError(f"{singular}.Contact needs a ContactID or a Name")
        if el.get("LineAmountTypes", "Exclusive") not in ("Exclusive", "Inclusive", "NoTax"):
            raise ValueError(f"{singular}.LineAmountTypes must be Exclusive, Inclusive or NoTax")
        if "CurrencyRate" in el and _dec(el["CurrencyRate"], f"{singular}.CurrencyRate") <= 0:
            raise ValueError(f"{singular}.CurrencyRate must be positive")
        items = el.get("LineItems")
        if not isinstance(items, list) or not items:
            raise ValueError(f"{singular}.LineItems must hold at least one line")
        subtotal = tax = Decimal(0)
        for i, item in enumerate(items):
            where = f"LineItems[{i}]"
            self._account(item.get("AccountCode"), where)
            if "LineAmount" in item:
                amount = _dec(item["LineAmount"], f"{where}.LineAmount")
            else:
                amount = _dec(item.get("Quantity", 1), f"{where}.Quantity") * _dec(
                    item.get("UnitAmount"), f"{where}.UnitAmount"
                )
            if amount < 0:
                raise ValueError(f"{where}: line amounts must not be negative")
            subtotal += amount
            tax += _dec(item.get("TaxAmount", 0), f"{where}.TaxAmount")
        return {
            "SubTotal": subtotal,
            "TotalTax": tax,
            "Total": subtotal + tax,
            "Status": el.get("Status", "DRAFT"),
        }

    def _account(self, code: Any, where: str) -> None:
        if not code:
            raise ValueError(f"{where}.AccountCode is required")
        if self.accounts is not None and str(code) not in self.accounts:
            raise ValueError(f"{where}: Account code '{code}' is not a valid code for this document")


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = "xero-sandbox-token",
    rate_limit: RateLimit | str = DEFAULT_RATE_LIMIT,
    seed: int = 42,
    day_limit: RateLimit | str = DEFAULT_DAY_LIMIT,
    faults: AccountingFaults | None = None,
    accounts: set[str] | None = None,
    max_concurrent: int | None = 5,
) -> SandboxHandle:
    """Start a Xero sandbox on a background thread (port 0: any free port)."""
    if isinstance(rate_limit, str):
        rate_limit = RateLimit.parse(rate_limit)
    if isinstance(day_limit, str):
        day_limit = RateLimit.parse(day_limit)
    return start(
        XeroSandbox(token, rate_limit, seed, day_limit, faults, accounts, max_concurrent), host, port
    )


def run_forever(
    host: str = "127.0.0.1",
    port: int = 8082,
    token: str = "xero-sandbox-token",
    rate_limit: RateLimit | str = DEFAULT_RATE_LIMIT,
    seed: int = 42,
    faults: AccountingFaults | None = None,
) -> None:
    """Serve until interrupted (the `pm-accounting sandbox xero` command)."""
    run_until_interrupted(serve(host, port, token, rate_limit, seed, faults=faults))
