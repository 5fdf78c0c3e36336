"""The vocabulary of posting: document kinds, outbox statuses, send outcomes and their errors.

Invariants, stated once (enforced by `outbox` and `delivery`):
- one document revision = one idempotency key per target, derived, never random;
- a posted document is never changed: a correction is a reversal plus a new revision, linked;
- a row is marked in flight (and committed) before it is sent, and an in-flight row is only ever
  re-sent with the same key and the same batch membership, so a lost answer cannot duplicate it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pm_accounting_pipeline.core.ids import stable_id


class DocumentKind(enum.StrEnum):
    INVOICE = "invoice"
    CREDIT_MEMO = "credit_memo"
    JOURNAL_ENTRY = "journal_entry"
    REVERSAL = "reversal"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    POSTED = "posted"
    FAILED_TRANSIENT = "failed_transient"
    DEAD = "dead"


class Outcome(enum.StrEnum):
    POSTED = "posted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


TARGETS = ("general_ledger", "qbo", "xero")


def utcnow() -> datetime:
    """Naive UTC wall clock (both ledger databases store naive UTC timestamps)."""
    return datetime.now(UTC).replace(tzinfo=None)


def document_uid(kind: str, document_id: str, revision: int) -> str:
    """The id of one revision of one ledger document (a reversal's id derives from what it reverses)."""
    return stable_id("posting-document", kind, document_id, revision)


def idempotency_key(target: str, doc_uid: str, content_hash: str) -> str:
    """Deterministic 36-character key: fits QBO's batch `requestid` (<= 36) and Xero's header (<= 128)."""
    return stable_id("posting-idempotency", target, doc_uid, content_hash)


def batch_key(target: str, member_keys: list[str]) -> str:
    """The request id of a bulk request: derived from its members, so a re-send carries the same id."""
    return stable_id("posting-batch", target, *sorted(member_keys))


class PostingError(Exception):
    """Base class of errors raised by posting."""


class TransientSendError(PostingError):
    """The request may succeed if repeated with the same key (timeouts, 5xx, 429, connection loss)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.response = response


class PermanentSendError(PostingError):
    """The whole request was refused and repeating it unchanged cannot help (auth, 4xx validation)."""

    def __init__(self, message: str, *, status: int | None = None, response: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.response = response


class UnbalancedEntryError(PostingError, ValueError):
    """A journal entry whose debits differ from its credits; nothing of the batch is enqueued."""


class LedgerInputError(PostingError, ValueError):
    """Ledger tables that cannot be turned into documents (missing lines, unknown references)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbox row as the sender sees it."""

    outbox_id: str
    doc_uid: str
    document_kind: str
    document_id: str
    revision: int
    entity: str
    target: str
    idempotency_key: str
    payload: dict[str, Any]
    payload_hash: str
    attempts: int
    batch_key: str | None = None
    status: str = OutboxStatus.PENDING.value


@dataclass(slots=True)
class SendResult:
    """The outcome of one item of a request; `request`/`response` are kept for the DLQ."""

    outbox_id: str
    outcome: Outcome
    remote_id: str | None = None
    status_code: int | None = None
    error: str | None = None
    response: Any = None
    request: Any = None
    retry_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
