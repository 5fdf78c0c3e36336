"""The landing-file sensor requests exactly the partitions a new file touches; schedules run
yesterday and bill the month that just ended."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.automation import build_landing_sensor, build_schedules
from pm_accounting_pipeline.defs.jobs import analytics_job, daily_job, invoice_job
from pm_accounting_pipeline.defs.partitions import build_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.extract.landing import land_files, list_landing_files
from pm_accounting_pipeline.extract.parse import parse_file


def _sensor(env):
    parts = build_partitions(load_mapping(env.config))
    return build_landing_sensor(parts, daily_job, invoice_job)


def _resources(env) -> dict:
    return {"pipeline": PipelineResource(data_dir=str(env.data_dir), config_path=str(env.config))}


def _expected_keys(env, entity: str) -> set[str]:
    mapping = load_mapping(env.config)
    keys = set()
    for f in list_landing_files(env.data_dir, entity):
        parsed = parse_file(f.path, entity, mapping, extracted_at=f.extracted_at)
        keys |= {f"{d}|{entity}" for d in parsed.rows.select(pl.col("work_date").unique())["work_date"]}
    return keys


def test_sensor_requests_exactly_the_partitions_of_new_files_then_skips(copied_env) -> None:
    sensor = _sensor(copied_env)
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=_resources(copied_env))
        result = sensor(ctx)
        daily = {r.partition_key for r in result.run_requests if r.job_name == "daily_pipeline"}
        expected = set().union(*(_expected_keys(copied_env, e) for e in ("de", "uk", "us")))
        assert daily == expected
        monthly = {r.partition_key for r in result.run_requests if r.job_name == "monthly_billing"}
        assert monthly == {f"2026-{m}-01|{e}" for m in ("09", "10") for e in ("de", "uk", "us")}
        assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)

        again = sensor(
            dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=_resources(copied_env))
        )
        assert not again.run_requests
        assert len(json.loads(result.cursor)["seen"]) == len(
            list_landing_files(copied_env.data_dir, "us")
        ) + len(list_landing_files(copied_env.data_dir, "uk")) + len(
            list_landing_files(copied_env.data_dir, "de")
        )


def test_sensor_ignores_the_same_bytes_under_another_name_and_sees_a_new_file(copied_env, tmp_path) -> None:
    sensor = _sensor(copied_env)
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, resources=_resources(copied_env)))
        us_files = list_landing_files(copied_env.data_dir, "us")
        copy = tmp_path / "renamed-copy.csv"
        shutil.copy(us_files[0].path, copy)
        mapping = load_mapping(copied_env.config)
        land_files([copy], "us", copied_env.data_dir, mapping)
        second = sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=_resources(copied_env))
        )
        assert not second.run_requests

        one_day = tmp_path / "one_day.csv"
        one_day.write_text(
            "source_id,date,client,client_id,project,project_code,task,person,person_id,email,notes,hours,rounded_hours,"
            "billable,approved,invoiced,bill_rate,cost_rate,currency\n"
            "late-1,2026-09-15,X,,Y,,Z,Ann Lee,77,,late entry,1.5,1.5,true,true,false,100,50,USD\n",
            encoding="utf-8",
        )
        land_files([one_day], "us", copied_env.data_dir, mapping)
        third = sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=_resources(copied_env))
        )
        assert {r.partition_key for r in third.run_requests if r.job_name == "daily_pipeline"} == {
            "2026-09-15|us"
        }
        assert {r.partition_key for r in third.run_requests if r.job_name == "monthly_billing"} == {
            "2026-09-01|us"
        }


def test_daily_schedule_runs_yesterday_for_every_entity_as_one_run(demo_env) -> None:
    parts = build_partitions(load_mapping(demo_env.config))
    schedules = {s.name: s for s in build_schedules(parts, daily_job, invoice_job, analytics_job)}
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 10, 6, 2, 0, tzinfo=UTC))
    req = schedules["daily_yesterday_schedule"].evaluate_tick(ctx).run_requests[0]
    assert req.tags["dagster/asset_partition_range_start"] == "2026-10-05|de"
    assert req.tags["dagster/asset_partition_range_end"] == "2026-10-05|us"


def test_monthly_schedule_bills_the_month_that_just_ended(demo_env) -> None:
    parts = build_partitions(load_mapping(demo_env.config))
    schedules = {s.name: s for s in build_schedules(parts, daily_job, invoice_job, analytics_job)}
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    req = schedules["monthly_billing_schedule"].evaluate_tick(ctx).run_requests[0]
    assert req.tags["dagster/asset_partition_range_start"] == "2026-10-01|de"
    assert req.tags["dagster/asset_partition_range_end"] == "2026-10-01|us"
