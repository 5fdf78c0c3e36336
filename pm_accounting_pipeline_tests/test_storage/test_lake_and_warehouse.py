"""Storage: atomic per-partition Parquet files, views that work before any run, and an analyst's
open DuckDB file never blocking the pipeline (nor the pipeline the analyst)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import empty_frame
from pm_accounting_pipeline.lib.lake import Lake, clear_memo
from pm_accounting_pipeline.lib.settings import Paths
from pm_accounting_pipeline.lib.warehouse import init_warehouse


def test_views_answer_before_any_run(tmp_path: Path) -> None:
    status = init_warehouse(Paths(tmp_path))
    assert status.state == "created"
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM ledger.journal_lines").fetchone() == (0,)
    assert con.sql("SELECT count(*) FROM analytics.trial_balance").fetchone() == (0,)
    types = dict(
        con.sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'ledger' AND table_name = 'journal_lines'"
        ).fetchall()
    )
    assert types["debit"].startswith("DECIMAL") and types["credit"].startswith("DECIMAL")
    assert "DOUBLE" not in {types[c] for c in ("debit", "credit", "functional_debit", "reporting_credit")}


def test_refreshing_views_while_an_analyst_holds_the_file_reports_locked_and_keeps_old_views(
    tmp_path: Path,
) -> None:
    init_warehouse(Paths(tmp_path))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(30)",
            str(tmp_path / "warehouse.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        status = init_warehouse(Paths(tmp_path), force=True)
        assert status.state == "locked"
        assert "open in another process" in status.message
    finally:
        holder.kill()
        holder.wait()


def test_rewriting_a_partition_replaces_exactly_that_partition(tmp_path: Path) -> None:
    clear_memo()
    lake = Lake(tmp_path)
    frame = empty_frame("staging.quarantine")
    row = {c: None for c in frame.columns} | {
        "entity": "us",
        "layer": "clean",
        "reason": "bad_hours",
        "detail": "x",
    }
    import datetime as dt

    rows = pl.DataFrame([row | {"partition_date": dt.date(2026, 9, d)} for d in (1, 2)], schema=frame.schema)
    parts = [("us", "2026-09-01"), ("us", "2026-09-02")]
    assert lake.write_partitions("staging.quarantine", rows, parts, "clean", pl.col("partition_date")) == {
        ("us", "2026-09-01"): 1,
        ("us", "2026-09-02"): 1,
    }
    lake.write_partitions("staging.quarantine", rows.head(0), parts[:1], "clean", pl.col("partition_date"))
    clear_memo()
    left = lake.read("staging.quarantine")
    assert left["partition_date"].to_list() == [dt.date(2026, 9, 2)]
    with pytest.raises(ValueError, match="outside this run"):
        lake.write_partitions("staging.quarantine", rows, parts[:1], "clean", pl.col("partition_date"))
    assert not list(tmp_path.rglob("*.tmp"))


def _lake_digest(lake_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake_dir)): p.read_bytes() for p in sorted(lake_dir.rglob("*.parquet"))}


def test_analyst_queries_while_a_backfill_runs_and_parallel_entity_runs_do_not_contend(copied_env) -> None:
    """An analyst keeps warehouse.duckdb open read-write (as the duckdb CLI does) and queries in a
    loop while two backfills for different entities run at the same time in separate processes."""
    data = copied_env.data_dir
    init_warehouse(Paths(data))
    analyst = duckdb.connect(str(data / "warehouse.duckdb"))
    errors: list[str] = []
    counts: list[int] = []
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            try:
                counts.append(analyst.sql("SELECT count(*) FROM staging.work_items").fetchone()[0])
                analyst.sql("SELECT * FROM analytics.trial_balance_check").fetchall()
            except Exception as exc:  # any error here is the failure under test
                errors.append(repr(exc))
            time.sleep(0.05)

    t = threading.Thread(target=query_loop)
    t.start()
    env = {
        **os.environ,
        "PM_ACCOUNTING_DATA": str(data),
        "PM_ACCOUNTING_CONFIG": str(copied_env.config),
        "DAGSTER_HOME": str(data / "dagster_home"),
    }
    cli = [sys.executable, "-m", "pm_accounting_pipeline.cli"]
    try:
        procs = [
            subprocess.Popen(
                [*cli, "run", "--start", "2026-09-01", "--end", "2026-09-30", "--entity", e],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for e in ("us", "uk")
        ]
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        stop.set()
        t.join()
    failures = [line for out in outs for line in out.splitlines() if "FAILED" in line or "Error" in line]
    assert [p.returncode for p in procs] == [0, 0], failures
    assert errors == []
    assert counts and max(counts) > 0
    final = analyst.sql("SELECT entity, count(*) FROM staging.work_items GROUP BY 1 ORDER BY 1").fetchall()
    assert [e for e, _ in final] == ["uk", "us"]
    analyst.close()


def test_rerunning_the_same_partitions_gives_byte_identical_files(copied_env) -> None:
    from pm_accounting_pipeline.lib.runner import run_range
    from pm_accounting_pipeline_tests.conftest import fast_instance

    start, end = copied_env.demo_config.start, copied_env.demo_config.end
    with fast_instance() as instance:
        first = run_range(copied_env.data_dir, copied_env.config, start, end, instance=instance)
        assert first.success
        before = _lake_digest(copied_env.data_dir / "lake")
        again = run_range(copied_env.data_dir, copied_env.config, start, end, instance=instance)
        assert again.success
    after = _lake_digest(copied_env.data_dir / "lake")
    assert before.keys() == after.keys()
    changed = [k for k in before if before[k] != after[k]]
    assert changed == []
