"""Fixtures for the Harvest connector tests: a loopback sandbox per test and fast retry settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import stamina

from pm_accounting_pipeline.sandboxes.harvest import ServerHandle, serve
from pm_accounting_pipeline.sources.harvest_api.client import (
    BreakerPolicy,
    HarvestClient,
    HarvestClientConfig,
    RetryPolicy,
    reset_shared_state,
)
from pm_accounting_pipeline.sources.harvest_api.sync import AccountSpec, SyncConfig
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import (
    TOKEN,
    US_ACCOUNT,
    SmallDataset,
    small_dataset,
)

FAST_RETRY = RetryPolicy(attempts=12, timeout_s=60, wait_initial_s=0.005, wait_max_s=0.02)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_limiters_and_breakers() -> None:
    # They are shared per (server, account); a port reused by a later test must not inherit them.
    reset_shared_state()


@pytest.fixture(autouse=True)
def _quiet_retry_logs() -> Iterator[None]:
    # Retries are expected here by the hundred; stamina's default hooks would log each one.
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([])
    yield
    stamina.instrumentation.set_on_retry_hooks(hooks)


@pytest.fixture(scope="session")
def dataset() -> SmallDataset:
    return small_dataset(entries=120, seed=7)


@pytest.fixture
def sandbox(dataset: SmallDataset) -> Iterator[ServerHandle]:
    with serve(port=0, token=TOKEN, account_id=US_ACCOUNT, dataset=dataset, seed=11) as handle:
        yield handle


@pytest.fixture
def make_client(sandbox: ServerHandle) -> Iterator[Callable[..., HarvestClient]]:
    clients: list[HarvestClient] = []

    def make(**overrides: object) -> HarvestClient:
        settings: dict[str, object] = {
            "token": TOKEN,
            "account_id": US_ACCOUNT,
            "base_url": sandbox.url,
            "per_page": 10,
            "retry": FAST_RETRY,
            "breaker": BreakerPolicy(fail_max=10, reset_timeout_s=30),
            "read_timeout_s": 5.0,
        } | overrides
        client = HarvestClient(HarvestClientConfig(**settings), seed=3)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def sync_config(tmp_path: Path) -> SyncConfig:
    return SyncConfig(data_dir=tmp_path / "data")


US = AccountSpec(US_ACCOUNT, "us")
