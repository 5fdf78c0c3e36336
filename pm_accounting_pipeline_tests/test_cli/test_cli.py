"""The command line: every command has --help, bad configs exit non-zero naming the location,
ingest says what it accepted and why not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pm_accounting_pipeline.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [[], ["demo"], ["ingest"], ["run"], ["validate-config"], ["warehouse"], ["sandbox"]],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_validate_config_accepts_the_demo_mapping(demo_env) -> None:
    result = runner.invoke(app, ["validate-config", str(demo_env.config)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_config_names_the_location_of_each_problem(demo_env, tmp_path: Path) -> None:
    doc = yaml.safe_load(demo_env.config.read_text())
    doc["entities"][1]["functional_currency"] = "GPB"
    doc["clients"][0]["entity"] = "fr"
    doc["rounding"]["money_mode"] = "sideways"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["validate-config", str(bad)])
    assert result.exit_code == 2
    assert "entities[1].functional_currency: unknown currency 'GPB'" in result.output
    assert "rounding.money_mode" in result.output


def test_validate_config_reports_cross_references(demo_env, tmp_path: Path) -> None:
    doc = yaml.safe_load(demo_env.config.read_text())
    doc["clients"][0]["entity"] = "fr"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["validate-config", str(bad)])
    assert result.exit_code == 2
    assert "clients[0].entity: unknown entity 'fr'" in result.output


def test_validate_config_reports_broken_yaml_with_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\nentities: [\n")
    result = runner.invoke(app, ["validate-config", str(bad)])
    assert result.exit_code == 2
    assert "line" in result.output and "not valid YAML" in result.output


def test_ingest_lands_good_files_and_names_an_unknown_format(demo_env, tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = next(p for p in demo_env.exports if p.parent.name == "us")
    junk = tmp_path / "notes.csv"
    junk.write_text("foo,bar\n1,2\n")
    result = runner.invoke(
        app,
        [
            "--data-dir",
            str(data),
            "--config",
            str(demo_env.config),
            "ingest",
            str(good),
            str(junk),
            "--entity",
            "us",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "notes.csv" in result.output and "not a recognised format" in result.output
    landed = [p for p in (data / "landing" / "us").iterdir() if p.suffix == ".csv"]
    assert len(landed) == 1


def test_ingest_rejects_an_unknown_entity(demo_env, tmp_path: Path) -> None:
    good = next(p for p in demo_env.exports if p.parent.name == "us")
    result = runner.invoke(app, ["--config", str(demo_env.config), "ingest", str(good), "--entity", "fr"])
    assert result.exit_code == 2
    assert "unknown entity 'fr'" in result.output


def test_validate_config_shows_the_entity_assignment_rules(tmp_path: Path) -> None:
    from pm_accounting_pipeline_tests.test_core.builders import mapping_dict

    doc = {
        **mapping_dict(),
        "entity_assignment": {"precedence": ["project", "client", "pm_account"], "projects": {"ACM-1": "uk"}},
    }
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["validate-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "entity assignment: project > client > pm_account (1 project(s) assigned explicitly, 0 people" in (
        " ".join(result.output.split())
    )
    doc["entity_assignment"] = {"precedence": ["client", "project"]}
    path.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["validate-config", str(path)])
    assert result.exit_code == 2
    assert "entity_assignment: precedence: project must come before client" in " ".join(result.output.split())


def test_ingest_says_which_entities_the_rows_belong_to(tmp_path: Path) -> None:
    import json

    from pm_accounting_pipeline_tests.test_core.builders import mapping_dict

    config = tmp_path / "mapping.yaml"
    config.write_text(yaml.safe_dump(mapping_dict()))
    export = tmp_path / "us-march.csv"
    export.write_text(
        "source_id,date,client,project,task,person,hours\n"
        "a1,2026-03-02,Acme Corporation,Website,Development,Ada Lovelace,1\n"
        "b1,2026-03-02,Britannia Ltd,Migration,Development,Ada Lovelace,2\n"
        "b2,2026-03-03,Britannia Ltd,Migration,Development,Ada Lovelace,3\n"
    )
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--config", str(config), "ingest", str(export), "--entity", "us"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "uk 2," in out, result.output  # the entities column: uk 2, us 1 (may wrap)
    assert "rows belong to ['uk'] too (entity_assignment)" in out
    (sidecar,) = (data / "landing" / "us").glob("*.meta.json")
    assert json.loads(sidecar.read_text())["rows_by_entity"] == {"uk": 2, "us": 1}
