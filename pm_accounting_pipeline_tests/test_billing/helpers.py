"""Billing test helpers: mappings with billing sections, in-memory billing of a month, and `Books`,
a temporary lake driven like the pipeline (daily partitions, ledger/invoices, billing)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument, parse_mapping
from pm_accounting_pipeline.core.billing.inputs import Requests, empty_rows, rejection_frame
from pm_accounting_pipeline.core.billing.run import BillingInputs, BillingResult, bill_period
from pm_accounting_pipeline.core.billing.state import BillingState
from pm_accounting_pipeline.core.checks import assert_balanced, trial_balance
from pm_accounting_pipeline.core.fx import EcbOfflineProvider
from pm_accounting_pipeline.core.invoicing import build_invoices
from pm_accounting_pipeline.core.pipeline import run_daily
from pm_accounting_pipeline.lib.billing import month_bounds, run_partition
from pm_accounting_pipeline.lib.lake import Lake
from pm_accounting_pipeline_tests.test_core.builders import make_raw, mapping_dict

MARCH = date(2026, 3, 1)
APRIL = date(2026, 4, 1)
MAY = date(2026, 5, 1)
PROVIDER = EcbOfflineProvider()


def mapping_with(**sections: Any) -> MappingDocument:
    """The core tests' mapping (US 8% tax, UK 20%; Acme bills 150 USD/h, Tokyo 12345 JPY/h) plus sections."""
    data = copy.deepcopy(mapping_dict())
    for key, value in sections.items():
        if key == "entity_tax":
            for ent in data["entities"]:
                ent["tax"] = {**ent.get("tax", {}), **value.get(ent["id"], {})}
        elif key == "extra_clients":
            data["clients"] += value
        elif key == "extra_projects":
            data["projects"] += value
        elif key == "extra_cards":
            data["rate_cards"] += value
        elif key in ("rounding",):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return parse_mapping(data)


def acme(source_id: str, hours: str, day: int, month: int = 3, **extra: Any) -> dict[str, Any]:
    return {"source_id": source_id, "hours_raw": hours, "work_date": date(2026, month, day), **extra}


def requests(kind: str, rows: list[dict[str, Any]] | None = None) -> Requests:
    """Typed credit or refund requests as `core.billing.inputs` produces them."""
    frame = empty_rows(kind)
    if rows:
        full = [
            {
                **{c: None for c in frame.columns},
                "source_file": "req.csv",
                "record": "{}",
                **r,
                "source_row": i,
            }
            for i, r in enumerate(rows, start=1)
        ]
        frame = pl.DataFrame(full, schema=frame.schema)
    return Requests(rows=frame, rejected=rejection_frame())


def bill_month(
    mapping: MappingDocument,
    raw_rows: list[dict[str, Any]],
    month: date,
    entity: str = "us",
    prior: BillingState | None = None,
    frozen: BillingState | None = None,
    payments: pl.DataFrame | None = None,
    credits: list[dict[str, Any]] | None = None,
    refunds: list[dict[str, Any]] | None = None,
) -> tuple[BillingResult, Any]:
    """Run the daily core over `raw_rows`, ledger/invoices for the month, then billing; the result
    and the invoice batch of ledger/invoices."""
    m0, m1 = month_bounds(month)
    daily = run_daily(make_raw(raw_rows), mapping, PROVIDER)
    base = build_invoices(daily.fx, mapping, entity, m0, m1)
    kwargs: dict[str, Any] = {}
    if payments is not None:
        kwargs["payments"] = payments
    result = bill_period(
        BillingInputs(
            mapping=mapping,
            entity=entity,
            period_start=m0,
            period_end=m1,
            fx=daily.fx,
            base_invoices=base.invoices,
            base_lines=base.lines,
            prior=prior or BillingState.empty(),
            frozen=frozen or BillingState.empty(),
            provider=PROVIDER,
            credits=requests("credits", credits),
            refunds=requests("refunds", refunds),
            **kwargs,
        )
    )
    assert_balanced(result.ledger.lines)
    return result, base


def doc(result: BillingResult, **where: Any) -> dict[str, Any]:
    hit = result.state.documents.filter(*[pl.col(k) == v for k, v in where.items()])
    assert hit.height == 1, f"expected one document for {where}, got {hit.height}"
    return hit.row(0, named=True)


def lines_of(result: BillingResult, number: str) -> list[tuple[str, str, int]]:
    """(line_type, description, amount_minor) of a document's lines, in line order."""
    d = doc(result, document_number=number)
    lines = result.state.lines.filter(pl.col("document_id") == d["document_id"]).sort("line_no")
    return list(lines.select("line_type", "description", "amount_minor").iter_rows())


def balances(
    lines: pl.DataFrame, entity: str = "us", basis: str = "transaction"
) -> dict[tuple[str, str], Decimal]:
    """(account, currency) -> balance (debit - credit) of an entity's journal lines."""
    tb = trial_balance(lines, basis).filter(pl.col("entity") == entity)  # type: ignore[arg-type]
    return {(a, c): Decimal(b) for a, c, b in tb.select("account", "currency", "balance").iter_rows()}


@dataclass
class Books:
    """A temporary lake run like the pipeline: daily partitions are (re)materialised from raw rows,
    ledger/invoices and billing per month; the journal is whatever the lake holds."""

    root: Path
    mapping: MappingDocument
    entity: str = "us"
    lake: Lake = field(init=False)

    def __post_init__(self) -> None:
        self.lake = Lake(self.root / "lake")

    def load(self, raw_rows: list[dict[str, Any]], months: list[date], through: date | None = None) -> None:
        """Materialise every day of `months` (up to `through`) from `raw_rows` (rows of other days
        are ignored)."""
        days = [d for m in months for d in _days(m) if through is None or d <= through]
        rows = [r for r in raw_rows if r["work_date"] in days]
        daily = run_daily(make_raw(rows), self.mapping, PROVIDER)
        wanted = [(self.entity, d.isoformat()) for d in days]
        fx = daily.fx.filter(pl.col("entity") == self.entity)
        self.lake.write_partitions(
            "staging.fx_billables", fx, wanted, "fx", pl.col("work_date").cast(pl.String)
        )
        led = daily.ledger
        key = pl.col("posting_date").cast(pl.String)
        self.lake.write_partitions("ledger.journal_entries", led.entries, wanted, "accrual", key)
        self.lake.write_partitions("ledger.journal_lines", led.lines, wanted, "accrual", key)
        dates = led.lines.select("line_id", "posting_date").unique("line_id")
        keyed = led.line_sources.join(dates, on="line_id", how="left")
        self.lake.write_partitions(
            "ledger.line_sources", led.line_sources, wanted, "accrual", keyed["posting_date"].cast(pl.String)
        )

    def invoice(self, month: date) -> Any:
        """ledger/invoices for the month, as the ledger asset writes it."""
        m0, m1 = month_bounds(month)
        fx = self.lake.read(
            "staging.fx_billables", [(self.entity, d.isoformat()) for d in _days(m0)], writer="fx"
        )
        batch = build_invoices(fx, self.mapping, self.entity, m0, m1)
        wanted = [(self.entity, m0.isoformat())]
        key = pl.lit(m0.isoformat())
        self.lake.write_partitions("ledger.journal_entries", batch.entries, wanted, "invoice", key)
        self.lake.write_partitions("ledger.journal_lines", batch.lines, wanted, "invoice", key)
        self.lake.write_partitions("ledger.line_sources", batch.line_sources, wanted, "invoice", key)
        self.lake.write_partitions("ledger.invoices", batch.invoices, wanted, "invoice", key)
        self.lake.write_partitions("ledger.invoice_lines", batch.invoice_lines, wanted, "invoice", key)
        return batch

    def bill(self, month: date, through: date | None = None) -> BillingResult:
        return run_partition(self.lake, self.root, self.mapping, self.entity, month, PROVIDER, through).result

    def close(self, month: date) -> BillingResult:
        self.invoice(month)
        return self.bill(month)

    def journal(self) -> pl.DataFrame:
        lines = self.lake.read("ledger.journal_lines")
        assert_balanced(lines)
        return lines

    def table(self, name: str) -> pl.DataFrame:
        return self.lake.read(name)


def _days(month: date) -> list[date]:
    m0, m1 = month_bounds(month)
    return [date.fromordinal(o) for o in range(m0.toordinal(), m1.toordinal() + 1)]


def acme_cycle_data(cycle: str) -> dict[str, Any]:
    """The test mapping (as a dict) with Acme billed on `cycle` (monthly, weekly or on_demand)."""
    data = copy.deepcopy(mapping_dict())
    for client in data["clients"]:
        if client["customer_ref"] == "C-ACME":
            client["billing_cycle"] = cycle
    return data


def acme_cycle_mapping(cycle: str) -> MappingDocument:
    return parse_mapping(acme_cycle_data(cycle))


def write_env(tmp_path: Path, data: dict[str, Any]) -> dict[str, str]:
    """Write the mapping under tmp_path; the environment a CLI call there needs."""
    import yaml

    config = tmp_path / "mapping.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return {"PM_ACCOUNTING_CONFIG": str(config), "PM_ACCOUNTING_DATA": str(tmp_path)}


def invoke_billing_cli(monkeypatch: Any, args: list[str], env: dict[str, str]) -> Any:
    """Run `pm-accounting billing ARGS` in process with wide consoles; the CliRunner result."""
    import typer
    from rich.console import Console
    from typer.testing import CliRunner

    import pm_accounting_pipeline.cli.billing as billing_cli

    monkeypatch.setattr(billing_cli, "console", Console(width=220))
    monkeypatch.setattr(billing_cli, "err", Console(width=220, stderr=True))
    app = typer.Typer()
    app.add_typer(billing_cli.billing_app, name="billing")
    return CliRunner().invoke(app, ["billing", *args], env=env)
