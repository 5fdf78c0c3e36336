"""Billing runs against the Parquet lake: read what one (entity, month) needs, bill it, write it.

Used by the Dagster billing asset and jobs and by `pm-accounting billing run`. A month is billed
only when every day of it has been materialised (a billing document, once issued, never changes, so
issuing from half a month would freeze half an invoice). Billing as of a date (`through` inside the
month) issues the documents whose issue date is on or before it (weekly periods that have ended,
on-demand requests, retainer invoices and credits dated up to it) and needs only the days up to it.
The partition's own earlier output is read back and kept: a later run (another through date, the
month close, a re-run) issues only what is new and rewrites exactly the same files when nothing
changed.

Files written (writer "billing", partition key = first day of the month): the billing tables of
`contracts/billing.py`, the journal (`ledger.journal_entries`, `journal_lines`, `line_sources`),
and `<data>/exports/<entity>/credits/credits-<YYYY-MM>.csv`: the credits status for the PM side.

On-demand billing requests are persisted in `<data>/landing/<entity>/billing_requests/requests.csv`
(`record_request`); the run of the month that contains a request's `through` date issues it.
"""

from __future__ import annotations

import calendar
import csv
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import TABLES, polars_schema
from pm_accounting_pipeline.core.billing.inputs import read_requests
from pm_accounting_pipeline.core.billing.run import BillingInputs, BillingResult, bill_period
from pm_accounting_pipeline.core.billing.state import STATE_TABLES, BillingState
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.fx import RateProvider
from pm_accounting_pipeline.lib.expenses import read_billables
from pm_accounting_pipeline.lib.lake import Lake

WRITER = "billing"
MARKER_TABLE = "ledger.billing_documents"


class IncompletePeriodError(RuntimeError):
    """Billing was asked for a month (or a month through a date) whose days are not all materialised."""


@dataclass(frozen=True)
class PartitionRun:
    entity: str
    month: date
    result: BillingResult
    credits_file: Path | None


def month_bounds(month: date) -> tuple[date, date]:
    start = month.replace(day=1)
    return start, start.replace(day=calendar.monthrange(start.year, start.month)[1])


def days_of(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def billed_months(lake: Lake, entity: str) -> set[date]:
    """Months billing has run for (its documents file exists, even if empty)."""
    folder = lake.table_dir(MARKER_TABLE) / entity
    if not folder.is_dir():
        return set()
    out = set()
    for p in folder.glob(f"*.{WRITER}.parquet"):
        try:
            out.add(date.fromisoformat(p.name.split(".")[0]))
        except ValueError:
            continue
    return out


def read_state(lake: Lake, entity: str, months: set[date]) -> BillingState:
    """The billing tables of the given months of an entity."""
    parts = [(entity, m.isoformat()) for m in sorted(months)]
    if not parts:
        return BillingState.empty()
    return BillingState.from_tables({t: lake.read(t, parts, writer=WRITER) for t in STATE_TABLES.values()})


def _payments(lake: Lake, entity: str) -> pl.DataFrame:
    """Customer payments (`ledger.payments`, written by the payments step) of the entity, if any."""
    if "ledger.payments" not in TABLES:
        return pl.DataFrame()
    frame = lake.read("ledger.payments")
    return frame.filter(pl.col("entity") == entity) if "entity" in frame.columns else frame


REQUESTS_FILE = "requests.csv"
REQUEST_COLUMNS = ("request_id", "customer_ref", "date", "requested_by", "note")


def request_id(customer_ref: str, through: date) -> str:
    """The id of a request to bill `customer_ref` through `through`: the same request twice is one."""
    return f"{customer_ref}-{through.isoformat()}"


def record_request(
    data_dir: Path,
    mapping: MappingDocument,
    customer_ref: str,
    through: date,
    requested_by: str | None = None,
    note: str | None = None,
) -> tuple[str, str, bool]:
    """Append a request to bill an on-demand client through a date to its entity's request table;
    returns (entity, request id, whether it was new). Raises ValueError for a customer that is not
    an on-demand client of the mapping document."""
    client = next((c for c in mapping.clients if c.customer_ref == customer_ref), None)
    if client is None:
        raise ValueError(f"no client with customer_ref {customer_ref!r} in the mapping document")
    if client.billing_cycle != "on_demand":
        raise ValueError(
            f"{customer_ref} is billed {client.billing_cycle}; only on_demand clients are billed on request"
        )
    target = Path(data_dir) / "landing" / client.entity / "billing_requests" / REQUESTS_FILE
    rid = request_id(customer_ref, through)
    known: set[str] = set()
    if target.exists():
        with target.open(newline="", encoding="utf8") as fh:
            known = {row.get("request_id", "") for row in csv.DictReader(fh)}
    if rid in known:
        return client.entity, rid, False
    target.parent.mkdir(parents=True, exist_ok=True)
    new_file = not target.exists()
    with target.open("a", newline="", encoding="utf8") as fh:
        writer = csv.writer(fh)
        if new_file:
            writer.writerow(REQUEST_COLUMNS)
        writer.writerow([rid, customer_ref, through.isoformat(), requested_by or "", note or ""])
    return client.entity, rid, True


def run_partition(
    lake: Lake,
    data_dir: Path,
    mapping: MappingDocument,
    entity: str,
    month: date,
    provider: RateProvider,
    through: date | None = None,
) -> PartitionRun:
    """Bill one (entity, month) from the lake and write its partition; see the module docstring.
    `through`: bill as of this date of the month (None or the month's last day: the month close)."""
    m0, m1 = month_bounds(month)
    t = m1 if through is None else through
    if not m0 <= t <= m1:
        raise ValueError(f"through {t} is not a day of {m0:%Y-%m}")
    missing = [
        d
        for d in days_of(m0, t)
        if not lake.path("staging.fx_billables", entity, d.isoformat(), "fx").exists()
    ]
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5])
        upto = f" through {t}" if t < m1 else ""
        raise IncompletePeriodError(
            f"billing {entity} {m0:%Y-%m}{upto} would freeze documents while {len(missing)} day(s) are not "
            f"materialised ({shown}{', ...' if len(missing) > 5 else ''}); run the daily layers first"
        )
    done = billed_months(lake, entity) - {m0}
    prior = read_state(lake, entity, done)
    frozen = read_state(lake, entity, {m0}) if m0 in billed_months(lake, entity) else BillingState.empty()
    days = [d for m in sorted(done | {m0}) for d in days_of(*month_bounds(m)) if m != m0 or d <= t]
    # Time and billable expenses (lib/expenses.py).
    fx = read_billables(lake, [(entity, d.isoformat()) for d in days])
    key = [(entity, m0.isoformat())]
    base_invoices = lake.read("ledger.invoices", key, writer="invoice")
    base_lines = lake.read("ledger.journal_lines", key, writer="invoice").filter(
        pl.col("entry_type") == "invoice"
    )
    landing = Path(data_dir) / "landing" / entity
    result = bill_period(
        BillingInputs(
            mapping=mapping,
            entity=entity,
            period_start=m0,
            period_end=m1,
            fx=fx,
            base_invoices=base_invoices,
            base_lines=base_lines,
            prior=prior,
            frozen=frozen,
            provider=provider,
            payments=_payments(lake, entity),
            credits=read_requests(landing / "credits", "credits"),
            refunds=read_requests(landing / "refunds", "refunds"),
            billing_requests=read_requests(landing / "billing_requests", "billing_requests"),
            through=None if t == m1 else t,
        )
    )
    assert_balanced(result.ledger.lines)
    write_partition(lake, entity, m0, result)
    return PartitionRun(
        entity, m0, result, export_credits(Path(data_dir), entity, m0, result.state.credit_status)
    )


def write_partition(lake: Lake, entity: str, month: date, result: BillingResult) -> None:
    """Write the partition's billing tables and journal (one file per table, writer "billing")."""
    wanted = [(entity, month.isoformat())]
    key = pl.lit(month.isoformat())
    for table, frame in result.state.tables().items():
        lake.write_partitions(table, frame, wanted, WRITER, key)
    ledger = result.ledger
    lake.write_partitions("ledger.journal_entries", ledger.entries, wanted, WRITER, key)
    lake.write_partitions("ledger.journal_lines", ledger.lines, wanted, WRITER, key)
    lake.write_partitions("ledger.line_sources", ledger.line_sources, wanted, WRITER, key)


def export_credits(data_dir: Path, entity: str, month: date, credit_status: pl.DataFrame) -> Path | None:
    """The month's credits status as CSV for the PM side (which source entries were credited)."""
    target = Path(data_dir) / "exports" / entity / "credits" / f"credits-{month:%Y-%m}.csv"
    if credit_status.height == 0:
        if target.exists():
            target.unlink()
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    columns = [c for c in polars_schema("ledger.credit_status").names() if c != "issued_in"]
    credit_status.select(columns).sort("credited_document_number", "source_system", "source_id").write_csv(
        tmp
    )
    tmp.replace(target)
    return target
