"""Mapping-document sections for the group: exchange-rate sources, entities working for each other
(intercompany), period-end revaluation, shared-cost allocations and capitalisable work.

Each section validates itself; references to entities, clients and projects elsewhere in the
document are checked by the `*_FIELD` annotated types, which the top-level `MappingDocument` uses
so that a wrong reference is reported with its location like every other problem.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pm_accounting_pipeline.core.money import is_currency

ENTITY_ID = r"^[a-z][a-z0-9_]{0,15}$"
RateSourceName = Literal["contract", "manual", "ecb_feed", "ecb_offline"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _currency(v: str | None) -> str | None:
    if v is not None and not is_currency(v):
        raise ValueError(f"unknown currency {v!r} (expected an ISO 4217 code such as USD, EUR, JPY)")
    return v


def _period(valid_from: date | None, valid_to: date | None) -> None:
    if valid_from and valid_to and valid_to < valid_from:
        raise ValueError("valid_to is before valid_from")


def _duplicates(values: list[str]) -> list[str]:
    return sorted({v for v in values if values.count(v) > 1})


# --- exchange rates ---------------------------------------------------------------------------------


class ContractRate(_Model):
    """A rate agreed with a client: units of `to_currency` per one `from_currency` (the inverse
    pair is served as 1 / rate), for conversions of that client's work within the validity dates."""

    id: str
    client: str
    contract: str | None = None
    from_currency: str
    to_currency: str
    rate: Decimal
    valid_from: date | None = None
    valid_to: date | None = None

    _c = field_validator("from_currency", "to_currency")(classmethod(lambda cls, v: _currency(v)))

    @model_validator(mode="after")
    def _check(self) -> ContractRate:
        if self.rate <= 0:
            raise ValueError("a contract rate must be positive")
        if self.from_currency == self.to_currency:
            raise ValueError("a contract rate needs two different currencies")
        _period(self.valid_from, self.valid_to)
        return self


class EcbFeed(_Model):
    """ECB's published reference-rate XML (daily, 90-day or full history), fetched over HTTP and
    cached in the data folder so runs are reproducible without the network."""

    url: str = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.xml"
    cache_file: str = "fx/ecb-feed.csv"
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_attempts: int = Field(4, ge=1, le=20)


class ExchangeRates(_Model):
    """Where rates come from and how gaps are filled; see docs/multi-currency-and-allocations.md."""

    precedence: list[RateSourceName] = ["contract", "manual", "ecb_offline"]
    fallback: Literal["last_published", "next_published", "none"] = "last_published"
    max_staleness_days: int = Field(7, ge=0, le=31)
    rate_type: Literal["spot", "monthly_average"] = "spot"
    overrides_file: str = "fx/overrides.csv"
    ecb_feed: EcbFeed = EcbFeed()
    contracts: list[ContractRate] = []

    @model_validator(mode="after")
    def _check(self) -> ExchangeRates:
        if not self.precedence:
            raise ValueError("precedence needs at least one rate source")
        dup = _duplicates(list(self.precedence))
        if dup:
            raise ValueError(f"precedence lists {dup} more than once")
        if not {"manual", "ecb_feed", "ecb_offline"} & set(self.precedence):
            raise ValueError(
                "precedence needs a market source (manual, ecb_feed or ecb_offline): contract rates "
                "cover only their clients' currency pairs"
            )
        dup = _duplicates([c.id for c in self.contracts])
        if dup:
            raise ValueError(f"duplicate contract rate id(s) {dup}")
        return self


# --- group: accounts, people, intercompany, revaluation -------------------------------------------


class GroupAccounts(_Model):
    """Account codes for the roles the group modules post to (the base chart of accounts in
    `accounts:` keeps receivables, revenue, cost, payroll clearing and intercompany balances)."""

    cash: str = "1000"
    capitalised_costs: str = "1800"
    accumulated_depreciation: str = "1890"
    intercompany_revenue: str = "4800"
    intercompany_cost: str = "5800"
    allocated_overhead: str = "5900"
    depreciation_expense: str = "6800"
    realised_fx_gain_loss: str = "7900"
    unrealised_fx_gain_loss: str = "7910"
    consolidation_difference: str = "7990"


class Employment(_Model):
    """The legal entity employing a person (matched by `person_id` when given, else by name)."""

    person: str
    person_id: str | None = None
    employer: str


class IntercompanyAgreement(_Model):
    """How `provider` (the employer) charges `recipient` (the billing entity) for its people's time.

    `cost`: the rated cost; `cost_plus`: cost x (1 + markup); `transfer_rate`: billed hours x
    transfer_rate in `currency`.
    """

    id: str
    provider: str
    recipient: str
    basis: Literal["cost", "cost_plus", "transfer_rate"]
    markup: Decimal | None = None
    transfer_rate: Decimal | None = None
    currency: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    _c = field_validator("currency")(classmethod(lambda cls, v: _currency(v)))

    @model_validator(mode="after")
    def _check(self) -> IntercompanyAgreement:
        if self.provider == self.recipient:
            raise ValueError("provider and recipient must be different entities")
        if self.basis == "cost_plus":
            if self.markup is None or not Decimal(0) <= self.markup <= Decimal(10):
                raise ValueError("basis cost_plus needs markup, a fraction between 0 and 10 (0.10 for 10%)")
        elif self.markup is not None:
            raise ValueError(f"markup applies only to basis cost_plus, not {self.basis}")
        if self.basis == "transfer_rate":
            if self.transfer_rate is None or self.transfer_rate <= 0 or self.currency is None:
                raise ValueError("basis transfer_rate needs a positive transfer_rate and its currency")
        elif self.transfer_rate is not None or self.currency is not None:
            raise ValueError(
                "transfer_rate and currency apply only to basis transfer_rate (cost bases recharge "
                "in the currency the cost was rated in)"
            )
        _period(self.valid_from, self.valid_to)
        return self


MONETARY_ROLES = ("accounts_receivable", "intercompany_receivable", "intercompany_payable")


class Revaluation(_Model):
    """IAS 21 period-end retranslation: which balances are monetary items."""

    monetary_roles: list[
        Literal["accounts_receivable", "intercompany_receivable", "intercompany_payable"]
    ] = list(MONETARY_ROLES)


class GroupSettings(_Model):
    consolidation_entity: Annotated[str, Field(pattern=ENTITY_ID)] = "group"
    accounts: GroupAccounts = GroupAccounts()
    entity_accounts: dict[str, dict[str, str]] = {}
    people: list[Employment] = []
    intercompany: list[IntercompanyAgreement] = []
    revaluation: Revaluation = Revaluation()

    @field_validator("entity_accounts")
    @classmethod
    def _roles(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for entity, roles in v.items():
            unknown = sorted(set(roles) - set(GroupAccounts.model_fields))
            if unknown:
                raise ValueError(
                    f"entity_accounts.{entity}: unknown group account role(s) {unknown}; "
                    f"known: {sorted(GroupAccounts.model_fields)}"
                )
        return v

    @model_validator(mode="after")
    def _check(self) -> GroupSettings:
        keys = [(p.person_id or "", p.person) for p in self.people]
        dup = sorted({f"{k[1]} ({k[0]})" if k[0] else k[1] for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"people: {dup} listed more than once")
        dup = _duplicates([a.id for a in self.intercompany])
        if dup:
            raise ValueError(f"intercompany: duplicate agreement id(s) {dup}")
        return self


# --- allocations and capex ------------------------------------------------------------------------


class AllocationPool(_Model):
    """A pool of shared cost of one entity, spread to projects by one driver.

    Cost rows join the pool by their `pool` column or, without one, by their GL account being in
    `accounts`. Drivers: `hours` (hours worked per project), `headcount` (distinct people per
    project), `usage` (quantities from the usage input), `revenue` (billable amount in the
    functional currency), `fixed` (the weights in `fixed_split`). `projects` restricts the
    receiving projects (customer_job or project code).
    """

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    entity: str
    description: str = ""
    accounts: list[str] = []
    driver: Literal["hours", "headcount", "usage", "revenue", "fixed"]
    work: Literal["all", "billable"] = "all"
    projects: list[str] = []
    fixed_split: dict[str, Decimal] = {}
    expense_account: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AllocationPool:
        if self.driver == "fixed":
            if not self.fixed_split:
                raise ValueError("driver fixed needs fixed_split (project -> weight)")
            bad = sorted(p for p, w in self.fixed_split.items() if w <= 0)
            if bad:
                raise ValueError(f"fixed_split weights must be positive: {bad}")
        elif self.fixed_split:
            raise ValueError(f"fixed_split applies only to driver fixed, not {self.driver}")
        return self


class AllocationSettings(_Model):
    """Shared-cost pools. `version` names the rules: re-running a period under another version
    reverses what was posted there and posts the new allocation, both linked."""

    version: str = "1"
    pools: list[AllocationPool] = []

    @model_validator(mode="after")
    def _check(self) -> AllocationSettings:
        dup = _duplicates([p.id for p in self.pools])
        if dup:
            raise ValueError(f"pools: duplicate pool id(s) {dup}")
        claimed = [(p.entity, a) for p in self.pools for a in p.accounts]
        dup_acc = sorted({f"{e}:{a}" for e, a in claimed if claimed.count((e, a)) > 1})
        if dup_acc:
            raise ValueError(f"pools: account(s) {dup_acc} claimed by more than one pool of the entity")
        return self

    @property
    def rule_version(self) -> str:
        """`alloc-<version>-<hash of the pools>`: recorded on every allocation row."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return f"alloc-{self.version}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


class CapexSettings(_Model):
    """Capitalisable work: the time cost of these projects (customer_job or code) and tasks is
    booked to `capitalised_costs` and depreciated straight-line over `useful_life_months`."""

    projects: list[str] = []
    tasks: list[str] = []
    useful_life_months: int = Field(36, ge=1, le=600)
    depreciation_start: Literal["next_month", "same_month"] = "next_month"


# --- references into the rest of the document -----------------------------------------------------


def _names(info: ValidationInfo, key: str, attr: str) -> set[str] | None:
    items = info.data.get(key)
    return None if items is None else {getattr(i, attr) for i in items}


def _project_keys(info: ValidationInfo) -> set[str] | None:
    projects = info.data.get("projects")
    if projects is None:
        return None
    return {p.customer_job for p in projects} | {p.code for p in projects if p.code}


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def check_exchange_rates(v: ExchangeRates, info: ValidationInfo) -> ExchangeRates:
    clients = _names(info, "clients", "name")
    if clients is not None:
        _raise(
            [
                f"contracts[{i}].client: unknown client {c.client!r}"
                for i, c in enumerate(v.contracts)
                if c.client not in clients
            ]
        )
    return v


def check_group(v: GroupSettings, info: ValidationInfo) -> GroupSettings:
    entities = _names(info, "entities", "id")
    if entities is None:
        return v
    known = sorted(entities)
    problems = []
    if v.consolidation_entity in entities:
        problems.append(
            f"consolidation_entity: {v.consolidation_entity!r} is a legal entity; eliminations need "
            "an id of their own"
        )
    for e in v.entity_accounts:
        if e not in entities:
            problems.append(f"entity_accounts.{e}: unknown entity (known: {known})")
    for i, p in enumerate(v.people):
        if p.employer not in entities:
            problems.append(f"people[{i}].employer: unknown entity {p.employer!r} (known: {known})")
    for i, a in enumerate(v.intercompany):
        for side in ("provider", "recipient"):
            if getattr(a, side) not in entities:
                problems.append(
                    f"intercompany[{i}].{side}: unknown entity {getattr(a, side)!r} (known: {known})"
                )
    _raise(problems)
    return v


def check_allocations(v: AllocationSettings, info: ValidationInfo) -> AllocationSettings:
    entities = _names(info, "entities", "id")
    projects = _project_keys(info)
    problems = []
    for i, p in enumerate(v.pools):
        if entities is not None and p.entity not in entities:
            problems.append(f"pools[{i}].entity: unknown entity {p.entity!r} (known: {sorted(entities)})")
        if projects is not None:
            for name in [*p.projects, *p.fixed_split]:
                if name not in projects:
                    problems.append(
                        f"pools[{i}]: unknown project {name!r} (use a customer_job or project code)"
                    )
    _raise(problems)
    return v


def check_capex(v: CapexSettings, info: ValidationInfo) -> CapexSettings:
    projects = _project_keys(info)
    tasks = _names(info, "tasks", "name")
    problems = []
    if projects is not None:
        problems += [f"projects: unknown project {p!r}" for p in v.projects if p not in projects]
    if tasks is not None:
        problems += [f"tasks: unknown task {t!r}" for t in v.tasks if t not in tasks]
    _raise(problems)
    return v


# A section left at its defaults is left out of dumps, so adding these sections did not change the
# rule version (content hash) of documents that do not use them.
ExchangeRatesField = Annotated[
    ExchangeRates, AfterValidator(check_exchange_rates), Field(exclude_if=lambda v: v == ExchangeRates())
]
GroupField = Annotated[
    GroupSettings, AfterValidator(check_group), Field(exclude_if=lambda v: v == GroupSettings())
]
AllocationsField = Annotated[
    AllocationSettings,
    AfterValidator(check_allocations),
    Field(exclude_if=lambda v: v == AllocationSettings()),
]
CapexField = Annotated[
    CapexSettings, AfterValidator(check_capex), Field(exclude_if=lambda v: v == CapexSettings())
]


def group_account(doc: Any, entity: str, role: str) -> str:
    """The account code of a group role for an entity (entity override, else the group default)."""
    group: GroupSettings = doc.group
    return group.entity_accounts.get(entity, {}).get(role) or getattr(group.accounts, role)
