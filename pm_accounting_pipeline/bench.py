"""`make bench`: throughput and peak memory of the whole pipeline on generated data.

Each phase runs in its own process so its peak memory (ru_maxrss) is its own:
  1. generate N time entries as Harvest CSV exports (not timed as pipeline work),
  2. land them (`ingest`), then run every (day x entity) partition as one single-run backfill plus
     monthly billing, exactly as `pm-accounting run` does, timing each asset from Dagster's events,
  3. a bare polars floor over the same files: read, join the rates, multiply, group by client and day.
Optional phases measure extraction from the Harvest sandbox and posting to the target sandboxes
when those modules are present.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_generate(work: Path, entries: int, seed: int) -> dict:
    from pm_accounting_pipeline.demo.generator import DemoConfig, generate, write_harvest_csvs

    t0 = time.perf_counter()
    cfg = DemoConfig(seed=seed, entries=entries)
    ds = generate(cfg)
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "data" / "mapping.yaml").write_text(ds.mapping_yaml, encoding="utf-8")
    files = write_harvest_csvs(ds, work / "exports", cfg)
    return {
        "entries": ds.time_entries.height,
        "files": len(files),
        "start": cfg.start.isoformat(),
        "end": cfg.end.isoformat(),
        "seconds": time.perf_counter() - t0,
        "peak_mb": _peak_mb(),
    }


def phase_pipeline(work: Path, start: str, end: str) -> dict:
    import dagster as dg

    from pm_accounting_pipeline.config.schema import load_mapping
    from pm_accounting_pipeline.extract.landing import land_files
    from pm_accounting_pipeline.lib.instance import get_instance
    from pm_accounting_pipeline.lib.runner import run_range

    data = work / "data"
    config = data / "mapping.yaml"
    mapping = load_mapping(config)
    t0 = time.perf_counter()
    for entity in mapping.entity_ids:
        files = sorted((work / "exports" / entity).glob("*.csv"))
        land_files(files, entity, data, mapping)
    landing_s = time.perf_counter() - t0
    # The project's own local instance, exactly what `pm-accounting run` uses (lib/instance.py).
    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")
    with get_instance(data) as instance:
        t1 = time.perf_counter()
        outcome = run_range(
            data,
            config,
            date.fromisoformat(start),
            date.fromisoformat(end),
            instance=instance,
            analytics=False,
        )
        run_s = time.perf_counter() - t1
        steps: dict[str, float] = {}
        for r in outcome.runs:
            starts = {}
            for rec in instance.all_logs(r.run_id):
                ev = rec.dagster_event
                if ev is None or ev.step_key is None:
                    continue
                if ev.event_type == dg.DagsterEventType.STEP_START:
                    starts[ev.step_key] = rec.timestamp
                elif ev.event_type == dg.DagsterEventType.STEP_SUCCESS and ev.step_key in starts:
                    steps[ev.step_key] = steps.get(ev.step_key, 0.0) + rec.timestamp - starts[ev.step_key]
    return {
        "success": outcome.success,
        "landing_seconds": landing_s,
        "run_seconds": run_s,
        "runs": [(r.job, round(r.seconds, 2), r.partitions) for r in outcome.runs],
        "steps": steps,
        "peak_mb": _peak_mb(),
    }


def phase_floor(work: Path) -> dict:
    """The bare minimum a hand-written script would do over the same files, for scale."""
    import polars as pl

    t0 = time.perf_counter()
    files = sorted((work / "exports").glob("*/*.csv"))
    frames = []
    for f in files:
        frames.append(
            pl.scan_csv(f, infer_schema=False).select(
                pl.col("Date").alias("day"),
                pl.col("Client").alias("client"),
                pl.col("Task").alias("task"),
                pl.col("Hours").str.replace(",", ".").cast(pl.Decimal(12, 4), strict=False).alias("hours"),
            )
        )
    rates = (
        pl.concat(frames)
        .select("task")
        .unique()
        .with_columns(pl.lit("150.00").cast(pl.Decimal(18, 4)).alias("rate"))
        .lazy()
    )
    out = (
        pl.concat(frames)
        .join(rates, on="task", how="left")
        .with_columns((pl.col("hours") * pl.col("rate")).alias("amount"))
        .group_by("client", "day")
        .agg(pl.col("amount").sum())
        .collect()
    )
    out.write_parquet(work / "floor.parquet")
    rows = pl.concat(frames).select(pl.len()).collect().item()
    return {"rows": rows, "seconds": time.perf_counter() - t0, "peak_mb": _peak_mb()}


def _run_phase(name: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "pm_accounting_pipeline.bench", "--phase", name, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench phase {name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make bench", description=__doc__)
    ap.add_argument("--entries", type=int, default=1_000_000, help="time entries to generate (up to 10M)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--skip-sources", action="store_true", help="skip the Harvest extraction benchmark")
    ap.add_argument("--skip-posting", action="store_true", help="skip the posting benchmark")
    ap.add_argument("--phase", choices=["generate", "pipeline", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--start", help=argparse.SUPPRESS)
    ap.add_argument("--end", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase:
        work = args.work
        if args.phase == "generate":
            result = phase_generate(work, args.entries, args.seed)
        elif args.phase == "pipeline":
            result = phase_pipeline(work, args.start, args.end)
        else:
            result = phase_floor(work)
        print(json.dumps(result))
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="pm-accounting-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench: {args.entries:,} entries, work folder {work}", flush=True)
    gen = _run_phase(
        "generate", "--work", str(work), "--entries", str(args.entries), "--seed", str(args.seed)
    )
    n = gen["entries"]
    print(f"  generated {n:,} entries in {gen['files']} CSV files in {gen['seconds']:.1f}s", flush=True)
    pipe = _run_phase("pipeline", "--work", str(work), "--start", gen["start"], "--end", gen["end"])
    floor = _run_phase("floor", "--work", str(work))
    total = pipe["landing_seconds"] + pipe["run_seconds"]
    print("\nPipeline (landing + one single-run backfill over all day x entity partitions + billing)")
    print(f"  success:            {pipe['success']}")
    print(
        f"  landing (ingest):   {pipe['landing_seconds']:.2f}s   {n / pipe['landing_seconds']:,.0f} entries/s"
    )
    print(f"  backfill runs:      {pipe['run_seconds']:.2f}s   {pipe['runs']}")
    for step, secs in sorted(pipe["steps"].items(), key=lambda kv: kv[0]):
        print(f"    {step:<32} {secs:7.2f}s   {n / secs:>12,.0f} entries/s")
    print(f"  end to end:         {total:.2f}s   {n / total:,.0f} entries/s")
    print(f"  peak memory:        {pipe['peak_mb']:,.0f} MB (pipeline process)")
    print(
        f"\nBare polars floor:    {floor['seconds']:.2f}s   {floor['rows'] / floor['seconds']:,.0f} rows/s, "
        f"peak {floor['peak_mb']:,.0f} MB"
    )
    print(f"  pipeline / floor:   {total / floor['seconds']:.1f}x the floor's time")
    results = {
        "entries": n,
        "generate": gen,
        "pipeline": pipe,
        "floor": floor,
        "end_to_end_entries_per_s": n / total,
    }
    if not args.skip_sources:
        try:
            from pm_accounting_pipeline.sources.harvest_api.bench import bench_extraction
        except ImportError:
            bench_extraction = None
        if bench_extraction is not None:
            ex = bench_extraction()
            results["extraction"] = ex
            print(f"\nHarvest extraction vs sandbox: {json.dumps(ex, default=str)}")
    if not args.skip_posting:
        try:
            from pm_accounting_pipeline.posting.bench import bench_posting
        except ImportError:
            bench_posting = None
        if bench_posting is not None:
            po = bench_posting()
            results["posting"] = po
            print(f"\nPosting vs sandbox: {json.dumps(po, default=str)}")
    (work / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {work / 'bench.json'}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if pipe["success"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
