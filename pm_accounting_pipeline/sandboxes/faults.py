"""Seeded fault injection and vendor-style rate limiting shared by every local vendor sandbox.

A sandbox asks a `FaultInjector` what to do with each incoming request (answer normally, fail with a
5xx, drop the connection, truncate the body, or answer 429 because a storm is raging) and asks a
`SlidingWindowLimiter` whether the caller is over its quota. Both are independent of any HTTP
framework, thread-safe, and reproducible: the same seed and the same request order give the same
faults, so a failing test can be replayed exactly.

Typical use inside a `http.server` handler::

    decision = injector.decide()
    if decision.latency_s: time.sleep(decision.latency_s)
    if decision.kind is FaultKind.DROP: close the socket without answering
    ...
"""

from __future__ import annotations

import enum
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|min|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`requests` allowed in any window of `period_s` seconds (e.g. Harvest: 100 per 15 s)."""

    requests: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse `"100/15s"`, `"500/1m"`, `"20/s"`, `"60/min"`, `"5000/24h"`."""
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(
                f"rate limit {text!r} is not like '100/15s' (requests/period with unit ms|s|m|min|h)"
            )
        count, amount, unit = int(match[1]), float(match[2] or 1), match[3]
        period = amount * _UNIT_SECONDS[unit]
        if count <= 0 or period <= 0:
            raise ValueError(f"rate limit {text!r} must allow at least one request in a positive period")
        return cls(count, period)

    @property
    def per_second(self) -> float:
        return self.requests / self.period_s

    def __str__(self) -> str:
        period = f"{self.period_s:g}"
        return f"{self.requests}/{period}s"


class SlidingWindowLimiter:
    """Server-side limiter: at most `limit.requests` admitted per key in any `period_s` window.

    Rejected requests do not count against the quota (as with Harvest, Xero and QuickBooks), and
    `admit` returns the whole seconds the caller should wait, which is what `Retry-After` carries.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}

    def admit(self, key: str) -> int | None:
        """None when admitted, else the `Retry-After` seconds (>= 1) until a slot frees up."""
        now = self._clock()
        with self._lock:
            window = self._windows.setdefault(key, deque())
            horizon = now - self.limit.period_s
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) < self.limit.requests:
                window.append(now)
                return None
            wait = window[0] + self.limit.period_s - now
            return max(1, math.ceil(wait))

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


class FaultKind(enum.StrEnum):
    NONE = "none"
    ERROR = "error"  # answer a 5xx with a vendor-like error body
    DROP = "drop"  # close the connection without an answer
    TRUNCATE = "truncate"  # answer 200 with the body cut short (invalid JSON, consistent length)
    STORM = "storm"  # answer 429 with Retry-After while a storm lasts


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Probabilities (0..1) per request, drawn from one seeded generator.

    `storm_rate` is the chance that a request starts a 429 storm lasting `storm_seconds`, during
    which every request is refused with `Retry-After` = the whole seconds left. `error_statuses`
    are the 5xx codes drawn from for `error_rate`.
    """

    error_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    storm_rate: float = 0.0
    storm_seconds: float = 1.0
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate", "truncate_rate", "storm_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.error_rate + self.drop_rate + self.truncate_rate + self.storm_rate > 1.0:
            raise ValueError("error_rate + drop_rate + truncate_rate + storm_rate must not exceed 1")
        if self.storm_seconds <= 0 or self.latency_s < 0 or self.latency_jitter_s < 0:
            raise ValueError("storm_seconds must be positive and latencies non-negative")
        if not self.error_statuses or any(not 500 <= s <= 599 for s in self.error_statuses):
            raise ValueError("error_statuses must be 5xx codes")

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> FaultConfig:
        """Build from a JSON control request; unknown keys are an error so typos don't pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {sorted(known)}")
        values = dict(payload)
        if "error_statuses" in values:
            values["error_statuses"] = tuple(int(s) for s in values["error_statuses"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["error_statuses"] = list(self.error_statuses)
        return out


@dataclass(frozen=True, slots=True)
class FaultDecision:
    kind: FaultKind
    latency_s: float = 0.0
    status: int = 200
    retry_after_s: int = 0
    truncate_fraction: float = 1.0


class FaultInjector:
    """Decides, request by request, which fault (if any) to inject, and counts what it injected."""

    def __init__(
        self, config: FaultConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._rng = random.Random(self._config.seed)
        self._storm_until = 0.0
        self.counts: dict[str, int] = {k.value: 0 for k in FaultKind}

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the settings and reseed, so a test that sets faults gets a reproducible sequence."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._storm_until = 0.0

    def clear(self) -> None:
        self.configure(replace(FaultConfig(), seed=self._config.seed))

    def decide(self) -> FaultDecision:
        with self._lock:
            cfg = self._config
            now = self._clock()
            latency = cfg.latency_s + (
                self._rng.uniform(0, cfg.latency_jitter_s) if cfg.latency_jitter_s else 0.0
            )
            if now < self._storm_until:
                decision = FaultDecision(
                    FaultKind.STORM, latency, 429, max(1, math.ceil(self._storm_until - now))
                )
            else:
                draw = self._rng.random()
                decision = self._pick(cfg, draw, now, latency)
            self.counts[decision.kind.value] += 1
            return decision

    def _pick(self, cfg: FaultConfig, draw: float, now: float, latency: float) -> FaultDecision:
        edge = cfg.error_rate
        if draw < edge:
            return FaultDecision(FaultKind.ERROR, latency, self._rng.choice(cfg.error_statuses))
        edge += cfg.drop_rate
        if draw < edge:
            return FaultDecision(FaultKind.DROP, latency)
        edge += cfg.truncate_rate
        if draw < edge:
            # Cut somewhere in the body, never at its very end, so the JSON is always invalid.
            return FaultDecision(FaultKind.TRUNCATE, latency, 200, 0, self._rng.uniform(0.05, 0.95))
        edge += cfg.storm_rate
        if draw < edge:
            self._storm_until = now + cfg.storm_seconds
            return FaultDecision(FaultKind.STORM, latency, 429, max(1, math.ceil(cfg.storm_seconds)))
        return FaultDecision(FaultKind.NONE, latency)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def truncate_body(body: bytes, fraction: float) -> bytes:
    """The first `fraction` of `body`, at least one byte shorter than the whole."""
    if len(body) <= 1:
        return b""
    cut = min(len(body) - 1, max(1, int(len(body) * fraction)))
    return body[:cut]
