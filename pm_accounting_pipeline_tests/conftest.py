"""Shared fixtures: a small demo dataset landed in a temporary data folder, and a pipeline run over it.

Built once per test worker; tests that change data copy the folder first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

SMALL = {"seed": 7, "start": date(2026, 9, 1), "end": date(2026, 10, 31), "n_clients": 12, "n_people": 12}


@dataclass
class DemoEnv:
    data_dir: Path
    config: Path
    dataset: object
    demo_config: object
    exports: list[Path]
    manifest: object = None


def make_demo_env(root: Path, **overrides: object) -> DemoEnv:
    from pm_accounting_pipeline.config.schema import load_mapping
    from pm_accounting_pipeline.demo.generator import DemoConfig, generate, write_harvest_csvs_with_manifest
    from pm_accounting_pipeline.extract.landing import land_files

    cfg = DemoConfig(**{**SMALL, **overrides})
    ds = generate(cfg)
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "mapping.yaml"
    config.write_text(ds.mapping_yaml, encoding="utf-8")
    exports, manifest = write_harvest_csvs_with_manifest(ds, root / "exports", cfg)
    mapping = load_mapping(config)
    for entity in mapping.entity_ids:
        land_files(sorted(p for p in exports if p.parent.name == entity), entity, data_dir, mapping)
    return DemoEnv(data_dir, config, ds, cfg, exports, manifest)


@contextmanager
def fast_instance() -> Iterator[object]:
    """A throwaway Dagster instance with the project's fast SQLite event log (lib/instance.py)."""
    import dagster as dg

    from pm_accounting_pipeline.lib.instance import storage_overrides

    with (
        tempfile.TemporaryDirectory() as home,
        dg.instance_for_test(overrides=storage_overrides(Path(home)), temp_dir=home) as instance,
    ):
        yield instance


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> DemoEnv:
    return make_demo_env(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def demo_run(demo_env: DemoEnv, tmp_path_factory: pytest.TempPathFactory):
    """The small demo, run end to end once (daily layers, billing, analytics) on an ephemeral instance."""

    from pm_accounting_pipeline.lib.runner import run_range

    with fast_instance() as instance:
        outcome = run_range(
            demo_env.data_dir,
            demo_env.config,
            demo_env.demo_config.start,
            demo_env.demo_config.end,
            instance=instance,
        )
    return outcome


@pytest.fixture
def copied_env(demo_env: DemoEnv, tmp_path: Path) -> DemoEnv:
    target = tmp_path / "data"
    shutil.copytree(
        demo_env.data_dir, target, ignore=shutil.ignore_patterns("lake", "warehouse.*", "reports")
    )
    return DemoEnv(
        target,
        target / "mapping.yaml",
        demo_env.dataset,
        demo_env.demo_config,
        demo_env.exports,
        demo_env.manifest,
    )


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never touch the repository's ./data from a test."""
    monkeypatch.setenv("PM_ACCOUNTING_DATA", str(tmp_path / "unused-data"))
    monkeypatch.delenv("PM_ACCOUNTING_CONFIG", raising=False)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
