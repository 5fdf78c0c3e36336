"""Group commands: exchange rates (refresh the ECB feed, look a rate up), the month-end close of
the group layer, the on-demand allocation re-run, the consolidated trial balance, and the ECB
sandbox. `register(app, sandbox_app)` hangs them under the root `pm-accounting` app.
"""

from __future__ import annotations

import calendar
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pm_accounting_pipeline.lib import settings

console = Console()
err = Console(stderr=True)

fx_app = typer.Typer(help="Exchange rates: ECB feed, manual overrides, contract rates.", no_args_is_help=True)
group_app = typer.Typer(
    help="Group close: payments and realised FX, intercompany, IAS 21 revaluation, allocations, capex, "
    "eliminations.",
    no_args_is_help=True,
)


def _mapping():
    from pm_accounting_pipeline.config.schema import MappingDocumentError, load_mapping

    try:
        return load_mapping(settings.config_path())
    except MappingDocumentError as exc:
        err.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None


def _month(value: str) -> date:
    try:
        return (
            date.fromisoformat(f"{value}-01") if len(value) == 7 else date.fromisoformat(value).replace(day=1)
        )
    except ValueError:
        err.print(f"[red]--period {value!r} is not a month (YYYY-MM)[/red]")
        raise typer.Exit(2) from None


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{name} {value!r} is not a date (YYYY-MM-DD)[/red]")
        raise typer.Exit(2) from None


# --- plain functions (also used by tests) ------------------------------------------------------------


def run_group_job(
    job_name: str,
    months: list[date],
    entities: list[str] | None,
    data_dir: Path,
    config_path: Path,
    instance=None,
) -> tuple[bool, list[str]]:
    """Run a group job in process over (month x entity) partitions as one run per month range;
    returns (success, failed steps and blocking checks)."""
    import dagster as dg

    from pm_accounting_pipeline.config.schema import load_mapping
    from pm_accounting_pipeline.defs.group import group_definitions
    from pm_accounting_pipeline.defs.partitions import monthly_key, range_tags
    from pm_accounting_pipeline.lib.instance import get_instance
    from pm_accounting_pipeline.lib.lake import clear_memo

    mapping = load_mapping(config_path)
    chosen = sorted(entities) if entities else mapping.entity_ids
    unknown = sorted(set(chosen) - set(mapping.entity_ids))
    if unknown:
        raise ValueError(f"unknown entity {unknown}; the mapping document lists {mapping.entity_ids}")
    job = group_definitions(data_dir, config_path).resolve_job_def(job_name)
    instance = instance or get_instance(data_dir)
    clear_memo()
    groups = [chosen] if chosen == mapping.entity_ids else [[e] for e in chosen]
    failures: list[str] = []
    ok = True
    for group in groups:
        tags = range_tags(monthly_key(min(months), group[0]), monthly_key(max(months), group[-1]))
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        ok &= result.success
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.STEP_FAILURE:
                failures.append(f"step {event.step_key}")
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                data = event.asset_check_evaluation_data
                if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
                    failures.append(f"check {data.asset_key.to_user_string()}:{data.check_name}")
    return ok and not failures, failures


def month_list(start: date, end: date) -> list[date]:
    months, m = [], start.replace(day=1)
    while m <= end:
        months.append(m)
        m = m.replace(day=calendar.monthrange(m.year, m.month)[1])
        m = date.fromordinal(m.toordinal() + 1)
    return months


# --- fx ----------------------------------------------------------------------------------------------


@fx_app.command("refresh-ecb")
def refresh_ecb(
    url: Annotated[str | None, typer.Option(help="Feed URL (default: exchange_rates.ecb_feed.url).")] = None,
) -> None:
    """Download ECB's reference-rate XML and merge it into the cache in the data folder (conditional
    request, retries with backoff); later runs read the cache, never the network."""
    from pm_accounting_pipeline.core.fx_providers import EcbFeedProvider, FxSourceError

    mapping = _mapping()
    feed = mapping.exchange_rates.ecb_feed
    provider = EcbFeedProvider(
        url=url or feed.url,
        cache_path=settings.data_dir() / feed.cache_file,
        timeout_seconds=feed.timeout_seconds,
        max_attempts=feed.max_attempts,
    )
    try:
        done = provider.refresh()
    except FxSourceError as exc:
        err.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    state = "not modified" if done.not_modified else f"{done.fetched_days} day(s) fetched"
    console.print(
        f"ECB feed {provider.url}: {state} in {done.attempts} attempt(s); cache {provider.cache_path} holds "
        f"{done.cached_days} day(s), {done.first} .. {done.last}",
        soft_wrap=True,
    )


@fx_app.command("rate")
def show_rate(
    from_currency: Annotated[str, typer.Argument(help="From currency (ISO 4217).")],
    to_currency: Annotated[str, typer.Argument(help="To currency.")],
    on: Annotated[str, typer.Argument(help="Date (YYYY-MM-DD).")],
    client: Annotated[
        str | None, typer.Option("--client", help="Customer ref (enables contract rates).")
    ] = None,
    rate_type: Annotated[str, typer.Option("--type", help="spot | monthly_average")] = "spot",
) -> None:
    """Show the rate the configured sources give: value, direction, publication date, source, type."""
    from pm_accounting_pipeline.core.fx_providers import FxSourceError, provider_for

    mapping = _mapping()
    try:
        provider = provider_for(mapping, settings.data_dir())
    except FxSourceError as exc:
        err.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    got = provider.lookup(from_currency.upper(), to_currency.upper(), _day(on, "date"), client, rate_type)
    if got is None:
        err.print(
            f"[red]no rate for {from_currency}->{to_currency} on or near {on} from {provider.name}[/red]"
        )
        raise typer.Exit(1)
    rate, rate_date, source, kind = got
    console.print(
        f"{rate} {to_currency.upper()} per 1 {from_currency.upper()} ({from_currency.upper()}->{to_currency.upper()}), "
        f"published {rate_date}, source {source}, type {kind}",
        soft_wrap=True,
    )


# --- group close ------------------------------------------------------------------------------------


Entities = Annotated[list[str] | None, typer.Option("--entity", help="Only these entities (repeatable).")]


@group_app.command("close")
def close(
    period: Annotated[str, typer.Option("--period", help="First month (YYYY-MM).")],
    until: Annotated[
        str | None, typer.Option("--until", help="Last month (YYYY-MM); default --period.")
    ] = None,
    entity: Entities = None,
) -> None:
    """Run the group layer for (month x entity) partitions: payments and realised FX, intercompany
    recharges, revaluation (reversed next month), allocations, capex and eliminations."""
    start = _month(period)
    months = month_list(start, _month(until) if until else start)
    ok, failures = run_group_job(
        "group_month_end", months, entity, settings.data_dir(), settings.config_path()
    )
    _report(ok, failures, months)
    consolidated_tb(period=period, until=until)
    raise typer.Exit(0 if ok else 1)


@group_app.command("rerun-allocations")
def rerun_allocations(
    period: Annotated[str, typer.Option("--period", help="Month (YYYY-MM).")],
    entity: Entities = None,
) -> None:
    """Re-run shared-cost allocations (and capex after them) for a past month: with changed rules or
    inputs, the active allocation is reversed and the new one posted, both linked; otherwise nothing
    changes."""
    import polars as pl

    from pm_accounting_pipeline.lib.lake import Lake

    month = _month(period)
    ok, failures = run_group_job(
        "allocation_rerun", [month], entity, settings.data_dir(), settings.config_path()
    )
    _report(ok, failures, [month])
    lake = Lake(settings.paths().lake)
    rows = lake.read("ledger.allocations").filter(pl.col("period") == month)
    if entity:
        rows = rows.filter(pl.col("entity").is_in(entity))
    summary = rows.group_by("entity", "pool", "generation", "rule_version", "status").agg(
        pl.len().alias("rows"), pl.col("allocated_minor").sum().alias("allocated_minor")
    )
    _print(summary.sort("entity", "pool", "generation"), "allocations")
    raise typer.Exit(0 if ok else 1)


@group_app.command("consolidated-tb")
def consolidated_tb(
    period: Annotated[str, typer.Option("--period", help="First month (YYYY-MM).")],
    until: Annotated[str | None, typer.Option("--until", help="Last month (YYYY-MM).")] = None,
) -> None:
    """The consolidated trial balance in the reporting currency (all entities plus eliminations)."""
    import polars as pl

    from pm_accounting_pipeline.core.intercompany import consolidated_trial_balance
    from pm_accounting_pipeline.lib.lake import Lake

    start = _month(period)
    end_month = _month(until) if until else start
    end = end_month.replace(day=calendar.monthrange(end_month.year, end_month.month)[1])
    lake = Lake(settings.paths().lake)
    window = pl.col("posting_date").is_between(start, end)
    tb = consolidated_trial_balance(
        lake.read("ledger.journal_lines").filter(window), lake.read("ledger.elimination_lines").filter(window)
    )
    _print(tb, f"consolidated trial balance {start:%Y-%m}..{end:%Y-%m} (minor units, debit - credit)")


def _report(ok: bool, failures: list[str], months: list[date]) -> None:
    span = f"{months[0]:%Y-%m}" + (f"..{months[-1]:%Y-%m}" if len(months) > 1 else "")
    if ok:
        console.print(f"[green]{span}: done[/green]")
    else:
        err.print(f"[red]{span}: failed: {', '.join(failures) or 'see the run logs'}[/red]")


def _print(frame, title: str) -> None:
    table = Table(title=title, show_edge=False)
    for col in frame.columns:
        table.add_column(col)
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


def sandbox_ecb(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8767,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Last published day (YYYY-MM-DD).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback only).")] = "127.0.0.1",
) -> None:
    """A local ECB reference-rate server (eurofxref daily / hist-90d / hist XML) with ETag, faults and
    a control API under /_sandbox/."""
    from pm_accounting_pipeline.sandboxes.ecb import run_forever

    console.print(f"ECB sandbox on http://{host}:{port}/stats/eurofxref/eurofxref-hist.xml; Ctrl-C stops it")
    run_forever(host, port, _day(as_of, "--as-of") if as_of else None)


def register(app: typer.Typer, sandbox_app: typer.Typer | None = None) -> None:
    """Attach `fx` and `group` to the root app (and the ECB sandbox to `sandbox_app`)."""
    app.add_typer(fx_app, name="fx")
    app.add_typer(group_app, name="group")
    if sandbox_app is not None:
        sandbox_app.command("ecb")(sandbox_ecb)
