"""Mapping-document sections for billing: client matching (fuzzy de-duplication and its review
decisions), billing policy (line grouping, tax level, corrections, credit memo numbers), partially
billable work, discounts and retainers.

Each section validates itself; references to clients, projects and tasks elsewhere in the document
are checked by the `*Field` annotated types that `MappingDocument` uses, so a wrong reference is
reported with its location like every other problem (`discounts: [2].client: unknown client 'X'`).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from pm_accounting_pipeline.core.money import minor_digits

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
TAX_PROFILES = ("standard", "exempt", "zero_rated", "reverse_charge")
Scorer = Literal["token_sort_ratio", "token_set_ratio", "ratio", "WRatio"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _period(valid_from: date | None, valid_to: date | None) -> None:
    if valid_from and valid_to and valid_to < valid_from:
        raise ValueError("valid_to is before valid_from")


def _duplicates(values: list[str]) -> list[str]:
    return sorted({v for v in values if values.count(v) > 1})


# --- client matching -------------------------------------------------------------------------------


class ClientDecision(_Model):
    """A person's verdict on a source spelling from the review list (`pm-accounting clients accept|reject`).

    `merge` maps the spelling to `client` from then on (like an alias); `keep_apart` keeps it from
    ever being merged automatically, so it stays unmapped until a client or alias is added for it.
    """

    name: str = Field(min_length=1)
    decision: Literal["merge", "keep_apart"]
    client: str | None = None
    score: float | None = Field(None, ge=0, le=100)
    decided_by: str | None = None
    decided_on: date | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ClientDecision:
        if self.decision == "merge" and not self.client:
            raise ValueError("a merge decision names the client the spelling belongs to (client: ...)")
        return self


class ClientMatching(_Model):
    """Fuzzy matching of client names that match no client, alias or source id exactly.

    Names are compared after normalisation (case, accents, punctuation, legal form) with the
    rapidfuzz `scorer` (0-100): at or above `high_threshold` the name is merged automatically,
    from `low_threshold` up to the high threshold it goes to the review list, below it stays apart.
    """

    enabled: bool = True
    scorer: Scorer = "token_sort_ratio"
    high_threshold: float = Field(92.0, ge=0, le=100)
    low_threshold: float = Field(80.0, ge=0, le=100)
    decisions: list[ClientDecision] = []

    @model_validator(mode="after")
    def _check(self) -> ClientMatching:
        if self.low_threshold > self.high_threshold:
            raise ValueError(
                f"low_threshold {self.low_threshold} is above high_threshold {self.high_threshold}"
            )
        dup = _duplicates([" ".join(d.name.casefold().split()) for d in self.decisions])
        if dup:
            raise ValueError(f"decisions: spelling(s) {dup} decided more than once")
        return self


# --- billing policy --------------------------------------------------------------------------------

DEFAULT_TAX_NOTES: dict[str, str] = {
    "exempt": "Exempt from tax.",
    "zero_rated": "Zero-rated supply.",
    "reverse_charge": "Reverse charge: the customer accounts for the tax.",
}


class BillingSettings(_Model):
    """How documents are composed and corrected; see docs/billing.md."""

    bill_by: Literal["project_task", "project", "task", "person"] = "project_task"
    tax_level: Literal["invoice", "line"] = "invoice"
    corrections: Literal["credit_memo", "next_invoice"] = "credit_memo"
    credit_memo_number_format: str = "{entity}-CN-{period}-{seq:04d}"
    bank_account: str = "1000"
    tax_notes: dict[str, str] = DEFAULT_TAX_NOTES

    @model_validator(mode="after")
    def _check(self) -> BillingSettings:
        fmt = self.credit_memo_number_format
        try:
            fmt.format(entity="X", period="202601", year=2026, month=1, seq=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"credit_memo_number_format {fmt!r} may use only {{entity}}, {{period}}, {{year}}, "
                f"{{month}}, {{seq}}: {exc}"
            ) from exc
        if "{seq" not in fmt:
            raise ValueError("credit_memo_number_format must contain {seq} so numbers are unique")
        unknown = sorted(set(self.tax_notes) - set(TAX_PROFILES))
        if unknown:
            raise ValueError(f"tax_notes: unknown tax profile(s) {unknown}; known: {list(TAX_PROFILES)}")
        return self


# --- partially billable work -----------------------------------------------------------------------


class BillablePercentage(_Model):
    """Bill only `percent` of the (rounded) hours of a task, a person, or a person on a task.

    The most specific entry valid on the work date wins: person and task, then person, then task.
    Cost is always on the full hours.
    """

    task: str | None = None
    person: str | None = None
    percent: Decimal
    valid_from: date | None = None
    valid_to: date | None = None

    @model_validator(mode="after")
    def _check(self) -> BillablePercentage:
        if self.task is None and self.person is None:
            raise ValueError("a billable percentage applies to a task, a person or both")
        if not Decimal(0) <= self.percent <= Decimal(100):
            raise ValueError("percent is a percentage between 0 and 100 (50 for half the hours)")
        if self.percent != self.percent.quantize(Decimal("0.01")):
            raise ValueError("percent has at most two decimals (33.33)")
        _period(self.valid_from, self.valid_to)
        return self


# --- discounts -------------------------------------------------------------------------------------


class Discount(_Model):
    """A percentage or fixed discount for a client, one of its projects, or one invoice.

    Booked as a negative invoice line on the `discounts` account, before tax. Project discounts
    apply to the project's lines; client and invoice discounts to what remains after them.
    """

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    scope: Literal["client", "project", "invoice"]
    client: str
    project: str | None = None
    period: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] | None = None
    kind: Literal["percentage", "fixed"]
    value: Decimal
    valid_from: date | None = None
    valid_to: date | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Discount:
        if self.value <= 0:
            raise ValueError("value must be positive")
        if self.kind == "percentage" and self.value > 100:
            raise ValueError("a percentage discount is at most 100")
        if self.kind == "percentage" and self.value != self.value.quantize(Decimal("0.0001")):
            raise ValueError("a percentage discount has at most four decimals")
        if self.scope == "project" and not self.project:
            raise ValueError("scope project needs project (a customer_job or project code)")
        if self.scope != "project" and self.project:
            raise ValueError(f"project applies only to scope project, not {self.scope}")
        if self.scope == "invoice" and not self.period:
            raise ValueError("scope invoice needs period (YYYY-MM) naming the billing period")
        if self.scope != "invoice" and self.period:
            raise ValueError(f"period applies only to scope invoice, not {self.scope}")
        _period(self.valid_from, self.valid_to)
        return self

    def applies(self, period_start: date, period_end: date) -> bool:
        """Whether the discount applies to an invoice for the billing period [start, end]."""
        if self.scope == "invoice":
            return self.period == f"{period_start:%Y-%m}"
        if self.valid_from and self.valid_from > period_end:
            return False
        return not (self.valid_to and self.valid_to < period_end)


# --- retainers -------------------------------------------------------------------------------------


class Retainer(_Model):
    """A prepaid retainer: an invoice for `amount` on `issue_date` (monthly on the same day until
    `end_date` with `recurrence: monthly`) that credits the retainer liability; later invoices of
    the client in the same currency draw the balance down."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    client: str
    amount: Decimal
    issue_date: date
    recurrence: Literal["once", "monthly"] = "once"
    end_date: date | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Retainer:
        if self.amount <= 0:
            raise ValueError("amount must be positive")
        if self.recurrence == "once" and self.end_date is not None:
            raise ValueError("end_date applies only to recurrence monthly")
        if self.end_date is not None and self.end_date < self.issue_date:
            raise ValueError("end_date is before issue_date")
        return self

    def occurrences(self, start: date, end: date) -> list[date]:
        """Issue dates of this retainer within [start, end]."""
        if self.recurrence == "once":
            return [self.issue_date] if start <= self.issue_date <= end else []
        out = []
        k = 0
        while True:
            month = self.issue_date.month - 1 + k
            year, month = self.issue_date.year + month // 12, month % 12 + 1
            day = min(self.issue_date.day, _month_length(year, month))
            d = date(year, month, day)
            if d > end or (self.end_date is not None and d > self.end_date):
                return out
            if d >= start:
                out.append(d)
            k += 1


def _month_length(year: int, month: int) -> int:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return (nxt - date(year, month, 1)).days


# --- references into the rest of the document -----------------------------------------------------


def _clients(info: ValidationInfo) -> dict[str, Any] | None:
    items = info.data.get("clients")
    return None if items is None else {c.name: c for c in items}


def _project_keys(info: ValidationInfo) -> dict[str, str] | None:
    """customer_job and code -> the project's client name."""
    projects = info.data.get("projects")
    if projects is None:
        return None
    out = {p.customer_job: p.client for p in projects}
    out.update({p.code: p.client for p in projects if p.code})
    return out


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def _exact_in(amount: Decimal, currency: str) -> bool:
    return amount == amount.quantize(Decimal(1).scaleb(-minor_digits(currency)))


def check_client_matching(v: ClientMatching, info: ValidationInfo) -> ClientMatching:
    clients = _clients(info)
    if clients is not None:
        _raise(
            [
                f"decisions[{i}].client: unknown client {d.client!r}"
                for i, d in enumerate(v.decisions)
                if d.client is not None and d.client not in clients
            ]
        )
    return v


def check_billable_percentages(v: list[BillablePercentage], info: ValidationInfo) -> list[BillablePercentage]:
    tasks = info.data.get("tasks")
    names = None if tasks is None else {t.name for t in tasks}
    problems = []
    if names is not None:
        problems += [
            f"[{i}].task: unknown task {b.task!r}" for i, b in enumerate(v) if b.task and b.task not in names
        ]
    keys = [(b.task, b.person, b.valid_from) for b in v]
    for task, person, since in sorted({k for k in keys if keys.count(k) > 1}, key=str):
        problems.append(
            f"task {task!r} and person {person!r} are listed twice from {since or 'the start'}: keep one entry"
        )
    _raise(problems)
    return v


def check_discounts(v: list[Discount], info: ValidationInfo) -> list[Discount]:
    clients = _clients(info)
    projects = _project_keys(info)
    problems = [f"duplicate discount id {d!r}" for d in _duplicates([d.id for d in v])]
    for i, d in enumerate(v):
        if clients is None:
            break
        client = clients.get(d.client)
        if client is None:
            problems.append(f"[{i}].client: unknown client {d.client!r}")
            continue
        if d.kind == "fixed" and not _exact_in(d.value, client.currency):
            problems.append(
                f"[{i}].value: {d.value} has more decimals than {client.currency} allows "
                f"({minor_digits(client.currency)})"
            )
        if d.project is not None and projects is not None:
            owner = projects.get(d.project)
            if owner is None:
                problems.append(f"[{i}].project: unknown project {d.project!r} (use a customer_job or code)")
            elif owner != d.client:
                problems.append(f"[{i}].project: {d.project!r} belongs to client {owner!r}, not {d.client!r}")
    _raise(problems)
    return v


def check_retainers(v: list[Retainer], info: ValidationInfo) -> list[Retainer]:
    clients = _clients(info)
    problems = [f"duplicate retainer id {d!r}" for d in _duplicates([r.id for r in v])]
    for i, r in enumerate(v):
        if clients is None:
            break
        client = clients.get(r.client)
        if client is None:
            problems.append(f"[{i}].client: unknown client {r.client!r}")
        elif not _exact_in(r.amount, client.currency):
            problems.append(
                f"[{i}].amount: {r.amount} has more decimals than {client.currency} allows "
                f"({minor_digits(client.currency)})"
            )
    _raise(problems)
    return v


# Sections left at their defaults are left out of dumps, so documents that do not use them keep
# their rule version (content hash).
ClientMatchingField = Annotated[
    ClientMatching,
    AfterValidator(check_client_matching),
    Field(exclude_if=lambda v: v == ClientMatching()),
]
BillingField = Annotated[BillingSettings, Field(exclude_if=lambda v: v == BillingSettings())]
BillablePercentagesField = Annotated[
    list[BillablePercentage], AfterValidator(check_billable_percentages), Field(exclude_if=lambda v: not v)
]
DiscountsField = Annotated[list[Discount], AfterValidator(check_discounts), Field(exclude_if=lambda v: not v)]
RetainersField = Annotated[list[Retainer], AfterValidator(check_retainers), Field(exclude_if=lambda v: not v)]
