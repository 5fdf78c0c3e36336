"""Run the pipeline in process for a date range as one backfill: the daily layers as a single run
over all (day x entity) partitions, then billing for every complete month in the range, then the
analytics refresh. Used by `pm-accounting run` and `pm-accounting demo`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.partitions import daily_key, monthly_key, range_tags
from pm_accounting_pipeline.lib.instance import get_instance
from pm_accounting_pipeline.lib.lake import clear_memo

ProgressFn = Callable[[str, int, int], None]  # (phase, steps done, steps total)


@dataclass
class JobRun:
    job: str
    run_id: str
    success: bool
    seconds: float
    partitions: int
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    start: date
    end: date
    entities: list[str]
    runs: list[JobRun]

    @property
    def success(self) -> bool:
        return all(r.success and not r.failed_checks for r in self.runs)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)


def complete_months(start: date, end: date) -> list[date]:
    """First days of the months lying entirely within [start, end]."""
    months = []
    m = start.replace(day=1)
    if m < start:
        m = (m + timedelta(days=32)).replace(day=1)
    while True:
        nxt = (m + timedelta(days=32)).replace(day=1)
        if nxt - timedelta(days=1) > end:
            return months
        months.append(m)
        m = nxt


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    partitions: int,
    progress: ProgressFn | None,
    raise_on_error: bool,
) -> JobRun:
    import uuid

    run_id = str(uuid.uuid4())
    total = len(job.nodes_in_topological_order)
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.25):
            try:
                n = len(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS))
            except Exception:  # the run may not be stored yet
                n = 0
            progress(job.name, n, total)  # type: ignore[misc]

    watcher = threading.Thread(target=poll, daemon=True) if progress else None
    t0 = time.perf_counter()
    if watcher:
        watcher.start()
    log_dir = Path(os.environ.get("DAGSTER_HOME", ".")) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Dagster's console logger writes every event to stderr; keep that in a per-run file so the
        # terminal shows progress and the summary (the events are in the instance and the UI too).
        with (log_dir / f"{job.name}-{run_id}.log").open("w") as log, contextlib.redirect_stderr(log):
            result = job.execute_in_process(
                instance=instance, tags=tags, run_id=run_id, raise_on_error=raise_on_error
            )
    finally:
        done.set()
        if watcher:
            watcher.join()
    seconds = time.perf_counter() - t0
    if progress:
        progress(job.name, total, total)
    failed_steps = [
        e.step_key or "" for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    failed_checks = [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not e.asset_check_evaluation_data.passed
        and e.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.ERROR
    ]
    return JobRun(job.name, run_id, result.success, seconds, partitions, failed_steps, failed_checks)


def run_range(
    data_dir: Path,
    config_path: Path,
    start: date,
    end: date,
    entities: list[str] | None = None,
    progress: ProgressFn | None = None,
    raise_on_error: bool = False,
    billing: bool = True,
    analytics: bool = True,
    instance: dg.DagsterInstance | None = None,
) -> RunOutcome:
    from pm_accounting_pipeline.definitions import build_definitions

    mapping = load_mapping(config_path)
    all_entities = mapping.entity_ids
    chosen = sorted(entities) if entities else all_entities
    unknown = sorted(set(chosen) - set(all_entities))
    if unknown:
        raise ValueError(f"unknown entity {unknown}; the mapping document lists {all_entities}")
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    start = max(start, mapping.start_date)
    defs = build_definitions(data_dir, config_path)
    instance = instance or get_instance(data_dir)
    clear_memo()
    days = (end - start).days + 1
    runs: list[JobRun] = []
    # A contiguous range over the static entity dimension covers all entities; one entity (or a
    # subset) runs as one range per entity.
    groups = [all_entities] if chosen == all_entities else [[e] for e in chosen]
    daily = defs.resolve_job_def("daily_pipeline")
    for group in groups:
        tags = range_tags(daily_key(start, group[0]), daily_key(end, group[-1]))
        runs.append(_execute(daily, instance, tags, days * len(group), progress, raise_on_error))
    if billing and runs[-1].success:
        months = complete_months(start, end)
        if months:
            # Invoices first, then the billing documents (discounts, retainers, corrections) that
            # book only their difference to the invoices; months in order within each run.
            for job_name in ("monthly_billing", "billing_documents"):
                job = defs.resolve_job_def(job_name)
                for group in groups:
                    if not all(r.success for r in runs):
                        break
                    tags = range_tags(monthly_key(months[0], group[0]), monthly_key(months[-1], group[-1]))
                    runs.append(
                        _execute(job, instance, tags, len(months) * len(group), progress, raise_on_error)
                    )
    if analytics and all(r.success for r in runs):
        runs.append(
            _execute(defs.resolve_job_def("analytics_refresh"), instance, {}, 0, progress, raise_on_error)
        )
    return RunOutcome(start, end, chosen, runs)
