"""The Dagster wiring: the posted-ledger-entries asset, its pools and checks, materialised for real."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pm_accounting_pipeline.defs.posting import POSTED_LEDGER_ENTRIES, build_posting_defs
from pm_accounting_pipeline.posting.sample import sample_ledger
from pm_accounting_pipeline.posting.store import open_store

LEDGER_KEYS = [dg.AssetKey(["ledger", "accrual_entries"]), dg.AssetKey(["ledger", "invoices"])]


def _lake(data: Path, seed: int, **kw: object) -> None:
    led = sample_ledger(seed, 4, 2, **kw)  # type: ignore[arg-type]
    for table in ("journal_entries", "journal_lines", "invoices", "invoice_lines"):
        target = data / "lake" / "ledger" / table / "all" / "2026-01.ledger_test.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        getattr(led, table).write_parquet(target)


def _mapping(data: Path) -> Path:
    path = data / "mapping.yaml"
    path.write_text(
        "version: 1\nstart_date: 2026-01-01\nentities:\n"
        "  - {id: acme, name: Acme, functional_currency: USD}\n"
        "  - {id: beta, name: Beta, functional_currency: EUR}\n"
        "posting:\n  targets:\n    - {name: general_ledger}\n"
    )
    return path


def test_asset_depends_on_the_ledger_and_holds_a_pool_per_target(tmp_path: Path) -> None:
    defs = build_posting_defs(LEDGER_KEYS, data_dir=tmp_path, config_path=_mapping(tmp_path))
    [asset] = list(defs.assets)
    assert asset.key == POSTED_LEDGER_ENTRIES and asset.group_names_by_key[POSTED_LEDGER_ENTRIES] == "posting"
    assert set(asset.asset_deps[POSTED_LEDGER_ENTRIES]) == set(LEDGER_KEYS)
    pools = {node.name: node.definition.pool for node in asset.node_def.nodes}
    assert pools["post_to_general_ledger"] == "posting_general_ledger"
    checks = {spec.name for c in defs.asset_checks for spec in c.check_specs}
    assert checks == {"outbox_backlog", "dead_letter_queue"}


def test_materialising_posts_and_a_correction_posts_a_reversal(tmp_path: Path) -> None:
    defs = build_posting_defs(LEDGER_KEYS, data_dir=tmp_path, config_path=_mapping(tmp_path))
    everything = [*defs.assets, *defs.asset_checks, *[dg.AssetSpec(k) for k in LEDGER_KEYS]]
    selection = dg.AssetSelection.assets(POSTED_LEDGER_ENTRIES) | dg.AssetSelection.checks_for_assets(
        POSTED_LEDGER_ENTRIES
    )
    _lake(tmp_path, 61)
    with dg.instance_for_test() as instance:
        first = dg.materialize(
            everything, selection=selection, resources=dict(defs.resources), instance=instance
        )
        assert first.success
        [mat] = first.asset_materializations_for_node("posting__posted_ledger_entries")
        assert mat.metadata["new_documents"].value == 6
        assert mat.metadata["dead_letters_open"].value == 0
        assert {e.check_name: e.passed for e in first.get_asset_check_evaluations()} == {
            "outbox_backlog": True,
            "dead_letter_queue": True,
        }
        _lake(tmp_path, 61, bump={1: 250})
        second = dg.materialize(
            everything, selection=selection, resources=dict(defs.resources), instance=instance
        )
        [mat2] = second.asset_materializations_for_node("posting__posted_ledger_entries")
        assert (mat2.metadata["reversals"].value, mat2.metadata["revisions"].value) == (1, 1)
    store = open_store(tmp_path)
    assert store.scalar("SELECT count(*) FROM {s}.gl_entries") == 8
    store.close()
