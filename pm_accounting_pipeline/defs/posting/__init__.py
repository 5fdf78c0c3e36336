"""Dagster wiring of posting: the posted-ledger-entries asset, its checks and the posting resource.

`build_posting_defs(ledger_asset_keys, ...)` returns a `Definitions` to merge into the code location.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.defs.posting.assets import POSTED_LEDGER_ENTRIES, build_posted_ledger_entries
from pm_accounting_pipeline.defs.posting.checks import build_posting_checks
from pm_accounting_pipeline.defs.posting.resources import PostingResource

__all__ = ["POSTED_LEDGER_ENTRIES", "PostingResource", "build_posting_defs"]


def build_posting_defs(
    ledger_assets_keys: Sequence[dg.AssetKey],
    *,
    data_dir: Path | str | None = None,
    config_path: Path | str | None = None,
    ledger_url: str | None = None,
    targets: Sequence[str] | None = None,
    max_backlog_age_hours: float = 24.0,
    resource: PostingResource | None = None,
) -> dg.Definitions:
    """The posting asset (deps on `ledger_assets_keys`), its checks and the `posting` resource.

    `targets` are the target names to post to in order (default: the mapping document's
    `posting.targets`, else the built-in general ledger). `resource` overrides the one built from
    `data_dir`/`config_path`/`ledger_url` (for tests).
    """
    if resource is None:
        if data_dir is None:
            from pm_accounting_pipeline.lib import settings

            data_dir = settings.data_dir()
        resource = PostingResource(
            data_dir=str(Path(data_dir).resolve()),
            config_path=str(Path(config_path).resolve()) if config_path else None,
            ledger_url=ledger_url,
        )
    if targets is None:
        from pm_accounting_pipeline.posting.service import target_configs

        targets = [t.name for t in target_configs(resource.mapping())]
    return dg.Definitions(
        assets=[build_posted_ledger_entries(list(ledger_assets_keys), list(targets))],
        asset_checks=build_posting_checks(max_backlog_age_hours),
        resources={"posting": resource},
    )
