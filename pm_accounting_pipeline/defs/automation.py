"""Sensors and schedules: new landing files trigger exactly the partitions they touch; a daily
schedule runs yesterday for every entity; a monthly schedule bills the month that just ended."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl

from pm_accounting_pipeline.core.entities import assign_entities
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, daily_key, monthly_key, range_tags
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.extract.landing import list_landing_files
from pm_accounting_pipeline.extract.parse import parse_file

MAX_SEEN = 50_000  # hashes kept in the cursor; older ones are dropped oldest-first


def _complete_months(days: set[date], today: date) -> set[date]:
    """First days of the months touched whose billing period has ended."""
    out = set()
    for d in days:
        start = d.replace(day=1)
        next_month = (start + timedelta(days=32)).replace(day=1)
        if next_month <= today:
            out.add(start)
    return out


def build_landing_sensor(
    parts: PipelinePartitions,
    daily_job: dg.UnresolvedAssetJobDefinition,
    invoice_job: dg.UnresolvedAssetJobDefinition,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_files_sensor",
        jobs=[daily_job, invoice_job],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Watches data/landing/<entity>/ for new files (by content hash) and requests "
        "exactly the (date, entity) partitions their rows are assigned to (entity_assignment in the "
        "mapping document), plus billing for completed months.",
    )
    def landing_files_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineResource
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {"seen": []}
        seen: list[str] = cursor["seen"]
        seen_set = set(seen)
        mapping = pipeline.mapping()
        today = datetime.now().date()
        new_hashes: list[str] = []
        rows: list[pl.DataFrame] = []
        expense_rows: list[pl.DataFrame] = []
        pairs: set[tuple[str, date]] = set()
        for entity in parts.entities:
            for f in list_landing_files(pipeline.paths.data_dir, entity):
                if f.file_hash in seen_set or f.file_hash in new_hashes:
                    continue
                new_hashes.append(f.file_hash)
                parsed = parse_file(f.path, entity, mapping, extracted_at=f.extracted_at)
                if parsed.error is not None or not parsed.rows.height:
                    continue
                (rows if "work_date" in parsed.rows.columns else expense_rows).append(parsed.rows)
        if not new_hashes:
            return dg.SensorResult(skip_reason="no new landing files", cursor=context.cursor)
        # Rows go to the partitions of the entity they are assigned to (core/entities.py), which
        # may differ from the folder they were dropped in; rows no entity can be given are
        # quarantined by the run of their landing entity's partition.
        # Expenses are assigned by the same rules.
        for frames, day in ((rows, "work_date"), (expense_rows, "spent_date")):
            if not frames:
                continue
            assigned = assign_entities(pl.concat(frames), mapping, date_column=day)
            for frame, day_col in ((assigned.rows, day), (assigned.quarantine, "partition_date")):
                pairs |= set(frame.select("entity", day_col).unique().iter_rows())
        tag = hashlib.sha256("".join(sorted(new_hashes)).encode()).hexdigest()[:16]
        requests: list[dg.RunRequest] = []
        for entity, d in sorted(p for p in pairs if p[1] >= mapping.start_date and p[0] in parts.entities):
            key = daily_key(d, entity)
            requests.append(
                dg.RunRequest(run_key=f"daily:{key}:{tag}", job_name=daily_job.name, partition_key=key)
            )
        for entity in parts.entities:
            days = {d for e, d in pairs if e == entity}
            for m in sorted(_complete_months(days, today)):
                key = monthly_key(m, entity)
                requests.append(
                    dg.RunRequest(
                        run_key=f"billing:{key}:{tag}", job_name=invoice_job.name, partition_key=key
                    )
                )
        seen = (seen + new_hashes)[-MAX_SEEN:]
        context.log.info("%d new file(s) -> %d run request(s)", len(new_hashes), len(requests))
        return dg.SensorResult(run_requests=requests, cursor=json.dumps({"seen": seen}))

    return landing_files_sensor


def build_schedules(
    parts: PipelinePartitions,
    daily_job: dg.UnresolvedAssetJobDefinition,
    invoice_job: dg.UnresolvedAssetJobDefinition,
    analytics_job: dg.UnresolvedAssetJobDefinition,
) -> list[dg.ScheduleDefinition]:
    first, last = parts.entities[0], parts.entities[-1]

    @dg.schedule(
        name="daily_yesterday_schedule",
        job=daily_job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Every day at 02:00 UTC: yesterday's partition for every entity, as one run.",
    )
    def daily_yesterday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = (context.scheduled_execution_time - timedelta(days=1)).date()
        return dg.RunRequest(
            run_key=f"daily:{day.isoformat()}",
            tags=range_tags(daily_key(day, first), daily_key(day, last)),
        )

    @dg.schedule(
        name="monthly_billing_schedule",
        job=invoice_job,
        cron_schedule="0 4 1 * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="On the 1st at 04:00 UTC: invoices for the month that just ended, every entity.",
    )
    def monthly_billing(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        month = (context.scheduled_execution_time.date().replace(day=1) - timedelta(days=1)).replace(day=1)
        return dg.RunRequest(
            run_key=f"billing:{month.isoformat()}",
            tags=range_tags(monthly_key(month, first), monthly_key(month, last)),
        )

    analytics = dg.ScheduleDefinition(
        name="analytics_refresh_schedule",
        job=analytics_job,
        cron_schedule="30 4 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return [daily_yesterday, monthly_billing, analytics]
