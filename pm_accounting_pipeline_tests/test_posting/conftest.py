"""Fixtures for posting: a ledger store on DuckDB or PostgreSQL, running vendor sandboxes, fast settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina.instrumentation

from pm_accounting_pipeline.posting.delivery import DeliverySettings, reset_breakers
from pm_accounting_pipeline.posting.store import DuckDBStore, PostgresStore, PostingStore
from pm_accounting_pipeline.sandboxes import qbo as qbo_sandbox
from pm_accounting_pipeline.sandboxes import xero as xero_sandbox
from pm_accounting_pipeline.sandboxes.faults import RateLimit
from pm_accounting_pipeline.sandboxes.qbo_xero_http import AccountingFaults, SandboxHandle

PG_URL = os.environ.get("PM_ACCOUNTING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "test-token"
UNLIMITED = RateLimit(1_000_000, 1.0)


def pg_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


@pytest.fixture(autouse=True)
def _quiet_retries() -> Iterator[None]:
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([])
    reset_breakers()
    yield
    stamina.instrumentation.set_on_retry_hooks(hooks)
    reset_breakers()


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[PostingStore]:
    store = DuckDBStore(tmp_path / "ledger.duckdb")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PostingStore]:
    """The same tests against the embedded and the production ledger database."""
    s: PostingStore
    if request.param == "duckdb":
        s = DuckDBStore(tmp_path / "ledger.duckdb")
    else:
        if not pg_available():
            pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
        s = PostgresStore(PG_URL, schema=f"posting_t_{uuid.uuid4().hex[:12]}")
    s.migrate()
    yield s
    if isinstance(s, PostgresStore):
        s.drop_schema()
    s.close()


@pytest.fixture(scope="module")
def qbo_server() -> Iterator[SandboxHandle]:
    with qbo_sandbox.serve(
        token=TOKEN, rate_limit=UNLIMITED, batch_limit=UNLIMITED, max_concurrent=None
    ) as h:
        yield h


@pytest.fixture(scope="module")
def xero_server() -> Iterator[SandboxHandle]:
    with xero_sandbox.serve(token=TOKEN, rate_limit=UNLIMITED, day_limit=UNLIMITED, max_concurrent=None) as h:
        yield h


@pytest.fixture
def qbo(qbo_server: SandboxHandle) -> SandboxHandle:
    qbo_server.reset(seed=1)
    qbo_server.sandbox.accounts = None
    qbo_server.sandbox.set_rate_limit(UNLIMITED)
    qbo_server.sandbox.set_batch_limit(UNLIMITED)
    qbo_server.set_faults(AccountingFaults.none(1))
    return qbo_server


@pytest.fixture
def xero(xero_server: SandboxHandle) -> SandboxHandle:
    xero_server.reset(seed=1)
    xero_server.sandbox.accounts = None
    xero_server.sandbox.set_rate_limit(UNLIMITED)
    xero_server.set_faults(AccountingFaults.none(1))
    return xero_server


@pytest.fixture
def fast() -> DeliverySettings:
    return DeliverySettings(
        max_attempts=3,
        in_run_attempts=2,
        backoff_base_s=0.001,
        backoff_cap_s=0.002,
        persisted_backoff_base_s=0.0,
        persisted_backoff_cap_s=0.0,
        retry_after_scale=0.01,
        breaker_fail_max=50,
        breaker_reset_s=0.05,
        respect_rate_limits=False,
        seed=1,
    )
