"""Mapping-document section `expenses`: how expenses are re-invoiced and booked.

```yaml
expenses:
  markup_pct: 10            # default markup on billable expenses, in percent (0 = at cost)
  require_known_category: true
  categories:               # expense categories as the source names them
    - {name: Travel, item: "Travel expenses"}
    - {name: Mileage, item: Mileage, markup_pct: 0}
    - {name: Meals, billable_by_default: false}
  client_markup_pct:        # per-client overrides (client names as in `clients`)
    Globex Corporation: 5
  recharge_account: null    # default: the entity's expense_recharge account
  cost_account: "5100"      # project expense cost
  reimbursement_account: "2150"  # reimbursements payable (employee expenses clearing)
```

Markup precedence: the client's override, else the category's, else the default. The markup is
`round(expense x markup_pct / 100)` to the currency's minor unit with `rounding.money_mode`.
References (clients) are checked by `ExpensesField` so a wrong name is reported with its location.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _pct(v: Decimal | None) -> Decimal | None:
    if v is None:
        return v
    if not Decimal(0) <= v <= Decimal(1000):
        raise ValueError("markup_pct is a percentage between 0 and 1000 (10 for 10%)")
    if v != v.quantize(Decimal("0.0001")):
        raise ValueError("markup_pct has at most 4 decimal places")
    return v


class ExpenseCategory(_Model):
    """A source expense category: its invoice item, markup override and default billability."""

    name: str = Field(min_length=1)
    item: str | None = None
    markup_pct: Decimal | None = None
    billable_by_default: bool = True

    _p = field_validator("markup_pct")(classmethod(lambda cls, v: _pct(v)))


class ExpenseSettings(_Model):
    markup_pct: Decimal = Decimal("0")
    categories: list[ExpenseCategory] = []
    require_known_category: bool = False
    client_markup_pct: dict[str, Decimal] = {}
    recharge_account: str | None = None
    cost_account: str = "5100"
    reimbursement_account: str = "2150"

    _p = field_validator("markup_pct")(classmethod(lambda cls, v: _pct(v)))

    @field_validator("client_markup_pct")
    @classmethod
    def _client_pcts(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for name, pct in v.items():
            try:
                _pct(pct)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return v

    @field_validator("categories")
    @classmethod
    def _unique(cls, v: list[ExpenseCategory]) -> list[ExpenseCategory]:
        from pm_accounting_pipeline.core.clean import normalise_text

        keys = [normalise_text(c.name) for c in v]
        dups = sorted({c.name for c, k in zip(v, keys, strict=True) if keys.count(k) > 1})
        if dups:
            raise ValueError(f"categories read as the same name: {dups}")
        return v


def check_expenses(v: ExpenseSettings, info: ValidationInfo) -> ExpenseSettings:
    items = info.data.get("clients")
    if items is not None:
        names = {c.name for c in items}
        unknown = sorted(n for n in v.client_markup_pct if n not in names)
        if unknown:
            raise ValueError("; ".join(f"client_markup_pct.{n}: unknown client {n!r}" for n in unknown))
    return v


ExpensesField = Annotated[
    ExpenseSettings, AfterValidator(check_expenses), Field(exclude_if=lambda v: v == ExpenseSettings())
]
