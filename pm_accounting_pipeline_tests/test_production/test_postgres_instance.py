"""Production setting: a Dagster instance whose run, event and schedule storage is PostgreSQL on
127.0.0.1 (configured as in deploy/dagster.yaml) materialises partitions and records them."""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

pytestmark = pytest.mark.postgres

PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": 5432,
    "user": os.environ.get("PGUSER", "postgres"),
}
DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


@pytest.fixture
def pg_database():
    name = f"pm_acct_dagster_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(dbname="postgres", **PG)
    except psycopg2.OperationalError as exc:  # pragma: no cover - CI starts PostgreSQL first
        pytest.fail(f"PostgreSQL is not reachable on {PG['host']}:5432 ({exc}); .ci/run starts it")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.cursor().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_documented_dagster_yaml_materialises_partitions_in_postgres(
    copied_env, pg_database, monkeypatch
) -> None:
    from pm_accounting_pipeline.lib.runner import run_range

    storage = yaml.safe_load(DEPLOY_YAML.read_text())["storage"]
    assert storage["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    monkeypatch.setenv("DAGSTER_PG_USERNAME", PG["user"])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")
    monkeypatch.setenv("DAGSTER_PG_HOST", PG["host"])
    monkeypatch.setenv("DAGSTER_PG_DB", pg_database)
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        outcome = run_range(
            copied_env.data_dir,
            copied_env.config,
            date(2026, 9, 1),
            date(2026, 9, 30),
            ["us"],
            instance=instance,
        )
        assert outcome.success, outcome.runs
        runs = instance.get_runs()
        assert {r.job_name for r in runs} >= {"daily_pipeline", "monthly_billing"}
        mats = instance.fetch_materializations(dg.AssetKey(["ledger", "accrual_entries"]), limit=100).records
        assert {m.partition_key for m in mats} == {f"2026-09-{d:02d}|us" for d in range(1, 31)}
    with psycopg2.connect(dbname=pg_database, **PG) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] >= 2
