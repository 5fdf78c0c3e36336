"""The billing assets in Dagster: materialised against a prepared lake, with their checks."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.billing import BILLING_DOCUMENTS, CLIENT_MATCHES, build_billing_defs
from pm_accounting_pipeline.defs.partitions import build_partitions, daily_key, monthly_key
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.conftest import fast_instance
from pm_accounting_pipeline_tests.test_billing.helpers import MARCH, Books, acme
from pm_accounting_pipeline_tests.test_core.builders import make_raw, mapping_dict

warnings.filterwarnings("ignore", category=dg.BetaWarning)


@pytest.fixture
def location(tmp_path: Path):
    data = mapping_dict()
    data["discounts"] = [
        {"id": "acme10", "scope": "client", "client": "Acme Corporation", "kind": "percentage", "value": "10"}
    ]
    config = tmp_path / "mapping.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    mapping = load_mapping(config)
    books = Books(tmp_path, mapping)
    rows = [acme("a1", "7.5", 2), acme("a2", "2", 3, task="Design", client="Acme Corporatoin")]
    books.load(rows, [MARCH])
    books.invoice(MARCH)
    raw = make_raw(rows)
    Lake(tmp_path / "lake").write_partitions(
        "raw.time_entries",
        raw,
        [("us", "2026-03-02"), ("us", "2026-03-03")],
        "raw",
        pl.col("work_date").cast(pl.String),
    )
    defs = build_billing_defs(build_partitions(mapping))
    resource = PipelineResource(data_dir=str(tmp_path), config_path=str(config))
    return defs, resource, tmp_path


def _assets(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]


def test_billing_documents_asset_issues_documents_with_passing_checks(location) -> None:
    defs, resource, root = location
    with fast_instance() as instance:
        result = dg.materialize(
            _assets(defs),
            selection=[BILLING_DOCUMENTS],
            partition_key=monthly_key(MARCH, "us"),
            resources={"pipeline": resource},
            instance=instance,
        )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert all(checks.values()), checks
    meta = result.asset_materializations_for_node("ledger__billing_documents")[0].metadata
    assert meta["documents_by_type"].value == {"invoice": 1}
    # 1425.00 - 10% + 8% = 1385.10
    assert meta["amount_due_by_currency"].value == {"USD": "1,385.10"}
    docs = Lake(root / "lake").read("ledger.billing_documents")
    assert docs["document_number"].to_list() == ["us-202603-0001"]


def test_client_matches_asset_logs_every_spelling_with_its_rule(location) -> None:
    defs, resource, root = location
    with fast_instance() as instance:
        result = dg.materialize(
            _assets(defs),
            selection=[CLIENT_MATCHES],
            partition_key=daily_key(MARCH.replace(day=3), "us"),
            resources={"pipeline": resource},
            instance=instance,
        )
    assert result.success
    log = Lake(root / "lake").read("staging.client_matches")
    assert log.select("source_name", "rule", "client_name").rows() == [
        ("Acme Corporatoin", "fuzzy_auto", "Acme Corporation")
    ]


def test_billing_job_and_assets_are_defined_for_the_monthly_partitions(location) -> None:
    defs, resource, _ = location
    merged = dg.Definitions.merge(defs, dg.Definitions(resources={"pipeline": resource}))
    job = merged.resolve_job_def("billing_documents")
    assert job.name == "billing_documents"
    billing = next(a for a in _assets(defs) if BILLING_DOCUMENTS in a.keys)
    assert billing.partitions_def is not None
    assert "2026-03-01|us" in billing.partitions_def.get_partition_keys()
