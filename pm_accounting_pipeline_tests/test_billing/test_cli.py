"""`pm-accounting clients review|accept|reject` and `pm-accounting billing run|documents|retainers`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
import typer
import yaml
from typer.testing import CliRunner

from pm_accounting_pipeline.cli.billing import billing_app, clients_app
from pm_accounting_pipeline.config.schema import load_mapping
from pm_accounting_pipeline.core.dedupe import decision_log
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.test_billing.helpers import MARCH, Books, acme
from pm_accounting_pipeline_tests.test_core.builders import make_raw, mapping_dict

runner = CliRunner()
app = typer.Typer()
app.add_typer(clients_app, name="clients")
app.add_typer(billing_app, name="billing")


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as a wide terminal shows them, whatever the test runner's terminal is."""
    from rich.console import Console

    import pm_accounting_pipeline.cli.billing as billing_cli

    monkeypatch.setattr(billing_cli, "console", Console(width=220))
    monkeypatch.setattr(billing_cli, "err", Console(width=220, stderr=True))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    data = mapping_dict()
    data["retainers"] = [
        {"id": "r1", "client": "Acme Corporation", "amount": "500.00", "issue_date": "2026-03-05"}
    ]
    config = tmp_path / "mapping.yaml"
    config.write_text("# our deployment\n" + yaml.safe_dump(data, sort_keys=False))
    mapping = load_mapping(config)
    books = Books(tmp_path, mapping)
    books.load([acme("a1", "7.5", 2), acme("a2", "2", 3, task="Design")], [MARCH])
    books.invoice(MARCH)
    raw = make_raw(
        [
            {
                "source_id": "u1",
                "entity": "uk",
                "client": "Brittania Ltd",
                "project": "Migration",
                "work_date": date(2026, 3, 2),
            }
        ]
    )
    Lake(tmp_path / "lake").write_partitions(
        "staging.client_matches",
        decision_log(raw, mapping),
        [("uk", "2026-03-02")],
        "billing",
        pl.lit("2026-03-02"),
    )
    return {"PM_ACCOUNTING_CONFIG": str(config), "PM_ACCOUNTING_DATA": str(tmp_path)}


def test_review_lists_spellings_and_accept_records_the_suggested_client(env) -> None:
    shown = runner.invoke(app, ["clients", "review"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "Brittania Ltd" in shown.output and "Britannia Ltd" in shown.output and "88.89" in shown.output
    accepted = runner.invoke(app, ["clients", "accept", "Brittania Ltd", "--by", "ana"], env=env)
    assert accepted.exit_code == 0, accepted.output
    mapping = load_mapping(env["PM_ACCOUNTING_CONFIG"])
    decision = mapping.client_matching.decisions[0]
    assert (decision.name, decision.decision, decision.client, decision.score, decision.decided_by) == (
        "Brittania Ltd",
        "merge",
        "Britannia Ltd",
        88.89,
        "ana",
    )
    assert Path(env["PM_ACCOUNTING_CONFIG"]).read_text().startswith("# our deployment\n")
    again = runner.invoke(app, ["clients", "review"], env=env)
    assert "no client spelling waits for review" in again.output


def test_reject_keeps_a_spelling_apart(env) -> None:
    result = runner.invoke(
        app, ["clients", "reject", "Brittania Ltd", "--note", "a different company"], env=env
    )
    assert result.exit_code == 0, result.output
    decision = load_mapping(env["PM_ACCOUNTING_CONFIG"]).client_matching.decisions[0]
    assert (decision.decision, decision.client, decision.note) == ("keep_apart", None, "a different company")


def test_accept_refuses_an_unknown_client_and_spellings_not_in_review(env) -> None:
    assert (
        runner.invoke(app, ["clients", "accept", "Brittania Ltd", "--client", "Nobody"], env=env).exit_code
        == 2
    )
    unknown = runner.invoke(app, ["clients", "accept", "Somebody Else"], env=env)
    assert unknown.exit_code == 2
    assert "not on the review list" in unknown.output


def test_billing_run_issues_documents_and_lists_open_balances_and_retainers(env) -> None:
    issued = runner.invoke(app, ["billing", "run", "--month", "2026-03", "--entity", "us"], env=env)
    assert issued.exit_code == 0, issued.output
    assert "us 2026-03: 2 new document(s)" in issued.output
    # invoice 1539.00 less the 500.00 retainer
    docs = runner.invoke(app, ["billing", "documents", "--open"], env=env)
    assert "us-202603-0001" in docs.output and "1039.000" in docs.output
    retainers = runner.invoke(app, ["billing", "retainers"], env=env)
    assert "C-ACME" in retainers.output and "50000" in retainers.output


def test_billing_run_refuses_an_incomplete_month(env) -> None:
    result = runner.invoke(app, ["billing", "run", "--month", "2026-04", "--entity", "us"], env=env)
    assert result.exit_code == 1
    assert "not materialised" in result.output
