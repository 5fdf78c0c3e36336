"""Shared setup of the Harvest connector's Dagster tests: the connector resource against the
loopback sandbox with fast retries, a mapping document with the us (Harvest account) and uk
entities, and the sandbox's expenses grouped by day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pm_accounting_pipeline.defs.sources import HarvestApiResource
from pm_accounting_pipeline.sandboxes.harvest import ServerHandle
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import TOKEN, US_ACCOUNT


def harvest_resource(sandbox: ServerHandle, data_dir: Path) -> HarvestApiResource:
    """The connector resource for the sandbox's us account, writing below `data_dir`, retrying fast."""
    return HarvestApiResource(
        token=TOKEN,
        accounts={US_ACCOUNT: "us"},
        data_dir=str(data_dir),
        base_url=sandbox.url,
        per_page=50,
        retry_wait_initial_s=0.005,
        retry_wait_max_s=0.02,
    )


def write_two_entity_mapping(folder: Path, **sections: Any) -> str:
    """Write `folder/mapping.yaml`: entities us (the sandbox's Harvest account, USD) and uk (GBP),
    start 2026-08-01, and the given top-level `sections` (clients, projects, expenses ...); its path."""
    doc = {
        "version": 1,
        "start_date": "2026-08-01",
        "entities": [
            {
                "id": "us",
                "name": "Acme US Inc",
                "functional_currency": "USD",
                "harvest_account_ids": [US_ACCOUNT],
            },
            {"id": "uk", "name": "Acme UK Ltd", "functional_currency": "GBP"},
        ],
        **sections,
    }
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


def by_spent_date(objects: list[dict]) -> dict[str, list[dict]]:
    """Sandbox objects grouped by their `spent_date`, in the order given."""
    by_day: dict[str, list[dict]] = {}
    for o in objects:
        by_day.setdefault(o["spent_date"], []).append(o)
    return by_day
