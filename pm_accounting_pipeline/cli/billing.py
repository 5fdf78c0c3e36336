"""`pm-accounting clients ...` (the client review list and decisions) and `pm-accounting billing ...`
(issue a month's billing documents or an on-demand client's invoice, list documents with their open
balances, retainer balances, unbilled work).

Both are typer apps registered in `cli/__init__.py`; they read the active mapping document and data
folder from the global options (`--config`, `--data-dir`) through `lib.settings`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from pm_accounting_pipeline.lib import settings

clients_app = typer.Typer(
    help="Client de-duplication: the review list of near-duplicate spellings and the decisions on them.",
    no_args_is_help=True,
)
billing_app = typer.Typer(
    help="Billing documents: issue a month (or an on-demand client), list documents and open balances, "
    "retainer balances, unbilled work.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _mapping():
    from pm_accounting_pipeline.config.schema import MappingDocumentError, load_mapping

    try:
        return load_mapping(settings.config_path())
    except MappingDocumentError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _lake():
    from pm_accounting_pipeline.lib.lake import Lake

    return Lake(settings.paths().lake)


def _table(frame: pl.DataFrame, title: str | None = None) -> Table:
    table = Table(title=title, show_edge=False)
    for col in frame.columns:
        table.add_column(col, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    return table


def _review_list(entity: str | None) -> pl.DataFrame:
    from pm_accounting_pipeline.core.dedupe import review_list

    log = _lake().read("staging.client_matches")
    pending = review_list(log, _mapping())
    return pending.filter(pl.col("entity") == entity) if entity else pending


@clients_app.command("review")
def clients_review(
    entity: Annotated[str | None, typer.Option("--entity", help="Only this entity.")] = None,
) -> None:
    """List client spellings waiting for a decision: suggested client, score, runner-up, rows affected."""
    pending = _review_list(entity)
    if pending.height == 0:
        console.print("no client spelling waits for review")
        return
    shown = pending.select(
        "entity",
        "source_name",
        "suggested_client",
        "score",
        "runner_up",
        "runner_up_score",
        "rows",
        "last_seen",
    )
    console.print(_table(shown, title="Client spellings waiting for review"))
    console.print(
        "accept with [bold]pm-accounting clients accept NAME[/bold] (or --client OTHER), "
        "reject with [bold]pm-accounting clients reject NAME[/bold]"
    )


def _writable_config() -> Path:
    path = settings.config_path()
    if path.resolve() == settings.EXAMPLE_MAPPING.resolve():
        err.print(
            "[red]the active mapping document is the packaged example; point --config (or "
            "PM_ACCOUNTING_CONFIG) at your deployment's mapping document to record decisions[/red]"
        )
        raise typer.Exit(2)
    return path


def _record(name: str, decision: str, client: str | None, by: str | None, note: str | None) -> None:
    from pm_accounting_pipeline.config.schema import MappingDocumentError
    from pm_accounting_pipeline.core.dedupe import record_decision

    path = _writable_config()
    mapping = _mapping()
    pending = _review_list(None).filter(pl.col("source_name").str.to_lowercase() == name.lower())
    score = pending["score"][0] if pending.height else None
    if decision == "merge" and client is None:
        if pending.height == 0 or pending["suggested_client"][0] is None:
            err.print(f"[red]{name!r} is not on the review list; name the client with --client[/red]")
            raise typer.Exit(2)
        client = str(pending["suggested_client"][0])
    if client is not None and client not in {c.name for c in mapping.clients}:
        err.print(f"[red]unknown client {client!r}; use a client name of the mapping document[/red]")
        raise typer.Exit(2)
    try:
        record_decision(
            path,
            name,
            decision,
            client=client,
            score=score,
            decided_by=by,
            decided_on=date.today(),
            note=note,
        )
    except MappingDocumentError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    what = f"merged into {client!r}" if decision == "merge" else "kept apart"
    console.print(
        f"{name!r} {what}; recorded in {path} (client_matching.decisions). Re-run the daily layers of "
        "the days it appears in to bill its rows."
    )


@clients_app.command("accept")
def clients_accept(
    name: Annotated[str, typer.Argument(help="The spelling as it appears in the source.")],
    client: Annotated[
        str | None, typer.Option("--client", help="Client to merge into (default: the suggestion).")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who decided.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
) -> None:
    """Merge a spelling into a client from now on (recorded in the mapping document)."""
    _record(name, "merge", client, by, note)


@clients_app.command("reject")
def clients_reject(
    name: Annotated[str, typer.Argument(help="The spelling as it appears in the source.")],
    by: Annotated[str | None, typer.Option("--by", help="Who decided.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
) -> None:
    """Keep a spelling apart: never merged automatically; its rows stay quarantined until mapped."""
    _record(name, "keep_apart", None, by, note)


def _month(value: str) -> date:
    try:
        return (
            date.fromisoformat(f"{value}-01") if len(value) == 7 else date.fromisoformat(value).replace(day=1)
        )
    except ValueError:
        err.print(f"[red]--month {value!r} is not a month (YYYY-MM)[/red]")
        raise typer.Exit(2) from None


@billing_app.command("run")
def billing_run(
    month: Annotated[str | None, typer.Option("--month", help="Billing month (YYYY-MM).")] = None,
    entity: Annotated[
        list[str] | None, typer.Option("--entity", help="Only these entities (repeatable).")
    ] = None,
    client: Annotated[
        str | None,
        typer.Option("--client", help="Bill this on-demand client (customer_ref) now; needs --through."),
    ] = None,
    through: Annotated[
        str | None,
        typer.Option(
            "--through",
            help="Bill as of this date (YYYY-MM-DD): only documents issued on or before it. With "
            "--client: bill the client's unbilled work up to this date.",
        ),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="With --client: who asks.")] = None,
) -> None:
    """Issue the month's billing documents from the lake (after `pm-accounting run` billed the month);
    with --through, as of that date (weekly periods that have ended, requests, retainers and credits
    dated up to it); with --client and --through, record an on-demand billing request and issue it."""
    from pm_accounting_pipeline.core.fx import EcbOfflineProvider
    from pm_accounting_pipeline.lib.billing import IncompletePeriodError, record_request, run_partition

    mapping = _mapping()
    through_date: date | None = None
    if through is not None:
        try:
            through_date = date.fromisoformat(through)
        except ValueError:
            err.print(f"[red]--through {through!r} is not an ISO date (YYYY-MM-DD)[/red]")
            raise typer.Exit(2) from None
    if client is not None:
        if through_date is None or month is not None:
            err.print("[red]an on-demand run needs --client and --through (and no --month)[/red]")
            raise typer.Exit(2)
        try:
            ent_id, rid, new = record_request(settings.data_dir(), mapping, client, through_date, by)
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        console.print(f"request {rid} {'recorded' if new else 'already recorded'} for {ent_id}")
        month, entity = f"{through_date:%Y-%m}", [ent_id]
    if month is None and through_date is not None:
        month = f"{through_date:%Y-%m}"
    if month is None:
        err.print("[red]give --month YYYY-MM, or --client REF --through YYYY-MM-DD[/red]")
        raise typer.Exit(2)
    first = _month(month)
    if through_date is not None and through_date.replace(day=1) != first:
        err.print(f"[red]--through {through_date} is not a day of --month {first:%Y-%m}[/red]")
        raise typer.Exit(2)
    entities = entity or mapping.entity_ids
    unknown = sorted(set(entities) - set(mapping.entity_ids))
    if unknown:
        err.print(
            f"[red]unknown entit{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {mapping.entity_ids}[/red]"
        )
        raise typer.Exit(2)
    provider = EcbOfflineProvider()
    failed = False
    for ent in entities:
        try:
            run = run_partition(_lake(), settings.data_dir(), mapping, ent, first, provider, through_date)
        except IncompletePeriodError as exc:
            err.print(f"[red]{exc}[/red]")
            if client is not None:
                err.print(
                    f"the request stays recorded and is issued by the {first:%Y-%m} billing run "
                    f"(or a run through {through_date} or later)"
                )
            failed = True
            continue
        docs = run.result.state.documents
        as_of = f", as of {through_date}" if through_date is not None else ""
        console.print(
            f"{ent} {first:%Y-%m}: {run.result.new_documents} new document(s), {docs.height} in the month, "
            f"{run.result.ledger.entries.height} billing entr{'y' if run.result.ledger.entries.height == 1 else 'ies'}"
            f"{as_of}"
        )
        if docs.height:
            console.print(
                _table(
                    docs.select(
                        "document_number",
                        "document_type",
                        "customer_ref",
                        "period_start",
                        "period_end",
                        "currency",
                        "total",
                        "amount_due",
                    )
                )
            )
        rejected = run.result.state.rejections
        if rejected.height:
            console.print(
                _table(rejected.select("input", "source_file", "source_row", "reason", "detail"), "rejected")
            )
        if run.credits_file:
            console.print(f"credits status for the PM side: {run.credits_file}")
    raise typer.Exit(1 if failed else 0)


@billing_app.command("documents")
def billing_documents(
    entity: Annotated[str | None, typer.Option("--entity", help="Only this entity.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only documents with an open balance.")] = False,
) -> None:
    """Issued documents with what is still open on each (after credits, retainers, refunds, payments)."""
    from pm_accounting_pipeline.contracts.layers import TABLES
    from pm_accounting_pipeline.core.billing.balances import open_items

    lake = _lake()
    payments = lake.read("ledger.payments") if "ledger.payments" in TABLES else pl.DataFrame()
    items = open_items(lake.read("ledger.billing_documents"), lake.read("ledger.settlements"), payments)
    if entity:
        items = items.filter(pl.col("entity") == entity)
    if open_only:
        items = items.filter(pl.col("open_minor") != 0)
    console.print(
        _table(
            items.select(
                "document_number",
                "document_type",
                "customer_ref",
                "currency",
                "issue_date",
                "due_date",
                "open",
            )
        )
    )


@billing_app.command("retainers")
def billing_retainers(
    entity: Annotated[str | None, typer.Option("--entity", help="Only this entity.")] = None,
) -> None:
    """Retainer balance per client and currency: issued, drawn down, left."""
    from pm_accounting_pipeline.core.billing.balances import retainer_balances

    balances = retainer_balances(_lake().read("ledger.retainer_movements"))
    if entity:
        balances = balances.filter(pl.col("entity") == entity)
    console.print(_table(balances))


@billing_app.command("unbilled")
def billing_unbilled(
    entity: Annotated[str | None, typer.Option("--entity", help="Only this entity.")] = None,
) -> None:
    """Billable work not billed yet, per client and currency (waiting for its period's billing run,
    or for an on-demand request: `billing run --client REF --through DATE`)."""
    from pm_accounting_pipeline.lib.warehouse import connect_in_memory

    con = connect_in_memory(_lake())
    try:
        frame = con.sql("SELECT * FROM analytics.unbilled_work").pl()
    finally:
        con.close()
    if entity:
        frame = frame.filter(pl.col("entity") == entity)
    if frame.height == 0:
        console.print("no billable work waits to be billed")
        return
    console.print(_table(frame, title="Unbilled billable work"))
