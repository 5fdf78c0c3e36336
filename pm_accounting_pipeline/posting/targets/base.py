"""The one interface every accounting target implements, and the HTTP plumbing the vendor targets share.

A target renders a document into its own payload, groups outbox items that may travel in one bulk
request, sends a group under one request id, and says item by item what happened. Errors that
concern the whole request are raised: `TransientSendError` (retry with the same request id) or
`PermanentSendError`; `TargetUnavailableError` means the target refuses us (auth) and no document
is to blame.
"""

from __future__ import annotations

import gzip
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import cache
from typing import Any

import httpx
import polars as pl
import stamina

from pm_accounting_pipeline.core.money import Money
from pm_accounting_pipeline.posting import jsonutil
from pm_accounting_pipeline.posting.model import (
    OutboxItem,
    PermanentSendError,
    PostingError,
    SendResult,
    TransientSendError,
)
from pm_accounting_pipeline.posting.outbox import DocumentView

REMOTE_SCHEMA = pl.Schema(
    {
        "target": pl.String,
        "doc_uid": pl.String,
        "remote_id": pl.String,
        "remote_kind": pl.String,
        "entity": pl.String,
        "posting_date": pl.Date,
        "currency": pl.String,
        "total_minor": pl.Int64,
    }
)


class TargetUnavailableError(PostingError):
    """The target refuses every request (bad credentials, unknown company): stop, blame no document."""


@dataclass(frozen=True)
class TargetLimits:
    """Published limits a client must respect: requests per window, concurrency, bulk size."""

    requests: int
    period_s: float
    batch_size: int = 1
    batch_requests: int | None = None
    batch_period_s: float | None = None
    daily_requests: int | None = None


class TargetAdapter(ABC):
    name: str
    limits: TargetLimits
    #: called right before each request leaves (the delivery's rate limiter waits here, so the time it
    #: records is as close as possible to the moment the target starts counting)
    before_request: Callable[[], None] | None = None

    @abstractmethod
    def render(self, doc: DocumentView) -> dict[str, Any]:
        """The payload the target stores for this document (deterministic, JSON-able, Decimals exact)."""

    def group_key(self, item: OutboxItem) -> str:
        """Items with equal keys may share one bulk request."""
        return item.entity

    @abstractmethod
    def send(self, items: Sequence[OutboxItem], request_id: str) -> list[SendResult]:
        """Send items (one request when there is a bulk endpoint) and report per item."""

    @abstractmethod
    def payload_total(self, payload: dict[str, Any]) -> tuple[str, int]:
        """(currency, total in minor units) of a rendered payload, measured as `remote_documents` measures."""

    def remote_documents(self, entities: Sequence[str]) -> pl.DataFrame:
        """What the target holds (schema REMOTE_SCHEMA), for reconciliation."""
        return pl.DataFrame(schema=REMOTE_SCHEMA)

    def close(self) -> None:
        return None


# --- rendering helpers ------------------------------------------------------------------------------


def amount(minor: int, currency: str) -> Decimal:
    """Minor units as the currency's exact decimal amount (JPY 1234 -> 1234, EUR 1234 -> 12.34)."""
    return Money.from_minor(int(minor), currency).amount


def dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def functional_rate(content: dict[str, Any]) -> Decimal:
    """Functional-currency units per one transaction-currency unit, from the entry's own lines.

    The ledger books each line at the rate of its date; the ratio of the functional to the
    transaction debit totals is that rate (to 10 decimal places, half-even), which is what the
    targets want on the document header.
    """
    postings = content["postings"]
    tx = sum((Decimal(p["debit"]) for p in postings), Decimal(0))
    fn = sum((Decimal(p["functional_debit"]) for p in postings), Decimal(0))
    if tx == 0:
        return Decimal(1)
    with localcontext() as ctx:
        ctx.prec = 34
        return (fn / tx).quantize(Decimal("1E-10"), rounding=ROUND_HALF_EVEN).normalize()


# --- HTTP -----------------------------------------------------------------------------------------------


@cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~80 ms; one context serves every client of the process.
    return ssl.create_default_context()


class HttpTarget(TargetAdapter):
    """httpx client with bearer auth, gzip request bodies above a threshold, vendor error classes."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout_s: float = 10.0,
        gzip_min_bytes: int = 2048,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.gzip_min_bytes = gzip_min_bytes
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
            },
            transport=transport,
            verify=_ssl_context(),
        )

    def close(self) -> None:
        self._client.close()

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        """Send and classify: returns (status, json) for 2xx and item-level 4xx answers; raises otherwise."""
        content = None
        hdrs = dict(headers or {})
        if body is not None:
            content = jsonutil.dumps(body, canonical=False).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
            if len(content) >= self.gzip_min_bytes:
                content = gzip.compress(content, compresslevel=5)
                hdrs["Content-Encoding"] = "gzip"
        if self.before_request is not None:
            self.before_request()
        try:
            resp = self._client.request(method, path, params=params, headers=hdrs, content=content)
            text = resp.content
        except httpx.TimeoutException as exc:
            raise TransientSendError(f"timeout: {exc.__class__.__name__}") from exc
        except httpx.TransportError as exc:
            # Includes "server disconnected without a response": the request may have been stored.
            raise TransientSendError(f"connection lost: {exc.__class__.__name__}: {exc}") from exc
        status = resp.status_code
        try:
            data = jsonutil.loads(text) if text else None
        except ValueError:
            if status < 500:
                raise TransientSendError(
                    f"unreadable answer (HTTP {status}, {len(text)} bytes)", status=status
                ) from None
            data = None
        if status == 429 or status >= 500:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            raise TransientSendError(f"HTTP {status}", status=status, retry_after=retry_after, response=data)
        if status in (401, 403):
            raise TargetUnavailableError(f"{self.name}: HTTP {status}: {data}")
        return status, data

    def read_json(
        self, path: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        """A GET for reading back (reconciliation): safe to repeat, so transient failures are retried."""
        for attempt in stamina.retry_context(
            on=TransientSendError, attempts=4, timeout=None, wait_initial=0.2, wait_max=2.0
        ):
            with attempt:
                return self.request_json("GET", path, params=params, headers=headers)[1]
        raise AssertionError("stamina.retry_context yields until success or re-raises")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def whole_request_failure(
    items: Sequence[OutboxItem], status: int, data: Any, request: Any
) -> PermanentSendError:
    return PermanentSendError(
        f"HTTP {status}: {jsonutil.dumps(data)[:500]}",
        status=status,
        response={
            "status": status,
            "body": data,
            "request_items": [i.outbox_id for i in items],
            "request": request,
        },
    )
