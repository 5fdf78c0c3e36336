"""Hand-built inputs for the group tests: a two-entity mapping with group sections, a rate
provider serving round, hand-picked rates, and the daily chain and invoices run over them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument, parse_mapping
from pm_accounting_pipeline.core.fx_providers import CompositeRateProvider, ManualOverrides
from pm_accounting_pipeline.core.invoicing import InvoiceBatch, build_invoices
from pm_accounting_pipeline.core.pipeline import DailyResult, run_daily
from pm_accounting_pipeline_tests.test_core.builders import make_raw, mapping_dict

# EUR legs (units per euro) picked so every expectation is easy to compute by hand.
EURO_LEGS: dict[date, dict[str, str]] = {
    date(2026, 3, 2): {"USD": "1.10", "GBP": "0.85", "JPY": "160", "KWD": "0.34"},
    date(2026, 3, 31): {"USD": "1.12", "GBP": "0.86", "JPY": "162", "KWD": "0.35"},
    date(2026, 4, 15): {"USD": "1.15", "GBP": "0.88", "JPY": "165", "KWD": "0.36"},
    date(2026, 4, 30): {"USD": "1.13", "GBP": "0.87", "JPY": "164", "KWD": "0.35"},
}


def legs_frame(legs: dict[date, dict[str, str]] = EURO_LEGS) -> pl.DataFrame:
    rows = [(d, "EUR", c, Decimal(r), None) for d, by in legs.items() for c, r in by.items()]
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date,
            "from_currency": pl.String,
            "to_currency": pl.String,
            "rate": pl.Decimal(28, 12),
            "note": pl.String,
        },
        orient="row",
    )


def hand_rates(fallback: str = "last_published", max_staleness_days: int = 31) -> CompositeRateProvider:
    """Manual EUR legs only (no ECB): cross rates through EUR of the rates above."""
    return CompositeRateProvider(
        precedence=("manual",),
        market={},
        manual=ManualOverrides(legs_frame()),
        fallback=fallback,  # type: ignore[arg-type]
        max_staleness_days=max_staleness_days,
    )


def group_mapping_dict(**sections: Any) -> dict[str, Any]:
    data = mapping_dict()
    data["entities"].append({"id": "de", "name": "Example GmbH", "functional_currency": "EUR"})
    data["rate_cards"].append({"id": "de-cost", "cost_rate": "50", "currency": "EUR"})
    data.update(sections)
    return data


def group_mapping(**sections: Any) -> MappingDocument:
    return parse_mapping(group_mapping_dict(**sections))


def daily(rows: list[dict[str, Any]], mapping: MappingDocument, provider: object) -> DailyResult:
    return run_daily(make_raw(rows), mapping, provider)  # type: ignore[arg-type]


def invoices_for(
    fx: pl.DataFrame, mapping: MappingDocument, entity: str, start: date, end: date
) -> InvoiceBatch:
    return build_invoices(fx, mapping, entity, start, end)


def write_csv(path: Path, header: str, *rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
