"""Posting commands: dead-letter queue, manual posting, kill switch, target reconciliation, sandboxes.

Typer apps and commands to hang under the root `pm-accounting` app (`register(app, sandbox_app)` does
it in one call). Every operation is also a plain function taking the data folder and an optional
ledger database URL (`--ledger-url` / PM_ACCOUNTING_LEDGER_URL: `postgresql://...`; default: the
DuckDB file `<data>/ledger.duckdb`).
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.posting import dlq as dlq_ops
from pm_accounting_pipeline.posting import jsonutil, killswitch, service
from pm_accounting_pipeline.posting.delivery import DeliveryReport
from pm_accounting_pipeline.posting.reconcile import ReconciliationReport, reconcile_targets
from pm_accounting_pipeline.posting.store import PostingStore, open_store

console = Console()
err = Console(stderr=True)

LedgerUrl = Annotated[
    str | None,
    typer.Option(
        "--ledger-url",
        envvar="PM_ACCOUNTING_LEDGER_URL",
        help="Ledger database (postgresql://...); default <data>/ledger.duckdb.",
    ),
]
Actor = Annotated[str | None, typer.Option("--actor", help="Who does this (recorded); default: the OS user.")]


# --- plain functions ------------------------------------------------------------------------------------


def data_dir() -> Path:
    return Path(os.environ.get("PM_ACCOUNTING_DATA", "data")).resolve()


def load_active_mapping() -> MappingDocument | None:
    """The mapping document in use (PM_ACCOUNTING_CONFIG, else <data>/mapping.yaml), if there is one."""
    from pm_accounting_pipeline.config.schema import load_mapping

    env = os.environ.get("PM_ACCOUNTING_CONFIG")
    path = Path(env) if env else data_dir() / "mapping.yaml"
    return load_mapping(path) if path.exists() else None


@contextmanager
def store_for(data: Path, ledger_url: str | None = None) -> Iterator[PostingStore]:
    store = open_store(data, ledger_url)
    try:
        yield store
    finally:
        store.close()


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def post_selected(
    data: Path,
    ledger_url: str | None,
    invoices: list[str],
    entries: list[str],
    targets: list[str] | None = None,
    mapping: MappingDocument | None = None,
) -> list[DeliveryReport]:
    """Post the given invoices / journal entries now (manual: ignores the kill switch)."""
    with store_for(data, ledger_url) as store:
        adapters = service.build_targets(store, mapping, only=targets)
        try:
            return service.post_documents(store, adapters, [*invoices, *entries])
        finally:
            for a in adapters:
                a.close()


def post_due(
    data: Path,
    ledger_url: str | None,
    targets: list[str] | None = None,
    mapping: MappingDocument | None = None,
) -> list[DeliveryReport]:
    """Run automated posting for what is due (stops at once if the kill switch is on)."""
    with store_for(data, ledger_url) as store:
        adapters = service.build_targets(store, mapping, only=targets)
        try:
            return service.post_pending(store, adapters, data_dir=data, mapping=mapping)
        finally:
            for a in adapters:
                a.close()


def reconcile(
    data: Path,
    ledger_url: str | None,
    entities: list[str] | None = None,
    targets: list[str] | None = None,
    mapping: MappingDocument | None = None,
) -> ReconciliationReport:
    with store_for(data, ledger_url) as store:
        adapters = service.build_targets(store, mapping, only=targets)
        try:
            return reconcile_targets(store, adapters, entities)
        finally:
            for a in adapters:
                a.close()


# --- dlq ---------------------------------------------------------------------------------------------------

dlq_app = typer.Typer(help="The dead-letter queue: documents a person must look at.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    all_entries: Annotated[bool, typer.Option("--all", help="Include resolved entries.")] = False,
    target: Annotated[str | None, typer.Option("--target")] = None,
    ledger_url: LedgerUrl = None,
) -> None:
    """List dead-letter entries (open ones unless --all)."""
    with store_for(data_dir(), ledger_url) as store:
        rows = dlq_ops.list_entries(store, open_only=not all_entries, target=target)
    table = Table(
        "dlq id", "target", "kind", "document", "entity", "reason", "error", "created", "resolution"
    )
    for r in rows:
        table.add_row(
            r["dlq_id"],
            r["target"],
            r["document_kind"],
            r["document_id"],
            r["entity"],
            r["reason"],
            (r["error"] or "")[:80],
            f"{r['created_at']:%Y-%m-%d %H:%M}",
            r["resolution"] or "",
        )
    console.print(table)
    console.print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")


@dlq_app.command("show")
def dlq_show(dlq_id: str, ledger_url: LedgerUrl = None) -> None:
    """Show one entry: request, response and attempt history."""
    with store_for(data_dir(), ledger_url) as store:
        try:
            row = dlq_ops.show(store, dlq_id)
        except dlq_ops.DlqError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    console.print_json(jsonutil.dumps(row, canonical=False))


@dlq_app.command("replay")
def dlq_replay(
    dlq_ids: Annotated[list[str], typer.Argument(help="Entries to replay.")],
    rerender: Annotated[
        bool,
        typer.Option(
            "--rerender",
            help="Rebuild the payload from the current mapping "
            "first (for refusals fixed by a mapping change).",
        ),
    ] = False,
    actor: Actor = None,
    ledger_url: LedgerUrl = None,
) -> None:
    """Queue the documents again with the same idempotency key (posted by the next posting run)."""
    mapping = load_active_mapping()
    with store_for(data_dir(), ledger_url) as store:
        renderers = service.build_targets(store, mapping) if rerender else []
        try:
            queued = dlq_ops.replay(store, dlq_ids, _actor(actor), renderers=renderers, rerender=rerender)
        except dlq_ops.DlqError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        finally:
            for r in renderers:
                r.close()
    console.print(f"queued {len(queued)} outbox row(s) again: {', '.join(queued)}")


@dlq_app.command("discard")
def dlq_discard(
    dlq_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Why this document will not be posted (recorded).")],
    actor: Actor = None,
    ledger_url: LedgerUrl = None,
) -> None:
    """Close an entry without posting it; needs a reason, which is recorded with who and when."""
    with store_for(data_dir(), ledger_url) as store:
        try:
            dlq_ops.discard(store, dlq_id, reason, _actor(actor))
        except dlq_ops.DlqError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    console.print(f"discarded {dlq_id}: {reason}")


# --- post ----------------------------------------------------------------------------------------------------


def _print_reports(reports: list[DeliveryReport]) -> bool:
    table = Table("target", "posted", "dead", "retry later", "requests", "note")
    ok = True
    for r in reports:
        note = r.skipped_reason or r.stopped_reason or ""
        table.add_row(r.target, str(r.posted), str(r.dead), str(r.transient), str(r.requests), note[:100])
        ok = ok and not r.dead and not r.errors
    console.print(table)
    return ok


def post(
    invoice: Annotated[
        list[str] | None, typer.Option("--invoice", help="Invoice id to post (repeatable).")
    ] = None,
    entry: Annotated[
        list[str] | None, typer.Option("--entry", help="Journal entry id to post (repeatable).")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Only these targets (repeatable).")
    ] = None,
    due: Annotated[
        bool, typer.Option("--due", help="Post everything due (automated run; obeys the kill switch).")
    ] = False,
    ledger_url: LedgerUrl = None,
) -> None:
    """Post selected documents by hand, even while the kill switch is on (or --due for a normal run)."""
    mapping = load_active_mapping()
    if not invoice and not entry and not due:
        err.print("[red]name documents with --invoice/--entry, or use --due[/red]")
        raise typer.Exit(2)
    try:
        if due:
            reports = post_due(data_dir(), ledger_url, target, mapping)
        else:
            reports = post_selected(data_dir(), ledger_url, invoice or [], entry or [], target, mapping)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if not _print_reports(reports):
        raise typer.Exit(1)


# --- kill switch -----------------------------------------------------------------------------------------------

killswitch_app = typer.Typer(
    help="Stop automated posting at once (on) or let it run again (off).", no_args_is_help=True
)


@killswitch_app.command("on")
def killswitch_on(
    reason: Annotated[str, typer.Option("--reason", help="Why posting stops (recorded).")],
    target: Annotated[str | None, typer.Option("--target", help="Only this target; default: all.")] = None,
    actor: Actor = None,
    ledger_url: LedgerUrl = None,
) -> None:
    """Engage the kill switch: automated posting stops before its next request."""
    with store_for(data_dir(), ledger_url) as store:
        killswitch.engage(store, reason, _actor(actor), target)
    console.print(f"[yellow]kill switch ON[/yellow] for {target or 'all targets'}: {reason}")


@killswitch_app.command("off")
def killswitch_off(
    reason: Annotated[str, typer.Option("--reason", help="Why posting may resume (recorded).")] = "resumed",
    target: Annotated[str | None, typer.Option("--target")] = None,
    actor: Actor = None,
    ledger_url: LedgerUrl = None,
) -> None:
    """Release the kill switch (the mapping document and the switch file still apply)."""
    with store_for(data_dir(), ledger_url) as store:
        killswitch.release(store, reason, _actor(actor), target)
    console.print(f"[green]kill switch OFF[/green] for {target or 'all targets'}")


@killswitch_app.command("status")
def killswitch_status(ledger_url: LedgerUrl = None) -> None:
    """Whether automated posting runs, per target, and every reason it does not."""
    mapping = load_active_mapping()
    names = [t.name for t in service.target_configs(mapping)]
    with store_for(data_dir(), ledger_url) as store:
        for name in names:
            state = killswitch.posting_state(store, name, data_dir=data_dir(), mapping=mapping)
            if state.enabled:
                console.print(f"{name}: [green]posting on[/green]")
            else:
                console.print(f"{name}: [red]posting off[/red] - " + "; ".join(state.reasons))


# --- reconcile ------------------------------------------------------------------------------------------------


def reconcile_targets_command(
    entity: Annotated[
        list[str] | None, typer.Option("--entity", help="Only these entities (repeatable).")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Only these targets (repeatable).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the report tables as CSV here.")
    ] = None,
    ledger_url: LedgerUrl = None,
) -> None:
    """Counts and totals per entity and day, local vs each target; documents missing on either side."""
    try:
        report = reconcile(data_dir(), ledger_url, entity, target, load_active_mapping())
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table("target", "entity", "day", "currency", "local n", "remote n", "local total", "remote total")
    for r in report.summary.iter_rows(named=True):
        style = (
            ""
            if (r["local_count"], r["local_total_minor"]) == (r["remote_count"], r["remote_total_minor"])
            else "red"
        )
        table.add_row(
            r["target"],
            r["entity"],
            str(r["posting_date"]),
            r["currency"] or "(base)",
            str(r["local_count"]),
            str(r["remote_count"]),
            str(r["local_total_minor"]),
            str(r["remote_total_minor"]),
            style=style,
        )
    console.print(table)
    console.print(json.dumps(report.counts()))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for name in (
            "summary",
            "missing_remote",
            "missing_local",
            "duplicates_remote",
            "amount_mismatches",
            "not_yet_posted",
        ):
            getattr(report, name).write_csv(output / f"{name}.csv")
    if not report.ok:
        raise typer.Exit(1)


# --- beancount ------------------------------------------------------------------------------------------------


def beancount_command(
    output: Annotated[Path, typer.Option("--output", help="Journal file to write.")],
    ledger_url: LedgerUrl = None,
) -> None:
    """Export the posted general ledger as a beancount journal and check it as bean-check does."""
    from pm_accounting_pipeline.posting.beancount_export import check_beancount, export_beancount, gl_lines

    with store_for(data_dir(), ledger_url) as store:
        path = export_beancount(gl_lines(store), output)
    problems = check_beancount(path)
    if problems:
        err.print("[red]" + "\n".join(problems[:20]) + "[/red]")
        raise typer.Exit(1)
    console.print(f"wrote {path} (bean-check: no errors)")


# --- sandboxes, chaos -------------------------------------------------------------------------------------------


def sandbox_qbo(
    port: Annotated[int, typer.Option("--port")] = 8081,
    token: Annotated[str, typer.Option("--token", envvar="PM_ACCOUNTING_QBO_TOKEN")] = "qbo-sandbox-token",
    rate_limit: Annotated[str, typer.Option("--rate-limit", help="e.g. 500/1m")] = "500/1m",
    batch_limit: Annotated[str, typer.Option("--batch-limit", help="e.g. 40/1m")] = "40/1m",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """A local QuickBooks Online sandbox (Invoice, CreditMemo, JournalEntry, batch, query)."""
    from pm_accounting_pipeline.sandboxes import qbo

    qbo.run_forever(host, port, token, rate_limit, seed, batch_limit)


def sandbox_xero(
    port: Annotated[int, typer.Option("--port")] = 8082,
    token: Annotated[str, typer.Option("--token", envvar="PM_ACCOUNTING_XERO_TOKEN")] = "xero-sandbox-token",
    rate_limit: Annotated[str, typer.Option("--rate-limit", help="e.g. 60/1m")] = "60/1m",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """A local Xero Accounting sandbox (Invoices, CreditNotes, ManualJournals)."""
    from pm_accounting_pipeline.sandboxes import xero

    xero.run_forever(host, port, token, rate_limit, seed)


def chaos_command(
    seeds: Annotated[int, typer.Option("--seeds")] = 1000,
    first: Annotated[int, typer.Option("--first")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose")] = False,
) -> None:
    """Run the posting fault-injection harness and print the counts; exit 1 if any seed failed."""
    from pm_accounting_pipeline.posting.chaos import run_chaos

    summary: dict[str, Any] = run_chaos(range(first, first + seeds), verbose=verbose)
    if summary["failed"]:
        raise typer.Exit(1)


def register(app: typer.Typer, sandbox_app: typer.Typer | None = None) -> None:
    """Attach every posting command to the root app (and the vendor sandboxes to `sandbox_app`)."""
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(killswitch_app, name="killswitch")
    app.command("post")(post)
    app.command("reconcile-targets")(reconcile_targets_command)
    app.command("export-beancount")(beancount_command)
    app.command("chaos")(chaos_command)
    if sandbox_app is not None:
        sandbox_app.command("qbo")(sandbox_qbo)
        sandbox_app.command("xero")(sandbox_xero)
