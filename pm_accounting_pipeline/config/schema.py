"""Schema of the mapping document and its loader.

The document is what finance people read and change: entities, chart of accounts, clients,
projects, tasks, rate cards, rounding, tax and approval policy. Loading it validates everything and
reports every problem with its location in the file (`clients[3].currency: unknown currency 'XYZ'`).
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pm_accounting_pipeline.config.billing import (
    BillablePercentagesField,
    BillingField,
    BillingSettings,
    ClientMatching,
    ClientMatchingField,
    DiscountsField,
    RetainersField,
)
from pm_accounting_pipeline.config.entities import EntityAssignment, EntityAssignmentField
from pm_accounting_pipeline.config.expenses import ExpenseSettings, ExpensesField
from pm_accounting_pipeline.config.group import (
    AllocationSettings,
    AllocationsField,
    CapexField,
    CapexSettings,
    ExchangeRates,
    ExchangeRatesField,
    GroupField,
    GroupSettings,
)
from pm_accounting_pipeline.core.money import is_currency
from pm_accounting_pipeline.core.rounding import MoneyRounding, TimeRounding

SUPPORTED_VERSIONS = (1,)


class MappingDocumentError(ValueError):
    """A mapping document that cannot be used; `problems` lists `location: message` strings."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Currency = Annotated[str, Field(min_length=3, max_length=3)]


def _currency(v: str) -> str:
    if not is_currency(v):
        raise ValueError(f"unknown currency {v!r} (expected an ISO 4217 code such as USD, EUR, JPY)")
    return v


class ChartOfAccounts(_Model):
    """Account codes per role. Entities may override any of them."""

    unbilled_receivables: str = "1210"
    accounts_receivable: str = "1200"
    service_revenue: str = "4000"
    tax_payable: str = "2200"
    cost_of_services: str = "5000"
    payroll_clearing: str = "2100"
    expense_recharge: str = "4100"
    discounts: str = "4900"
    retainer_liability: str = "2300"
    write_off: str = "6900"
    fx_gain_loss: str = "7900"
    intercompany_receivable: str = "1500"
    intercompany_payable: str = "2500"


class TaxSettings(_Model):
    rate: Decimal = Decimal("0")
    jurisdiction: str = ""
    pricing: Literal["exclusive", "inclusive"] = "exclusive"

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: Decimal) -> Decimal:
        if not Decimal(0) <= v < Decimal(1):
            raise ValueError("tax rate is a fraction between 0 and 1 (0.20 for 20%)")
        return v


class HarvestCsvSettings(_Model):
    """How this account formats its Harvest CSV exports (an account setting in Harvest)."""

    date_format: Literal["YYYY-MM-DD", "MM/DD/YYYY", "DD/MM/YYYY", "DD.MM.YYYY", "auto"] = "auto"
    decimal_separator: Literal[".", ","] = "."


class Entity(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")]
    name: str
    functional_currency: Currency
    tax: TaxSettings = TaxSettings()
    harvest_account_ids: list[str] = []
    invoice_number_format: str = "{entity}-{period}-{seq:04d}"
    accounts: dict[str, str] = {}
    harvest_csv: HarvestCsvSettings = HarvestCsvSettings()

    _c = field_validator("functional_currency")(classmethod(lambda cls, v: _currency(v)))

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(ChartOfAccounts.model_fields))
        if unknown:
            raise ValueError(
                f"unknown account role(s) {unknown}; known: {sorted(ChartOfAccounts.model_fields)}"
            )
        return v

    @field_validator("invoice_number_format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        try:
            v.format(entity="X", period="202601", year=2026, month=1, seq=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"invoice_number_format {v!r} may use only {{entity}}, {{period}}, {{year}}, {{month}}, {{seq}}: {exc}"
            ) from exc
        if "{seq" not in v:
            raise ValueError("invoice_number_format must contain {seq} so numbers are unique")
        return v


class Client(_Model):
    """A PM-side client and the accounting customer it maps to.

    Matched by `source_id` when the source carries one, else by normalised name; `aliases` are
    other spellings that should map to the same customer.
    """

    name: str
    customer_ref: str
    entity: str
    currency: Currency
    source_id: str | None = None
    aliases: list[str] = []
    tax_profile: Literal["standard", "exempt", "zero_rated", "reverse_charge"] = "standard"
    payment_terms_days: int = Field(30, ge=0, le=365)
    billing_cycle: Literal["monthly", "weekly", "on_demand"] = "monthly"
    require_approval: bool | None = None
    # Approved work without an approver's name is held (core/approvals.py); None = approval.require_approver.
    require_approver: bool | None = Field(None, exclude_if=lambda v: v is None)

    _c = field_validator("currency")(classmethod(lambda cls, v: _currency(v)))


class Project(_Model):
    """A PM-side project mapped to a customer job; matched by code, else by (client, name)."""

    name: str
    client: str
    code: str | None = None
    customer_job: str
    billable: bool = True
    billing: Literal["time_and_materials", "fixed_fee"] = "time_and_materials"


class Task(_Model):
    name: str
    item: str
    revenue_account: str | None = None
    billable_by_default: bool = True


class RateCard(_Model):
    """A bill and/or cost rate; the most specific card valid on the work date wins."""

    id: str
    bill_rate: Decimal | None = None
    cost_rate: Decimal | None = None
    currency: Currency | None = None
    client: str | None = None
    project: str | None = None
    task: str | None = None
    person: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    _c = field_validator("currency")(classmethod(lambda cls, v: v if v is None else _currency(v)))

    @model_validator(mode="after")
    def _check(self) -> RateCard:
        if self.bill_rate is None and self.cost_rate is None:
            raise ValueError("a rate card needs bill_rate, cost_rate or both")
        for r in (self.bill_rate, self.cost_rate):
            if r is not None and r < 0:
                raise ValueError("rates cannot be negative")
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


class Rounding(_Model):
    time_increment_minutes: int = Field(0, ge=0, le=60)
    time_mode: TimeRounding = TimeRounding.NEAREST
    minimum_minutes: int = Field(0, ge=0, le=480)
    money_mode: MoneyRounding = MoneyRounding.HALF_UP
    money_level: Literal["line", "invoice"] = "line"
    use_source_rounded_hours: bool = True


class Approval(_Model):
    require_approval: bool = True
    # Hold approved work whose approver is unknown (held_no_approver) until a feed names one.
    require_approver: bool = Field(False, exclude_if=lambda v: not v)


class Fx(_Model):
    provider: Literal["ecb_offline"] = "ecb_offline"
    fallback: Literal["last_published"] = "last_published"


class Limits(_Model):
    """Sanity limits for cleaning: beyond them a row is quarantined as absurd."""

    max_hours_per_entry: Decimal = Decimal("24")


class PostingTarget(_Model):
    """One accounting system the ledger is posted to, and how ledger codes map onto its references.

    Secrets never live here: `token_env` names the environment variable that holds the bearer token.
    """

    name: Literal["general_ledger", "qbo", "xero"]
    enabled: bool = True
    base_url: str | None = None
    token_env: str | None = None
    companies: dict[str, str] = {}
    accounts: dict[str, str] = {}
    customers: dict[str, str] = {}
    items: dict[str, str] = {}
    requests_per_minute: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1, le=50)


class Posting(_Model):
    """Posting to accounting targets; `enabled: false` is the deploy-time kill switch."""

    enabled: bool = True
    targets: list[PostingTarget] = [PostingTarget(name="general_ledger")]
    max_attempts: int = Field(8, ge=1, le=100)

    @model_validator(mode="after")
    def _unique(self) -> Posting:
        names = [t.name for t in self.targets]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate posting target(s) {dups}")
        return self


class MappingDocument(_Model):
    version: int
    name: str = "default"
    reporting_currency: Currency = "USD"
    start_date: date
    accounts: ChartOfAccounts = ChartOfAccounts()
    entities: list[Entity]
    clients: list[Client] = []
    projects: list[Project] = []
    tasks: list[Task] = []
    rate_cards: list[RateCard] = []
    rounding: Rounding = Rounding()
    approval: Approval = Approval()
    fx: Fx = Fx()
    limits: Limits = Limits()
    posting: Posting = Posting()
    # Group sections (config/group.py); they come last so they can check references to the above.
    exchange_rates: ExchangeRatesField = ExchangeRates()
    group: GroupField = GroupSettings()
    allocations: AllocationsField = AllocationSettings()
    capex: CapexField = CapexSettings()
    # Which legal entity each raw row belongs to (config/entities.py); after `group` (people).
    entity_assignment: EntityAssignmentField = EntityAssignment()
    # Billing sections (config/billing.py): client matching, billing policy, partial billing,
    # discounts and retainers.
    client_matching: ClientMatchingField = ClientMatching()
    billing: BillingField = BillingSettings()
    billable_percentages: BillablePercentagesField = []
    discounts: DiscountsField = []
    retainers: RetainersField = []
    # Expenses (config/expenses.py): markup, categories and accounts of re-invoiced expenses.
    expenses: ExpensesField = ExpenseSettings()

    _c = field_validator("reporting_currency")(classmethod(lambda cls, v: _currency(v)))

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"unsupported mapping document version {v}; this release reads {SUPPORTED_VERSIONS}"
            )
        return v

    @model_validator(mode="after")
    def _references(self) -> MappingDocument:
        problems: list[str] = []
        if not self.entities:
            problems.append("entities: at least one legal entity is required")
        ids = [e.id for e in self.entities]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            problems.append(f"entities: duplicate entity id {dup!r}")
        accounts = [(a, e.id) for e in self.entities for a in e.harvest_account_ids]
        for acc in sorted({a for a, _ in accounts if [x for x, _ in accounts].count(a) > 1}):
            owners = sorted({e for a, e in accounts if a == acc})
            problems.append(
                f"entities: Harvest account {acc!r} is listed under more than one entity {owners}"
            )
        client_names = {c.name for c in self.clients}
        for i, c in enumerate(self.clients):
            if c.entity not in ids:
                problems.append(f"clients[{i}].entity: unknown entity {c.entity!r} (known: {ids})")
        refs = [c.customer_ref for c in self.clients]
        for dup in sorted({r for r in refs if refs.count(r) > 1}):
            problems.append(f"clients: duplicate customer_ref {dup!r}")
        for i, p in enumerate(self.projects):
            if p.client not in client_names:
                problems.append(f"projects[{i}].client: unknown client {p.client!r}")
        codes = [p.code for p in self.projects if p.code]
        for dup in sorted({c for c in codes if codes.count(c) > 1}):
            problems.append(f"projects: duplicate project code {dup!r}")
        card_ids = [r.id for r in self.rate_cards]
        for dup in sorted({c for c in card_ids if card_ids.count(c) > 1}):
            problems.append(f"rate_cards: duplicate id {dup!r}")
        for i, r in enumerate(self.rate_cards):
            if r.client is not None and r.client not in client_names:
                problems.append(f"rate_cards[{i}].client: unknown client {r.client!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- helpers used by the core -------------------------------------------------------------
    @property
    def entity_ids(self) -> list[str]:
        return sorted(e.id for e in self.entities)

    def entity(self, entity_id: str) -> Entity:
        for e in self.entities:
            if e.id == entity_id:
                return e
        raise KeyError(f"unknown entity {entity_id!r}; known: {self.entity_ids}")

    def account(self, entity_id: str, role: str) -> str:
        ent = self.entity(entity_id)
        return ent.accounts.get(role) or getattr(self.accounts, role)

    @property
    def fingerprint(self) -> str:
        """A short content hash recorded on every derived row as the mapping/rule version."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    @property
    def rule_version(self) -> str:
        return f"v{self.version}-{self.fingerprint}"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def parse_mapping(data: object, source: str = "<mapping>") -> MappingDocument:
    if not isinstance(data, dict):
        raise MappingDocumentError(source, ["(document): expected a mapping of sections at the top level"])
    try:
        return MappingDocument.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling against the reference in docs/mapping-document.md)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            if not err["loc"]:
                problems.extend(m if ":" in m else f"(document): {m}" for m in msg.split("; "))
                continue
            problems.append(f"{_loc(err['loc'])}: {msg}")
        raise MappingDocumentError(source, problems) from None


_LOADED: dict[tuple[str, int, int], MappingDocument] = {}


def load_mapping(path: str | Path) -> MappingDocument:
    """Load and validate a mapping document; raise MappingDocumentError naming every problem.

    A run asks for the document once per asset; the validated (frozen) document is kept per file
    path, modification time and size, so an edited file is always read again.
    """
    p = Path(path)
    if not p.exists():
        raise MappingDocumentError(str(p), ["(document): file not found"])
    st = p.stat()
    stamp = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if stamp not in _LOADED:
        if len(_LOADED) >= 32:
            _LOADED.clear()
        _LOADED[stamp] = _load_mapping(p)
    return _LOADED[stamp]


def _load_mapping(p: Path) -> MappingDocument:
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        raise MappingDocumentError(
            str(p), [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_mapping(data, str(p))
