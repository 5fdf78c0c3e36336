"""Delivery: move due outbox rows to one target, effectively once.

Per chunk of rows: check the kill switch, mark the rows in flight with their request id (committed),
wait for the rate limiter, send through the target's circuit breaker with retries (exponential
back-off with full jitter, or exactly the `Retry-After` the target asked for), then settle each row:
posted, dead-lettered (permanent refusal, or attempts exhausted) or back to the queue with a
persisted back-off. A run first re-sends what an earlier run left in flight, with the same request
id and the same batch membership, so a lost answer or a SIGKILL cannot produce a duplicate.
Retries use `stamina`, the breaker `pybreaker`, the limiter `pyrate-limiter`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pybreaker
import stamina
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

from pm_accounting_pipeline.posting import outbox
from pm_accounting_pipeline.posting.killswitch import SwitchState
from pm_accounting_pipeline.posting.model import (
    OutboxItem,
    Outcome,
    PermanentSendError,
    SendResult,
    TransientSendError,
    batch_key,
    utcnow,
)
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.base import (
    HttpTarget,
    TargetAdapter,
    TargetLimits,
    TargetUnavailableError,
)


@dataclass(frozen=True)
class DeliverySettings:
    """Knobs of one delivery run; the defaults suit production, tests shrink the waits."""

    max_attempts: int = 8
    in_run_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    persisted_backoff_base_s: float = 30.0
    persisted_backoff_cap_s: float = 3600.0
    max_retry_after_s: float = 120.0
    breaker_fail_max: int = 5
    breaker_reset_s: float = 30.0
    batch_size: int | None = None
    respect_rate_limits: bool = True
    time_budget_s: float | None = None
    fetch_size: int = 1000
    # Scales in-run waits on Retry-After (1.0 in production; the chaos harness shrinks it to stay fast).
    retry_after_scale: float = 1.0
    seed: int | None = None


@dataclass
class DeliveryReport:
    target: str
    posted: int = 0
    dead: int = 0
    transient: int = 0
    released: int = 0
    requests: int = 0
    recovered_in_flight: int = 0
    skipped_reason: str | None = None
    stopped_reason: str | None = None
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Throttle:
    """Client-side limits matched to the target's published ones, plus a pause after a 429."""

    def __init__(self, limits: TargetLimits, enabled: bool = True) -> None:
        self.enabled = enabled
        self._paused_until = 0.0
        self._lock = threading.Lock()
        # The target starts its window when a request arrives, later than we start ours: a margin of
        # 3% of the window (at least 50 ms) keeps the two clocks from disagreeing into a 429.
        buffer_ms = max(50, int(limits.period_s * 1000 * 0.03))
        rates = [Rate(limits.requests, int(limits.period_s * Duration.SECOND.value))]
        if limits.daily_requests:
            rates.append(Rate(limits.daily_requests, Duration.DAY.value))
        self._limiter = Limiter(InMemoryBucket(rates), buffer_ms=buffer_ms)
        self._batch_limiter = None
        if limits.batch_requests and limits.batch_period_s:
            self._batch_limiter = Limiter(
                InMemoryBucket(
                    [Rate(limits.batch_requests, int(limits.batch_period_s * Duration.SECOND.value))]
                ),
                buffer_ms=max(50, int(limits.batch_period_s * 1000 * 0.03)),
            )

    def back_off(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def acquire(self, bulk: bool) -> None:
        while True:
            with self._lock:
                wait = self._paused_until - time.monotonic()
            if wait <= 0:
                break
            time.sleep(wait)
        if not self.enabled:
            return
        self._limiter.try_acquire("requests", blocking=True)
        if bulk and self._batch_limiter is not None:
            self._batch_limiter.try_acquire("batch", blocking=True)


_BREAKERS: dict[str, pybreaker.CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(target: str, settings: DeliverySettings) -> pybreaker.CircuitBreaker:
    """One breaker per target per process, so repeated runs in one process share its memory."""
    with _BREAKERS_LOCK:
        b = _BREAKERS.get(target)
        if (
            b is None
            or b.fail_max != settings.breaker_fail_max
            or b.reset_timeout != settings.breaker_reset_s
        ):
            # Only transient failures say the target is unwell; a refused document does not.
            b = pybreaker.CircuitBreaker(
                fail_max=settings.breaker_fail_max,
                reset_timeout=settings.breaker_reset_s,
                exclude=[PermanentSendError, TargetUnavailableError],
                name=target,
                # Re-raise the real failure when tripping: that request WAS sent
                # (its answer may be lost), unlike a call refused by an open circuit.
                throw_new_error_on_trip=False,
            )
            _BREAKERS[target] = b
        return b


def reset_breakers() -> None:
    with _BREAKERS_LOCK:
        _BREAKERS.clear()


class Deliverer:
    """Delivers one target's due rows; construct per run."""

    def __init__(
        self,
        store: PostingStore,
        adapter: TargetAdapter,
        settings: DeliverySettings | None = None,
        *,
        switch: Callable[[], SwitchState] | None = None,
        throttle: Throttle | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.adapter = adapter
        self.settings = settings or DeliverySettings()
        self.switch = switch
        self.clock = clock
        self.throttle = throttle or Throttle(adapter.limits, self.settings.respect_rate_limits)
        self.breaker = breaker_for(adapter.name, self.settings)
        self._rng = random.Random(self.settings.seed)
        self.batch_size = max(
            1, min(self.settings.batch_size or adapter.limits.batch_size, adapter.limits.batch_size)
        )

    # -- back-off -------------------------------------------------------------------------------------
    def _full_jitter(self, attempt: int, base: float, cap: float) -> float:
        return self._rng.uniform(0.0, min(cap, base * (2 ** max(0, attempt - 1))))

    # -- public -----------------------------------------------------------------------------------------
    def run(self, *, manual: bool = False, outbox_ids: Sequence[str] | None = None) -> DeliveryReport:
        report = DeliveryReport(self.adapter.name)
        started = time.monotonic()
        try:
            if not manual and self.switch is not None:
                state = self.switch()
                if not state.enabled:
                    report.skipped_reason = "; ".join(state.reasons)
                    return report
            self._recover(report, manual, outbox_ids)
            if report.stopped_reason is None:
                self._drain(report, manual, outbox_ids, started)
        finally:
            report.elapsed_s = time.monotonic() - started
        return report

    # -- steps -------------------------------------------------------------------------------------------
    def _recover(self, report: DeliveryReport, manual: bool, outbox_ids: Sequence[str] | None) -> None:
        stuck = outbox.in_flight(self.store, self.adapter.name)
        if outbox_ids is not None:
            wanted = set(outbox_ids)
            stuck = [i for i in stuck if i.outbox_id in wanted or i.batch_key is not None]
        groups: dict[str, list[OutboxItem]] = {}
        for item in stuck:
            groups.setdefault(item.batch_key or item.idempotency_key, []).append(item)
        report.recovered_in_flight = len(stuck)
        for request_id, items in groups.items():
            if outbox_ids is not None and not any(i.outbox_id in set(outbox_ids) for i in items):
                continue
            if not self._send_chunk(report, self._complete_group(items), request_id, manual):
                return

    def _complete_group(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """All unsettled members of a batch, in the order they were first sent (by key)."""
        key = items[0].batch_key
        if key is None:
            return items
        rows = self.store.query(
            "SELECT outbox_id FROM {s}.outbox WHERE batch_key = ? AND target = ? AND "
            "status IN ('pending', 'in_flight', 'failed_transient')",
            [key, self.adapter.name],
        )
        have = {i.outbox_id for i in items}
        missing = [r[0] for r in rows if r[0] not in have]
        if missing:
            extra = [
                i for i in outbox.in_flight(self.store, self.adapter.name) if i.outbox_id in set(missing)
            ]
            extra += outbox.due(self.store, self.adapter.name, datetime.max, outbox_ids=missing)
            items = items + [i for i in extra if i.outbox_id not in have]
        return sorted(items, key=lambda i: i.idempotency_key)

    def _drain(
        self, report: DeliveryReport, manual: bool, outbox_ids: Sequence[str] | None, started: float
    ) -> None:
        # A row gets one claim per run: a failure waits for its back-off and the next run.
        tried: set[str] = set()
        while True:
            if (
                self.settings.time_budget_s is not None
                and time.monotonic() - started > self.settings.time_budget_s
            ):
                report.stopped_reason = "time budget spent"
                return
            # A manual post sends the chosen rows now, whatever their back-off says.
            now = datetime.max if manual else self.clock()
            # Fetch whole batches' worth, and hold back a group's partial tail while more rows wait:
            # it is filled up by the next fetch instead of going out as a half-empty request.
            limit = max(self.batch_size, self.settings.fetch_size // self.batch_size * self.batch_size)
            due = outbox.due(
                self.store,
                self.adapter.name,
                now,
                limit,
                outbox_ids,
                exclude=sorted(tried),
            )
            if not due:
                return
            progressed = False
            for request_id, chunk in self._chunks(due, final=len(due) < limit):
                if any(i.outbox_id in tried for i in chunk):
                    continue
                tried.update(i.outbox_id for i in chunk)
                if not self._send_chunk(report, chunk, request_id, manual):
                    return
                progressed = True
            if not progressed:
                return

    def _chunks(self, items: list[OutboxItem], final: bool = True) -> list[tuple[str, list[OutboxItem]]]:
        out: list[tuple[str, list[OutboxItem]]] = []
        sticky: dict[str, list[OutboxItem]] = {}
        fresh: dict[str, list[OutboxItem]] = {}
        for item in items:
            if item.batch_key is not None:
                sticky.setdefault(item.batch_key, []).append(item)
            else:
                fresh.setdefault(self.adapter.group_key(item), []).append(item)
        for key, group in sticky.items():
            out.append((key, self._complete_group(group)))
        for group in fresh.values():
            for start in range(0, len(group), self.batch_size):
                chunk = sorted(group[start : start + self.batch_size], key=lambda i: i.idempotency_key)
                if not final and len(chunk) < self.batch_size and out:
                    break
                if len(chunk) == 1:
                    out.append((chunk[0].idempotency_key, chunk))
                else:
                    out.append((batch_key(self.adapter.name, [i.idempotency_key for i in chunk]), chunk))
        return out

    def _send_chunk(
        self, report: DeliveryReport, chunk: list[OutboxItem], request_id: str, manual: bool
    ) -> bool:
        """Claim, send and settle one request; False when the run must stop (switch, breaker, auth)."""
        if not manual and self.switch is not None:
            state = self.switch()
            if not state.enabled:
                report.stopped_reason = "kill switch: " + "; ".join(state.reasons)
                return False
        is_batch = len(chunk) > 1 or request_id != chunk[0].idempotency_key
        # The request id is pinned on every row before sending: until the target answers, these rows
        # are only ever sent again together, under this id.
        try:
            outbox.claim(self.store, chunk, request_id, self.clock())
        except outbox.ClaimConflict as exc:
            report.errors.append(str(exc))
            return True
        sent = [False]  # becomes True once a try ended without a definite answer
        try:
            results = self._send_with_retries(chunk, request_id, is_batch, report, sent)
        except pybreaker.CircuitBreakerError as exc:
            report.stopped_reason = f"circuit breaker open for {self.adapter.name}"
            if not sent[0]:
                retry_at = self.clock() + timedelta(seconds=self.settings.breaker_reset_s)
                outbox.release(self.store, chunk, f"circuit open: {exc}", retry_at, self.clock())
                report.released += len(chunk)
                return False
            # An earlier try of this very request went out and its fate is unknown: keep the rows
            # pinned to the request id and let the back-off bring them round again.
            results = [
                SendResult(
                    i.outbox_id,
                    Outcome.TRANSIENT,
                    error=f"circuit open after a try: {exc}",
                    request=i.payload,
                )
                for i in chunk
            ]
        except TargetUnavailableError as exc:
            report.stopped_reason = str(exc)
            report.errors.append(str(exc))
            if not sent[0]:
                outbox.release(self.store, chunk, str(exc), self.clock(), self.clock())
                report.released += len(chunk)
                return False
            results = [
                SendResult(i.outbox_id, Outcome.TRANSIENT, error=str(exc), request=i.payload) for i in chunk
            ]
        except TransientSendError as exc:
            results = [
                SendResult(
                    i.outbox_id,
                    Outcome.TRANSIENT,
                    status_code=exc.status,
                    error=str(exc),
                    response=exc.response,
                    request=i.payload,
                    retry_after=exc.retry_after,
                )
                for i in chunk
            ]
            if exc.retry_after is not None and exc.retry_after > self.settings.max_retry_after_s:
                report.stopped_reason = f"target asked to wait {exc.retry_after:.0f} s"
        self._settle(report, chunk, results)
        return report.stopped_reason is None

    def _send_with_retries(
        self,
        chunk: list[OutboxItem],
        request_id: str,
        is_batch: bool,
        report: DeliveryReport,
        sent: list[bool],
    ) -> list[SendResult]:
        tries = 0

        def call() -> list[SendResult]:
            return self.adapter.send(chunk, request_id)

        def retry_hook(exc: Exception) -> bool | float:
            nonlocal tries
            if not isinstance(exc, TransientSendError):
                return False
            # The target may have stored what this try carried (lost answer, 5xx after commit).
            sent[0] = True
            tries += 1
            if exc.retry_after is not None:
                if exc.retry_after > self.settings.max_retry_after_s:
                    return False
                # Honour Retry-After exactly; the throttle makes every later request wait too.
                self.throttle.back_off(exc.retry_after * self.settings.retry_after_scale)
                return 0.0
            return self._full_jitter(tries, self.settings.backoff_base_s, self.settings.backoff_cap_s)

        for attempt in stamina.retry_context(
            on=retry_hook,
            attempts=self.settings.in_run_attempts,
            timeout=None,
            wait_initial=0.0,
            wait_max=self.settings.backoff_cap_s,
            wait_jitter=0.0,
        ):
            with attempt:
                if isinstance(self.adapter, HttpTarget):
                    self.adapter.before_request = lambda: self.throttle.acquire(is_batch)
                else:
                    self.throttle.acquire(is_batch)
                report.requests += 1
                return self.breaker.call(call)
        raise AssertionError("stamina.retry_context yields until success or re-raises")

    def _settle(self, report: DeliveryReport, chunk: list[OutboxItem], results: list[SendResult]) -> None:
        now = self.clock()
        by_id = {i.outbox_id: i for i in chunk}
        posted = [r for r in results if r.outcome is Outcome.POSTED]
        permanent = [r for r in results if r.outcome is Outcome.PERMANENT]
        transient = [r for r in results if r.outcome is Outcome.TRANSIENT]
        if posted:
            outbox.mark_posted(self.store, posted, now)
            report.posted += len(posted)
        if permanent:
            sure = [r for r in permanent if not r.extra.get("maybe_stored")]
            unsure = [r for r in permanent if r.extra.get("maybe_stored")]
            if sure:
                outbox.mark_dead(self.store, sure, "permanent", now, clear_batch=True)
            if unsure:
                outbox.mark_dead(self.store, unsure, "conflict", now, clear_batch=False)
            report.dead += len(permanent)
            report.errors.extend(r.error or "" for r in permanent[:5])
        if transient:
            exhausted = [
                r for r in transient if by_id[r.outbox_id].attempts + 1 >= self.settings.max_attempts
            ]
            retry = [r for r in transient if r not in exhausted]
            if exhausted:
                outbox.mark_dead(self.store, exhausted, "exhausted", now, clear_batch=False)
                report.dead += len(exhausted)
            if retry:
                next_at = {}
                for r in retry:
                    wait = self._full_jitter(
                        by_id[r.outbox_id].attempts + 1,
                        self.settings.persisted_backoff_base_s,
                        self.settings.persisted_backoff_cap_s,
                    )
                    if r.retry_after is not None:
                        wait = max(wait, r.retry_after)
                    next_at[r.outbox_id] = now + timedelta(seconds=wait)
                outbox.mark_transient(self.store, retry, next_at, now)
                report.transient += len(retry)


def deliver(
    store: PostingStore,
    adapter: TargetAdapter,
    settings: DeliverySettings | None = None,
    *,
    switch: Callable[[], SwitchState] | None = None,
    manual: bool = False,
    outbox_ids: Sequence[str] | None = None,
) -> DeliveryReport:
    """One delivery run for one target (see `Deliverer`)."""
    return Deliverer(store, adapter, settings, switch=switch).run(manual=manual, outbox_ids=outbox_ids)
