"""The posting commands, run through typer against a data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pm_accounting_pipeline.cli.posting import register
from pm_accounting_pipeline.posting import outbox
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.sample import sample_ledger
from pm_accounting_pipeline.posting.store import open_store
from pm_accounting_pipeline.posting.targets.gl import GeneralLedgerTarget


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[typer.Typer, Path]:
    monkeypatch.setenv("PM_ACCOUNTING_DATA", str(tmp_path))
    monkeypatch.delenv("PM_ACCOUNTING_CONFIG", raising=False)
    monkeypatch.delenv("PM_ACCOUNTING_LEDGER_URL", raising=False)
    app = typer.Typer()
    sandbox = typer.Typer()
    register(app, sandbox)
    app.add_typer(sandbox, name="sandbox")
    return app, tmp_path


def _seed(data: Path) -> list[str]:
    led = sample_ledger(51, 3, 1)
    store = open_store(data)
    outbox.enqueue_documents(store, build_documents(led), [GeneralLedgerTarget(store)])
    store.close()
    return led.invoices["invoice_id"].to_list()


def test_kill_switch_then_manual_post_then_resume(cli: tuple[typer.Typer, Path]) -> None:
    app, data = cli
    invoices = _seed(data)
    run = CliRunner().invoke
    assert run(app, ["killswitch", "on", "--reason", "month-end freeze", "--actor", "ops"]).exit_code == 0
    status = run(app, ["killswitch", "status"])
    assert "posting off" in status.output and "month-end freeze" in status.output
    due = run(app, ["post", "--due"])
    assert due.exit_code == 0 and "month-end freeze" in due.output
    manual = run(app, ["post", "--invoice", invoices[0]])
    assert manual.exit_code == 0, manual.output
    store = open_store(data)
    assert store.scalar("SELECT count(*) FROM {s}.gl_entries") == 1
    store.close()
    assert run(app, ["killswitch", "off", "--actor", "ops"]).exit_code == 0
    assert run(app, ["post", "--due"]).exit_code == 0
    recon = run(app, ["reconcile-targets", "--output", str(data / "recon")])
    assert recon.exit_code == 0, recon.output
    assert (data / "recon" / "summary.csv").exists()
    export = run(app, ["export-beancount", "--output", str(data / "ledger.beancount")])
    assert export.exit_code == 0 and "no errors" in export.output


def test_dlq_commands(cli: tuple[typer.Typer, Path]) -> None:
    app, data = cli
    store = open_store(data)
    store.execute(
        "INSERT INTO {s}.outbox (outbox_id, doc_uid, document_kind, document_id, revision, entity, "
        "posting_date, target, idempotency_key, payload, payload_hash, status, attempts, attempts_base, "
        "created_at, updated_at) VALUES ('o1', 'u1', 'invoice', 'inv-1', 1, 'acme', DATE '2026-01-05', "
        "'qbo', 'k1', '{}', 'h', 'dead', 1, 0, TIMESTAMP '2026-01-05 10:00:00', "
        "TIMESTAMP '2026-01-05 10:00:00')"
    )
    store.execute(
        "INSERT INTO {s}.dlq (dlq_id, outbox_id, target, doc_uid, document_id, document_kind, entity, reason, "
        "error, attempt_history, created_at) VALUES ('d1', 'o1', 'qbo', 'u1', 'inv-1', 'invoice', 'acme', "
        "'permanent', 'HTTP 400: Invalid Reference Id', '[]', TIMESTAMP '2026-01-05 10:00:00')"
    )
    store.close()
    run = CliRunner().invoke
    listed = run(app, ["dlq", "list"])
    assert listed.exit_code == 0 and "inv-1" in listed.output and "1 entry" in listed.output
    shown = run(app, ["dlq", "show", "d1"])
    assert shown.exit_code == 0 and "Invalid Reference Id" in shown.output
    assert run(app, ["dlq", "discard", "d1"]).exit_code != 0  # --reason is required
    done = run(app, ["dlq", "discard", "d1", "--reason", "duplicate of INV-7", "--actor", "ana"])
    assert done.exit_code == 0
    assert "0 entries" in run(app, ["dlq", "list"]).output
    assert "1 entry" in run(app, ["dlq", "list", "--all"]).output
    store = open_store(data)
    assert store.query("SELECT resolution, resolution_reason, resolved_by FROM {s}.dlq") == [
        ("discarded", "duplicate of INV-7", "ana")
    ]
    store.close()
    assert run(app, ["dlq", "replay", "d1"]).exit_code == 2
