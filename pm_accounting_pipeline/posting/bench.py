"""Posting throughput against a sandbox set to a known rate limit, with batching.

The sandbox allows `requests` per `period_s` (QuickBooks: the same for batch requests, each batch
carrying up to 30 documents); the client's limiter is set to the same published limit. The ceiling
is what the limit allows in the time the run took: a sliding window admits `requests` at once and
then `requests` more per period, so in `elapsed` seconds at most `requests * (floor(elapsed /
period_s) + 1)` requests, times the batch size in documents. The report gives the measured documents
per second, the nominal ceiling (requests / period * batch) and the fraction of the ceiling reached.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import stamina.instrumentation

from pm_accounting_pipeline.posting import outbox
from pm_accounting_pipeline.posting.delivery import Deliverer, DeliverySettings, reset_breakers
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.sample import SampleEntity, sample_ledger
from pm_accounting_pipeline.posting.store import DuckDBStore
from pm_accounting_pipeline.posting.targets.base import TargetAdapter, TargetLimits
from pm_accounting_pipeline.posting.targets.qbo import QboTarget
from pm_accounting_pipeline.posting.targets.xero import XeroTarget
from pm_accounting_pipeline.sandboxes import qbo as qbo_sandbox
from pm_accounting_pipeline.sandboxes import xero as xero_sandbox
from pm_accounting_pipeline.sandboxes.faults import RateLimit

TOKEN = "bench-token"


def bench_posting(
    n_documents: int = 1800,
    *,
    target: str = "qbo",
    requests: int = 20,
    period_s: float = 5.0,
    batch_size: int | None = None,
    seed: int = 0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Post `n_documents` invoices to a `target` sandbox limited to `requests` per `period_s`; measure."""
    if target not in ("qbo", "xero"):
        raise ValueError("target must be qbo or xero")
    batch = batch_size or (30 if target == "qbo" else 50)
    limit = RateLimit(requests, period_s)
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="pm-bench-")) if workdir is None else workdir
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([])
    reset_breakers()
    if target == "qbo":
        handle = qbo_sandbox.serve(
            token=TOKEN, rate_limit=limit, batch_limit=limit, seed=seed, max_concurrent=10
        )
    else:
        handle = xero_sandbox.serve(
            token=TOKEN, rate_limit=limit, day_limit=RateLimit(10**9, 86400.0), seed=seed
        )
    limits = TargetLimits(
        requests=requests,
        period_s=period_s,
        batch_size=batch,
        batch_requests=requests if target == "qbo" else None,
        batch_period_s=period_s if target == "qbo" else None,
    )
    store = DuckDBStore(workdir / "bench.duckdb")
    adapter: TargetAdapter
    if target == "qbo":
        adapter = QboTarget(handle.url, TOKEN, limits=limits, timeout_s=30.0)
    else:
        adapter = XeroTarget(handle.url, TOKEN, limits=limits, timeout_s=30.0)
    try:
        store.migrate()
        t0 = time.monotonic()
        ledger = sample_ledger(seed, n_documents, 0, entities=(SampleEntity("acme", "USD"),))
        enq = outbox.enqueue_documents(store, build_documents(ledger), [adapter])
        enqueue_s = time.monotonic() - t0
        settings = DeliverySettings(max_attempts=20, in_run_attempts=10, max_retry_after_s=period_s * 2 + 5)
        report = Deliverer(store, adapter, settings).run()
        elapsed = report.elapsed_s
        counters = handle.counters
    finally:
        adapter.close()
        handle.close()
        store.close()
        stamina.instrumentation.set_on_retry_hooks(hooks)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    windows = math.floor(elapsed / period_s) + 1
    ceiling_docs = requests * windows * batch
    nominal = requests / period_s * batch
    return {
        "target": target,
        "documents": n_documents,
        "posted": report.posted,
        "dead": report.dead,
        "requests": report.requests,
        "rate_limited_429": counters.get("rate_limited", 0),
        "limit": f"{requests} requests / {period_s:g} s, {batch} documents per request",
        "enqueue_s": round(enqueue_s, 3),
        "elapsed_s": round(elapsed, 3),
        "docs_per_s": round(report.posted / elapsed, 1) if elapsed else None,
        "nominal_ceiling_docs_per_s": round(nominal, 1),
        "ceiling_docs_in_elapsed": ceiling_docs,
        "fraction_of_ceiling": round(report.posted / ceiling_docs, 3) if ceiling_docs else None,
        "outbox_rows": enq.outbox_rows,
    }


if __name__ == "__main__":
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
    for tgt in ("qbo", "xero"):
        print(json.dumps(bench_posting(n, target=tgt)))
