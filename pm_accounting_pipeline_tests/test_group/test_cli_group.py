"""The group commands through typer: rate look-ups, the ECB feed refresh against the loopback
sandbox, and the consolidated trial balance, registered on a root app the way cli/__init__ does."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pm_accounting_pipeline.cli import group
from pm_accounting_pipeline.lib.settings import EXAMPLE_MAPPING
from pm_accounting_pipeline.sandboxes.ecb import serve


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PM_ACCOUNTING_CONFIG", str(EXAMPLE_MAPPING))
    monkeypatch.setenv("PM_ACCOUNTING_DATA", str(tmp_path))
    app, sandbox = typer.Typer(), typer.Typer()
    app.add_typer(sandbox, name="sandbox")
    group.register(app, sandbox)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_rate_lookup_names_the_publication_date_and_source(cli):
    out = cli("fx", "rate", "EUR", "USD", "2026-02-28")
    assert out.exit_code == 0, out.output
    assert "USD per 1 EUR (EUR->USD), published 2026-02-27, source ecb_offline, type spot" in out.output


def test_rate_lookup_without_a_rate_fails(cli):
    out = cli("fx", "rate", "KWD", "USD", "2026-03-02")
    assert out.exit_code == 1 and "no rate for KWD->USD" in out.output


def test_ecb_feed_refresh_fills_the_cache(cli, tmp_path: Path):
    days = {date(2026, 3, 5): {"USD": Decimal("1.0850")}, date(2026, 3, 6): {"USD": Decimal("1.0900")}}
    with serve(rates=days) as server:
        out = cli("fx", "refresh-ecb", "--url", server.feed_url("hist"))
    assert out.exit_code == 0, out.output
    assert "2 day(s) fetched in 1 attempt(s)" in out.output
    assert (tmp_path / "fx" / "ecb-feed.csv").read_text().splitlines()[1:] == [
        "2026-03-05,USD,1.085000000000",
        "2026-03-06,USD,1.090000000000",
    ]


def test_consolidated_trial_balance_of_an_empty_ledger(cli):
    out = cli("group", "consolidated-tb", "--period", "2026-09")
    assert out.exit_code == 0, out.output
    assert "consolidated trial balance 2026-09..2026-09" in out.output


def test_bad_period_is_refused(cli):
    out = cli("group", "consolidated-tb", "--period", "Sept")
    assert out.exit_code == 2 and "is not a month (YYYY-MM)" in out.output
