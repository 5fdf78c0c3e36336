"""Seeded demo data: a three-entity consultancy's Harvest account (clients, projects, tasks, people,
time entries), its Harvest "Detailed Time" CSV exports with a sprinkle of malformed rows, and a mapping
document consistent with both.

Columns are built vectorised with numpy's seeded Generator and polars, never one Python iteration per
time entry, so ten million entries are as easy as ten thousand. The same config gives byte-identical
files. Bill rates are exactly what the mapping document's rate cards give (most specific card valid
on the work date: person, then task, then the currency default), so the demo can be checked end to end.
"""

from __future__ import annotations

import calendar
import os
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import decimal_to_scaled_expr, div_round_expr
from pm_accounting_pipeline.demo import catalog as cat

# Malformed-row kinds injected into the CSV rendering, and the quarantine reason each should earn.
MALFORMED_KINDS: tuple[str, ...] = (
    "bad_date",
    "negative_hours",
    "absurd_hours",
    "unknown_currency",
    "unknown_client",
    "missing_required",
    "duplicate_row",
)
EXPECTED_REASON: dict[str, str] = {
    "bad_date": "bad_date",
    "negative_hours": "negative_hours",
    "absurd_hours": "absurd_hours",
    "unknown_currency": "unknown_currency",
    "unknown_client": "unknown_client",
    "missing_required": "missing_required",
    # A copy of a row from a neighbouring export (overlapping export windows): same content, same
    # source id, so cleaning sees an exact duplicate.
    "duplicate_row": "duplicate_exact",
}

HARVEST_COLUMNS: tuple[str, ...] = (
    "Date", "Client", "Project", "Project Code", "Task", "Notes", "Hours", "Hours Rounded", "Billable?",
    "Invoiced?", "Approved?", "First Name", "Last Name", "Employee Id", "Roles", "Employee?",
    "Billable Rate", "Billable Amount", "Cost Rate", "Cost Amount", "Currency", "External Reference URL",
)  # fmt: skip

_STRFTIME = {
    "YYYY-MM-DD": "%Y-%m-%d",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD/MM/YYYY": "%d/%m/%Y",
    "DD.MM.YYYY": "%d.%m.%Y",
    "auto": "%Y-%m-%d",
}

_ENTRIES_PER_PERSON_DAY = 2.5
_INTERNAL_SHARE = 0.18
_ASSIGNED_PROJECTS = 4
_WRITE_OFF_SHARE = 0.01  # billable-task entries marked non-billable by the person (goodwill)
_UNAPPROVED_SHARE = 0.04
_UNAPPROVED_SHARE_LAST_WEEK = 0.30  # the last five working days are mostly not yet approved
_EMPTY_NOTES_SHARE = 0.08
_PROJECT_CODE_SHARE = 0.7

_SUFFIX_SWAPS = {
    "Inc.": "Inc",
    "LLC": "L.L.C.",
    "Corp.": "Corporation",
    "Ltd": "Limited",
    "Limited": "Ltd",
    "plc": "PLC",
    "GmbH": "G.m.b.H.",
    "AG": "A.G.",
    "KG": "K.G.",
}
_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ë": "e", "'": "", " ": "."})


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 42
    start: date = date(2026, 9, 1)  # two months of working days by default
    end: date = date(2026, 10, 31)
    n_clients: int = 40
    n_people: int = 100
    entries: int | None = None  # target number of time entries; None = people x working days x 2.5
    malformed_rate: float = 0.004  # share of malformed rows in the CSVs (a generator knob, not money)


@dataclass(frozen=True)
class DemoDataset:
    entities: pl.DataFrame
    clients: pl.DataFrame
    projects: pl.DataFrame
    tasks: pl.DataFrame
    users: pl.DataFrame
    time_entries: pl.DataFrame
    mapping_yaml: str
    # The on-demand client's billing request the demo issues: (customer_ref, through date), or None.
    on_demand_request: tuple[str, date] | None = None


@dataclass(frozen=True)
class DemoFiles:
    """What `write_demo` wrote: paths, the number of time entries and of CSV rows, and the malformed
    rows injected (`malformed_rows`: file, source_row (1-based data row), kind, detail)."""

    data_dir: Path
    landing_dir: Path
    mapping_path: Path
    csv_paths: tuple[Path, ...]
    entries: int
    rows_written: int
    malformed_by_kind: dict[str, int]
    malformed_rows: pl.DataFrame = field(repr=False)


# --- metadata records (tens to hundreds of rows; plain Python is fine here) ----------------------


@dataclass
class _Client:
    client_id: int
    name: str
    canonical_name: str
    entity: str
    currency: str
    customer_ref: str
    is_active: bool = True
    is_internal: bool = False
    is_variant: bool = False
    aliases: list[str] = field(default_factory=list)
    billing_cycle: str = "monthly"


@dataclass
class _Project:
    project_id: int
    client: int  # index into the client list
    name: str
    code: str | None
    is_billable: bool
    internal_task: str | None = None


@dataclass
class _User:
    user_id: int
    first_name: str
    last_name: str
    email: str
    entity: str
    is_contractor: bool
    is_manager: bool = False
    is_senior: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def _validate(config: DemoConfig) -> None:
    if config.end < config.start:
        raise ValueError(f"DemoConfig: end {config.end} is before start {config.start}")
    if config.n_clients < 1 or config.n_people < len(cat.ENTITIES):
        raise ValueError(f"DemoConfig: need n_clients >= 1 and n_people >= {len(cat.ENTITIES)}")
    if config.entries is not None and config.entries < 0:
        raise ValueError("DemoConfig: entries must be >= 0")
    if not 0 <= config.malformed_rate < 1:
        raise ValueError("DemoConfig: malformed_rate is a share between 0 and 1")


def _split(n: int, shares: list[float]) -> list[int]:
    """Split n into integer parts proportional to shares (largest remainder, deterministic)."""
    raw = [n * s / sum(shares) for s in shares]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))[: n - sum(out)]:
        out[i] += 1
    return out


def _working_days(start: date, end: date) -> np.ndarray:
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out = days[weekday < 5]
    if out.size == 0:
        raise ValueError(f"DemoConfig: no working days between {start} and {end}")
    return out


def _variant(name: str, style: str, entity: cat.EntitySpec) -> str:
    if style == "case_space":
        return name.lower().replace(" ", "  ", 1)
    if style == "upper":
        return name.upper()
    words = name.split(" ")
    if words[-1] in _SUFFIX_SWAPS:
        return " ".join([*words[:-1], _SUFFIX_SWAPS[words[-1]]])
    return f"{name} {entity.legal_suffixes[0]}"


def _initials(name: str) -> str:
    letters = "".join(w[0] for w in name.split() if w[0].isalpha()).upper()
    return (letters + "XXX")[:3]


def _clients(rng: np.random.Generator, n: int) -> list[_Client]:
    counts = _split(n, [e.share_of_clients for e in cat.ENTITIES])
    bases = [cat.CLIENT_BASE_NAMES[i] for i in rng.permutation(len(cat.CLIENT_BASE_NAMES))]
    for region in cat.CLIENT_NAME_REGIONS:
        if len(bases) >= n:
            break
        bases += [f"{b} {region}" for b in cat.CLIENT_BASE_NAMES]
    names = iter(bases)
    out: list[_Client] = []
    for ent, count in zip(cat.ENTITIES, counts, strict=True):
        for k in range(count):
            currency = (
                ent.special_currencies[k] if k < len(ent.special_currencies) else ent.functional_currency
            )
            if ent.id == "us" and k == 0:
                name = cat.FIRST_CLIENT
            elif currency in cat.PINNED_CLIENTS:
                name = cat.PINNED_CLIENTS[currency]
            else:
                name = next(names)
                if rng.random() < 0.5:
                    name = f"{name} {ent.legal_suffixes[int(rng.integers(len(ent.legal_suffixes)))]}"
            seq = len(out) + 1
            out.append(_Client(4_100_000 + seq, name, name, ent.id, currency, f"C{seq:04d}"))
    if n >= 10:
        out[-1].is_active = False  # a dormant client: mapped, has projects, logs no time
    # Near-duplicates: the same customer typed again with other case, spacing or legal suffix.
    ent_by_id = {e.id: e for e in cat.ENTITIES}
    candidates = [i for i in range(1, len(out)) if out[i].is_active]
    extra = max(1, n // 8) - 1
    chosen = sorted(int(i) for i in rng.choice(candidates, min(extra, len(candidates)), replace=False))
    plan = [(0, "case_space"), (0, "suffix")] + [
        (i, ("upper", "suffix", "case_space")[j % 3]) for j, i in enumerate(chosen)
    ]
    for idx, style in plan:
        canon = out[idx]
        alias = _variant(canon.name, style, ent_by_id[canon.entity])
        if alias == canon.name or alias in canon.aliases:
            continue
        canon.aliases.append(alias)
        out.append(
            _Client(
                4_100_000 + len(out) + 1, alias, canon.name, canon.entity, canon.currency,
                canon.customer_ref, is_variant=True,
            )
        )  # fmt: skip
    for ent in cat.ENTITIES:
        name = f"Northwind Internal ({ent.id.upper()})"
        out.append(
            _Client(
                4_100_000 + len(out) + 1, name, name, ent.id, ent.functional_currency,
                f"INTERNAL-{ent.id.upper()}", is_internal=True,
            )
        )  # fmt: skip
    return out


def _projects(rng: np.random.Generator, clients: list[_Client]) -> list[_Project]:
    out: list[_Project] = []
    used: dict[str, set[str]] = {}
    index = {c.name: i for i, c in enumerate(clients)}

    def add(client: int, name: str, code: str | None, billable: bool, task: str | None = None) -> None:
        out.append(_Project(27_000_000 + len(out) + 1, client, name, code, billable, task))
        used.setdefault(clients[client].canonical_name, set()).add(name)

    for i, c in enumerate(clients):
        if c.is_internal or c.is_variant:
            continue
        k = int(rng.integers(1, 4))
        for pname in rng.choice(cat.PROJECT_NAMES, k, replace=False):
            code = f"{_initials(c.name)}-{len(out) + 1:03d}" if rng.random() < _PROJECT_CODE_SHARE else None
            add(i, str(pname), code, True)
    for i, c in enumerate(clients):
        if not c.is_variant:
            continue
        taken = used[c.canonical_name]
        pname = next(str(p) for p in rng.permutation(cat.PROJECT_NAMES) if str(p) not in taken)
        code = (
            f"{_initials(c.canonical_name)}-{len(out) + 1:03d}"
            if rng.random() < _PROJECT_CODE_SHARE
            else None
        )
        add(i, pname, code, True)
    for ent in cat.ENTITIES:
        ci = index[f"Northwind Internal ({ent.id.upper()})"]
        for k, (pname, task, has_code) in enumerate(cat.INTERNAL_PROJECTS):
            add(ci, pname, f"INT-{ent.id.upper()}-{k + 1:02d}" if has_code else None, False, task)
    return out


def _users(rng: np.random.Generator, n: int) -> list[_User]:
    counts = _split(n, [e.share_of_people for e in cat.ENTITIES])
    out: list[_User] = []
    for ent, count in zip(cat.ENTITIES, counts, strict=True):
        firsts, lasts = cat.FIRST_NAMES[ent.id], cat.LAST_NAMES[ent.id]
        combos = len(firsts) * len(lasts)
        perm = rng.permutation(combos)
        contractor = rng.random(count) < 0.1
        for k in range(count):
            c = int(perm[k % combos])
            first, last = firsts[c // len(lasts)], lasts[c % len(lasts)]
            if k >= combos:
                last = f"{last} {k // combos + 1}"
            email = f"{first}.{last}".lower().translate(_TRANSLIT) + f"@{ent.email_domain}"
            is_manager = k == 0
            is_senior = 1 <= k <= cat.SENIORS_PER_ENTITY
            out.append(
                _User(
                    3_300_000 + len(out) + 1, first, last, email, ent.id,
                    bool(contractor[k]) and not (is_manager or is_senior),
                    is_manager, is_senior,
                )
            )  # fmt: skip
    return out


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower().translate(_TRANSLIT)).strip("-")


def _rate_cards(users: list[_User]) -> list[dict[str, Any]]:
    """The mapping document's rate cards; `_rates` turns the same constants into lookup arrays."""
    cards: list[dict[str, Any]] = []
    for cur, (before, after) in cat.DEFAULT_BILL.items():
        cost = cat.DEFAULT_COST.get(cur)
        base: dict[str, Any] = {"bill_rate": before, **({"cost_rate": cost} if cost else {}), "currency": cur}
        if before == after:
            cards.append({"id": f"default-{cur}", **base})
        else:
            last_day = date.fromordinal(cat.RATE_CHANGE_DATE.toordinal() - 1)
            cards.append({"id": f"default-{cur}", **base, "valid_to": last_day})
            cards.append(
                {"id": f"default-{cur}-from-{cat.RATE_CHANGE_DATE.isoformat()}", **base, "bill_rate": after,
                 "valid_from": cat.RATE_CHANGE_DATE}
            )  # fmt: skip
    for task, by_cur in cat.TASK_BILL_OVERRIDES.items():
        for cur, rate in by_cur.items():
            cards.append(
                {"id": f"task-{_slug(task)}-{cur}", "bill_rate": rate, "currency": cur, "task": task}
            )
    fc = {e.id: e.functional_currency for e in cat.ENTITIES}
    for u in users:
        cur = fc[u.entity]
        if u.is_senior:
            cards.append(
                {"id": f"person-{_slug(u.full_name)}", "bill_rate": cat.SENIOR_BILL[cur],
                 "cost_rate": cat.SENIOR_COST[cur], "currency": cur, "person": u.full_name}
            )  # fmt: skip
        elif u.is_contractor:
            cards.append(
                {"id": f"contractor-{_slug(u.full_name)}", "cost_rate": cat.CONTRACTOR_COST[cur],
                 "currency": cur, "person": u.full_name}
            )  # fmt: skip
    return cards


def _cents(value: str) -> int:
    return int(Decimal(value) * 100)


def _user_cost_cents(u: _User) -> int:
    cur = next(e.functional_currency for e in cat.ENTITIES if e.id == u.entity)
    if u.is_senior:
        return _cents(cat.SENIOR_COST[cur])
    if u.is_contractor:
        return _cents(cat.CONTRACTOR_COST[cur])
    return _cents(cat.DEFAULT_COST[cur])


def _decimal(values: np.ndarray | pl.Series, scale_in: int, dtype: pl.Decimal) -> pl.Series:
    """Integers carried at 10^-scale_in as an exact polars Decimal series."""
    s = values if isinstance(values, pl.Series) else pl.Series(values)
    return (s.cast(pl.Decimal(38, 0)) * Decimal(1).scaleb(-scale_in)).cast(dtype)


# --- the data set --------------------------------------------------------------------------------


def generate(config: DemoConfig = DemoConfig()) -> DemoDataset:
    """Build the demo data set for `config`; deterministic in the seed."""
    _validate(config)
    rng = np.random.default_rng(config.seed)
    days = _working_days(config.start, config.end)
    clients = _clients(rng, config.n_clients)
    projects = _projects(rng, clients)
    users = _users(rng, config.n_people)
    cards = _rate_cards(users)
    time_entries = _time_entries(rng, config, days, clients, projects, users)
    request = _assign_cycles(config, clients, time_entries)
    return DemoDataset(
        entities=_entities_frame(),
        clients=_clients_frame(clients),
        projects=_projects_frame(projects, clients),
        tasks=_tasks_frame(),
        users=_users_frame(users),
        time_entries=time_entries,
        mapping_yaml=_mapping_yaml(config, clients, projects, cards),
        on_demand_request=request,
    )


def _month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def on_demand_through(config: DemoConfig) -> date:
    """The date the demo's on-demand billing request bills through: the 15th day of the first demo
    month (or the range's last day when it ends sooner)."""
    month_end = _month_end(config.start)
    return min(date.fromordinal(config.start.toordinal() + 14), month_end, config.end)


def _assign_cycles(
    config: DemoConfig, clients: list[_Client], time_entries: pl.DataFrame
) -> tuple[str, date] | None:
    """Give two clients `billing_cycle: weekly` and one `on_demand`; returns the on-demand request.

    Candidates are the active external clients with approved billable work in the first demo month
    both on or before the request date and after it. Ranked by their approved billable entries (then
    customer_ref), the median one is billed on demand and its two neighbours weekly: clients with a
    moderate amount of work. Uses no random draw, so the data of a seed never changes.
    """
    through = on_demand_through(config)
    month_end = _month_end(config.start)
    ref_of = {c.client_id: c.customer_ref for c in clients}
    work = (
        time_entries.filter(pl.col("billable") & (pl.col("approval_status") == "approved"))
        .with_columns(pl.col("client_id").replace_strict(ref_of, return_dtype=pl.String).alias("ref"))
        .group_by("ref")
        .agg(
            pl.len().alias("entries"),
            (pl.col("spent_date") <= through).any().alias("before"),
            ((pl.col("spent_date") > through) & (pl.col("spent_date") <= month_end)).any().alias("after"),
        )
    )
    eligible = {c.customer_ref for c in clients if c.is_active and not c.is_internal and not c.is_variant}
    ranked = (
        work.filter(pl.col("ref").is_in(sorted(eligible)) & pl.col("before") & pl.col("after"))
        .sort("entries", "ref")["ref"]
        .to_list()
    )
    if not ranked:
        return None
    mid = len(ranked) // 2
    cycles = {ranked[mid]: "on_demand"}
    cycles.update({ranked[i]: "weekly" for i in (mid - 1, mid + 1) if 0 <= i < len(ranked)})
    for c in clients:
        c.billing_cycle = cycles.get(c.customer_ref, c.billing_cycle)
    return ranked[mid], through


def _entities_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "entity": [e.id for e in cat.ENTITIES],
            "name": [e.name for e in cat.ENTITIES],
            "functional_currency": [e.functional_currency for e in cat.ENTITIES],
            "harvest_account_id": [e.harvest_account_id for e in cat.ENTITIES],
        }
    )


def _clients_frame(clients: list[_Client]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "client_id": [c.client_id for c in clients],
            "name": [c.name for c in clients],
            "canonical_name": [c.canonical_name for c in clients],
            "entity": [c.entity for c in clients],
            "currency": [c.currency for c in clients],
            "customer_ref": [c.customer_ref for c in clients],
            "is_active": [c.is_active for c in clients],
        },
        schema_overrides={"client_id": pl.Int64},
    )


def _projects_frame(projects: list[_Project], clients: list[_Client]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "project_id": [p.project_id for p in projects],
            "client_id": [clients[p.client].client_id for p in projects],
            "name": [p.name for p in projects],
            "code": [p.code for p in projects],
            "is_billable": [p.is_billable for p in projects],
            "is_fixed_fee": [False] * len(projects),
            "bill_by": ["Tasks"] * len(projects),
            "hourly_rate": pl.Series([None] * len(projects), dtype=pl.Decimal(18, 4)),
        },
        schema_overrides={"project_id": pl.Int64, "client_id": pl.Int64, "code": pl.String},
    )


def _tasks_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [9_100_001 + i for i in range(len(cat.TASKS))],
            "name": [t[0] for t in cat.TASKS],
            "billable_by_default": [t[1] for t in cat.TASKS],
            "default_hourly_rate": pl.Series([Decimal(t[4]) for t in cat.TASKS], dtype=pl.Decimal(18, 4)),
        },
        schema_overrides={"task_id": pl.Int64},
    )


def _users_frame(users: list[_User]) -> pl.DataFrame:
    fc = {e.id: e.functional_currency for e in cat.ENTITIES}
    bill = [
        _cents(cat.SENIOR_BILL[fc[u.entity]]) if u.is_senior else _cents(cat.DEFAULT_BILL[fc[u.entity]][0])
        for u in users
    ]
    return pl.DataFrame(
        {
            "user_id": [u.user_id for u in users],
            "first_name": [u.first_name for u in users],
            "last_name": [u.last_name for u in users],
            "email": [u.email for u in users],
            "entity": [u.entity for u in users],
            "is_contractor": [u.is_contractor for u in users],
            "default_hourly_rate": _decimal(np.array(bill, dtype=np.int64), 2, pl.Decimal(18, 4)),
            "cost_rate": _decimal(
                np.array([_user_cost_cents(u) for u in users], dtype=np.int64), 2, pl.Decimal(18, 4)
            ),
        },
        schema_overrides={"user_id": pl.Int64},
    )


def _time_entries(
    rng: np.random.Generator,
    config: DemoConfig,
    days: np.ndarray,
    clients: list[_Client],
    projects: list[_Project],
    users: list[_User],
) -> pl.DataFrame:
    n_days, n_people = len(days), len(users)
    ent_ids = [e.id for e in cat.ENTITIES]
    task_names = [t[0] for t in cat.TASKS]
    currencies = sorted({c.currency for c in clients})
    n = config.entries if config.entries is not None else round(n_people * n_days * _ENTRIES_PER_PERSON_DAY)

    # Who worked when, sorted the way an export lists it: entity, date, person. Users are grouped by
    # entity already, so one integer key sorts all three at once.
    user_ent = np.array([ent_ids.index(u.entity) for u in users], dtype=np.int64)
    u_draw = rng.integers(0, n_people, n)
    d_draw = rng.integers(0, n_days, n)
    key = np.sort((user_ent[u_draw] * n_days + d_draw) * n_people + u_draw)
    user = key % n_people
    day = (key // n_people) % n_days
    del key, u_draw, d_draw
    ent = user_ent[user]

    # Projects: each person works on a few assigned client projects plus their entity's internal ones.
    p_client = np.array([p.client for p in projects], dtype=np.int64)
    p_billable = np.array([p.is_billable for p in projects])
    p_internal_task = np.array(
        [task_names.index(p.internal_task) if p.internal_task else -1 for p in projects], dtype=np.int64
    )
    internal = np.array(
        [[j for j, p in enumerate(projects) if clients[p.client].is_internal and clients[p.client].entity == e]
         for e in ent_ids],
        dtype=np.int64,
    )  # fmt: skip
    assign = np.empty((n_people, _ASSIGNED_PROJECTS), dtype=np.int64)
    for ei, e in enumerate(ent_ids):
        members = np.flatnonzero(user_ent == ei)
        pool = [
            j for j, p in enumerate(projects)
            if p.is_billable and clients[p.client].entity == e and clients[p.client].is_active
        ]  # fmt: skip
        if not pool:
            pool = internal[ei].tolist()
        assign[members] = rng.choice(np.array(pool, dtype=np.int64), (members.size, _ASSIGNED_PROJECTS))
    is_internal = rng.random(n) < _INTERNAL_SHARE
    proj = np.where(
        is_internal,
        internal[ent, rng.integers(0, internal.shape[1], n)],
        assign[user, rng.integers(0, _ASSIGNED_PROJECTS, n)],
    )

    # Tasks: the client-project mix, or the internal project's fixed task. Seniors' person cards make
    # their rate; they do not log on tasks that have their own card, so exactly one card applies.
    mix = np.array([task_names.index(t) for t, _ in cat.CLIENT_TASK_WEIGHTS], dtype=np.int64)
    weights = np.array([w for _, w in cat.CLIENT_TASK_WEIGHTS])
    task = np.where(
        p_internal_task[proj] >= 0, p_internal_task[proj], mix[rng.choice(mix.size, n, p=weights)]
    )
    is_senior = np.array([u.is_senior for u in users])
    overridden = np.array([task_names.index(t) for t in cat.TASK_BILL_OVERRIDES], dtype=np.int64)
    task = np.where(is_senior[user] & np.isin(task, overridden), task_names.index("Development"), task)
    t_billable = np.array([t[1] for t in cat.TASKS])
    billable = p_billable[proj] & t_billable[task] & (rng.random(n) >= _WRITE_OFF_SHARE)

    client = p_client[proj]
    c_cur = np.array([currencies.index(c.currency) for c in clients], dtype=np.int64)
    cur = c_cur[client]

    # Hours: a timer's hours to the hundredth; Harvest's "round up to 15 minutes" for rounded hours.
    minutes = rng.gamma(2.0, 75.0, n)
    hours_c = np.clip(np.rint(minutes / 60.0 * 100.0), 10, 800).astype(np.int64)
    del minutes
    rounded_c = (hours_c + 24) // 25 * 25

    # Rates in hundredths: person card, else task card, else the currency default for the date.
    dates = days[day]
    after_change = (dates >= np.datetime64(cat.RATE_CHANGE_DATE, "D")).astype(np.int64)
    default_bill = np.array(
        [[_cents(cat.DEFAULT_BILL[c][k]) for c in currencies] for k in (0, 1)], dtype=np.int64
    )
    task_bill = np.full((len(task_names), len(currencies)), -1, dtype=np.int64)
    for t, by_cur in cat.TASK_BILL_OVERRIDES.items():
        for c, rate in by_cur.items():
            if c in currencies:
                task_bill[task_names.index(t), currencies.index(c)] = _cents(rate)
    person_bill = np.full((n_people, len(currencies)), -1, dtype=np.int64)
    fc = {e.id: e.functional_currency for e in cat.ENTITIES}
    for i, u in enumerate(users):
        if u.is_senior and fc[u.entity] in currencies:
            person_bill[i, currencies.index(fc[u.entity])] = _cents(cat.SENIOR_BILL[fc[u.entity]])
    rate = person_bill[user, cur]
    rate = np.where(rate >= 0, rate, task_bill[task, cur])
    rate = np.where(rate >= 0, rate, default_bill[after_change, cur])
    cost = np.array([_user_cost_cents(u) for u in users], dtype=np.int64)[user]

    # Approval: mostly approved; the last working week is largely still open.
    p_open = np.where(day >= n_days - 5, _UNAPPROVED_SHARE_LAST_WEEK, _UNAPPROVED_SHARE)
    status = np.where(rng.random(n) < p_open, np.where(rng.random(n) < 0.6, 1, 0), 2)
    last_month = np.datetime64(config.end, "M").astype("datetime64[D]")
    is_billed = billable & (status == 2) & (dates < last_month)

    # Notes: per task and language, some empty.
    lang = (np.array(ent_ids) == "de")[ent].astype(np.int64)
    note_text: list[str] = [""]
    offsets = np.zeros((2, len(task_names)), dtype=np.int64)
    counts = np.zeros((2, len(task_names)), dtype=np.int64)
    for li, table in enumerate((cat.NOTES_EN, cat.NOTES_DE)):
        for ti, t in enumerate(task_names):
            offsets[li, ti], counts[li, ti] = len(note_text), len(table[t])
            note_text.extend(table[t])
    note_idx = offsets[lang, task] + rng.integers(0, 1 << 30, n) % counts[lang, task]
    note_idx = np.where(rng.random(n) < _EMPTY_NOTES_SHARE, 0, note_idx)

    created = (
        dates.astype("datetime64[us]")
        + np.timedelta64(8 * 3600, "s")
        + rng.integers(0, 11 * 3600, n).astype("timedelta64[s]")
    )
    updated = created + rng.integers(0, 3 * 86400, n).astype("timedelta64[s]")

    managers = {u.entity: u.full_name for u in users if u.is_manager}
    ent_s = pl.Series(ent_ids).gather(ent)
    bill_rate = _decimal(rate, 2, pl.Decimal(18, 4))
    frame = pl.DataFrame(
        {
            "id": pl.Series(np.arange(2_400_000_001, 2_400_000_001 + n, dtype=np.int64)),
            "entity": ent_s,
            "spent_date": pl.Series(dates).cast(pl.Date),
            "user_id": pl.Series(np.array([u.user_id for u in users], dtype=np.int64)[user]),
            "client_id": pl.Series(np.array([c.client_id for c in clients], dtype=np.int64)[client]),
            "project_id": pl.Series(np.array([p.project_id for p in projects], dtype=np.int64)[proj]),
            "task_id": pl.Series((9_100_001 + task).astype(np.int64)),
            "hours": _decimal(hours_c, 2, pl.Decimal(12, 4)),
            "rounded_hours": _decimal(rounded_c, 2, pl.Decimal(12, 4)),
            "notes": pl.Series(note_text).gather(note_idx),
            "billable": pl.Series(billable),
            "approval_status": pl.Series(["unsubmitted", "submitted", "approved"]).gather(status),
            "approved_by": pl.Series([managers[e] for e in ent_ids]).gather(ent),
            "is_billed": pl.Series(is_billed),
            "billable_rate": bill_rate,
            "cost_rate": _decimal(cost, 2, pl.Decimal(18, 4)),
            "currency": pl.Series(currencies).gather(cur),
            "created_at": pl.Series(created).dt.replace_time_zone("UTC"),
            "updated_at": pl.Series(updated).dt.replace_time_zone("UTC"),
        }
    )
    return frame.with_columns(
        pl.when(pl.col("approval_status") == "approved").then(pl.col("approved_by")).alias("approved_by"),
        pl.when(pl.col("billable")).then(pl.col("billable_rate")).alias("billable_rate"),
        pl.col("notes").replace("", None),
    )


# --- the mapping document ------------------------------------------------------------------------


def _expenses_section() -> dict[str, Any]:
    from pm_accounting_pipeline.demo.expenses import mapping_section  # it renders with this module

    return mapping_section()


def _mapping_yaml(
    config: DemoConfig, clients: list[_Client], projects: list[_Project], cards: list[dict[str, Any]]
) -> str:
    doc: dict[str, Any] = {
        "version": 1,
        "name": "northwind-demo",
        "reporting_currency": "USD",
        "start_date": config.start,
        "entities": [
            {
                "id": e.id,
                "name": e.name,
                "functional_currency": e.functional_currency,
                "tax": {"rate": e.tax_rate, "jurisdiction": e.tax_jurisdiction},
                "harvest_account_ids": [e.harvest_account_id],
                "harvest_csv": {"date_format": e.date_format, "decimal_separator": e.decimal_separator},
            }
            for e in cat.ENTITIES
        ],
        "clients": [
            {
                "name": c.name,
                "customer_ref": c.customer_ref,
                "entity": c.entity,
                "currency": c.currency,
                "source_id": str(c.client_id),
                **({"aliases": list(c.aliases)} if c.aliases else {}),
                **({"tax_profile": "exempt"} if c.is_internal else {}),
                **({"billing_cycle": c.billing_cycle} if c.billing_cycle != "monthly" else {}),
            }
            for c in clients
            if not c.is_variant
        ],
        "projects": [
            {
                "name": p.name,
                "client": clients[p.client].canonical_name,
                **({"code": p.code} if p.code else {}),
                "customer_job": f"{clients[p.client].canonical_name}:{p.name}",
                "billable": p.is_billable,
            }
            for p in projects
        ],
        "tasks": [
            {
                "name": name,
                "item": item,
                **({"revenue_account": account} if account else {}),
                "billable_by_default": billable,
            }
            for name, billable, item, account, _ in cat.TASKS
        ],
        "rate_cards": cards,
        "rounding": {"time_increment_minutes": 15, "time_mode": "up", "use_source_rounded_hours": True},
        "approval": {"require_approval": True},
        "limits": {"max_hours_per_entry": "24"},
        "expenses": _expenses_section(),
    }
    header = (
        "# Demo mapping document for the Northwind Consulting group (generated; seed "
        f"{config.seed}).\n# Clients list their near-duplicate spellings as aliases; the USD default "
        f"rate card changes on {cat.RATE_CHANGE_DATE.isoformat()}.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


# --- the Harvest CSV rendering -------------------------------------------------------------------


def _group_thousands(n: pl.Expr, sep: str) -> pl.Expr:
    def pad(e: pl.Expr) -> pl.Expr:
        return e.cast(pl.String).str.zfill(3)

    units, thousands = n % 1000, (n // 1000) % 1000
    millions, billions = (n // 1_000_000) % 1000, n // 1_000_000_000
    return (
        pl.when(n >= 1_000_000_000)
        .then(
            pl.concat_str(
                [billions.cast(pl.String), pad(millions), pad(thousands), pad(units)], separator=sep
            )
        )
        .when(n >= 1_000_000)
        .then(pl.concat_str([millions.cast(pl.String), pad(thousands), pad(units)], separator=sep))
        .when(n >= 1000)
        .then(pl.concat_str([thousands.cast(pl.String), pad(units)], separator=sep))
        .otherwise(n.cast(pl.String))
    )


def _fmt_number(minor: pl.Expr, digits: pl.Expr, dec: str, thousands: str | None) -> pl.Expr:
    """A non-negative integer in minor units as text with `digits` decimals (0, 2 or 3)."""
    scale = pl.lit(10, dtype=pl.Int64).pow(digits)
    whole, frac = minor // scale, minor % scale
    whole_s = _group_thousands(whole, thousands) if thousands else whole.cast(pl.String)
    frac_s = frac.cast(pl.String).str.zfill(digits)
    return pl.when(digits == 0).then(whole_s).otherwise(pl.concat_str([whole_s, pl.lit(dec), frac_s]))


def _to_scale(value: pl.Expr, from_scale: int, digits: pl.Expr) -> pl.Expr:
    """Integer at 10^-from_scale to the currency's minor unit, half up (rates are on the grid)."""
    divisor = pl.lit(10, dtype=pl.Int64).pow(pl.lit(from_scale, dtype=pl.Int64) - digits)
    return div_round_expr(value, divisor)


def _harvest_settings(mapping_yaml: str) -> dict[str, tuple[str, str]]:
    doc = yaml.load(mapping_yaml, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    out = {}
    for e in doc["entities"]:
        hc = e.get("harvest_csv", {})
        out[e["id"]] = (hc.get("date_format", "auto"), hc.get("decimal_separator", "."))
    return out


def _render(ds: DemoDataset, te: pl.DataFrame) -> pl.DataFrame:
    """Time entries as Harvest CSV text columns (locale-neutral parts) plus helper columns."""
    clients, projects, tasks, users = ds.clients, ds.projects, ds.tasks, ds.users
    currencies = {*ds.clients["currency"].to_list(), *ds.entities["functional_currency"].to_list()}
    digits = {c: minor_digits(c) for c in sorted(currencies)}
    fc = dict(zip(ds.entities["entity"].to_list(), ds.entities["functional_currency"].to_list(), strict=True))

    def lookup(col: str, frame: pl.DataFrame, key: str, value: str) -> pl.Expr:
        return pl.col(col).replace_strict(
            frame[key].to_list(), frame[value].to_list(), return_dtype=frame.schema[value]
        )

    roles = {
        u: cat.ROLES[i % len(cat.ROLES)] for i, u in enumerate(users["user_id"].to_list())
    }  # a label only; not used by any rule
    return te.select(
        "entity",
        "spent_date",
        "id",
        pl.col("currency"),
        lookup("client_id", clients, "client_id", "name").alias("Client"),
        lookup("project_id", projects, "project_id", "name").alias("Project"),
        lookup("project_id", projects, "project_id", "code").alias("Project Code"),
        lookup("task_id", tasks, "task_id", "name").alias("Task"),
        pl.col("notes").alias("Notes"),
        (decimal_to_scaled_expr(pl.col("hours"), 4) // 100).cast(pl.Int64).alias("_hours_c"),
        (decimal_to_scaled_expr(pl.col("rounded_hours"), 4) // 100).cast(pl.Int64).alias("_rounded_c"),
        pl.when(pl.col("billable")).then(pl.lit("Yes")).otherwise(pl.lit("No")).alias("Billable?"),
        pl.when(pl.col("is_billed")).then(pl.lit("Yes")).otherwise(pl.lit("No")).alias("Invoiced?"),
        pl.when(pl.col("approval_status") == "approved")
        .then(pl.lit("Yes"))
        .otherwise(pl.lit("No"))
        .alias("Approved?"),
        lookup("user_id", users, "user_id", "first_name").alias("First Name"),
        lookup("user_id", users, "user_id", "last_name").alias("Last Name"),
        pl.col("user_id").cast(pl.String).alias("Employee Id"),
        pl.col("user_id").replace_strict(roles, return_dtype=pl.String).alias("Roles"),
        pl.when(lookup("user_id", users, "user_id", "is_contractor"))
        .then(pl.lit("No"))
        .otherwise(pl.lit("Yes"))
        .alias("Employee?"),
        (decimal_to_scaled_expr(pl.col("billable_rate"), 4) // 100)
        .cast(pl.Int64)
        .fill_null(0)
        .alias("_rate_c"),
        (decimal_to_scaled_expr(pl.col("cost_rate"), 4) // 100).cast(pl.Int64).alias("_cost_c"),
        pl.col("currency").replace_strict(digits, return_dtype=pl.Int64).alias("_digits"),
        pl.col("entity")
        .replace_strict(fc)
        .replace_strict(digits, return_dtype=pl.Int64)
        .alias("_cost_digits"),
        pl.concat_str(
            [
                pl.col("currency").replace_strict(cat.CURRENCY_NAMES, return_dtype=pl.String),
                pl.col("currency"),
            ],
            separator=" - ",
        ).alias("Currency"),
        pl.when(pl.col("id") % 37 == 0)
        .then(
            pl.concat_str(
                [
                    pl.lit("https://northwind.atlassian.net/browse/"),
                    lookup("project_id", projects, "project_id", "code")
                    .fill_null("NW")
                    .str.split("-")
                    .list.first(),
                    pl.lit("-"),
                    (pl.col("id") % 1000).cast(pl.String),
                ]
            )
        )
        .alias("External Reference URL"),
    ).with_columns(
        # Money in minor units, computed once (materialised so the formatting does not recompute it).
        _to_scale(pl.col("_rate_c"), 2, pl.col("_digits")).alias("_rate_m"),
        _to_scale(pl.col("_rounded_c") * pl.col("_rate_c"), 4, pl.col("_digits")).alias("_amount_m"),
        _to_scale(pl.col("_cost_c"), 2, pl.col("_cost_digits")).alias("_cost_m"),
        _to_scale(pl.col("_hours_c") * pl.col("_cost_c"), 4, pl.col("_cost_digits")).alias("_cost_amount_m"),
    )


def _localise(frame: pl.DataFrame, date_format: str, dec: str) -> pl.DataFrame:
    """Turn the rendered helper columns into the account's date and number formats."""
    thousands = "," if dec == "." else "."
    two = pl.lit(2, dtype=pl.Int64)
    digits, cost_digits = pl.col("_digits"), pl.col("_cost_digits")
    return frame.with_columns(
        pl.col("spent_date").dt.strftime(_STRFTIME[date_format]).alias("Date"),
        _fmt_number(pl.col("_hours_c"), two, dec, None).alias("Hours"),
        _fmt_number(pl.col("_rounded_c"), two, dec, None).alias("Hours Rounded"),
        _fmt_number(pl.col("_rate_m"), digits, dec, thousands).alias("Billable Rate"),
        _fmt_number(pl.col("_amount_m"), digits, dec, thousands).alias("Billable Amount"),
        _fmt_number(pl.col("_cost_m"), cost_digits, dec, thousands).alias("Cost Rate"),
        _fmt_number(pl.col("_cost_amount_m"), cost_digits, dec, thousands).alias("Cost Amount"),
    )


def _bad_date(date_format: str) -> pl.Expr:
    """The day after the month's last day (e.g. 2026-09-31) in the account's date format."""
    d = pl.col("spent_date")
    day = (d.dt.month_end().dt.day().cast(pl.Int64) + 1).cast(pl.String)
    month = d.dt.month().cast(pl.String).str.zfill(2)
    year = d.dt.year().cast(pl.String)
    parts = {
        "DD.MM.YYYY": ([day, month, year], "."),
        "DD/MM/YYYY": ([day, month, year], "/"),
        "MM/DD/YYYY": ([month, day, year], "/"),
    }.get(date_format, ([year, month, day], "-"))
    return pl.concat_str(parts[0], separator=parts[1])


def _mutate(frame: pl.DataFrame, kinds: dict[str, np.ndarray], date_format: str, dec: str) -> pl.DataFrame:
    """Apply the in-place malformed kinds at the given 0-based positions."""
    idx = pl.int_range(pl.len(), dtype=pl.Int64)

    def at(kind: str) -> pl.Expr:
        return idx.is_in(
            pl.lit(pl.Series(kinds.get(kind, np.empty(0, dtype=np.int64)), dtype=pl.Int64)).implode()
        )

    absurd = f"{cat.ABSURD_HOURS}{dec}00"
    return frame.with_columns(
        pl.when(at("bad_date")).then(_bad_date(date_format)).otherwise(pl.col("Date")).alias("Date"),
        pl.when(at("negative_hours"))
        .then(pl.concat_str([pl.lit("-"), pl.col("Hours")]))
        .when(at("absurd_hours"))
        .then(pl.lit(absurd))
        .otherwise(pl.col("Hours"))
        .alias("Hours"),
        pl.when(at("negative_hours"))
        .then(pl.concat_str([pl.lit("-"), pl.col("Hours Rounded")]))
        .when(at("absurd_hours"))
        .then(pl.lit(absurd))
        .otherwise(pl.col("Hours Rounded"))
        .alias("Hours Rounded"),
        pl.when(at("unknown_currency"))
        .then(pl.lit(cat.UNKNOWN_CURRENCY))
        .otherwise(pl.col("Currency"))
        .alias("Currency"),
        pl.when(at("unknown_client"))
        .then(pl.lit(cat.UNKNOWN_CLIENT))
        .otherwise(pl.col("Client"))
        .alias("Client"),
        pl.when(~at("missing_required")).then(pl.col("Task")).alias("Task"),
    )


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    # Written under a temporary dot-name and renamed, so a file-drop sensor never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_csv(tmp)
    os.replace(tmp, path)


_MANIFEST_SCHEMA = {"file": pl.String, "source_row": pl.Int64, "kind": pl.String, "detail": pl.String}


def _write_csvs(ds: DemoDataset, landing_dir: Path, config: DemoConfig) -> tuple[list[Path], pl.DataFrame]:
    """Render and write file by file (one file's text in memory at a time) and inject malformed rows.

    In-place kinds overwrite a value of a random row. A `duplicate_row` is a row of the entity's
    previous month's export appended again (overlapping export windows); the first month's duplicate
    quota therefore goes to the second month, and an entity with a single file repeats its own rows.
    """
    settings = _harvest_settings(ds.mapping_yaml)
    rng = np.random.default_rng([config.seed, 0x0C5F])  # its own stream: rendering never shifts the data
    te_all = ds.time_entries.with_columns(pl.col("spent_date").dt.truncate("1mo").alias("_month"))
    paths: list[Path] = []
    manifest: list[pl.DataFrame] = []
    file_no = 0
    for entity in ds.entities["entity"].to_list():
        date_format, dec = settings.get(entity, ("auto", "."))
        te_ent = te_all.filter(pl.col("entity") == entity)
        heights = te_ent.group_by("_month").len().sort("_month")
        months, sizes = heights["_month"].to_list(), heights["len"].to_list()
        if not months:
            continue
        (landing_dir / entity).mkdir(parents=True, exist_ok=True)
        slots = []
        for size in sizes:
            n_bad = int(size * config.malformed_rate + 0.5)
            slots.append([MALFORMED_KINDS[(j + file_no) % len(MALFORMED_KINDS)] for j in range(n_bad)])
            file_no += 1
        dups = [k.count("duplicate_row") for k in slots]
        if len(months) > 1:
            dups[1], dups[0] = dups[1] + dups[0], 0
        carry: pl.DataFrame | None = None  # rows of the previous export to append to this one
        carry_detail: list[str] = []
        for i, month in enumerate(months):
            name = f"harvest_detailed_time_{entity}_{month:%Y-%m}.csv"
            part = _localise(_render(ds, te_ent.filter(pl.col("_month") == month)), date_format, dec)
            in_place = [k for k in slots[i] if k != "duplicate_row"]
            pos = np.sort(rng.choice(part.height, min(len(in_place), part.height), replace=False))
            plan = {
                kind: pos[[j for j, k in enumerate(in_place) if k == kind]] for kind in MALFORMED_KINDS[:-1]
            }
            out = _mutate(part, plan, date_format, dec).select(HARVEST_COLUMNS)
            rows = [(int(p) + 1, kind, "") for kind, positions in plan.items() for p in positions]
            clean = np.ones(out.height, dtype=bool)
            clean[pos] = False
            clean_idx = np.flatnonzero(clean)
            if len(months) == 1 and dups[i]:
                picks = np.sort(rng.choice(clean_idx, min(dups[i], clean_idx.size), replace=False))
                carry, carry_detail = (
                    out[pl.Series(picks)],
                    [f"copy of {name} row {int(p) + 1}" for p in picks],
                )
            if carry is not None and carry.height:
                rows += [(out.height + j + 1, "duplicate_row", d) for j, d in enumerate(carry_detail)]
                out = pl.concat([out, carry])
            carry, carry_detail = None, []
            if i + 1 < len(months) and dups[i + 1]:
                picks = np.sort(rng.choice(clean_idx, min(dups[i + 1], clean_idx.size), replace=False))
                carry = out[pl.Series(picks)]
                carry_detail = [f"copy of {name} row {int(p) + 1}" for p in picks]
            path = landing_dir / entity / name
            _write_atomic(out, path)
            paths.append(path)
            manifest.append(
                pl.DataFrame(
                    {
                        "file": [name] * len(rows),
                        "source_row": [r[0] for r in rows],
                        "kind": [r[1] for r in rows],
                        "detail": [r[2] for r in rows],
                    },
                    schema=_MANIFEST_SCHEMA,
                ).sort("source_row")
            )
    return paths, pl.concat([pl.DataFrame(schema=_MANIFEST_SCHEMA), *manifest])


def write_harvest_csvs(ds: DemoDataset, landing_dir: Path, config: DemoConfig) -> list[Path]:
    """Write one Harvest "Detailed Time" CSV per entity per month into landing_dir/<entity>/, injecting
    malformed rows; returns paths."""
    return _write_csvs(ds, Path(landing_dir), config)[0]


def write_harvest_csvs_with_manifest(
    ds: DemoDataset, landing_dir: Path, config: DemoConfig
) -> tuple[list[Path], pl.DataFrame]:
    """As `write_harvest_csvs`, plus the manifest of injected malformed rows (file, source_row, kind,
    detail). In-place kinds replace the entry rendered at that row; `duplicate_row` rows are extra."""
    return _write_csvs(ds, Path(landing_dir), config)


def write_approvals(
    ds: DemoDataset, csv_paths: list[Path] | tuple[Path, ...], landing_dir: Path
) -> list[Path]:
    """The approval log of the demo's approved entries and expenses, as the PM tool would export it:
    `<landing_dir>/<entity>/approvals/approvals-<file>.csv` per time or expense CSV (source_system, source_id,
    status, approved_by, approved_at; core/approvals.py). The entity's manager approves each week's
    entries on the following Monday at 09:00 UTC. Source ids are the ones extraction derives, so
    the CSVs are parsed back."""
    from datetime import UTC, datetime

    from pm_accounting_pipeline.config.schema import parse_mapping
    from pm_accounting_pipeline.extract.parse import parse_file

    mapping = parse_mapping(yaml.safe_load(ds.mapping_yaml))
    managers = dict(
        ds.time_entries.filter(pl.col("approved_by").is_not_null())
        .group_by("entity")
        .agg(pl.col("approved_by").min())
        .iter_rows()
    )
    written: list[Path] = []
    for path in csv_paths:
        entity = path.parent.name
        parsed = parse_file(path, entity, mapping, extracted_at=datetime(2000, 1, 1, tzinfo=UTC))
        # Time exports are dated by work date, expense exports by spent date.
        day = pl.col("work_date" if "work_date" in parsed.rows.columns else "spent_date")
        approved = parsed.rows.filter(
            pl.col("approved_raw").str.strip_chars().str.to_lowercase().is_in(["yes", "true", "approved"])
            & day.is_not_null()
        )
        monday = day + pl.duration(days=8 - day.dt.weekday())
        feed = approved.unique(["source_system", "source_id"], keep="first", maintain_order=True).select(
            "source_system",
            "source_id",
            pl.lit("approved").alias("status"),
            pl.lit(managers.get(entity)).alias("approved_by"),
            pl.format("{}T09:00:00Z", monday.dt.strftime("%Y-%m-%d")).alias("approved_at"),
        )
        target = Path(landing_dir) / entity / "approvals" / f"approvals-{path.stem}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(feed, target)
        written.append(target)
    return written


def write_demo(data_dir: Path, config: DemoConfig = DemoConfig()) -> DemoFiles:
    """Write data_dir/landing/<entity>/*.csv and data_dir/mapping.yaml for `config`."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ds = generate(config)
    mapping_path = data_dir / "mapping.yaml"
    mapping_path.write_text(ds.mapping_yaml, encoding="utf-8")
    landing = data_dir / "landing"
    paths, manifest = _write_csvs(ds, landing, config)
    counts = dict.fromkeys(MALFORMED_KINDS, 0)
    for kind, n in manifest.group_by("kind").len().iter_rows():
        counts[kind] = n
    return DemoFiles(
        data_dir=data_dir,
        landing_dir=landing,
        mapping_path=mapping_path,
        csv_paths=tuple(paths),
        entries=ds.time_entries.height,
        rows_written=ds.time_entries.height + counts["duplicate_row"],
        malformed_by_kind=counts,
        malformed_rows=manifest,
    )
