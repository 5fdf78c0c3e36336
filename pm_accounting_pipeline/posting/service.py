"""High-level posting operations wired from configuration: build targets, enqueue a ledger, post.

This is what the CLI and the Dagster assets call. Targets come from the mapping document's
`posting.targets`; tokens come from the environment (`token_env`, else `PM_ACCOUNTING_<TARGET>_TOKEN`),
never from files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pm_accounting_pipeline.config.schema import MappingDocument, PostingTarget
from pm_accounting_pipeline.posting import outbox
from pm_accounting_pipeline.posting.delivery import DeliveryReport, DeliverySettings, deliver
from pm_accounting_pipeline.posting.documents import LedgerTables, build_documents
from pm_accounting_pipeline.posting.killswitch import posting_state
from pm_accounting_pipeline.posting.outbox import EnqueueResult, Scope
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.base import TargetAdapter, TargetLimits
from pm_accounting_pipeline.posting.targets.gl import GeneralLedgerTarget
from pm_accounting_pipeline.posting.targets.qbo import QBO_LIMITS, QboTarget
from pm_accounting_pipeline.posting.targets.xero import XERO_LIMITS, XeroTarget

DEFAULT_TARGETS = (PostingTarget(name="general_ledger"),)


@dataclass
class TargetOverrides:
    """Run-time overrides (tests, pilots): base URLs and tokens per target name."""

    base_urls: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0


def _token(t: PostingTarget, overrides: TargetOverrides) -> str:
    if t.name in overrides.tokens:
        return overrides.tokens[t.name]
    env = t.token_env or f"PM_ACCOUNTING_{t.name.upper()}_TOKEN"
    value = os.environ.get(env)
    if not value:
        raise ValueError(f"posting target {t.name}: no token (set the environment variable {env})")
    return value


def _limits(t: PostingTarget, default: TargetLimits) -> TargetLimits:
    return TargetLimits(
        requests=t.requests_per_minute or default.requests,
        period_s=60.0 if t.requests_per_minute else default.period_s,
        batch_size=min(t.batch_size or default.batch_size, default.batch_size),
        batch_requests=default.batch_requests,
        batch_period_s=default.batch_period_s,
        daily_requests=default.daily_requests,
    )


def target_configs(mapping: MappingDocument | None) -> list[PostingTarget]:
    if mapping is None:
        return list(DEFAULT_TARGETS)
    return list(mapping.posting.targets)


def build_targets(
    store: PostingStore,
    mapping: MappingDocument | None = None,
    overrides: TargetOverrides | None = None,
    only: Sequence[str] | None = None,
) -> list[TargetAdapter]:
    """Adapters for the configured targets (all of them, enabled or not: the switch decides delivery)."""
    overrides = overrides or TargetOverrides()
    adapters: list[TargetAdapter] = []
    for t in target_configs(mapping):
        if only is not None and t.name not in only:
            continue
        if t.name == "general_ledger":
            adapters.append(GeneralLedgerTarget(store))
            continue
        base_url = overrides.base_urls.get(t.name) or t.base_url
        if not base_url:
            raise ValueError(f"posting target {t.name}: base_url is not configured")
        cls, default = (QboTarget, QBO_LIMITS) if t.name == "qbo" else (XeroTarget, XERO_LIMITS)
        adapters.append(
            cls(
                base_url,
                _token(t, overrides),
                companies=dict(t.companies),
                accounts=dict(t.accounts),
                customers=dict(t.customers),
                items=dict(t.items),
                limits=_limits(t, default),
                timeout_s=overrides.timeout_s,
            )
        )
    return adapters


def enqueue_ledger(
    store: PostingStore, ledger: LedgerTables, targets: Sequence[TargetAdapter], *, scope: Scope | None = None
) -> EnqueueResult:
    """Build the documents of a ledger batch and enqueue them for every target, in one transaction."""
    return outbox.enqueue_documents(store, build_documents(ledger), targets, scope=scope)


def post_pending(
    store: PostingStore,
    targets: Sequence[TargetAdapter],
    *,
    data_dir: Path | None = None,
    mapping: MappingDocument | None = None,
    settings: DeliverySettings | None = None,
    manual: bool = False,
    outbox_ids: Sequence[str] | None = None,
) -> list[DeliveryReport]:
    """Deliver to each target in turn (one target at a time), honouring the kill switch unless manual."""
    if settings is None and mapping is not None:
        settings = DeliverySettings(max_attempts=mapping.posting.max_attempts)
    reports = []
    for adapter in targets:

        def switch(name: str = adapter.name):
            return posting_state(store, name, data_dir=data_dir, mapping=mapping)

        reports.append(deliver(store, adapter, settings, switch=switch, manual=manual, outbox_ids=outbox_ids))
    return reports


def post_documents(
    store: PostingStore,
    targets: Sequence[TargetAdapter],
    document_ids: Sequence[str],
    *,
    settings: DeliverySettings | None = None,
    manual: bool = True,
    data_dir: Path | None = None,
    mapping: MappingDocument | None = None,
) -> list[DeliveryReport]:
    """Post the given ledger documents (invoice or entry ids, every revision and reversal of them).

    `manual=True` (the default) posts them now, whatever the kill switch and their back-off say;
    `manual=False` posts them only as an automated run would.
    """
    ids = outbox.find_outbox_ids(store, document_ids)
    if not ids:
        raise ValueError(f"no outbox rows for documents {list(document_ids)}")
    return post_pending(
        store, targets, settings=settings, manual=manual, outbox_ids=ids, data_dir=data_dir, mapping=mapping
    )
