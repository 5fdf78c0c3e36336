"""A local Harvest API v2 server on loopback, faithful enough to test and pilot the connector against.

It serves one Harvest account (the demo dataset's entity for that account id) over real HTTP:
GET /v2/{clients,projects,tasks,users,time_entries,expenses,expense_categories}[/{id}] with
Harvest's response envelope, opaque cursor pagination in `links.next`, per_page up to 2000, the
filters `updated_since, from, to, is_billed, is_running, project_id, user_id, client_id, task_id`,
auth checks, gzip, a per-account sliding-window rate limit answering 429 + `Retry-After`, and
seeded fault injection. A control API under /_sandbox/ (no auth) edits, approves, deletes and
backdates entries and sets faults, so tests can change the account between two pulls.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from pm_accounting_pipeline.sandboxes.faults import (
    FaultConfig,
    FaultInjector,
    FaultKind,
    RateLimit,
    SlidingWindowLimiter,
    truncate_body,
)
from pm_accounting_pipeline.sandboxes.harvest_store import (
    RESOURCES,
    DemoDatasetLike,
    HarvestStore,
    SandboxError,
    dumps,
)

MAX_PER_PAGE = 2000
HARVEST_RATE_LIMIT = "100/15s"
_INT_FILTERS = ("project_id", "user_id", "client_id", "task_id")
_BOOL_FILTERS = ("is_billed", "is_running", "is_active")
_DATE_FILTERS = ("from", "to")
_FILTER_KEYS = ("updated_since", *_DATE_FILTERS, *_BOOL_FILTERS, *_INT_FILTERS)
_PATH_RE = re.compile(r"^/v2/([a-z_]+)(?:/(\d+))?/?$")
_CONTROL_RE = re.compile(r"^/_sandbox/([a-z_]+)(?:/(\d+|backdated))?(?:/(edit|approve))?/?$")

INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons.",
}


class _ApiError(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        self.status = status
        self.payload = payload


def _unprocessable(message: str) -> _ApiError:
    return _ApiError(422, {"message": message})


def _parse_filters(raw: dict[str, str]) -> dict[str, Any]:
    """Typed filters from query text; anything unparseable is a 422, as Harvest answers."""
    out: dict[str, Any] = {}
    if raw.get("updated_since"):
        text = raw["updated_since"]
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _unprocessable(f"updated_since {text!r} is not an ISO 8601 date-time") from exc
        out["updated_since"] = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    for key in _DATE_FILTERS:
        if raw.get(key):
            try:
                out[key] = date.fromisoformat(raw[key])
            except ValueError as exc:
                raise _unprocessable(f"{key} {raw[key]!r} is not a date (YYYY-MM-DD)") from exc
    for key in _BOOL_FILTERS:
        if raw.get(key):
            if raw[key] not in ("true", "false"):
                raise _unprocessable(f"{key} must be true or false")
            out[key] = raw[key] == "true"
    for key in _INT_FILTERS:
        if raw.get(key):
            if not raw[key].isdigit():
                raise _unprocessable(f"{key} must be an integer id")
            out[key] = int(raw[key])
    return out


def _encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode().rstrip("=")


def _decode_cursor(text: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise _unprocessable("cursor is invalid") from exc
    if not isinstance(state, dict) or not isinstance(state.get("after"), int):
        raise _unprocessable("cursor is invalid")
    return state


@dataclass
class SandboxStats:
    """What the server saw; `GET /_sandbox/state` returns it."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    records_served: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "records_served": dict(self.records_served),
            "rate_limited": self.rate_limited,
        }


class HarvestSandbox:
    """The application behind the HTTP server: auth, limits, faults, routing to the store."""

    def __init__(
        self,
        store: HarvestStore,
        token: str,
        account_id: str,
        rate_limit: str = HARVEST_RATE_LIMIT,
        seed: int = 42,
        gzip_level: int = 5,
    ) -> None:
        self.store = store
        self.token = token
        self.account_id = str(account_id)
        self.limiter = SlidingWindowLimiter(RateLimit.parse(rate_limit))
        self.faults = FaultInjector(FaultConfig(seed=seed))
        self.gzip_level = gzip_level
        self.stats = SandboxStats()
        self._stats_lock = threading.Lock()

    # ---- the vendor API -----------------------------------------------------------------
    def handle_api(self, handler: _Handler, path: str, query: dict[str, str]) -> None:
        if not handler.headers.get("User-Agent"):
            raise _ApiError(
                400, {"error": "bad_request", "error_description": "A User-Agent header is required"}
            )
        auth = handler.headers.get("Authorization", "")
        if auth != f"Bearer {self.token}" or handler.headers.get("Harvest-Account-Id") != self.account_id:
            raise _ApiError(401, INVALID_TOKEN)
        wait = self.limiter.admit(self.account_id)
        if wait is not None:
            with self._stats_lock:
                self.stats.rate_limited += 1
            handler.send_json(429, {"status": 429, "error": "Too Many Requests"}, {"Retry-After": str(wait)})
            return
        decision = self.faults.decide()
        if decision.latency_s:
            threading.Event().wait(decision.latency_s)
        if decision.kind is FaultKind.DROP:
            handler.drop()
            return
        if decision.kind is FaultKind.ERROR:
            handler.send_json(
                decision.status, {"status": decision.status, "error": HTTPStatus(decision.status).phrase}
            )
            return
        if decision.kind is FaultKind.STORM:
            handler.send_json(
                429,
                {"status": 429, "error": "Too Many Requests"},
                {"Retry-After": str(decision.retry_after_s)},
            )
            return
        body = self._route(handler, path, query)
        if decision.kind is FaultKind.TRUNCATE:
            body = truncate_body(body, decision.truncate_fraction)
        handler.send_body(200, body)

    def _route(self, handler: _Handler, path: str, query: dict[str, str]) -> bytes:
        match = _PATH_RE.match(path)
        if not match or match[1] not in RESOURCES:
            raise _ApiError(404, {"status": 404, "error": "Not Found"})
        resource, object_id = match[1], match[2]
        if object_id is not None:
            text = self.store.get(resource, int(object_id))
            if text is None:
                raise _ApiError(404, {"status": 404, "error": "Not Found"})
            return text.encode()
        return self._list(handler, resource, query)

    def _list(self, handler: _Handler, resource: str, query: dict[str, str]) -> bytes:
        per_page_text = query.get("per_page", str(MAX_PER_PAGE))
        if not per_page_text.isdigit() or not 1 <= int(per_page_text) <= MAX_PER_PAGE:
            raise _unprocessable(f"per_page must be an integer between 1 and {MAX_PER_PAGE}")
        per_page = int(per_page_text)
        if query.get("cursor"):
            state = _decode_cursor(query["cursor"])
            raw_filters = {k: v for k, v in state.get("filters", {}).items() if k in _FILTER_KEYS}
            page, after_id, offset = int(state.get("page", 2)), int(state["after"]), 0
        else:
            raw_filters = {k: query[k] for k in _FILTER_KEYS if query.get(k)}
            page_text = query.get("page", "1")
            if not page_text.isdigit() or int(page_text) < 1:
                raise _unprocessable("page must be a positive integer")
            page, after_id = int(page_text), None
            offset = (page - 1) * per_page
        filters = _parse_filters(raw_filters)
        rows, last_id, total, remaining = self.store.query(resource, filters, after_id, offset, per_page)
        total_pages = max(1, math.ceil(total / per_page))
        base = f"http://{handler.headers.get('Host') or handler.server_address_text}/v2/{resource}"

        def page_link(number: int) -> str:
            return f"{base}?{urlencode({**raw_filters, 'page': number, 'per_page': per_page})}"

        next_link = None
        if remaining > 0 and last_id is not None:
            cursor = _encode_cursor({"after": last_id, "page": page + 1, "filters": raw_filters})
            next_link = f"{base}?{urlencode({'cursor': cursor, 'per_page': per_page})}"
        envelope = {
            "per_page": per_page,
            "total_pages": total_pages,
            "total_entries": total,
            "next_page": page + 1 if next_link else None,
            "previous_page": page - 1 if page > 1 else None,
            "page": page,
            "links": {
                "first": page_link(1),
                "next": next_link,
                "previous": page_link(page - 1) if page > 1 else None,
                "last": page_link(total_pages),
            },
        }
        with self._stats_lock:
            self.stats.records_served[resource] += len(rows)
        head = f'{{"{resource}":[' + ",".join(rows) + "],"
        return (head + json.dumps(envelope)[1:]).encode()

    # ---- the control API ------------------------------------------------------------------
    def handle_control(self, handler: _Handler, method: str, path: str, payload: Any) -> None:
        if path.rstrip("/") == "/_sandbox/state":
            handler.send_json(200, self.state())
            return
        if path.rstrip("/") == "/_sandbox/faults":
            if method == "DELETE":
                self.faults.clear()
            elif method in ("POST", "PUT"):
                try:
                    self.faults.configure(FaultConfig.from_json(payload or {}))
                except (TypeError, ValueError) as exc:
                    raise _unprocessable(str(exc)) from exc
            handler.send_json(200, {"faults": self.faults.config.to_json()})
            return
        if path.rstrip("/") == "/_sandbox/rate_limit" and method in ("POST", "PUT"):
            try:
                self.limiter = SlidingWindowLimiter(
                    RateLimit.parse(str((payload or {}).get("rate_limit", "")))
                )
            except ValueError as exc:
                raise _unprocessable(str(exc)) from exc
            handler.send_json(200, {"rate_limit": str(self.limiter.limit)})
            return
        match = _CONTROL_RE.match(path)
        if not match or match[1] not in ("time_entries", "expenses"):
            raise _ApiError(404, {"status": 404, "error": "Not Found"})
        resource, ident, action = match[1], match[2], match[3]
        try:
            if ident == "backdated" and method == "POST" and resource == "time_entries":
                body = payload or {}
                obj = self.store.add_backdated(
                    date.fromisoformat(str(body["spent_date"])), body.get("template_id"), body.get("fields")
                )
                handler.send_json(201, json.loads(dumps(obj)))
            elif ident and ident.isdigit() and method == "DELETE" and action is None:
                self.store.delete(resource, int(ident))
                handler.send_json(200, {"deleted": int(ident)})
            elif ident and ident.isdigit() and method == "POST" and action == "edit":
                handler.send_json(
                    200, json.loads(dumps(self.store.edit(resource, int(ident), payload or {})))
                )
            elif ident and ident.isdigit() and method == "POST" and action == "approve":
                handler.send_json(200, json.loads(dumps(self.store.approve(int(ident)))))
            else:
                raise _ApiError(404, {"status": 404, "error": "Not Found"})
        except (SandboxError, KeyError, ValueError) as exc:
            raise _unprocessable(str(exc)) from exc

    def state(self) -> dict[str, Any]:
        with self._stats_lock:
            stats = self.stats.to_json()
        return {
            "account_id": self.account_id,
            "entity": self.store.entity,
            "counts": self.store.counts(),
            "rate_limit": str(self.limiter.limit),
            "faults": self.faults.config.to_json(),
            "faults_injected": self.faults.snapshot(),
            **stats,
        }

    def record(self, status: int) -> None:
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.by_status[status] += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HarvestSandbox/1.0"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    @property
    def server_address_text(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        payload: Any = None
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                payload = json.loads(raw) if raw.strip() else None
            except ValueError:
                self.send_json(400, {"error": "bad_request", "error_description": "body is not JSON"})
                return
        try:
            if split.path.startswith("/_sandbox"):
                app.handle_control(self, method, split.path, payload)
            elif method == "GET":
                app.handle_api(self, split.path, query)
            else:
                raise _ApiError(405, {"status": 405, "error": "Method Not Allowed"})
        except _ApiError as exc:
            self.send_json(exc.status, exc.payload)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(payload).encode(), headers)

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        encoding = None
        if "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 256:
            body = gzip.compress(body, compresslevel=self.server.app.gzip_level, mtime=0)
            encoding = "gzip"
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        if not self.path.startswith("/_sandbox"):
            self.server.app.record(status)

    def drop(self) -> None:
        """Close the connection without a word, as a crashed proxy would."""
        self.close_connection = True
        self.server.app.record(0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: HarvestSandbox, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.verbose = verbose


class ServerHandle:
    """A running sandbox: `.url`, `stop()`, a context manager, and helpers for its control API."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread: threading.Thread | None = None
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.app = server.app
        self._http: httpx.Client | None = None

    def start(self) -> ServerHandle:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="harvest-sandbox", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> ServerHandle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- control API over HTTP (what a pilot script would do) ------------------------------
    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        if self._http is None:  # one pooled client: a new httpx client per call costs ~70 ms
            self._http = httpx.Client(timeout=10)
        response = self._http.request(method, f"{self.url}/_sandbox/{path}", json=payload)
        if response.status_code >= 400:
            raise SandboxError(f"{method} /_sandbox/{path}: {response.status_code} {response.text}")
        return response.json()

    def edit(self, resource: str, object_id: int, patch: dict[str, Any]) -> dict[str, Any]:
        return self._control("POST", f"{resource}/{object_id}/edit", patch)

    def approve(self, object_id: int) -> dict[str, Any]:
        return self._control("POST", f"time_entries/{object_id}/approve")

    def delete(self, resource: str, object_id: int) -> None:
        self._control("DELETE", f"{resource}/{object_id}")

    def add_backdated(
        self, spent_date: date, template_id: int | None = None, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"spent_date": spent_date.isoformat()}
        if template_id is not None:
            body["template_id"] = template_id
        if fields:
            body["fields"] = fields
        return self._control("POST", "time_entries/backdated", body)

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        return self._control("POST", "faults", settings)

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def set_rate_limit(self, rate_limit: str) -> None:
        self._control("POST", "rate_limit", {"rate_limit": rate_limit})

    def state(self) -> dict[str, Any]:
        return self._control("GET", "state")

    def objects(self, resource: str) -> list[dict[str, Any]]:
        """What the API serves right now for `resource`, parsed with Decimal numbers."""
        return self.app.store.objects(resource)


def load_demo_dataset(entries: int | None, seed: int) -> DemoDatasetLike:
    """The demo generator's dataset (`pm_accounting_pipeline.demo.generator`)."""
    from pm_accounting_pipeline.demo.generator import DemoConfig, generate

    config = DemoConfig(seed=seed) if entries is None else DemoConfig(seed=seed, entries=entries)
    return generate(config)


def build_sandbox(
    token: str,
    account_id: str,
    rate_limit: str = HARVEST_RATE_LIMIT,
    entries: int | None = None,
    seed: int = 42,
    dataset: DemoDatasetLike | None = None,
    clock: Callable[[], datetime] | None = None,
) -> HarvestSandbox:
    data = dataset if dataset is not None else load_demo_dataset(entries, seed)
    store = HarvestStore.from_dataset(data, str(account_id), clock=clock)
    return HarvestSandbox(store, token=token, account_id=str(account_id), rate_limit=rate_limit, seed=seed)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str = "sandbox-token",
    account_id: str = "1",
    rate_limit: str = HARVEST_RATE_LIMIT,
    entries: int | None = None,
    seed: int = 42,
    dataset: DemoDatasetLike | None = None,
    verbose: bool = False,
) -> ServerHandle:
    """Start the sandbox in a background thread and return its handle (port 0 picks a free port).

    `dataset` overrides the demo generator's data (tests pass a small fixture); otherwise the demo
    dataset for `entries` and `seed` is generated and filtered to the entity of `account_id`.
    """
    app = build_sandbox(token, account_id, rate_limit, entries, seed, dataset)
    return ServerHandle(_Server((host, port), app, verbose)).start()


def run_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str = "sandbox-token",
    account_id: str = "1",
    rate_limit: str = HARVEST_RATE_LIMIT,
    entries: int | None = None,
    seed: int = 42,
    verbose: bool = True,
) -> None:
    """Serve the Harvest sandbox in the foreground until interrupted (Ctrl-C); the CLI's entry point.

    `pm-accounting sandbox harvest --port 8765 --token TOKEN --account-id ID [--rate-limit 100/15s]
    [--entries N] [--seed S]` lands here. The server listens on `host:port` and serves the demo
    dataset (`entries` time entries generated from `seed`) for the entity whose Harvest account id
    is `account_id` (the first entity when none matches), plus expenses derived from it.

    Every /v2 request needs `Authorization: Bearer TOKEN`, `Harvest-Account-Id: ID` (else 401 with
    Harvest's `invalid_token` body) and a `User-Agent` (else 400). Requests beyond `rate_limit`
    (default Harvest's 100 per 15 s) get 429 with `Retry-After` in whole seconds. Bodies are gzip
    encoded when the client accepts it. The control API under /_sandbox/ needs no auth:
    `GET state`, `POST|DELETE faults` (error_rate, drop_rate, truncate_rate, storm_rate,
    storm_seconds, latency_s, latency_jitter_s, error_statuses, seed), `POST rate_limit`,
    `POST {time_entries|expenses}/{id}/edit` (JSON merge patch), `POST time_entries/{id}/approve`,
    `DELETE {time_entries|expenses}/{id}`, `POST time_entries/backdated` ({"spent_date": ...}).
    It prints one line with the URL, then logs each request to stderr when `verbose`.
    """
    app = build_sandbox(token, account_id, rate_limit, entries, seed)
    server = _Server((host, port), app, verbose)
    bound_host, bound_port = server.server_address[:2]
    counts = app.store.counts()
    print(
        f"Harvest sandbox for account {account_id} (entity {app.store.entity}) on http://{bound_host}:{bound_port} "
        f"with {counts['time_entries']} time entries, {counts['expenses']} expenses, rate limit {rate_limit}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
