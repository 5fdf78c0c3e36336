"""Extraction throughput against the loopback Harvest sandbox, as a share of the rate limit's ceiling.

With a limit of R requests per second and P records per page, no client can pull more than R x P
records per second; a good client gets close to that and leaves no failed request behind.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from pm_accounting_pipeline.sandboxes.faults import RateLimit
from pm_accounting_pipeline.sources.harvest_api.client import HarvestClient, HarvestClientConfig, HarvestError

TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _sandbox_process(account_id: str, rate_limit: str, entries: int, seed: int) -> Iterator[str]:
    """The sandbox in its own process, as a pilot runs it, so client and server don't share a GIL."""
    port = _free_port()
    kwargs = {
        "port": port,
        "token": TOKEN,
        "account_id": account_id,
        "rate_limit": rate_limit,
        "entries": entries,
        "seed": seed,
        "verbose": False,
    }
    code = (
        "import json, sys\n"
        "from pm_accounting_pipeline.sandboxes.harvest import run_forever\n"
        "run_forever(**json.loads(sys.argv[1]))\n"
    )
    # A plain subprocess (not multiprocessing) works from any caller, script or REPL alike.
    process = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(kwargs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_sandbox/state", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the Harvest sandbox process did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def bench_extraction(
    entries: int = 20_000,
    rate_limit: str = "20/1s",
    per_page: int = 100,
    seed: int = 42,
    faults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pull every time entry of one sandbox account through `HarvestClient` and time it.

    The sandbox (a separate process serving the demo dataset for `entries` and `seed`; its first
    entity's account) and the client share `rate_limit`. Before timing, one window's worth of cheap
    requests fills the limiter, so the measurement is the steady state rather than the first burst
    a sliding window allows; the rate is taken over whole rate-limit windows of pages (the wall
    rate, which includes waiting for the first window to free up, is reported beside it). Returns
    records/s, the ceiling (limit x page size), their ratio, and the requests that still failed
    after retries (`failed_requests_left`, which should be 0).
    """
    from pm_accounting_pipeline.demo import catalog

    limit = RateLimit.parse(rate_limit)
    account_id = str(catalog.ENTITIES[0].harvest_account_id)
    with _sandbox_process(account_id, rate_limit, entries, seed) as url:
        control = httpx.Client(base_url=f"{url}/_sandbox", timeout=10)
        if faults:
            control.post("/faults", json=faults).raise_for_status()
        config = HarvestClientConfig(
            token=TOKEN, account_id=account_id, base_url=url, rate_limit=rate_limit, per_page=per_page
        )
        failed = 0
        stamps: list[float] = []  # when each page arrived
        sizes: list[int] = []
        with HarvestClient(config, seed=seed) as client:
            for _ in range(limit.requests):  # fill the window: measure the steady state
                client.get_json("/v2/tasks", {"per_page": 1}, "tasks")
            warmup_requests = client.stats.requests
            started = time.perf_counter()
            try:
                for page in client.iter_pages("time_entries"):
                    stamps.append(time.perf_counter())
                    sizes.append(len(page.records))
            except HarvestError:
                failed += 1
            elapsed = time.perf_counter() - started
            stats = client.stats.to_dict()
        server = control.get("/state").json()
        control.close()
    records = sum(sizes)
    ceiling = limit.per_second * per_page
    # Sustained rate over whole windows: from the first page to the page `limit x k` pages later,
    # so neither the first burst nor a partial last window flatters or penalises the figure.
    windows = (len(stamps) - 1) // limit.requests
    if windows >= 1:
        last = windows * limit.requests
        sustained = sum(sizes[1 : last + 1]) / (stamps[last] - stamps[0])
    else:
        sustained = records / elapsed if elapsed > 0 else 0.0
    wall = records / elapsed if elapsed > 0 else 0.0
    return {
        "records": records,
        "pages": stats["pages"],
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(sustained, 1),
        "wall_records_per_s": round(wall, 1),
        "ceiling_records_per_s": round(ceiling, 1),
        "ratio_to_ceiling": round(sustained / ceiling, 4),
        "windows_measured": windows,
        "rate_limit": str(limit),
        "per_page": per_page,
        "requests": stats["requests"] - warmup_requests,
        "rate_limited_429": stats["rate_limited"],
        "transient_failures": stats["transient_failures"],
        "failed_requests_left": failed + stats["gave_up"] + stats["permanent_failures"],
        "server_429": server["rate_limited"],
    }


if __name__ == "__main__":
    print(json.dumps(bench_extraction(), indent=2))
