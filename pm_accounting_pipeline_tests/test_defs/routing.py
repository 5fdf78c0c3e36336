"""Shared setup of the entity-routing tests: landing files for several entities, materialising a
raw asset, its `rows_accounted_for` check, a mapping whose assignment rules cannot place every
row, and one evaluation of the landing sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.defs.automation import build_landing_sensor
from pm_accounting_pipeline.defs.jobs import daily_job, invoice_job
from pm_accounting_pipeline.defs.partitions import build_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.extract.landing import land_files
from pm_accounting_pipeline_tests.test_core.builders import mapping_dict


def landed_env(
    tmp_path: Path, header: str, files: dict[str, list[str]], suffix: str = ""
) -> tuple[PipelineResource, Path]:
    """The test mapping written to `tmp_path/mapping.yaml`, and one CSV per entity (`header` and
    that entity's rows, named `<entity><suffix>.csv`) landed in its folder; every file accepted."""
    data_dir = tmp_path / "data"
    config = tmp_path / "mapping.yaml"
    config.write_text(yaml.safe_dump(mapping_dict()), encoding="utf-8")
    mapping = load_mapping(config)
    for entity, rows in files.items():
        src = tmp_path / f"{entity}{suffix}.csv"
        src.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        assert land_files([src], entity, data_dir, mapping)[0].accepted
    return PipelineResource(data_dir=str(data_dir), config_path=str(config)), config


def materialize(
    asset: dg.AssetsDefinition, resource: PipelineResource, **kwargs
) -> dg.ExecuteInProcessResult:
    """Materialise `asset` alone with `resource` (partition key or range tags in `kwargs`); the run succeeds."""
    result = dg.materialize([asset], resources={"pipeline": resource}, **kwargs)
    assert result.success
    return result


def rows_accounted_for(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    """The run's one `rows_accounted_for` check evaluation."""
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "rows_accounted_for"]
    return check


def without_fallback_rules(resource: PipelineResource, config: Path) -> PipelineResource:
    """Rewrite `config` so that entities are assigned by project or client only (no person or PM
    account fallback), and return a resource reading it: rows of unknown clients get no entity."""
    data = {**mapping_dict(), "entity_assignment": {"precedence": ["project", "client"]}}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return PipelineResource(data_dir=resource.data_dir, config_path=str(config))


def landing_sensor(config: Path) -> dg.SensorDefinition:
    """The landing sensor of the daily and invoice jobs over the partitions of the mapping at `config`."""
    return build_landing_sensor(build_partitions(load_mapping(config)), daily_job, invoice_job)


def sensor_once(resource: PipelineResource, config: Path) -> dg.SensorResult:
    """One evaluation of the landing sensor, in a fresh test instance, without a cursor."""
    with dg.instance_for_test() as instance:
        return landing_sensor(config)(
            dg.build_sensor_context(instance=instance, resources={"pipeline": resource})
        )
