"""Throughput of `run_daily` on synthetic raw time entries built with numpy (no per-row Python).

    .venv/bin/python -m pm_accounting_pipeline_tests.test_core.bench_daily --rows 1000000 --repeat 3

Prints wall and CPU seconds per stage and for the whole chain, rows per second and peak memory.
The rows mix two entities, USD/JPY/EUR/GBP clients, near-duplicate client spellings, 2,000
people, held and non-billable work and a sprinkle of bad rows and duplicated source ids.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.fx import EcbOfflineProvider, enrich
from pm_accounting_pipeline.core.ledger import build_accruals
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline.core.rating import rate
from pm_accounting_pipeline_tests.test_core.builders import make_mapping

# (entity, client spelling, project, weight)
_CLIENTS = [
    ("us", "Acme Corporation", "Website", 0.30),
    ("us", "ACME corporation", "Mobile App", 0.10),
    ("us", "Tokyo Trading KK", "Import", 0.12),
    ("us", "Exempt Foundation", "Grant", 0.08),
    ("us", "Trusted Client", "Retainer", 0.15),
    ("us", "Acme Corporation", "Internal Training", 0.04),
    ("uk", "Britannia Ltd", "Migration", 0.10),
    ("uk", "Euro Client GmbH", "Rollout", 0.1095),
    ("us", "Unknown Co", "X", 0.0005),
]
_HOURS = ["0.25", "0.5", "1", "1.5", "2", "7.5", "8", "3.75", "1:45", "abc", "-1", "30"]
_HOURS_P = [0.1, 0.1, 0.2, 0.1, 0.2, 0.1, 0.1, 0.0494, 0.05, 0.0002, 0.0002, 0.0002]


def synthetic_raw(n: int, seed: int = 7) -> pl.DataFrame:
    """n raw time entries in the exact raw.time_entries schema, built vectorised."""
    rng = np.random.default_rng(seed)
    weights = np.array([c[3] for c in _CLIENTS])
    pick = rng.choice(len(_CLIENTS), n, p=weights / weights.sum())

    def column(values: list[str], idx: np.ndarray) -> pl.Series:
        return pl.Series(values, dtype=pl.String).gather(pl.Series(idx, dtype=pl.UInt32))

    days = pl.Series([date(2026, 3, d) for d in range(2, 9)]).gather(pl.Series(rng.integers(0, 7, n)))
    frame = pl.DataFrame(
        {
            "entity": column([c[0] for c in _CLIENTS], pick),
            "work_date": days,
            "source_system": pl.Series(["canonical_csv"] * n),
            "source_file": column([f"drop/batch-{i}.csv" for i in range(8)], rng.integers(0, 8, n)),
            "file_hash": pl.Series(["f" * 64] * n),
            "source_row": np.arange(1, n + 1),
            "source_id": pl.Series(np.arange(n)).cast(pl.String),
            "extracted_at": pl.Series([datetime(2026, 3, 10, tzinfo=UTC)] * n),
            "client": column([c[1] for c in _CLIENTS], pick),
            "project": column([c[2] for c in _CLIENTS], pick),
            "task": column(["Development", "Design", "Admin", "Research"], rng.integers(0, 4, n)),
            "person": column([f"Person {i}" for i in range(2000)], rng.integers(0, 2000, n)),
            "hours_raw": column(_HOURS, rng.choice(len(_HOURS), n, p=_HOURS_P)),
            "billable_raw": column(["Yes", "No", ""], rng.choice(3, n, p=[0.85, 0.05, 0.10])),
            "approved_raw": column(["Yes", "No"], rng.choice(2, n, p=[0.95, 0.05])),
            "invoiced_raw": pl.Series(["No"] * n),
        }
    )
    n_dup = max(n // 5000, 1)
    frame = frame.with_columns(
        date_raw=pl.col("work_date").cast(pl.String),
        source_id=pl.when(pl.col("source_row") % 5000 == 0)
        .then(pl.lit("dup-") + (pl.col("source_row") % (n_dup * 10)).cast(pl.String))
        .otherwise(pl.col("source_id")),
        source_record=pl.lit("{}"),
    )
    schema = polars_schema("raw.time_entries")
    missing = [c for c in schema if c not in frame.columns]
    frame = frame.with_columns([pl.lit(None, dtype=schema[c]).alias(c) for c in missing])
    return frame.select(schema.names()).cast(dict(schema))


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    w, c = _clock()
    return w - t[0], c - t[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    raw = synthetic_raw(args.rows)
    mapping = make_mapping()
    provider = EcbOfflineProvider()
    run_daily(raw.head(1000), mapping, provider)  # load the ECB history and warm caches
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t = _clock()
    cleaned = clean_and_map(raw, mapping)
    stages = {"clean": _since(t)}
    t = _clock()
    rated = rate(cleaned.work_items, mapping)
    stages["rate"] = _since(t)
    t = _clock()
    fx = enrich(rated.rated, mapping, provider)
    stages["fx"] = _since(t)
    t = _clock()
    build_accruals(fx.fx, mapping)
    stages["ledger"] = _since(t)
    for name, (wall, cpu) in stages.items():
        print(f"{name:7s} {wall:6.2f} s wall {cpu:6.2f} s cpu")
    del cleaned, rated, fx

    best = float("inf")
    for _ in range(args.repeat):
        t = _clock()
        result = run_daily(raw, mapping, provider)
        wall, cpu = _since(t)
        best = min(best, wall)
        print(
            f"run_daily {args.rows:,} rows: {wall:.2f} s wall, {cpu:.2f} s cpu, {args.rows / wall:,.0f} rows/s"
            f" (load average {os.getloadavg()[0]:.1f})"
        )
    print(
        f"best {best:.2f} s = {args.rows / best:,.0f} rows/s; work items {result.work_items.height:,},"
        f" quarantined {result.quarantine.height:,} {result.quarantine_counts()},"
        f" entries {result.ledger.entries.height}, lines {result.ledger.lines.height},"
        f" line sources {result.ledger.line_sources.height:,}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB (input and warm-up: {rss_before / 1024:,.0f} MiB)")


if __name__ == "__main__":
    main()
