"""The Harvest API resource: endpoint, token (from the environment), accounts, limits and sync policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.sources.harvest_api.client import (
    DEFAULT_USER_AGENT,
    HARVEST_BASE_URL,
    BreakerPolicy,
    HarvestClient,
    HarvestClientConfig,
    HarvestError,
    RetryPolicy,
)
from pm_accounting_pipeline.sources.harvest_api.sync import AccountSpec, SyncConfig, SyncResult, sync_account


def harvest_accounts_from_mapping(mapping: MappingDocument) -> dict[str, str]:
    """Harvest account id -> entity, from each entity's `harvest_account_ids` in the mapping document."""
    out: dict[str, str] = {}
    for entity in mapping.entities:
        for account_id in entity.harvest_account_ids:
            out[str(account_id)] = entity.id
    return out


class HarvestApiResource(dg.ConfigurableResource):
    """Harvest API v2 access for the accounts of the mapping document.

    Wire the token as `dg.EnvVar("HARVEST_TOKEN")`; never put it in a file. `accounts` maps each
    Harvest account id to the entity it books into. The sync state and per-id content hashes live
    under `<data_dir>/harvest_api/<account_id>/`.
    """

    token: str
    accounts: dict[str, str] = Field(description="Harvest account id -> legal entity id")
    data_dir: str
    base_url: str = HARVEST_BASE_URL
    user_agent: str = DEFAULT_USER_AGENT
    rate_limit: str = Field("100/15s", description="client-side limit per account, e.g. 100/15s")
    per_page: int = 2000
    overlap_hours: float = Field(48.0, description="updated_since = high-water mark minus this")
    trailing_window_days: int = Field(60, description="days re-pulled in full to detect deletions")
    window_check_hours: float = Field(24.0, description="how often the trailing window is re-pulled")
    retry_attempts: int = 10
    retry_timeout_s: float = 300.0
    retry_wait_initial_s: float = 1.0
    retry_wait_max_s: float = 60.0
    breaker_fail_max: int = 10
    breaker_reset_s: float = 60.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def account_specs(self) -> list[AccountSpec]:
        return [AccountSpec(str(a), e) for a, e in sorted(self.accounts.items())]

    def client_config(self, account_id: str) -> HarvestClientConfig:
        return HarvestClientConfig(
            token=self.token,
            account_id=str(account_id),
            base_url=self.base_url,
            user_agent=self.user_agent,
            rate_limit=self.rate_limit,
            per_page=self.per_page,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            retry=RetryPolicy(
                attempts=self.retry_attempts,
                timeout_s=self.retry_timeout_s,
                wait_initial_s=self.retry_wait_initial_s,
                wait_max_s=self.retry_wait_max_s,
            ),
            breaker=BreakerPolicy(fail_max=self.breaker_fail_max, reset_timeout_s=self.breaker_reset_s),
        )

    def sync_config(self) -> SyncConfig:
        return SyncConfig(
            data_dir=Path(self.data_dir),
            overlap=timedelta(hours=self.overlap_hours),
            trailing_window_days=self.trailing_window_days,
            window_check_every=timedelta(hours=self.window_check_hours),
        )

    def sync(
        self,
        full: bool = False,
        check_deletions: bool | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> tuple[SyncResult, dict[str, str]]:
        """Sync every account; an account that fails is reported in the second value, not raised,
        so one broken account (bad token, open circuit) does not stop the others."""
        results: list[SyncResult] = []
        errors: dict[str, str] = {}
        for spec in self.account_specs():
            try:
                with HarvestClient(self.client_config(spec.account_id)) as client:
                    results.append(
                        sync_account(client, spec, self.sync_config(), clock, full, check_deletions)
                    )
            except HarvestError as exc:
                errors[spec.account_id] = f"{type(exc).__name__}: {exc}"
        return SyncResult.combine(results), errors
