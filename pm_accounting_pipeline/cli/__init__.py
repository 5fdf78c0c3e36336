"""The `pm-accounting` command line: the non-UI way into the pipeline.

Global options choose the mapping document (`--config` / PM_ACCOUNTING_CONFIG) and the data folder
(`--data-dir` / PM_ACCOUNTING_DATA, default ./data).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pm_accounting_pipeline.lib import settings

# Dagster flags single-run backfill policies and multi-partition mappings as beta; the CLI's
# output is for people running the pipeline, not for API stability notices.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview).*")

app = typer.Typer(
    name="pm-accounting",
    help="Project-management and time-tracking data to balanced, posted accounting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="PM_ACCOUNTING_CONFIG", help="Mapping document (YAML)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="PM_ACCOUNTING_DATA", help="Data folder (default ./data)."),
    ] = None,
) -> None:
    if data_dir is not None:
        os.environ["PM_ACCOUNTING_DATA"] = str(data_dir.resolve())
    if config is not None:
        os.environ["PM_ACCOUNTING_CONFIG"] = str(config.resolve())


def _mapping_or_exit(path: Path):
    from pm_accounting_pipeline.config.schema import MappingDocumentError, load_mapping

    try:
        return load_mapping(path)
    except MappingDocumentError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command("validate-config")
def validate_config(
    path: Annotated[Path | None, typer.Argument(help="Mapping document; default: the active one.")] = None,
) -> None:
    """Validate a mapping document; exit 2 with every problem and its location if it is not usable."""
    target = path or settings.config_path()
    mapping = _mapping_or_exit(target)
    console.print(
        f"[green]{target}: valid[/green] (version {mapping.version}, rule version {mapping.rule_version}; "
        f"{len(mapping.entities)} entities, {len(mapping.clients)} clients, {len(mapping.projects)} projects, "
        f"{len(mapping.tasks)} tasks, {len(mapping.rate_cards)} rate cards)"
    )
    assignment = mapping.entity_assignment
    console.print(
        f"entity assignment: {' > '.join(assignment.precedence)} "
        f"({len(assignment.projects)} project(s) assigned explicitly, "
        f"{len(mapping.group.people)} people with an employer in group.people)"
    )


@app.command()
def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="PM export files to land.", exists=True, dir_okay=False)
    ],
    entity: Annotated[str, typer.Option("--entity", help="Legal entity the files belong to.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="harvest_csv | toggl_csv | canonical_csv | canonical_json (default: detect)."
        ),
    ] = None,
) -> None:
    """Validate PM export files and land them in <data>/landing/<entity>/, saying what was accepted and why not."""
    from rich.table import Table

    from pm_accounting_pipeline.extract.landing import land_files

    mapping = _mapping_or_exit(settings.config_path())
    if entity not in mapping.entity_ids:
        err.print(f"[red]unknown entity {entity!r}; the mapping document lists {mapping.entity_ids}[/red]")
        raise typer.Exit(2)
    results = land_files(list(files), entity, settings.data_dir(), mapping, fmt=fmt)
    table = Table(show_edge=False)
    for col in ("file", "format", "status", "rows", "ok", "quarantined", "entities", "reasons / error"):
        table.add_column(col)
    failed = False
    others: set[str] = set()
    for r in results:
        failed |= r.error is not None
        reasons = r.error or ", ".join(f"{k}: {v}" for k, v in sorted(r.quarantined_by_reason.items()))
        others |= {e for e in r.rows_by_entity if e not in (entity, "quarantined")}
        table.add_row(
            r.source.name,
            r.format or "-",
            r.status,
            str(r.rows_in),
            str(r.rows_ok),
            str(r.rows_quarantined),
            ", ".join(f"{e} {n}" for e, n in r.rows_by_entity.items()) or "-",
            reasons,
        )
    console.print(table)
    if others:
        # entity_assignment in the mapping document: rows go to the entity billing them.
        console.print(
            f"rows belong to {sorted(others)} too (entity_assignment); run those entities as well: "
            "`pm-accounting run` without --entity runs them all",
            soft_wrap=True,
        )
    for r in results:
        if r.error is not None:
            err.print(f"rejected: {r.error}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _parse_date(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{flag} {value!r} is not a date (YYYY-MM-DD)[/red]")
        raise typer.Exit(2) from None


def run_and_report(
    start: date,
    end: date,
    entities: list[str] | None,
    before_summary: Callable[[], bool] | None = None,
) -> bool:
    """Run the range, then `before_summary` (more work on the results; False = it failed), then print
    the summary; returns whether everything succeeded."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from pm_accounting_pipeline.lib import summary
    from pm_accounting_pipeline.lib.runner import run_range
    from pm_accounting_pipeline.lib.warehouse import init_warehouse

    paths = settings.paths()
    cfg = settings.config_path()
    from pm_accounting_pipeline.core.billing.cycles import cycle_of

    cycles = cycle_of(_mapping_or_exit(cfg))
    status = init_warehouse(paths)
    console.print(f"warehouse: {status.message}")
    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:

        def report(job: str, done: int, total: int) -> None:
            if job not in tasks:
                tasks[job] = progress.add_task(job, total=total)
            progress.update(tasks[job], completed=done, total=total)

        outcome = run_range(paths.data_dir, cfg, start, end, entities, progress=report)
    extra_ok = before_summary() if before_summary is not None and outcome.success else True
    figures = summary.collect(paths, outcome.start, outcome.end, outcome.entities, cycles)
    summary.render(console, outcome, figures, paths)
    if not outcome.success:
        err.print(
            "[red]some steps or blocking checks failed; see the Dagster UI (make dev) for the run logs[/red]"
        )
    return outcome.success and extra_ok


def _on_demand_request(customer_ref: str, through: date) -> bool:
    """What `pm-accounting billing run --client REF --through DATE` does (the same command function),
    printing its first lines (the request and what it issued) rather than the month's document list."""
    from pm_accounting_pipeline.cli import billing

    console.print(f"on-demand request: pm-accounting billing run --client {customer_ref} --through {through}")
    code = 0
    with billing.console.capture() as captured:
        try:
            billing.billing_run(
                month=None, entity=None, client=customer_ref, through=through.isoformat(), by="demo"
            )
        except typer.Exit as exc:
            code = exc.exit_code
    lines = captured.get().splitlines()
    table = next((k for k, line in enumerate(lines) if "┃" in line), len(lines))
    for line in lines[:table]:
        console.print(f"  {line.strip()}", markup=False, highlight=False, soft_wrap=True)
    return code == 0


@app.command()
def run(
    start: Annotated[str, typer.Option("--start", help="First work date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last work date (YYYY-MM-DD).")],
    entity: Annotated[
        list[str] | None, typer.Option("--entity", help="Only these entities (repeatable).")
    ] = None,
) -> None:
    """Materialise the (day x entity) partitions of a date range in process as one backfill, bill the
    complete months in it, refresh analytics and print a summary."""
    ok = run_and_report(_parse_date(start, "--start"), _parse_date(end, "--end"), entity or None)
    raise typer.Exit(0 if ok else 1)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the demo data generator.")] = 42,
    entries: Annotated[
        int | None, typer.Option(help="Number of time entries (default: natural volume).")
    ] = None,
) -> None:
    """Generate the demo dataset, land it, run the whole pipeline for all demo partitions, summarise."""
    from pm_accounting_pipeline.demo.expenses import write_expense_csvs
    from pm_accounting_pipeline.demo.generator import (
        DemoConfig,
        generate,
        write_approvals,
        write_harvest_csvs,
    )
    from pm_accounting_pipeline.extract.landing import land_files

    paths = settings.paths()
    cfg = DemoConfig(seed=seed, entries=entries)
    with console.status("generating demo data"):
        ds = generate(cfg)
        mapping_path = paths.data_dir / "mapping.yaml"
        paths.data_dir.mkdir(parents=True, exist_ok=True)
        mapping_path.write_text(ds.mapping_yaml, encoding="utf-8")
        os.environ["PM_ACCOUNTING_CONFIG"] = str(mapping_path)
        exports = write_harvest_csvs(ds, paths.data_dir / "exports", cfg)
        expense_exports = write_expense_csvs(ds, paths.data_dir / "exports", cfg)
        # The PM tool's approval log of the approved entries and expenses (core/approvals.py reads it).
        write_approvals(ds, [*exports, *expense_exports], paths.landing)
    console.print(
        f"demo data: {ds.time_entries.height:,} time entries in {len(exports)} Harvest CSV exports, "
        f"{len(expense_exports)} Harvest expense CSV export(s)"
    )
    exports = [*exports, *expense_exports]
    mapping = _mapping_or_exit(settings.config_path())
    landed = 0
    for ent in mapping.entity_ids:
        files = sorted(p for p in exports if p.parent.name == ent)
        results = land_files(files, ent, paths.data_dir, mapping)
        landed += sum(1 for r in results if r.error is None)
    console.print(f"landed {landed} file(s) into {paths.landing}")
    # One on-demand client asks for an invoice through a day of the first month, as a user would.
    request = ds.on_demand_request
    ok = run_and_report(
        cfg.start, cfg.end, None, (lambda: _on_demand_request(*request)) if request is not None else None
    )
    raise typer.Exit(0 if ok else 1)


@app.command()
def warehouse(
    force: Annotated[bool, typer.Option(help="Rewrite the views even if unchanged.")] = False,
) -> None:
    """Create or refresh the analysts' DuckDB views in <data>/warehouse.duckdb."""
    from pm_accounting_pipeline.lib.warehouse import init_warehouse

    status = init_warehouse(settings.paths(), force=force)
    console.print(status.message)
    if status.state == "locked":
        raise typer.Exit(1)


sandbox_app = typer.Typer(
    help="Local, faithful sandboxes of the vendor APIs (loopback only).", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("harvest")
def sandbox_harvest(
    token: Annotated[
        str, typer.Option("--token", envvar="HARVEST_TOKEN", help="Bearer token clients must send.")
    ],
    account_id: Annotated[str, typer.Option("--account-id", help="Harvest-Account-Id clients must send.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    rate_limit: Annotated[
        str, typer.Option(help="Requests per window, e.g. 100/15s (Harvest's own).")
    ] = "100/15s",
    entries: Annotated[
        int | None, typer.Option(help="Time entries to serve (default: the demo data).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the demo data and of injected faults.")] = 42,
    host: Annotated[str, typer.Option(help="Interface to bind (keep it on loopback).")] = "127.0.0.1",
) -> None:
    """A local Harvest API v2 over real HTTP: envelope, cursor pagination, filters, auth, 429 +
    Retry-After, and a control API under /_sandbox/ to edit, approve, delete entries and inject faults."""
    from pm_accounting_pipeline.sandboxes.harvest import run_forever

    console.print(
        f"Harvest sandbox on http://{host}:{port} (account {account_id}, limit {rate_limit}); Ctrl-C stops it"
    )
    run_forever(
        host=host,
        port=port,
        token=token,
        account_id=account_id,
        rate_limit=rate_limit,
        entries=entries,
        seed=seed,
    )


def _register_subcommands() -> None:
    from pm_accounting_pipeline.cli import billing, group, posting

    posting.register(app, sandbox_app)
    group.register(app, sandbox_app)
    app.add_typer(billing.clients_app, name="clients")
    app.add_typer(billing.billing_app, name="billing")


_register_subcommands()


def entrypoint() -> None:  # pragma: no cover - console script shim
    sys.exit(app())
