"""A local QuickBooks Online Accounting API sandbox: Invoice, CreditMemo, JournalEntry, batch, query.

Vendor rules it enforces: `Authorization: Bearer <token>`; `?requestid=` idempotency per company
(<= 50 characters, the same id with the same body answers the original response, with another body
409); 500 requests per minute and 10 concurrent requests per company, 40 batch requests per minute
with at most 30 operations each (429 with `Retry-After` beyond); journal entries must balance and an
accounts-receivable line needs a Customer entity. Faults are injected as described in
`qbo_xero_http`.
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

DEFAULT_RATE_LIMIT = RateLimit(500, 60.0)
DEFAULT_BATCH_LIMIT = RateLimit(40, 60.0)
MAX_CONCURRENT = 10
MAX_BATCH_ITEMS = 30
ENTITIES = {"invoice": "Invoice", "creditmemo": "CreditMemo", "journalentry": "JournalEntry"}
_PATH = re.compile(r"^/v3/company/(?P<realm>[^/]+)/(?P<rest>.+)$")
_QUERY = re.compile(
    r"^\s*select\s+\*\s+from\s+(?P<entity>\w+)(?:\s+startposition\s+(?P<start>\d+))?"
    r"(?:\s+maxresults\s+(?P<max>\d+))?\s*$",
    re.IGNORECASE,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _fault(message: str, code: str, detail: str = "", kind: str = "ValidationFault") -> dict[str, Any]:
    return {
        "Fault": {"Error": [{"Message": message, "Detail": detail or message, "code": code}], "type": kind},
        "time": _now(),
    }


def _amount(value: Any, where: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{where}: Amount {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{where}: Amount must be a non-negative number")
    return amount


def _ref(obj: Any, name: str, where: str) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get(name), dict) or not obj[name].get("value"):
        raise ValueError(f"{where}: {name}.value is required")
    return str(obj[name]["value"])


class QboSandbox(AccountingSandbox):
    vendor = "qbo"
    max_key_length = 50

    def __init__(
        self,
        token: str,
        rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
        seed: int = 42,
        batch_limit: RateLimit = DEFAULT_BATCH_LIMIT,
        max_concurrent: int | None = MAX_CONCURRENT,
        faults: AccountingFaults | None = None,
        accounts: set[str] | None = None,
        ar_accounts: set[str] | None = None,
        home_currency: dict[str, str] | None = None,
    ) -> None:
        super().__init__(token, rate_limit, seed, max_concurrent, faults, accounts)
        self.batch_limiter = SlidingWindowLimiter(batch_limit)
        self.ar_accounts = {"1200"} if ar_accounts is None else ar_accounts
        self.home_currency = home_currency or {}

    def set_batch_limit(self, batch_limit: RateLimit) -> None:
        self.batch_limiter = SlidingWindowLimiter(batch_limit)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.batch_limiter.reset()

    # -- vendor shapes -----------------------------------------------------------------------------
    def company_of(self, req: Request) -> str:
        m = _PATH.match(req.path)
        return m["realm"] if m else "-"

    def idempotency_key_of(self, req: Request) -> str | None:
        return req.query.get("requestid") or None

    def auth_error(self) -> VendorError:
        return VendorError(
            401,
            {
                "fault": {
                    "error": [
                        {
                            "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                            "detail": "Token invalid",
                            "code": "3200",
                        }
                    ],
                    "type": "AUTHENTICATION",
                }
            },
        )

    def rate_limit_error(self, retry_after: int, problem: str) -> VendorError:
        return VendorError(
            429,
            _fault(
                "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "3001",
                f"The request limit was reached ({problem}).",
                "SERVICE",
            ),
            {"Retry-After": str(retry_after)},
        )

    def server_error(self, status: int) -> VendorError:
        return VendorError(
            status,
            _fault(
                "An application error has occurred while processing your request", "10000", kind="SystemFault"
            ),
        )

    def conflict_error(self, key: str) -> VendorError:
        return VendorError(
            409,
            _fault(
                "Duplicate requestid with a different request body",
                "6140",
                f"requestid {key} was already used for another request",
            ),
        )

    def bad_request_body(self, message: str) -> dict[str, Any]:
        return _fault(message, "2020")

    def extra_limit(self, req: Request) -> VendorError | None:
        m = _PATH.match(req.path)
        if m and m["rest"] == "batch" and req.method == "POST":
            retry = self.batch_limiter.admit(m["realm"])
            if retry is not None:
                return self.rate_limit_error(retry, "batch")
        return None

    # -- routing -------------------------------------------------------------------------------------
    def route(self, req: Request) -> tuple[int, dict[str, Any]]:
        m = _PATH.match(req.path)
        if not m:
            raise VendorError(404, _fault(f"unknown resource {req.path}", "610", kind="ObjectNotFound"))
        realm, rest = m["realm"], m["rest"]
        if req.method == "GET" and rest == "query":
            return 200, self._query(realm, req.query.get("query", ""))
        if req.method == "POST" and rest == "batch":
            return 200, self._batch(realm, req.body)
        if req.method == "POST" and rest in ENTITIES:
            entity = ENTITIES[rest]
            try:
                doc = self._create(realm, entity, req.body)
            except ValueError as exc:
                raise VendorError(
                    400, _fault("Request has invalid or unsupported property", "2010", str(exc))
                ) from None
            return 200, {entity: doc, "time": _now()}
        raise VendorError(
            404, _fault(f"unsupported operation {req.method} {rest}", "610", kind="ObjectNotFound")
        )

    def _batch(self, realm: str, body: Any) -> dict[str, Any]:
        items = body.get("BatchItemRequest") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise VendorError(400, _fault("BatchItemRequest is required", "2020"))
        if len(items) > MAX_BATCH_ITEMS:
            raise VendorError(
                400, _fault(f"a batch holds at most {MAX_BATCH_ITEMS} operations, got {len(items)}", "2020")
            )
        out = []
        for item in items:
            bid = item.get("bId") if isinstance(item, dict) else None
            try:
                if item.get("operation") != "create":
                    raise ValueError("only operation=create is supported")
                names = [k for k in ENTITIES.values() if k in item]
                if len(names) != 1:
                    raise ValueError(
                        "each batch item carries exactly one of Invoice, CreditMemo, JournalEntry"
                    )
                doc = self._create(realm, names[0], item[names[0]])
                out.append({"bId": bid, names[0]: doc})
            except ValueError as exc:
                out.append(
                    {
                        "bId": bid,
                        "Fault": {
                            "Error": [
                                {
                                    "Message": "Request has invalid or unsupported property",
                                    "Detail": str(exc),
                                    "code": "2010",
                                }
                            ],
                            "type": "ValidationFault",
                        },
                    }
                )
        return {"BatchItemResponse": out, "time": _now()}

    def _create(self, realm: str, entity: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError(f"{entity} body must be an object")
        lines = body.get("Line")
        if not isinstance(lines, list) or not lines:
            raise ValueError(f"{entity}.Line must hold at least one line")
        txn_date = body.get("TxnDate")
        try:
            date.fromisoformat(str(txn_date))
        except ValueError:
            raise ValueError(f"{entity}.TxnDate {txn_date!r} is not YYYY-MM-DD") from None
        currency = (
            _ref(body, "CurrencyRef", entity) if "CurrencyRef" in body else self.home_currency.get(realm)
        )
        if "ExchangeRate" in body and _amount(body["ExchangeRate"], f"{entity}.ExchangeRate") == 0:
            raise ValueError(f"{entity}.ExchangeRate must be positive")
        home = self.home_currency.get(realm)
        if home and currency and currency != home and "ExchangeRate" not in body:
            raise ValueError(
                f"{entity}: ExchangeRate is required for a {currency} transaction in a {home} company"
            )
        if entity == "JournalEntry":
            total = self._check_journal(lines)
        else:
            _ref(body, "CustomerRef", entity)
            total = Decimal(0)
            for i, line in enumerate(lines):
                where = f"{entity}.Line[{i}]"
                if line.get("DetailType") != "SalesItemLineDetail":
                    raise ValueError(f"{where}.DetailType must be SalesItemLineDetail")
                total += _amount(line.get("Amount"), where)
                _ref(line.get("SalesItemLineDetail"), "ItemRef", where)
            tax = (body.get("TxnTaxDetail") or {}).get("TotalTax")
            if tax is not None:
                total += _amount(tax, f"{entity}.TxnTaxDetail.TotalTax")
        doc = dict(body)
        doc.update(
            {
                "Id": self.new_id(numeric=True),
                "SyncToken": "0",
                "domain": "QBO",
                "TotalAmt": total,
                "MetaData": {"CreateTime": _now()},
            }
        )
        self.store(realm, entity, doc)
        return doc

    def _check_journal(self, lines: list[Any]) -> Decimal:
        debit = credit = Decimal(0)
        if len(lines) < 2:
            raise ValueError("JournalEntry needs at least two lines")
        for i, line in enumerate(lines):
            where = f"JournalEntry.Line[{i}]"
            if line.get("DetailType") != "JournalEntryLineDetail":
                raise ValueError(f"{where}.DetailType must be JournalEntryLineDetail")
            detail = line.get("JournalEntryLineDetail") or {}
            amount = _amount(line.get("Amount"), where)
            posting = detail.get("PostingType")
            account = _ref(detail, "AccountRef", where)
            if self.accounts is not None and account not in self.accounts:
                raise ValueError(f"{where}: Invalid Reference Id: account {account} does not exist")
            if account in self.ar_accounts:
                ent = detail.get("Entity") or {}
                if ent.get("Type") != "Customer" or not (ent.get("EntityRef") or {}).get("value"):
                    raise ValueError(f"{where}: an Accounts Receivable line needs a Customer entity")
            if posting == "Debit":
                debit += amount
            elif posting == "Credit":
                credit += amount
            else:
                raise ValueError(f"{where}.PostingType must be Debit or Credit")
        if debit != credit:
            raise ValueError(f"Transaction is not balanced: debits {debit} != credits {credit}")
        return debit

    def _query(self, realm: str, query: str) -> dict[str, Any]:
        m = _QUERY.match(query)
        if not m or m["entity"] not in ENTITIES.values():
            raise VendorError(400, _fault(f"QueryParserError: cannot parse {query!r}", "4000"))
        docs = self.list_documents(realm, m["entity"])
        start_pos = int(m["start"] or 1)
        max_results = min(int(m["max"] or 100), 1000)
        page = docs[start_pos - 1 : start_pos - 1 + max_results]
        return {
            "QueryResponse": {
                m["entity"]: page,
                "startPosition": start_pos,
                "maxResults": len(page),
                "totalCount": len(docs),
            },
            "time": _now(),
        }


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = "qbo-sandbox-token",
    rate_limit: RateLimit | str = DEFAULT_RATE_LIMIT,
    seed: int = 42,
    batch_limit: RateLimit | str = DEFAULT_BATCH_LIMIT,
    max_concurrent: int | None = MAX_CONCURRENT,
    faults: AccountingFaults | None = None,
    accounts: set[str] | None = None,
    home_currency: dict[str, str] | None = None,
) -> SandboxHandle:
    """Start a QuickBooks Online sandbox on a background thread (port 0: any free port)."""
    if isinstance(rate_limit, str):
        rate_limit = RateLimit.parse(rate_limit)
    if isinstance(batch_limit, str):
        batch_limit = RateLimit.parse(batch_limit)
    sandbox = QboSandbox(
        token, rate_limit, seed, batch_limit, max_concurrent, faults, accounts, home_currency=home_currency
    )
    return start(sandbox, host, port)


def run_forever(
    host: str = "127.0.0.1",
    port: int = 8081,
    token: str = "qbo-sandbox-token",
    rate_limit: RateLimit | str = DEFAULT_RATE_LIMIT,
    seed: int = 42,
    batch_limit: RateLimit | str = DEFAULT_BATCH_LIMIT,
    faults: AccountingFaults | None = None,
) -> None:
    """Serve until interrupted (the `pm-accounting sandbox qbo` command)."""
    run_until_interrupted(serve(host, port, token, rate_limit, seed, batch_limit, faults=faults))
