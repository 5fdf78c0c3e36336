"""Shared-cost allocation: overhead costs (a GL export or CSV) spread to projects by drivers, to the
cent, with re-runs under new rules reversing what was posted before.

Input: `data/landing/<entity>/overheads/*.csv`, columns by header name `document, date, account,
amount, currency` and optionally `description, pool` (ISO dates, '.' decimals, amounts in the
entity's functional currency, negative for credits). A row joins the pool named in its `pool`
column, else the pool of its entity that lists its account. Usage quantities for `usage` pools:
`data/landing/<entity>/usage/*.csv` with `period (YYYY-MM), pool, project, quantity`.

Methodology (also written on every allocation row): each cost row of a pool and month is split
across the receiving projects in proportion to the pool's driver measured over that month -
hours worked, distinct people (headcount), usage quantity, billable revenue in the functional
currency, or the fixed weights. Shares are computed exactly in integers and rounded by the
largest-remainder rule: every project gets floor(amount x weight / total weight) minor units,
and the minor units still missing go one each to the projects with the largest remainders (ties
by project), so each cost row - and therefore each pool - is allocated exactly to the cent.

Journal (entity's functional currency, posted at month end, one entry per pool and run): Dr the
pool's expense account (default `allocated_overhead`) per project - or `capitalised_costs` for a
capitalisable project (mapping `capex`) - / Cr each cost row's own GL account.

Re-runs: the allocation of a period is recomputed on demand. If the result equals what is active,
nothing changes. Otherwise (another rule version, or changed inputs) the active entries are
reversed on the same posting date and the new allocation is posted as the next generation; the
reversal `reverses` the old entry, the new entry `supersedes` it (ledger.entry_links), and the old
allocation rows stay, marked `reversed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.group import AllocationPool, group_account
from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.capex import capitalisable_expr
from pm_accounting_pipeline.core.fx_providers import attach_rates, convert_minor_expr
from pm_accounting_pipeline.core.group_journal import Journal, assemble_signed, negate, signed_frame
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.ledger import money_expr
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rounding import decimal_to_scaled_expr, scaled_to_decimal_expr

COST_COLUMNS = ("document", "date", "account", "description", "amount", "currency", "pool")
_REQUIRED = ("document", "date", "account", "amount", "currency")
USAGE_COLUMNS = ("period", "pool", "project", "quantity")
_SCALE = 4  # driver quantities are carried as integers at 10^-4

METHODOLOGY = {
    "hours": "share of the hours worked on each project in {period} ({work} work)",
    "headcount": "share of the distinct people who recorded time on each project in {period} ({work} work)",
    "usage": "share of the usage quantities recorded per project for pool {pool} in {period}",
    "revenue": "share of each project's billable revenue in the functional currency in {period}",
    "fixed": "fixed split of pool {pool} from the mapping document (weights {weights})",
}
_RULE = "; exact integer shares, largest remainder to the cent (ties by project)"


class AllocationInputError(ValueError):
    """An allocation input file that cannot be used (usage quantities)."""


@dataclass(frozen=True)
class CostInput:
    rows: pl.DataFrame
    quarantine: pl.DataFrame


@dataclass(frozen=True)
class AllocationResult:
    allocations: pl.DataFrame  # ledger.allocations: every generation of the partition
    journal: Journal  # every entry of the partition (old, reversals, new)
    links: pl.DataFrame  # ledger.entry_links
    quarantine: pl.DataFrame
    changed: bool  # whether this run posted anything new
    generation: int


# --- inputs ----------------------------------------------------------------------------------------


def _read_csvs(folder: Path, columns: tuple[str, ...]) -> pl.DataFrame:
    frames = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
        raw = raw.rename({c: c.strip().lower() for c in raw.columns})
        raw = raw.with_columns(
            _record=pl.struct(pl.all()).struct.json_encode(),
            source_file=pl.lit(path.name),
            source_row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
            **{c: pl.lit(None, dtype=pl.String) for c in columns if c not in raw.columns},
        )
        frames.append(raw.select(*columns, "_record", "source_file", "source_row"))
    if not frames:
        return pl.DataFrame(
            schema={
                **{c: pl.String for c in columns},
                "_record": pl.String,
                "source_file": pl.String,
                "source_row": pl.Int64,
            }
        )
    out = pl.concat(frames).with_columns(pl.col(c).str.strip_chars() for c in columns)
    return out.with_columns(
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in columns
    )


def _pool_of(pools: list[AllocationPool], entity: str) -> pl.DataFrame:
    rows = [(p.id, a) for p in pools if p.entity == entity for a in p.accounts]
    return pl.DataFrame(rows, schema={"_pool_by_account": pl.String, "account": pl.String}, orient="row")


def read_costs(folder: Path, mapping: MappingDocument, entity: str, partition_date: date) -> CostInput:
    """Parse the entity's shared-cost rows; unusable rows become quarantine rows (layer allocation)."""
    fc = mapping.entity(entity).functional_currency
    digits = minor_digits(fc)
    raw = _read_csvs(folder, COST_COLUMNS).with_columns(
        cost_date=pl.col("date").str.strptime(pl.Date, "%Y-%m-%d", strict=False),
        currency=pl.col("currency").str.to_uppercase(),
    )
    pools = [p for p in mapping.allocations.pools if p.entity == entity]
    raw = raw.join(_pool_of(pools, entity), on="account", how="left", maintain_order="left").with_columns(
        pool=pl.coalesce("pool", "_pool_by_account")
    )
    frac = pl.col("amount").str.extract(r"\.(\d+)$").fill_null("")
    whole = pl.col("amount").str.extract(r"^-?(\d+)").cast(pl.Int64, strict=False)
    sign = pl.when(pl.col("amount").str.starts_with("-")).then(-1).otherwise(1)
    frac_minor = (
        frac.str.pad_end(3, "0").str.slice(0, digits).cast(pl.Int64, strict=False)
        if digits
        else pl.lit(0, pl.Int64)
    )
    raw = raw.with_columns(amount_minor=sign * (whole * 10**digits + frac_minor))
    known_pools = {p.id for p in pools}
    missing = pl.any_horizontal([pl.col(c).is_null() for c in _REQUIRED])
    reason = (
        pl.when(missing)
        .then(pl.lit("missing_required"))
        .when(pl.col("cost_date").is_null())
        .then(pl.lit("bad_date"))
        .when(~pl.col("amount").str.contains(r"^-?\d+(\.\d+)?$") | (frac.str.len_chars() > digits))
        .then(pl.lit("bad_rate"))
        .when(pl.col("currency") != fc)
        .then(pl.lit("currency_mismatch"))
        .when(pl.col("pool").is_null() | ~pl.col("pool").is_in(sorted(known_pools)))
        .then(pl.lit("unknown_pool"))
    )
    detail = (
        pl.when(missing)
        .then(pl.lit(f"a shared-cost row needs {list(_REQUIRED)}"))
        .when(pl.col("cost_date").is_null())
        .then(pl.format("date '{}' is not YYYY-MM-DD", "date"))
        .when(~pl.col("amount").str.contains(r"^-?\d+(\.\d+)?$") | (frac.str.len_chars() > digits))
        .then(pl.format("amount '{}' is not an amount with at most {} decimals", "amount", pl.lit(digits)))
        .when(pl.col("currency") != fc)
        .then(
            pl.format(
                "currency {} differs from {}'s functional currency {}", "currency", pl.lit(entity), pl.lit(fc)
            )
        )
        .otherwise(
            pl.format(
                "account {} (pool '{}') belongs to no allocation pool of {} (known: {})",
                "account",
                pl.col("pool").fill_null(""),
                pl.lit(entity),
                pl.lit(", ".join(sorted(known_pools)) or "none"),
            )
        )
    )
    raw = raw.with_columns(_reason=reason, _detail=detail)
    bad = raw.filter(pl.col("_reason").is_not_null())
    rows = raw.filter(pl.col("_reason").is_null()).select(
        pl.col("document").alias("source_document"),
        pl.col("account").alias("source_account"),
        pl.col("description").alias("source_description"),
        pl.col("cost_date").alias("source_date"),
        pl.col("amount_minor").alias("source_amount_minor"),
        "currency",
        "pool",
        "source_file",
        "source_row",
        "_record",
    )
    return CostInput(rows, cost_quarantine(bad, entity, partition_date, pl.col("_reason"), pl.col("_detail")))


def cost_quarantine(
    frame: pl.DataFrame, entity: str, partition_date: date, reason: pl.Expr, detail: pl.Expr
) -> pl.DataFrame:
    schema = polars_schema("staging.quarantine")
    date_col = "source_date" if "source_date" in frame.columns else "cost_date"
    return frame.select(
        pl.lit(entity).alias("entity"),
        pl.coalesce(pl.col(date_col), pl.lit(partition_date)).alias("partition_date"),
        pl.lit("allocation").alias("layer"),
        pl.lit("overheads_csv").alias("source_system"),
        "source_file",
        "source_row",
        pl.format("{}:{}", "source_file", "source_row").alias("source_id"),
        reason.alias("reason"),
        detail.alias("detail"),
        pl.col("_record").alias("source_record"),
    ).cast(dict(schema))


def read_usage(folder: Path) -> pl.DataFrame:
    """Usage quantities (period as the month's first day, pool, project, quantity at 10^-4)."""
    raw = _read_csvs(folder, USAGE_COLUMNS).with_columns(
        _period=pl.concat_str([pl.col("period"), pl.lit("-01")]).str.strptime(
            pl.Date, "%Y-%m-%d", strict=False
        ),
        _q=pl.col("quantity").str.contains(r"^\d+(\.\d{1,4})?$"),
    )
    bad = raw.filter(
        pl.any_horizontal([pl.col(c).is_null() for c in USAGE_COLUMNS])
        | pl.col("_period").is_null()
        | ~pl.col("_q")
    )
    if bad.height:
        where = ", ".join(f"{f}:{r}" for f, r in bad.select("source_file", "source_row").head(10).iter_rows())
        raise AllocationInputError(
            f"usage rows need period (YYYY-MM), pool, project and a quantity >= 0 with at most 4 decimals; "
            f"{bad.height} row(s) do not: {where}"
        )
    return raw.select(
        pl.col("_period").alias("period"),
        "pool",
        "project",
        decimal_to_scaled_expr(pl.col("quantity").cast(pl.Decimal(18, 4)), _SCALE)
        .cast(pl.Int64)
        .alias("weight"),
    )


# --- drivers ---------------------------------------------------------------------------------------


def project_frame(fx: pl.DataFrame) -> pl.DataFrame:
    """customer_job -> (customer_ref, project_code) as seen in the work."""
    return (
        fx.group_by("customer_job")
        .agg(pl.col("customer_ref").first(), pl.col("project_code").drop_nulls().first())
        .sort("customer_job")
    )


def _job_of(mapping: MappingDocument) -> dict[str, str]:
    out = {p.customer_job: p.customer_job for p in mapping.projects}
    out.update({p.code: p.customer_job for p in mapping.projects if p.code})
    return out


def driver_weights(
    pool: AllocationPool, fx_month: pl.DataFrame, usage: pl.DataFrame, mapping: MappingDocument, period: date
) -> pl.DataFrame:
    """(customer_job, weight) at 10^-4 for one pool and month, positive weights only."""
    job_of = _job_of(mapping)
    rows = fx_month.filter(pl.col("entity") == pool.entity)
    if pool.work == "billable" or pool.driver == "revenue":
        rows = rows.filter(pl.col("billing_status") == "billable")
    if pool.driver == "hours":
        w = rows.group_by("customer_job").agg(
            decimal_to_scaled_expr(pl.col("hours"), _SCALE).sum().cast(pl.Int64).alias("weight")
        )
    elif pool.driver == "headcount":
        w = rows.group_by("customer_job").agg(
            (pl.col("person_id").n_unique() * 10**_SCALE).cast(pl.Int64).alias("weight")
        )
    elif pool.driver == "revenue":
        w = rows.group_by("customer_job").agg(
            (pl.col("amount_functional_minor").sum() * 10**_SCALE).cast(pl.Int64).alias("weight")
        )
    elif pool.driver == "usage":
        w = (
            usage.filter((pl.col("pool") == pool.id) & (pl.col("period") == period))
            .with_columns(customer_job=pl.col("project").replace_strict(job_of, default=None))
            .filter(pl.col("customer_job").is_not_null())
            .group_by("customer_job")
            .agg(pl.col("weight").sum())
        )
        unknown = usage.filter(
            (pl.col("pool") == pool.id)
            & (pl.col("period") == period)
            & ~pl.col("project").is_in(sorted(job_of))
        )
        if unknown.height:
            raise AllocationInputError(
                f"usage for pool {pool.id}: unknown project(s) {sorted(set(unknown['project']))}"
            )
    else:
        w = (
            pl.DataFrame(
                {
                    "customer_job": [job_of[p] for p in pool.fixed_split],
                    "weight": [
                        int((v * Decimal(10**_SCALE)).to_integral_value()) for v in pool.fixed_split.values()
                    ],
                },
                schema={"customer_job": pl.String, "weight": pl.Int64},
            )
            .group_by("customer_job")
            .agg(pl.col("weight").sum())
        )
    if pool.projects:
        w = w.filter(pl.col("customer_job").is_in(sorted({job_of[p] for p in pool.projects})))
    return w.filter(pl.col("weight") > 0).sort("customer_job")


def methodology(pool: AllocationPool, period: date) -> str:
    weights = ", ".join(f"{k}: {v}" for k, v in sorted(pool.fixed_split.items()))
    text = METHODOLOGY[pool.driver].format(
        period=f"{period:%Y-%m}", work=pool.work, pool=pool.id, weights=weights
    )
    return f"{pool.id}: {text}{_RULE}"


def largest_remainder(costs: pl.DataFrame, weights: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Split each cost row's `source_amount_minor` over its `weights` rows (joined on `key`) so
    the parts sum exactly to the amount: floor shares, then one minor unit each to the largest
    remainders (ties by customer_job). Adds `allocated_minor`, `_w`, `_total`."""
    pairs = costs.join(weights, on=key, how="inner").with_columns(
        _total=pl.col("weight").sum().over("_cost"), _abs=pl.col("source_amount_minor").abs()
    )
    exact = pl.col("_abs").cast(pl.Int128) * pl.col("weight").cast(pl.Int128)
    pairs = pairs.with_columns(
        _base=(exact // pl.col("_total").cast(pl.Int128)).cast(pl.Int64),
        _rem=(exact % pl.col("_total").cast(pl.Int128)),
    ).with_columns(_short=pl.col("_abs") - pl.col("_base").sum().over("_cost"))
    pairs = pairs.sort("_cost", "_rem", "customer_job", descending=[False, True, False]).with_columns(
        _rank=pl.int_range(pl.len()).over("_cost")
    )
    sign = pl.when(pl.col("source_amount_minor") < 0).then(-1).otherwise(1)
    return pairs.with_columns(
        allocated_minor=sign * (pl.col("_base") + (pl.col("_rank") < pl.col("_short")).cast(pl.Int64))
    ).drop("_base", "_rem", "_short", "_rank", "_abs")


# --- the allocation run ------------------------------------------------------------------------------


def compute_allocation(
    costs: CostInput,
    fx_month: pl.DataFrame,
    usage: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_start: date,
    period_end: date,
    provider: object,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The allocation rows (without ids and entries) of the month, and quarantined cost rows
    (bad inputs, and rows whose pool has no driver quantity in the month)."""
    rows = costs.rows.filter(pl.col("source_date").is_between(period_start, period_end)).with_row_index(
        "_cost"
    )
    quarantine = [costs.quarantine.filter(pl.col("partition_date").is_between(period_start, period_end))]
    projects = project_frame(fx_month.filter(pl.col("entity") == entity)) if fx_month.height else None
    parts = []
    pools = {p.id: p for p in mapping.allocations.pools if p.entity == entity}
    for pool_id in sorted(set(rows["pool"])):
        pool = pools[pool_id]
        w = driver_weights(pool, fx_month, usage, mapping, period_start).with_columns(pool=pl.lit(pool_id))
        pool_rows = rows.filter(pl.col("pool") == pool_id)
        if w.height == 0:
            quarantine.append(
                cost_quarantine(
                    pool_rows,
                    entity,
                    period_start,
                    pl.lit("no_allocation_basis"),
                    pl.lit(
                        f"pool {pool_id}: driver {pool.driver} has no quantity for any project in {period_start:%Y-%m}"
                    ),
                )
            )
            continue
        split = largest_remainder(pool_rows, w, ["pool"]).with_columns(
            driver=pl.lit(pool.driver),
            methodology=pl.lit(methodology(pool, period_start)),
            _total_w=pl.col("_total"),
            target_default=pl.lit(
                pool.expense_account or group_account(mapping, entity, "allocated_overhead")
            ),
        )
        parts.append(split)
    if not parts:
        return pl.DataFrame(), pl.concat(quarantine)
    out = pl.concat(parts, how="diagonal_relaxed")
    known = (
        projects
        if projects is not None
        else pl.DataFrame(
            schema={"customer_job": pl.String, "customer_ref": pl.String, "project_code": pl.String}
        )
    )
    mapped = pl.DataFrame(
        {
            "customer_job": [p.customer_job for p in mapping.projects],
            "_ref": [
                next(c.customer_ref for c in mapping.clients if c.name == p.client) for p in mapping.projects
            ],
            "_code": [p.code for p in mapping.projects],
        },
        schema={"customer_job": pl.String, "_ref": pl.String, "_code": pl.String},
    )
    out = (
        out.join(known, on="customer_job", how="left")
        .join(mapped, on="customer_job", how="left")
        .with_columns(
            customer_ref=pl.coalesce("customer_ref", "_ref"),
            project_code=pl.coalesce("project_code", "_code"),
        )
        .drop("_ref", "_code")
    )
    capital = capitalisable_expr(mapping, task=None)
    cap_account = group_account(mapping, entity, "capitalised_costs")
    out = out.with_columns(capitalised=capital).with_columns(
        target_account=pl.when(pl.col("capitalised"))
        .then(pl.lit(cap_account))
        .otherwise(pl.col("target_default")),
        driver_quantity=scaled_to_decimal_expr(pl.col("weight"), _SCALE, 18),
        driver_total=scaled_to_decimal_expr(pl.col("_total_w"), _SCALE, 18),
    )
    # Reporting amounts per allocation row at the month-end rate; both sides of the entry sum
    # the same rows, so it balances in the reporting currency too.
    fc, rc = mapping.entity(entity).functional_currency, mapping.reporting_currency
    out = out.with_columns(_fc=pl.lit(fc), _rc=pl.lit(rc), _pe=pl.lit(period_end))
    out = attach_rates(out, provider, "_fc", "_rc", "_pe", "_rp_", rate_type="spot")
    if out["_rp_rate"].is_null().any():
        raise ValueError(f"allocation {entity}: no {fc}->{rc} rate on or shortly before {period_end}")
    digits = {fc: minor_digits(fc), rc: minor_digits(rc)}
    out = out.with_columns(
        _rp_minor=convert_minor_expr(
            pl.col("allocated_minor"),
            pl.col("_rp_rate"),
            pl.lit(digits[fc]),
            pl.lit(digits[rc]),
            mapping.rounding.money_mode,
        )
    )
    return out, pl.concat(quarantine)


def allocate(
    costs: CostInput,
    fx_month: pl.DataFrame,
    usage: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_start: date,
    period_end: date,
    existing: pl.DataFrame,
    existing_journal: Journal,
    existing_links: pl.DataFrame,
    provider: object,
) -> AllocationResult:
    """Allocate the entity's shared costs of the month, reconciling with what the partition
    already holds (`existing` ledger.allocations rows, their journal and links)."""
    rule_version = mapping.allocations.rule_version
    fc = mapping.entity(entity).functional_currency
    fresh, quarantine = compute_allocation(
        costs, fx_month, usage, mapping, entity, period_start, period_end, provider
    )
    active = existing.filter(pl.col("status") == "active")
    generation = int(existing["generation"].max() or 0) if existing.height else 0

    def signature(df: pl.DataFrame) -> list[tuple[object, ...]]:
        if df.height == 0:
            return []
        cols = [
            "pool",
            "source_file",
            "source_row",
            "customer_job",
            "allocated_minor",
            "target_account",
            "rule_version",
        ]
        return sorted(df.select(cols).rows())

    if fresh.height:
        fresh = fresh.with_columns(rule_version=pl.lit(rule_version))
    if signature(fresh) == signature(active):
        return AllocationResult(existing, existing_journal, existing_links, quarantine, False, generation)
    new_gen = generation + 1
    reversal, rev_links = negate(
        _entries_of(existing_journal, active),
        "allocation_reversal",
        period_end,
        rule_version,
        f"allocation of {period_start:%Y-%m} re-run as generation {new_gen} under {rule_version}",
    )
    rows, journal = _post(fresh, mapping, entity, period_start, period_end, new_gen, fc)
    old_entries = sorted(set(active["entry_id"])) if active.height else []
    supersede = pl.DataFrame(
        [
            (
                e_new,
                entity,
                "supersedes",
                e_old,
                f"generation {new_gen} ({rule_version}) replaces generation {generation}",
            )
            for e_new in sorted(set(journal.entries["entry_id"]))
            for e_old in old_entries
        ],
        schema=dict(polars_schema("ledger.entry_links")),
        orient="row",
    )
    reversed_rows = existing.with_columns(
        status=pl.when(pl.col("status") == "active").then(pl.lit("reversed")).otherwise(pl.col("status")),
        reversal_entry_id=pl.when(pl.col("status") == "active")
        .then(pl.col("entry_id").replace_strict(_reversal_of(rev_links), default=None))
        .otherwise(pl.col("reversal_entry_id")),
    )
    schema = polars_schema("ledger.allocations")
    allocations = pl.concat([reversed_rows.select(schema.names()), rows.select(schema.names())]).cast(
        dict(schema)
    )
    links = pl.concat([existing_links, rev_links, supersede]).unique(maintain_order=True)
    return AllocationResult(
        allocations, existing_journal.concat(reversal).concat(journal), links, quarantine, True, new_gen
    )


def _entries_of(journal: Journal, active: pl.DataFrame) -> Journal:
    ids = sorted(set(active["entry_id"])) if active.height else []
    return Journal(
        journal.entries.filter(pl.col("entry_id").is_in(ids)),
        journal.lines.filter(pl.col("entry_id").is_in(ids)),
        journal.keys.filter(pl.col("entry_id").is_in(ids)),
    )


def _reversal_of(links: pl.DataFrame) -> dict[str, str]:
    return dict(zip(links["linked_entry_id"].to_list(), links["entry_id"].to_list(), strict=True))


def _post(
    fresh: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    period_start: date,
    period_end: date,
    generation: int,
    fc: str,
) -> tuple[pl.DataFrame, Journal]:
    schema = polars_schema("ledger.allocations")
    if fresh.height == 0:
        return pl.DataFrame(schema=schema), Journal.empty()
    rc = mapping.reporting_currency
    fresh = fresh.with_columns(
        entry_key=pl.format("{}:g{}", "pool", pl.lit(generation)),
        _entity=pl.lit(entity),
    )
    common = {
        "entity": pl.lit(entity),
        "posting_date": pl.lit(period_end),
        "entry_type": pl.lit("allocation"),
        "currency": pl.lit(fc),
        "functional_currency": pl.lit(fc),
        "reporting_currency": pl.lit(rc),
        "document_id": pl.format("alloc:{}:{}", "pool", pl.lit(f"{period_start:%Y-%m}")),
        "entry_key": pl.col("entry_key"),
        "description": pl.format(
            "Allocation of pool {} for {} (generation {}, {})",
            "pool",
            pl.lit(f"{period_start:%Y-%m}"),
            pl.lit(generation),
            "rule_version",
        ),
    }
    # Reporting amounts: the functional amounts translated by the caller-supplied rate columns.
    debit = fresh.select(
        signed_frame(
            **common,
            account=pl.col("target_account"),
            account_role=pl.when(pl.col("capitalised"))
            .then(pl.lit("capitalised_costs"))
            .otherwise(pl.lit("allocated_overhead")),
            customer_ref=pl.col("customer_ref"),
            customer_job=pl.col("customer_job"),
            project_code=pl.col("project_code"),
            tx=pl.col("allocated_minor"),
            fn=pl.col("allocated_minor"),
            rp=pl.col("_rp_minor"),
        )
    )
    credit = fresh.select(
        signed_frame(
            **common,
            account=pl.col("source_account"),
            account_role=pl.lit("overhead_source"),
            tx=-pl.col("allocated_minor"),
            fn=-pl.col("allocated_minor"),
            rp=-pl.col("_rp_minor"),
        )
    )
    journal = assemble_signed(pl.concat([debit, credit]), mapping.allocations.rule_version)
    entry_of = journal.keys.select("entry_id", "entry_key").unique()
    currencies = {fc}
    rows = (
        fresh.join(entry_of, on="entry_key", how="left")
        .with_columns(
            entity=pl.lit(entity),
            period=pl.lit(period_start),
            generation=pl.lit(generation, dtype=pl.Int64),
            status=pl.lit("active"),
            allocated=money_expr("allocated_minor", "currency", currencies),
            reversal_entry_id=pl.lit(None, dtype=pl.String),
            allocation_id=stable_id_expr(
                pl.lit(entity),
                pl.lit(period_start),
                "pool",
                "source_file",
                "source_row",
                "customer_job",
                pl.lit(generation),
                prefix="alloc",
            ),
        )
        .sort("pool", "source_file", "source_row", "customer_job")
        .select(schema.names())
        .cast(dict(schema))
    )
    return rows, journal
