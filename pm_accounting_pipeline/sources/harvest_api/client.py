"""The Harvest API v2 HTTP client: auth headers, gzip, pagination, rate limiting, retries, breaker.

One `HarvestClient` talks to one Harvest account. Every attempt first takes a permit from a
client-side limiter (100 requests / 15 s by default, shared by all clients of the same account in
this process), then goes through the account's circuit breaker. Transient failures (5xx, timeouts,
connection resets, truncated or invalid JSON) are retried by `stamina` with exponential backoff and
full jitter; a 429 waits exactly the server's `Retry-After`; 401/403/404/422 are never retried.
Numbers are parsed as Decimal so money never becomes a float.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pybreaker
import stamina
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

from pm_accounting_pipeline.sandboxes.faults import RateLimit

HARVEST_BASE_URL = "https://api.harvestapp.com"
DEFAULT_USER_AGENT = "pm-accounting-pipeline (finance-ops@localhost)"


class HarvestError(Exception):
    """Any failure talking to Harvest; carries the resource and the account it concerns."""

    def __init__(self, message: str, resource: str, account_id: str, status: int | None = None) -> None:
        super().__init__(message)
        self.resource = resource
        self.account_id = account_id
        self.status = status


class HarvestTransientError(HarvestError):
    """A failure worth retrying: 5xx, timeout, dropped connection, truncated or invalid body."""


class HarvestRateLimitedError(HarvestTransientError):
    """HTTP 429: wait exactly `retry_after_s` seconds before the next attempt."""

    def __init__(self, message: str, resource: str, account_id: str, retry_after_s: float) -> None:
        super().__init__(message, resource, account_id, 429)
        self.retry_after_s = retry_after_s


class HarvestPermanentError(HarvestError):
    """A failure that retrying cannot fix (bad token, wrong account, unknown resource, bad filter)."""


class HarvestRetriesExhaustedError(HarvestError):
    """The retry budget ran out; `last_error` is the final transient failure."""

    def __init__(
        self, message: str, resource: str, account_id: str, attempts: int, last_error: HarvestError
    ) -> None:
        super().__init__(message, resource, account_id, last_error.status)
        self.attempts = attempts
        self.last_error = last_error


class HarvestCircuitOpenError(HarvestError):
    """The account's circuit breaker is open: the API is not called until it may close again."""


@dataclass(frozen=True)
class RetryPolicy:
    """The retry budget per request. 429 waits count against the same attempts and time."""

    attempts: int = 10
    timeout_s: float = 300.0
    wait_initial_s: float = 1.0
    wait_max_s: float = 60.0
    wait_exp_base: float = 2.0
    max_retry_after_s: float = 900.0

    def full_jitter(self, retry_number: int, rng: random.Random) -> float:
        """AWS-style full jitter: uniform in [0, min(cap, initial * base^(n-1))]."""
        ceiling = min(self.wait_max_s, self.wait_initial_s * self.wait_exp_base ** (retry_number - 1))
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class BreakerPolicy:
    """Open the account's circuit after `fail_max` consecutive transient failures (429s excluded)."""

    fail_max: int = 10
    reset_timeout_s: float = 60.0


@dataclass(frozen=True)
class HarvestClientConfig:
    token: str
    account_id: str
    base_url: str = HARVEST_BASE_URL
    user_agent: str = DEFAULT_USER_AGENT
    rate_limit: str = "100/15s"
    # Every request is kept this much further than the period from the one `limit` requests before
    # it, so network jitter cannot push the server's count (taken at arrival) over its limit.
    limiter_margin_ms: int = 50
    per_page: int = 2000
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("a Harvest token is required (set HARVEST_TOKEN)")
        if not str(self.account_id).strip():
            raise ValueError("a Harvest account id is required")
        if not 1 <= self.per_page <= 2000:
            raise ValueError("per_page must be between 1 and 2000")
        RateLimit.parse(self.rate_limit)


@dataclass
class ClientStats:
    requests: int = 0
    pages: int = 0
    records: int = 0
    transient_failures: int = 0
    rate_limited: int = 0
    permanent_failures: int = 0
    gave_up: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Page:
    resource: str
    records: list[dict[str, Any]]
    page: int | None
    total_entries: int | None
    url: str


# Limiters and breakers are per account (and server), shared by every client in the process, so a
# sensor and an asset pulling the same account together still respect one quota.
_SHARED_LOCK = threading.Lock()
_LIMITERS: dict[tuple[str, str, str], Limiter] = {}
_BREAKERS: dict[tuple[str, str], pybreaker.CircuitBreaker] = {}


def _limiter_for(config: HarvestClientConfig) -> Limiter:
    key = (config.base_url, str(config.account_id), f"{config.rate_limit}+{config.limiter_margin_ms}ms")
    with _SHARED_LOCK:
        if key not in _LIMITERS:
            limit = RateLimit.parse(config.rate_limit)
            period_ms = max(1, round(limit.period_s * Duration.SECOND.value)) + config.limiter_margin_ms
            # pyrate's own buffer only delays requests that had to wait; the margin above covers all.
            _LIMITERS[key] = Limiter(InMemoryBucket([Rate(limit.requests, period_ms)]), buffer_ms=5)
        return _LIMITERS[key]


def _is_breaker_neutral(exc: BaseException) -> bool:
    """Only transient failures count towards opening the breaker; 429 and permanent errors don't."""
    return not isinstance(exc, HarvestTransientError) or isinstance(exc, HarvestRateLimitedError)


def _breaker_for(config: HarvestClientConfig) -> pybreaker.CircuitBreaker:
    key = (config.base_url, str(config.account_id))
    with _SHARED_LOCK:
        if key not in _BREAKERS:
            _BREAKERS[key] = pybreaker.CircuitBreaker(
                fail_max=config.breaker.fail_max,
                reset_timeout=config.breaker.reset_timeout_s,
                exclude=[_is_breaker_neutral],
                name=f"harvest:{config.account_id}",
            )
        return _BREAKERS[key]


def reset_shared_state() -> None:
    """Forget every shared limiter and breaker (tests that reuse a port start from a clean slate)."""
    with _SHARED_LOCK:
        _LIMITERS.clear()
        _BREAKERS.clear()


def _retry_after_seconds(value: str | None) -> float:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); 1 s when absent or unreadable."""
    if not value:
        return 1.0
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class HarvestClient:
    """A client for one Harvest account. Use as a context manager or call `close()`."""

    def __init__(
        self,
        config: HarvestClientConfig,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
        breaker: pybreaker.CircuitBreaker | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.account_id = str(config.account_id)
        self.stats = ClientStats()
        self._limiter = limiter or _limiter_for(config)
        self._breaker = breaker or _breaker_for(config)
        self._rng = random.Random(seed)
        self._http = httpx.Client(
            base_url=config.base_url,
            headers={
                "Authorization": f"Bearer {config.token}",
                "Harvest-Account-Id": self.account_id,
                "User-Agent": config.user_agent,
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
            },
            timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> HarvestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def breaker_state(self) -> str:
        return str(self._breaker.current_state)

    # ---- public API ---------------------------------------------------------------------
    def iter_pages(self, resource: str, **filters: Any) -> Iterator[Page]:
        """Every page of `resource`, following `links.next` exactly as the server wrote it."""
        params: dict[str, Any] | None = {
            "per_page": self.config.per_page,
            **{k: _param(v) for k, v in filters.items() if v is not None},
        }
        url: str | None = f"/v2/{resource}"
        seen: set[str] = set()
        while url is not None:
            payload = self.get_json(url, params, resource)
            records = payload.get(resource)
            if not isinstance(records, list):
                raise HarvestPermanentError(
                    f"Harvest {resource} for account {self.account_id}: response has no {resource!r} list",
                    resource,
                    self.account_id,
                    200,
                )
            self.stats.pages += 1
            self.stats.records += len(records)
            yield Page(resource, records, payload.get("page"), payload.get("total_entries"), url)
            links = payload.get("links") or {}
            next_url = links.get("next") if isinstance(links, dict) else None
            if next_url is not None and next_url in seen:
                raise HarvestPermanentError(
                    f"Harvest {resource} for account {self.account_id}: links.next repeats {next_url}",
                    resource,
                    self.account_id,
                )
            if next_url is not None:
                seen.add(next_url)
            url, params = next_url, None

    def list_all(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        return [record for page in self.iter_pages(resource, **filters) for record in page.records]

    def get_json(self, url: str, params: dict[str, Any] | None, resource: str) -> dict[str, Any]:
        """One logical GET with the full retry policy; returns the parsed JSON object."""
        policy = self.config.retry
        retries = 0
        made = 0

        def backoff(exc: Exception) -> bool | float:
            nonlocal retries
            if not isinstance(exc, HarvestTransientError):
                return False
            retries += 1
            if isinstance(exc, HarvestRateLimitedError):
                if exc.retry_after_s > policy.max_retry_after_s:
                    return False
                return exc.retry_after_s
            return policy.full_jitter(retries, self._rng)

        try:
            for attempt in stamina.retry_context(
                on=backoff,
                attempts=policy.attempts,
                timeout=timedelta(seconds=policy.timeout_s),
                wait_initial=policy.wait_initial_s,
                wait_max=policy.wait_max_s,
                wait_jitter=0.0,
                wait_exp_base=policy.wait_exp_base,
            ):
                with attempt:
                    made = attempt.num
                    return self._attempt(url, params, resource)
        except HarvestTransientError as exc:
            self.stats.gave_up += 1
            raise HarvestRetriesExhaustedError(
                f"Harvest {resource} for account {self.account_id}: gave up after {made} attempt(s) "
                f"within the retry budget ({policy.attempts} attempts, {policy.timeout_s:g} s); last error: {exc}",
                resource,
                self.account_id,
                made,
                exc,
            ) from exc
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    # ---- one attempt --------------------------------------------------------------------
    def _attempt(self, url: str, params: dict[str, Any] | None, resource: str) -> dict[str, Any]:
        self._limiter.try_acquire(self.account_id)
        try:
            return self._breaker.call(self._fetch, url, params, resource)
        except pybreaker.CircuitBreakerError as exc:
            opened_at = self._breaker._state_storage.opened_at  # pybreaker keeps it only there
            until = (
                (opened_at + timedelta(seconds=self._breaker.reset_timeout)).isoformat(timespec="seconds")
                if opened_at
                else "the reset timeout"
            )
            raise HarvestCircuitOpenError(
                f"circuit breaker open for Harvest account {self.account_id} after {self._breaker.fail_max} "
                f"consecutive failures ({resource}); not calling the API until {until}",
                resource,
                self.account_id,
            ) from exc

    def _fetch(self, url: str, params: dict[str, Any] | None, resource: str) -> dict[str, Any]:
        self.stats.requests += 1
        where = f"Harvest {resource} for account {self.account_id}"
        try:
            response = self._http.get(url, params=params)
            body = response.content
        except httpx.TimeoutException as exc:
            self.stats.transient_failures += 1
            raise HarvestTransientError(
                f"{where}: timed out ({type(exc).__name__})", resource, self.account_id
            ) from exc
        except httpx.RequestError as exc:
            self.stats.transient_failures += 1
            raise HarvestTransientError(
                f"{where}: connection failed ({type(exc).__name__}: {exc})", resource, self.account_id
            ) from exc
        status = response.status_code
        if status == 429:
            self.stats.rate_limited += 1
            wait = _retry_after_seconds(response.headers.get("Retry-After"))
            raise HarvestRateLimitedError(
                f"{where}: rate limited, Retry-After {wait:g} s", resource, self.account_id, wait
            )
        if status >= 500:
            self.stats.transient_failures += 1
            raise HarvestTransientError(f"{where}: HTTP {status}", resource, self.account_id, status)
        if status != 200:
            self.stats.permanent_failures += 1
            raise HarvestPermanentError(
                f"{where}: HTTP {status} {_excerpt(body)}; not retried "
                "(check the token, the Harvest-Account-Id and the request)",
                resource,
                self.account_id,
                status,
            )
        try:
            payload = json.loads(body, parse_float=Decimal)
        except ValueError as exc:
            self.stats.transient_failures += 1
            raise HarvestTransientError(
                f"{where}: invalid JSON body ({len(body)} bytes, truncated?): {exc}",
                resource,
                self.account_id,
                status,
            ) from exc
        if not isinstance(payload, dict):
            self.stats.transient_failures += 1
            raise HarvestTransientError(
                f"{where}: body is not a JSON object", resource, self.account_id, status
            )
        return payload


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."
