"""The HTTP machinery shared by the QuickBooks Online and Xero sandboxes.

A vendor sandbox is a real HTTP server on loopback that stores what it receives and enforces the
vendor's rules: bearer-token auth, per-company rate limits answering 429 with `Retry-After`, and
idempotency (the same key with the same body returns the original answer; with another body, an
error). Faults are injected per request from a seeded generator: 5xx, 429 storms and latency come
from the shared `faults` module; on top of those the accounting sandboxes add the faults that
matter for effectively-once posting: a timeout before anything is stored, the answer lost after
the documents were committed, and a request delivered twice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pm_accounting_pipeline.sandboxes.faults import (
    FaultConfig,
    FaultInjector,
    FaultKind,
    RateLimit,
    SlidingWindowLimiter,
)


def dump_json(obj: Any) -> bytes:
    """JSON with Decimals written exactly (the sandbox echoes amounts back as vendors do)."""
    return _encode(obj).encode("utf-8")


def _encode(obj: Any) -> str:
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + _encode(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_encode(v) for v in obj) + "]"
    return json.dumps(obj)


@dataclass(frozen=True)
class AccountingFaults:
    """Per-request fault probabilities; `base` carries 5xx, 429 storms and latency.

    `lost_after_commit_rate`: the request is stored, then the connection is closed without an answer.
    `timeout_rate`: the server stalls `timeout_s` and closes the connection, storing nothing.
    `duplicate_rate`: the request is processed a second time, as if the network delivered it twice.
    """

    base: FaultConfig = field(default_factory=FaultConfig)
    lost_after_commit_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 0.5
    duplicate_rate: float = 0.0
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("lost_after_commit_rate", "timeout_rate", "duplicate_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.timeout_s < 0:
            raise ValueError("timeout_s must not be negative")

    @classmethod
    def none(cls, seed: int = 42) -> AccountingFaults:
        return cls(base=FaultConfig(seed=seed), seed=seed)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> AccountingFaults:
        values = dict(payload)
        base = FaultConfig.from_json(values.pop("base", {}))
        known = {"lost_after_commit_rate", "timeout_rate", "timeout_s", "duplicate_rate", "seed"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {sorted(known | {'base'})}")
        return cls(base=base, **values)


@dataclass
class Stored:
    """A remembered answer to an idempotency key."""

    body_hash: str
    status: int
    body: bytes


class VendorError(Exception):
    """An error answer with a vendor-shaped JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_body: bytes


class AccountingSandbox:
    """State and rules common to both vendors; subclasses route requests and shape documents."""

    vendor = "sandbox"
    #: header or query parameter that carries the idempotency key
    max_key_length = 128

    def __init__(
        self,
        token: str,
        rate_limit: RateLimit,
        seed: int = 42,
        max_concurrent: int | None = None,
        faults: AccountingFaults | None = None,
        accounts: set[str] | None = None,
    ) -> None:
        self.token = token
        self.seed = seed
        self.limiter = SlidingWindowLimiter(rate_limit)
        self.max_concurrent = max_concurrent
        self.accounts = accounts
        self._lock = threading.RLock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._in_flight: dict[str, int] = {}
        self.idempotency: dict[tuple[str, str], Stored] = {}
        self.documents: dict[str, list[dict[str, Any]]] = {}
        self.counters: dict[str, int] = {
            "requests": 0,
            "created": 0,
            "rate_limited": 0,
            "replayed": 0,
            "conflicts": 0,
            "duplicates_delivered": 0,
            "lost_after_commit": 0,
            "timeouts": 0,
            "errors": 0,
            "unauthorized": 0,
            "gzip_requests": 0,
        }
        self._next_id = 0
        self.set_faults(faults or AccountingFaults.none(seed))

    # -- configuration -----------------------------------------------------------------------------
    def set_faults(self, faults: AccountingFaults) -> None:
        with self._lock:
            self.faults = faults
            self.injector = FaultInjector(replace(faults.base, seed=faults.seed))
            self._rng = random.Random(faults.seed ^ 0x5A5A)

    def set_rate_limit(self, rate_limit: RateLimit) -> None:
        self.limiter = SlidingWindowLimiter(rate_limit)

    def reset(self, seed: int | None = None) -> None:
        """Forget every document, key and counter (a fresh company)."""
        with self._lock:
            self.idempotency.clear()
            self.documents.clear()
            self.counters = dict.fromkeys(self.counters, 0)
            self._next_id = 0
            self.limiter.reset()
            if seed is not None:
                self.seed = seed
            self.set_faults(replace(self.faults, seed=self.seed if seed is None else seed))

    # -- helpers for subclasses ------------------------------------------------------------------------
    def new_id(self, numeric: bool) -> str:
        with self._lock:
            self._next_id += 1
            n = self._next_id
        if numeric:
            return str(n)
        return str(uuid.uuid5(uuid.UUID(int=self.seed & ((1 << 128) - 1)), f"{self.vendor}-{n}"))

    def store(self, company: str, kind: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self.documents.setdefault(f"{company}/{kind}", []).append(doc)
            self.counters["created"] += 1

    def list_documents(self, company: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for key, docs in self.documents.items():
                comp, _, k = key.partition("/")
                if (company is None or comp == company) and (kind is None or k == kind):
                    out.extend(docs)
            return out

    # -- to implement ------------------------------------------------------------------------------------
    def company_of(self, req: Request) -> str:
        raise NotImplementedError

    def idempotency_key_of(self, req: Request) -> str | None:
        raise NotImplementedError

    def auth_error(self) -> VendorError:
        raise NotImplementedError

    def rate_limit_error(self, retry_after: int, problem: str) -> VendorError:
        raise NotImplementedError

    def server_error(self, status: int) -> VendorError:
        raise NotImplementedError

    def conflict_error(self, key: str) -> VendorError:
        raise NotImplementedError

    def route(self, req: Request) -> tuple[int, dict[str, Any]]:
        """Validate and store (POST) or read (GET); raise VendorError for a refused request."""
        raise NotImplementedError

    def extra_limit(self, req: Request) -> VendorError | None:
        """A vendor-specific limit beyond the per-company request rate (QBO's batch quota)."""
        return None

    # -- the request pipeline ----------------------------------------------------------------------------
    def handle(self, req: Request) -> tuple[int, bytes, dict[str, str], str]:
        """Answer a request: (status, body, headers, action) where action is respond|drop."""
        with self._lock:
            self.counters["requests"] += 1
        if req.headers.get("authorization") != f"Bearer {self.token}":
            with self._lock:
                self.counters["unauthorized"] += 1
            return self._error(self.auth_error())
        company = self.company_of(req)
        retry = self.limiter.admit(company)
        if retry is not None:
            with self._lock:
                self.counters["rate_limited"] += 1
            return self._error(self.rate_limit_error(retry, "minute"))
        extra = self.extra_limit(req)
        if extra is not None:
            with self._lock:
                self.counters["rate_limited"] += 1
            return self._error(extra)
        with self._lock:
            active = self._in_flight.get(company, 0)
            if self.max_concurrent is not None and active >= self.max_concurrent:
                self.counters["rate_limited"] += 1
                return self._error(self.rate_limit_error(1, "concurrent"))
            self._in_flight[company] = active + 1
        try:
            return self._handle_admitted(req, company)
        finally:
            with self._lock:
                self._in_flight[company] -= 1

    def _decode(self, req: Request) -> VendorError | None:
        raw = req.raw_body
        if req.headers.get("content-encoding", "").lower() == "gzip" and raw:
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return VendorError(400, self.bad_request_body("request body is not valid gzip"))
            with self._lock:
                self.counters["gzip_requests"] += 1
        try:
            req.body = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            return VendorError(400, self.bad_request_body("request body is not valid JSON"))
        req.raw_body = raw
        return None

    def _handle_admitted(self, req: Request, company: str) -> tuple[int, bytes, dict[str, str], str]:
        bad = self._decode(req)
        if bad is not None:
            return self._error(bad)
        decision = self.injector.decide()
        if decision.latency_s:
            time.sleep(decision.latency_s)
        if decision.kind is FaultKind.STORM:
            with self._lock:
                self.counters["rate_limited"] += 1
            return self._error(self.rate_limit_error(decision.retry_after_s, "minute"))
        if decision.kind is FaultKind.ERROR:
            with self._lock:
                self.counters["errors"] += 1
            return self._error(self.server_error(decision.status))
        with self._lock:
            timeout = self._rng.random() < self.faults.timeout_rate
            lost = self._rng.random() < self.faults.lost_after_commit_rate
            duplicate = self._rng.random() < self.faults.duplicate_rate
        if timeout and req.method == "POST":
            with self._lock:
                self.counters["timeouts"] += 1
            time.sleep(self.faults.timeout_s)
            return 0, b"", {}, "drop"
        status, body, headers, action = self._process(req, company)
        if duplicate and req.method == "POST":
            with self._lock:
                self.counters["duplicates_delivered"] += 1
            self._process(req, company)
        # DROP and TRUNCATE from the shared injector happen after the commit: the answer is lost.
        post_commit_loss = lost or decision.kind in (FaultKind.DROP, FaultKind.TRUNCATE)
        if post_commit_loss and req.method == "POST":
            with self._lock:
                self.counters["lost_after_commit"] += 1
            if decision.kind is FaultKind.TRUNCATE:
                return status, body[: max(1, len(body) // 2)], headers, "truncate"
            return status, body, headers, "drop"
        return status, body, headers, action

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _process(self, req: Request, company: str) -> tuple[int, bytes, dict[str, str], str]:
        key = self.idempotency_key_of(req) if req.method == "POST" else None
        if key is not None and len(key) > self.max_key_length:
            return self._error(
                VendorError(
                    400,
                    self.bad_request_body(f"idempotency key longer than {self.max_key_length} characters"),
                )
            )
        if key is None:
            try:
                status, body = self.route(req)
            except VendorError as exc:
                return self._error(exc)
            return status, dump_json(body), {}, "respond"
        body_hash = hashlib.sha256(req.raw_body).hexdigest()
        with self._key_lock(f"{company}/{key}"):
            stored = self.idempotency.get((company, key))
            if stored is not None:
                if stored.body_hash != body_hash:
                    with self._lock:
                        self.counters["conflicts"] += 1
                    return self._error(self.conflict_error(key))
                with self._lock:
                    self.counters["replayed"] += 1
                return stored.status, stored.body, {}, "respond"
            try:
                status, body = self.route(req)
            except VendorError as exc:
                # A refused request stores nothing, so its key may be used again after a fix.
                return self._error(exc)
            raw = dump_json(body)
            self.idempotency[(company, key)] = Stored(body_hash, status, raw)
            return status, raw, {}, "respond"

    def bad_request_body(self, message: str) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _error(exc: VendorError) -> tuple[int, bytes, dict[str, str], str]:
        return exc.status, dump_json(exc.body), exc.headers, "respond"


def _handler_for(sandbox: AccountingSandbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"{sandbox.vendor}-sandbox"
        # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs stall each answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            # The body is decoded only once the request is admitted (auth, quota), as at a vendor's edge.
            req = Request(method, split.path, query, headers, None, raw)
            status, out, extra, action = sandbox.handle(req)
            if action == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "truncate":
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out) * 2))
                self.end_headers()
                self.wfile.write(out)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send(status, out, extra)

        def _send(self, status: int, out: bytes, extra: dict[str, str]) -> None:
            if "gzip" in self.headers.get("Accept-Encoding", "") and len(out) > 1024:
                out = gzip.compress(out, compresslevel=5)
                extra = {**extra, "Content-Encoding": "gzip"}
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            self._serve("GET")

    return Handler


class SandboxHandle:
    """A running sandbox: its URL, its state, and `close()` (also a context manager)."""

    def __init__(
        self, sandbox: AccountingSandbox, server: ThreadingHTTPServer, thread: threading.Thread
    ) -> None:
        self.sandbox = sandbox
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}"
        self.token = sandbox.token

    def set_faults(self, faults: AccountingFaults) -> None:
        self.sandbox.set_faults(faults)

    def documents(self, company: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return self.sandbox.list_documents(company, kind)

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.sandbox.counters)

    def reset(self, seed: int | None = None) -> None:
        self.sandbox.reset(seed)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeout, lost answer on purpose) is part of the game, not an error.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def start(sandbox: AccountingSandbox, host: str, port: int) -> SandboxHandle:
    """Serve `sandbox` on a background thread; port 0 picks a free port."""
    server = _Server((host, port), _handler_for(sandbox))
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"{sandbox.vendor}-sandbox",
        daemon=True,
    )
    thread.start()
    return SandboxHandle(sandbox, server, thread)


def run_until_interrupted(handle: SandboxHandle, announce: Callable[[str], None] = print) -> None:
    announce(f"{handle.sandbox.vendor} sandbox listening on {handle.url} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
