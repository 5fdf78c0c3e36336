"""A small dataset shaped like the demo generator's `DemoDataset`, for Harvest sandbox and connector tests.

Two entities (us on Harvest account 1001 in USD, uk on account 2002 in GBP), a few clients,
projects, tasks and people each, and `entries` time entries per entity spread over Aug-Nov 2026.
Everything follows from the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl

US_ACCOUNT = "1001"
UK_ACCOUNT = "2002"
TOKEN = "test-token"


@dataclass(frozen=True)
class SmallDataset:
    entities: pl.DataFrame
    clients: pl.DataFrame
    projects: pl.DataFrame
    tasks: pl.DataFrame
    users: pl.DataFrame
    time_entries: pl.DataFrame


def small_dataset(entries: int = 30, seed: int = 7) -> SmallDataset:
    rng = random.Random(seed)
    entities = pl.DataFrame(
        {
            "entity": ["us", "uk"],
            "name": ["Acme US Inc", "Acme UK Ltd"],
            "functional_currency": ["USD", "GBP"],
            "harvest_account_id": [US_ACCOUNT, UK_ACCOUNT],
        }
    )
    clients = []
    for ent, cur in (("us", "USD"), ("uk", "GBP")):
        for i in range(3):
            cid = len(clients) + 1
            clients.append(
                {
                    "client_id": cid,
                    "name": f"Client {ent.upper()} {i}",
                    "canonical_name": f"client {ent} {i}",
                    "entity": ent,
                    "currency": "EUR" if (ent == "uk" and i == 2) else cur,
                    "customer_ref": f"C-{cid:03d}",
                    "is_active": True,
                }
            )
    projects = []
    for c in clients:
        for j in range(2):
            pid = len(projects) + 1
            projects.append(
                {
                    "project_id": pid,
                    "client_id": c["client_id"],
                    "name": f"Project {pid}",
                    "code": None if pid % 3 == 0 else f"P{pid:03d}",
                    "is_billable": j == 0,
                    "is_fixed_fee": False,
                    "bill_by": "Project" if j == 0 else "none",
                    "hourly_rate": Decimal("150.00") if j == 0 else None,
                }
            )
    tasks = pl.DataFrame(
        {
            "task_id": [1, 2, 3],
            "name": ["Design", "Development", "Admin"],
            "billable_by_default": [True, True, False],
            "default_hourly_rate": [Decimal("120.00"), Decimal("140.00"), None],
        },
        schema={
            "task_id": pl.Int64,
            "name": pl.String,
            "billable_by_default": pl.Boolean,
            "default_hourly_rate": pl.Decimal(18, 4),
        },
    )
    users = []
    for ent in ("us", "uk"):
        for k in range(3):
            uid = len(users) + 1
            users.append(
                {
                    "user_id": uid,
                    "first_name": f"First{uid}",
                    "last_name": f"Last{uid}",
                    "email": f"person{uid}@example.com",
                    "entity": ent,
                    "is_contractor": k == 2,
                    "default_hourly_rate": Decimal("100.00"),
                    "cost_rate": Decimal("55.50"),
                }
            )
    rows = []
    start = date(2026, 8, 1)
    for ent in ("us", "uk"):
        ent_clients = [c for c in clients if c["entity"] == ent]
        ent_users = [u for u in users if u["entity"] == ent]
        for _ in range(entries):
            c = rng.choice(ent_clients)
            p = rng.choice([p for p in projects if p["client_id"] == c["client_id"]])
            u = rng.choice(ent_users)
            t = rng.randint(1, 3)
            spent = start + timedelta(days=rng.randint(0, 110))
            created = datetime(spent.year, spent.month, spent.day, 18, 0, tzinfo=UTC) + timedelta(
                minutes=rng.randint(0, 300)
            )
            hours = Decimal(rng.randint(1, 32)) / Decimal(4)
            billable = p["is_billable"] and t != 3
            status = rng.choice(["unsubmitted", "submitted", "approved"])
            rows.append(
                {
                    "id": 500_000 + len(rows) + 1,
                    "entity": ent,
                    "spent_date": spent,
                    "user_id": u["user_id"],
                    "client_id": c["client_id"],
                    "project_id": p["project_id"],
                    "task_id": t,
                    "hours": hours,
                    "rounded_hours": hours,
                    "notes": rng.choice(["Kick-off", 'Review "v2" draft', "Café sync", None]),
                    "billable": billable,
                    "approval_status": status,
                    "approved_by": "Manager" if status == "approved" else None,
                    "is_billed": status == "approved" and rng.random() < 0.3,
                    "billable_rate": Decimal("150.00") if billable else None,
                    "cost_rate": Decimal("55.50"),
                    "currency": c["currency"],
                    "created_at": created,
                    "updated_at": created + timedelta(hours=rng.randint(0, 48)),
                }
            )
    money = pl.Decimal(18, 4)
    return SmallDataset(
        entities=entities,
        clients=pl.DataFrame(clients),
        projects=pl.DataFrame(projects, schema_overrides={"hourly_rate": money, "code": pl.String}),
        tasks=tasks,
        users=pl.DataFrame(users, schema_overrides={"default_hourly_rate": money, "cost_rate": money}),
        time_entries=pl.DataFrame(
            rows,
            schema_overrides={
                "hours": pl.Decimal(12, 4),
                "rounded_hours": pl.Decimal(12, 4),
                "billable_rate": money,
                "cost_rate": money,
                "notes": pl.String,
                "approved_by": pl.String,
                "created_at": pl.Datetime("us", "UTC"),
                "updated_at": pl.Datetime("us", "UTC"),
            },
        ),
    )
