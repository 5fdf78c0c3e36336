"""Cleaning and mapping: raw source rows become canonical work items or quarantine rows.

Everything that decides *which* customer, job, task, person and billing status a raw time entry
belongs to lives here (name normalisation, number and flag parsing, duplicate handling, approval
gating). Amounts are decided later, in `core.rating`. Every raw row ends up in exactly one of the
two outputs: `raw.height == work_items.height + quarantine.height`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import partial

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import QUARANTINE_REASONS, polars_schema
from pm_accounting_pipeline.core.frames import KEY, key_hashes, lookup_distinct, lookup_positions
from pm_accounting_pipeline.core.ids import stable_id_expr
from pm_accounting_pipeline.core.money import known_currencies
from pm_accounting_pipeline.core.rounding import (
    MoneyRounding,
    decimal_to_scaled_expr,
    div_round_expr,
    rescale_expr,
    scaled_to_decimal_expr,
)

# Legal-form words dropped from the end of a client name before matching ("Acme, Inc." and
# "ACME Ltd" are the same customer). Only true legal forms: "Corporation", "Company", "Group" and
# "Partners" are part of a name and stay.
LEGAL_FORM_SUFFIXES: tuple[str, ...] = (
    "inc",
    "incorporated",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "plc",
    "gmbh",
    "mbh",
    "ag",
    "kg",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "bv",
    "nv",
    "pty",
    "oy",
    "oyj",
    "ab",
    "as",
    "asa",
    "aps",
    "kk",
)

# Reasons this layer can give, in priority order: the first one that applies wins.
CLEAN_REASONS: tuple[str, ...] = (
    "missing_required",
    "bad_hours",
    "negative_hours",
    "absurd_hours",
    "bad_rate",
    "bad_flag",
    "unknown_currency",
    "currency_mismatch",
    "unknown_client",
    "unknown_project",
    "wrong_entity",
    "duplicate_conflict",
    "duplicate_exact",
)
assert set(CLEAN_REASONS) <= set(QUARANTINE_REASONS)

_TRUE = ("yes", "y", "true", "t", "1", "approved")
_FALSE = ("no", "n", "false", "f", "0", "unapproved", "unsubmitted", "submitted", "pending", "rejected")

# The fields that make two rows with the same source id "the same entry" (file position, extraction
# time and the verbatim record are not content: the same entry re-exported differs in those).
_CONTENT_COLUMNS: tuple[str, ...] = (
    "entity",
    "work_date",
    "client",
    "client_id",
    "project",
    "project_code",
    "task",
    "person",
    "person_id",
    "email",
    "notes",
    "hours_raw",
    "rounded_hours_raw",
    "billable_raw",
    "approved_raw",
    "invoiced_raw",
    "bill_rate_raw",
    "cost_rate_raw",
    "currency_raw",
)

_PARSE_SCALE = 12  # numbers are read exactly at 10^-12 and rounded half-up to the column's scale


class MappingAmbiguityError(ValueError):
    """Two mapping entries that normalise to the same matching key, so a row could map to either."""


@dataclass(frozen=True)
class CleanResult:
    work_items: pl.DataFrame
    quarantine: pl.DataFrame


# --- name normalisation --------------------------------------------------------------------------


def normalise_name(expr: pl.Expr | str) -> pl.Expr:
    """The matching key of a name: casefolded, accents and punctuation removed, legal form dropped.

    Periods and apostrophes vanish ("A.C.M.E." -> "acme", "O'Brien" -> "obrien"), "&" reads as
    "and", other punctuation separates words, whitespace collapses, and trailing legal-form words
    from LEGAL_FORM_SUFFIXES are dropped ("Acme, Inc." -> "acme", "Müller GmbH" -> "muller").
    Use it on distinct values: it is regex-heavy.
    """
    e = pl.col(expr) if isinstance(expr, str) else expr
    suffixes = "|".join(sorted(LEGAL_FORM_SUFFIXES, key=len, reverse=True))
    return (
        e.str.normalize("NFKD")
        .str.replace_all(r"\p{M}+", "")
        .str.to_lowercase()
        .str.replace_all("ß", "ss", literal=True)
        .str.replace_all(r"[.'’`]", "")
        .str.replace_all("&", " and ", literal=True)
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
        .str.replace(rf"(?:\s+(?:{suffixes}))+$", "")
    )


def normalise_text(value: str) -> str:
    """`normalise_name` for one Python string (mapping documents, tests)."""
    return pl.select(normalise_name(pl.lit(value, dtype=pl.String))).item()


# --- reference frames built from the mapping document --------------------------------------------


def client_frame(mapping: MappingDocument) -> pl.DataFrame:
    """One row per mapped client with its billing attributes (client_idx is the position)."""
    default_approval = mapping.approval.require_approval
    return pl.DataFrame(
        {
            "client_idx": list(range(len(mapping.clients))),
            "client_name": [c.name for c in mapping.clients],
            "customer_ref": [c.customer_ref for c in mapping.clients],
            "client_entity": [c.entity for c in mapping.clients],
            "client_currency": [c.currency for c in mapping.clients],
            "client_source_id": [c.source_id for c in mapping.clients],
            "tax_profile": [c.tax_profile for c in mapping.clients],
            "payment_terms_days": [c.payment_terms_days for c in mapping.clients],
            "require_approval": [
                default_approval if c.require_approval is None else c.require_approval
                for c in mapping.clients
            ],
        },
        schema={
            "client_idx": pl.Int64,
            "client_name": pl.String,
            "customer_ref": pl.String,
            "client_entity": pl.String,
            "client_currency": pl.String,
            "client_source_id": pl.String,
            "tax_profile": pl.String,
            "payment_terms_days": pl.Int64,
            "require_approval": pl.Boolean,
        },
    )


def _client_names(mapping: MappingDocument) -> pl.DataFrame:
    """(name_key, client_idx) for every client name and alias; raises on a shared key."""
    rows = [(i, n) for i, c in enumerate(mapping.clients) for n in [c.name, *c.aliases]]
    names = pl.DataFrame(
        {"client_idx": [r[0] for r in rows], "alias": [r[1] for r in rows]},
        schema={"client_idx": pl.Int64, "alias": pl.String},
    ).with_columns(name_key=normalise_name("alias"))
    clash = (
        names.group_by("name_key")
        .agg(pl.col("client_idx").n_unique().alias("n"), pl.col("alias"))
        .filter(pl.col("n") > 1)
        .sort("name_key")
    )
    if clash.height:
        problems = [f"{r['alias']} all read as {r['name_key']!r}" for r in clash.iter_rows(named=True)]
        raise MappingAmbiguityError(
            "clients: names/aliases of different clients collide: " + "; ".join(problems)
        )
    return names.select("name_key", "client_idx").unique(maintain_order=True)


def project_frame(mapping: MappingDocument) -> pl.DataFrame:
    """One row per mapped project, with its client's index and its matching key."""
    client_idx = {c.name: i for i, c in enumerate(mapping.clients)}
    frame = pl.DataFrame(
        {
            "project_idx": list(range(len(mapping.projects))),
            "project_name": [p.name for p in mapping.projects],
            "project_client_idx": [client_idx[p.client] for p in mapping.projects],
            "mapped_project_code": [p.code for p in mapping.projects],
            "customer_job": [p.customer_job for p in mapping.projects],
            "project_billable": [p.billable for p in mapping.projects],
        },
        schema={
            "project_idx": pl.Int64,
            "project_name": pl.String,
            "project_client_idx": pl.Int64,
            "mapped_project_code": pl.String,
            "customer_job": pl.String,
            "project_billable": pl.Boolean,
        },
    ).with_columns(project_key=normalise_name("project_name"))
    clash = frame.filter(pl.struct("project_client_idx", "project_key").is_duplicated())
    if clash.height:
        raise MappingAmbiguityError(
            "projects: several projects of one client read as the same name: "
            + ", ".join(sorted(clash["project_name"].to_list()))
        )
    return frame


def task_frame(mapping: MappingDocument) -> pl.DataFrame:
    """One row per mapped task with its matching key."""
    frame = pl.DataFrame(
        {
            "mapped_task_name": [t.name for t in mapping.tasks],
            "mapped_item": [t.item for t in mapping.tasks],
            "mapped_revenue_account": [t.revenue_account for t in mapping.tasks],
            "billable_by_default": [t.billable_by_default for t in mapping.tasks],
        },
        schema={
            "mapped_task_name": pl.String,
            "mapped_item": pl.String,
            "mapped_revenue_account": pl.String,
            "billable_by_default": pl.Boolean,
        },
    ).with_columns(task_key=normalise_name("mapped_task_name"))
    clash = frame.filter(pl.col("task_key").is_duplicated())
    if clash.height:
        raise MappingAmbiguityError(
            "tasks: several tasks read as the same name: "
            + ", ".join(sorted(clash["mapped_task_name"].to_list()))
        )
    return frame


# --- parsing helpers ------------------------------------------------------------------------------


def _blank_to_null(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    return pl.when(s.str.len_bytes() > 0).then(s).otherwise(None)


def _map_person(d: pl.DataFrame) -> pl.DataFrame:
    """A person is identified by the source's id, else by a stable id of the normalised name."""
    d = d.with_columns(
        person_s=_blank_to_null(pl.col("person")), person_id_s=_blank_to_null(pl.col("person_id"))
    )
    return d.with_columns(
        _person_missing=pl.col("person_s").is_null() & pl.col("person_id_s").is_null(),
        _person_name=pl.coalesce("person_s", "person_id_s"),
        _person_id=pl.coalesce(
            "person_id_s",
            pl.when(pl.col("person_s").is_not_null()).then(
                stable_id_expr(normalise_name(pl.col("person_s")), prefix="person")
            ),
        ),
    )


# The source columns that decide customer, job, task, billing status and currency of a row.
_CONTEXT_KEY = [
    "entity",
    "client",
    "client_id",
    "project",
    "project_code",
    "task",
    "billable_raw",
    "approved_raw",
    "currency_raw",
]
# (work item column, parsed prefix, Decimal precision): numbers become Decimal(precision, 4).
_DECIMAL_OUTPUTS = (
    ("hours", "hours", 12),
    ("hours_rounded_source", "rounded", 12),
    ("source_bill_rate", "bill_rate", 18),
    ("source_cost_rate", "cost_rate", 18),
)


def billing_status(source_billable: pl.Expr, approved: pl.Expr) -> pl.Expr:
    """The billing status of a mapped row (time entry or expense): "internal" when its project
    (`project_billable`) is not billable; "non_billable" when `source_billable` is false;
    "held_unapproved" when approval is required (`require_approval`) and it is not `approved`;
    else "billable"."""
    return (
        pl.when(~pl.col("project_billable"))
        .then(pl.lit("internal"))
        .when(~source_billable)
        .then(pl.lit("non_billable"))
        .when(pl.col("require_approval") & ~approved)
        .then(pl.lit("held_unapproved"))
        .otherwise(pl.lit("billable"))
    )


def first_reason(conditions: dict[str, pl.Expr], priority: tuple[str, ...]) -> pl.Expr:
    """Per row, the first reason of `priority` whose condition holds (a null condition does not),
    or null when none does: the quarantine reason of a layer."""
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for code in reversed(priority):
        reason = pl.when(conditions[code].fill_null(False)).then(pl.lit(code)).otherwise(reason)
    return reason


def _map_context(
    d: pl.DataFrame,
    clients: pl.DataFrame,
    client_names: pl.DataFrame,
    projects: pl.DataFrame,
    tasks: pl.DataFrame,
    service_revenue: dict[str, str],
    project_entities: pl.DataFrame,
) -> pl.DataFrame:
    """Mapping, flags, currency and billing status of each distinct _CONTEXT_KEY combination.

    Billing status: "internal" when the project is not billable; "non_billable" when the source
    says so or, if the source is silent, the task is not billable by default; "held_unapproved"
    when billable, approval is required (client setting, else the deployment's) and the row is not
    approved; else "billable". is_billable is the decision before approval.
    """
    d = _map_references(d, clients=clients, client_names=client_names, projects=projects, tasks=tasks)
    # The entity billing the row: its project's (entity_assignment.projects), else its client's.
    d = d.join(project_entities, on="project_idx", how="left").with_columns(
        _project_entity=pl.when(~pl.col("_project_elsewhere")).then(pl.col("project_entity"))
    )
    d = d.with_columns(
        **_flag_columns("billable", pl.col("billable_raw")),
        **_flag_columns("approved", pl.col("approved_raw")),
        **_currency_columns(pl.col("currency_raw")),
    )
    source_billable = pl.coalesce(pl.col("billable_val"), pl.col("billable_by_default"), pl.lit(True))
    approved = pl.col("approved_val").fill_null(False)
    status = billing_status(source_billable, approved)
    default_account = pl.col("entity").replace_strict(service_revenue, return_dtype=pl.String)
    # Only what the reasons, details and work items need travels back to the million rows.
    return d.select(
        *KEY,
        *_CONTEXT_KEY,
        "client_s",
        "client_id_s",
        "project_s",
        "project_code_s",
        "task_s",
        "billable_bad",
        "approved_bad",
        "currency_bad",
        "row_currency",
        "client_currency",
        "client_entity",
        "client_name",
        "customer_ref",
        "project_name",
        "customer_job",
        (
            (pl.col("client_s").is_null() & pl.col("client_id_s").is_null())
            | (pl.col("project_s").is_null() & pl.col("project_code_s").is_null())
            | pl.col("task_s").is_null()
        ).alias("_context_missing"),
        (pl.col("billable_bad") | pl.col("approved_bad")).alias("_bad_flag"),
        (pl.col("row_currency").is_not_null() & (pl.col("row_currency") != pl.col("client_currency")))
        .fill_null(False)
        .alias("_mismatch"),
        (pl.coalesce("_project_entity", "client_entity") != pl.col("entity"))
        .fill_null(False)
        .alias("_wrong_entity"),
        "_project_entity",
        pl.col("client_idx").is_null().alias("_unknown_client"),
        (pl.col("project_idx").is_null() | pl.col("_project_elsewhere")).alias("_unknown_project"),
        "_project_elsewhere",
        (pl.col("project_billable") & source_billable).alias("is_billable"),
        approved.alias("is_approved"),
        status.alias("billing_status"),
        pl.coalesce("mapped_project_code", "project_code_s").alias("_wi_project_code"),
        pl.coalesce("mapped_task_name", "task_s").alias("_wi_task_name"),
        pl.coalesce("mapped_item", "task_s").alias("_wi_item"),
        pl.coalesce("mapped_revenue_account", default_account).alias("_wi_revenue_account"),
    )


def _map_references(
    d: pl.DataFrame,
    clients: pl.DataFrame,
    client_names: pl.DataFrame,
    projects: pl.DataFrame,
    tasks: pl.DataFrame,
) -> pl.DataFrame:
    """Client, project and task of each distinct (client, client_id, project, project_code, task)."""
    d = d.with_columns(
        client_s=_blank_to_null(pl.col("client")),
        client_id_s=_blank_to_null(pl.col("client_id")),
        project_s=_blank_to_null(pl.col("project")),
        project_code_s=_blank_to_null(pl.col("project_code")),
        task_s=_blank_to_null(pl.col("task")),
    )
    d = d.with_columns(
        client_key=pl.when(pl.col("client_s").is_not_null()).then(normalise_name(pl.col("client_s"))),
        project_key=pl.when(pl.col("project_s").is_not_null()).then(normalise_name(pl.col("project_s"))),
        task_key=pl.when(pl.col("task_s").is_not_null()).then(normalise_name(pl.col("task_s"))),
    )
    # Client: by source id when one matches, else by normalised name or alias.
    by_id = clients.select(
        pl.col("client_source_id").alias("client_id_s"), pl.col("client_idx").alias("_cid")
    )
    by_id = by_id.filter(pl.col("client_id_s").is_not_null()).unique("client_id_s", keep="first")
    d = d.join(by_id, on="client_id_s", how="left")
    d = d.join(
        client_names.rename({"name_key": "client_key", "client_idx": "_cname"}), on="client_key", how="left"
    )
    d = d.with_columns(client_idx=pl.coalesce("_cid", "_cname")).join(clients, on="client_idx", how="left")
    # Project: by code, else by (client, normalised name); a code must belong to the row's client.
    by_code = projects.filter(pl.col("mapped_project_code").is_not_null()).select(
        pl.col("mapped_project_code").alias("project_code_s"), pl.col("project_idx").alias("_pcode")
    )
    by_name = projects.select(
        pl.col("project_client_idx").alias("client_idx"), "project_key", pl.col("project_idx").alias("_pname")
    )
    d = d.join(by_code, on="project_code_s", how="left").join(
        by_name, on=["client_idx", "project_key"], how="left"
    )
    d = d.with_columns(project_idx=pl.coalesce("_pcode", "_pname"))
    d = d.join(projects.drop("project_key"), on="project_idx", how="left")
    d = d.with_columns(
        _project_elsewhere=pl.col("project_idx").is_not_null()
        & pl.col("client_idx").is_not_null()
        & (pl.col("project_client_idx") != pl.col("client_idx"))
    )
    # Task: by normalised name; an unknown task is not an error (its name becomes the item).
    return d.join(tasks, on="task_key", how="left").drop("_cid", "_cname", "_pcode", "_pname")


def _number_columns(
    prefix: str, text: pl.Expr, sep: pl.Expr, scale: int, allow_duration: bool
) -> dict[str, pl.Expr]:
    """Parse a number written with `sep` as decimal separator into an integer at 10^-scale.

    Tolerates thousands separators ("1,234.50" or "1.234,50"), spaces and a sign; with
    `allow_duration`, also "H:MM" and "H:MM:SS" (Toggl). Produces `<prefix>_e` (the scaled
    integer, null when empty or unparseable) and `<prefix>_bad` (text present but not a number).
    """
    s = text.str.replace_all(r"[\s\u00a0\u202f']", "")
    dot_ok = s.str.contains(r"^[+-]?(\d{1,3}(,\d{3})+|\d*)(\.\d+)?$") & s.str.contains(r"\d")
    comma_ok = s.str.contains(r"^[+-]?(\d{1,3}(\.\d{3})+|\d*)(,\d+)?$") & s.str.contains(r"\d")
    is_comma = sep == ","
    plain = (
        pl.when(is_comma)
        .then(
            pl.when(comma_ok).then(
                s.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
            )
        )
        .otherwise(pl.when(dot_ok).then(s.str.replace_all(",", "", literal=True)))
    )
    exact = decimal_to_scaled_expr(plain.str.to_decimal(scale=_PARSE_SCALE), _PARSE_SCALE)
    value = rescale_expr(exact, _PARSE_SCALE, scale, MoneyRounding.HALF_UP)
    if allow_duration:
        parts = s.str.extract_groups(r"^(\d+):([0-5]?\d)(?::([0-5]?\d))?$")
        seconds = (
            parts.struct.field("1").cast(pl.Int64) * 3600
            + parts.struct.field("2").cast(pl.Int64) * 60
            + parts.struct.field("3").cast(pl.Int64).fill_null(0)
        )
        duration = div_round_expr(seconds * (10**scale), pl.lit(3600))
        value = pl.coalesce(value, duration)
    return {f"{prefix}_e": value, f"{prefix}_bad": s.is_not_null() & value.is_null()}


def _flag_columns(prefix: str, text: pl.Expr) -> dict[str, pl.Expr]:
    s = text.str.strip_chars().str.to_lowercase()
    value = pl.when(s.is_in(_TRUE)).then(True).when(s.is_in(_FALSE)).then(False).otherwise(None)
    return {
        f"{prefix}_val": value,
        f"{prefix}_bad": s.is_not_null() & (s.str.len_bytes() > 0) & value.is_null(),
    }


def _currency_columns(text: pl.Expr) -> dict[str, pl.Expr]:
    """ISO code from "GBP", "gbp" or Harvest's "British Pound - GBP"; flag anything else."""
    s = text.str.strip_chars()
    code = (
        pl.when(s.str.contains(r"^[A-Za-z]{3}$"))
        .then(s.str.to_uppercase())
        .otherwise(s.str.extract(r"(?:^|[\s(\-])([A-Z]{3})\)?$", 1))
    )
    known = code.is_in(sorted(known_currencies()))
    present = s.is_not_null() & (s.str.len_bytes() > 0)
    return {
        "row_currency": pl.when(present & known).then(code),
        "currency_bad": present & ~known.fill_null(False),
    }


# --- the layer ------------------------------------------------------------------------------------


def clean_and_map(raw: pl.DataFrame, mapping: MappingDocument) -> CleanResult:
    """Turn `raw.time_entries` rows into `staging.work_items` and `staging.quarantine` rows."""
    raw_schema = polars_schema("raw.time_entries")
    missing = [c for c in raw_schema if c not in raw.columns]
    if missing:
        raise ValueError(f"raw time entries lack column(s) {missing}")
    unknown_entities = sorted(set(raw["entity"].unique().to_list()) - set(mapping.entity_ids))
    if unknown_entities:
        raise ValueError(
            f"raw rows belong to entities {unknown_entities} not in the mapping ({mapping.entity_ids})"
        )

    from pm_accounting_pipeline.core.entities import project_entities

    clients = client_frame(mapping)
    client_names = _client_names(mapping)
    # Spellings a person accepted in review, or fuzzy matches above the high threshold (core/dedupe.py).
    from pm_accounting_pipeline.core.dedupe import with_matched_names

    client_names = with_matched_names(client_names, raw, mapping)
    projects = project_frame(mapping)
    tasks = task_frame(mapping)
    rule_version = mapping.rule_version
    max_hours_e4 = int(mapping.limits.max_hours_per_entry.scaleb(4).to_integral_value())
    seps = {e.id: e.harvest_csv.decimal_separator for e in mapping.entities}
    service_revenue = {e: mapping.account(e, "service_revenue") for e in mapping.entity_ids}

    df = raw.select(raw_schema.names()).with_row_index("_row")
    # The decimal separator is a Harvest account setting (entity.harvest_csv) of the account the
    # row came from (its landing entity); every other source writes numbers with a point.
    df = df.with_columns(
        _sep=pl.when(pl.col("source_system") == "harvest_csv")
        .then(pl.coalesce("landing_entity", "entity").replace_strict(seps, return_dtype=pl.String))
        .otherwise(pl.lit(".")),
    )

    # Everything derived from low-cardinality source columns is computed once per distinct value
    # combination and joined back narrowly (see core.frames.lookup_distinct).
    mapped = partial(
        _map_context,
        clients=clients,
        client_names=client_names,
        projects=projects,
        tasks=tasks,
        service_revenue=service_revenue,
        project_entities=project_entities(mapping),
    )
    # Context and person columns are gathered late, for just the rows of each output; the reasons
    # need only a few flags now.
    ctx_pos, context = lookup_positions(df, _CONTEXT_KEY, mapped)
    person_pos, people = lookup_positions(df, ["person", "person_id"], _map_person)
    df = df.with_columns(_ctx=ctx_pos, _per=person_pos).hstack(
        [
            *context.select(_CONTEXT_FLAGS).select(pl.all().gather(ctx_pos)).get_columns(),
            people["_person_missing"].gather(person_pos),
        ]
    )
    for cols, specs in (
        (
            ["hours_raw", "rounded_hours_raw", "_sep"],
            (("hours_raw", "hours", True), ("rounded_hours_raw", "rounded", True)),
        ),
        (
            ["bill_rate_raw", "cost_rate_raw", "_sep"],
            (("bill_rate_raw", "bill_rate", False), ("cost_rate_raw", "cost_rate", False)),
        ),
    ):
        parsed = {
            k: v
            for col, prefix, duration in specs
            for k, v in _number_columns(
                prefix, _blank_to_null(pl.col(col)), pl.col("_sep"), 4, duration
            ).items()
        }
        # The contract's Decimal columns are made here too, once per distinct value.
        decimals = {
            out: scaled_to_decimal_expr(pl.col(f"{prefix}_e"), 4, precision)
            for out, prefix, precision in _DECIMAL_OUTPUTS
            if f"{prefix}_e" in parsed
        }
        df = lookup_distinct(
            df,
            cols,
            lambda d, parsed=parsed, decimals=decimals: d.with_columns(**parsed).with_columns(**decimals),
        )

    # Duplicates by (source_system, source_id): only the repeated ids need the heavier work.
    # The first 64 bits of the key hash suffice to pick candidates: _duplicate_status compares
    # the real ids, so a hash collision only costs a look at two rows that turn out unrelated.
    df = df.with_columns(_dup=key_hashes(df.select("source_system", "source_id"))["_k1"].is_duplicated())
    dups = _duplicate_status(
        df.select(
            "_row", "_dup", "source_file", "source_row", *_CONTENT_COLUMNS, "source_system", "source_id"
        ).filter(pl.col("_dup"))
    )
    df = df.hstack(
        df.select("_row").join(dups, on="_row", how="left", maintain_order="left").select(dups.columns[1:])
    )

    missing_required = (
        pl.col("_context_missing")
        | pl.col("_person_missing")
        | (pl.col("hours_e").is_null() & ~pl.col("hours_bad"))
    )
    negative = (pl.col("hours_e") < 0) | (pl.col("rounded_e") < 0)
    absurd = (pl.col("hours_e") > max_hours_e4) | (pl.col("rounded_e") > max_hours_e4)
    bad_rate = (
        pl.col("bill_rate_bad")
        | pl.col("cost_rate_bad")
        | (pl.col("bill_rate_e") < 0)
        | (pl.col("cost_rate_e") < 0)
    )
    conditions = {
        "missing_required": missing_required,
        "bad_hours": pl.col("hours_bad") | pl.col("rounded_bad"),
        "negative_hours": negative,
        "absurd_hours": absurd,
        "bad_rate": bad_rate,
        "bad_flag": pl.col("_bad_flag"),
        "unknown_currency": pl.col("currency_bad"),
        "currency_mismatch": pl.col("_mismatch"),
        "unknown_client": pl.col("_unknown_client"),
        "unknown_project": pl.col("_unknown_project"),
        "wrong_entity": pl.col("_wrong_entity"),
        "duplicate_conflict": pl.col("_dup_reason") == "duplicate_conflict",
        "duplicate_exact": pl.col("_dup_reason") == "duplicate_exact",
    }
    lf = df.with_columns(_reason=first_reason(conditions, CLEAN_REASONS)).lazy()

    # Lazy, so only the columns each output needs are filtered.
    bad = _with_gathered(lf.filter(pl.col("_reason").is_not_null()), context, people, _DETAIL_COLUMNS)
    quarantine = _quarantine_rows(bad, max_hours=mapping.limits.max_hours_per_entry)
    good = _with_gathered(lf.filter(pl.col("_reason").is_null()), context, people, _OUTPUT_COLUMNS)
    work_items = _work_items(good, rule_version=rule_version)
    return CleanResult(work_items=work_items, quarantine=quarantine)


SOURCE_KEY = ["source_system", "source_id"]  # one source record: its copies share this key


def copy_marks(content: tuple[str, ...], seed: int) -> dict[str, pl.Expr]:
    """Where each row stands among the copies of its source record (`SOURCE_KEY`), for a frame
    ordered by source file and row within each record: `_variants`, how many different contents
    (the `content` columns, hashed with `seed`) the record has; `_first_file` and `_first_row`,
    where its first copy stands; `_is_first`, whether the row is that first copy."""
    return {
        "_variants": pl.struct([pl.col(c) for c in content]).hash(seed=seed).n_unique().over(SOURCE_KEY),
        "_first_file": pl.col("source_file").first().over(SOURCE_KEY),
        "_first_row": pl.col("source_row").first().over(SOURCE_KEY),
        "_is_first": pl.int_range(pl.len()).over(SOURCE_KEY) == 0,
    }


def _duplicate_status(dups: pl.DataFrame) -> pl.DataFrame:
    """For rows whose source id repeats: conflict (content differs: all copies) or exact (later copies)."""
    schema = {"_row": pl.UInt32, "_dup_reason": pl.String, "_dup_detail": pl.String}
    if dups.height == 0:
        return pl.DataFrame(schema=schema)
    ordered = dups.sort("source_system", "source_id", "source_file", "source_row")
    out = ordered.with_columns(
        **copy_marks(_CONTENT_COLUMNS, seed=0xD0B),
        _copies=pl.len().over(SOURCE_KEY),
    )
    return out.select(
        "_row",
        _dup_reason=pl.when(pl.col("_variants") > 1)
        .then(pl.lit("duplicate_conflict"))
        .when(~pl.col("_is_first"))
        .then(pl.lit("duplicate_exact")),
        _dup_detail=pl.when(pl.col("_variants") > 1)
        .then(
            pl.format(
                "source id '{}' appears {} times with {} different contents; every copy is held back",
                "source_id",
                "_copies",
                "_variants",
            )
        )
        .otherwise(
            pl.format(
                "source id '{}' already accepted from {} row {} with identical content",
                "source_id",
                "_first_file",
                "_first_row",
            )
        ),
    ).cast(schema)


def _q(v: str) -> pl.Expr:
    """A raw value quoted for a detail message."""
    return pl.concat_str([pl.lit("'"), pl.col(v).fill_null(""), pl.lit("'")])


def missing_reference_labels() -> list[pl.Expr]:
    """The label "client" when a row names neither a client nor a client id, "project" when it names
    neither a project nor a project code (else null): the first labels of a `missing_required` detail."""
    return [
        pl.when(pl.col("client_s").is_null() & pl.col("client_id_s").is_null()).then(pl.lit("client")),
        pl.when(pl.col("project_s").is_null() & pl.col("project_code_s").is_null()).then(pl.lit("project")),
    ]


def bad_flag_detail() -> pl.Expr:
    """The `bad_flag` detail: the billable flag quoted when it cannot be read, else the approved flag."""
    return pl.concat_str(
        [
            pl.when(pl.col("billable_bad")).then(pl.lit("billable ")).otherwise(pl.lit("approved ")),
            pl.when(pl.col("billable_bad")).then(_q("billable_raw")).otherwise(_q("approved_raw")),
            pl.lit(" is not a yes/no value"),
        ]
    )


def unknown_currency_detail() -> pl.Expr:
    """The `unknown_currency` detail: the row's currency quoted."""
    return pl.concat_str([pl.lit("currency "), _q("currency_raw"), pl.lit(" is not an ISO 4217 code")])


def quarantine_frame(
    rows: pl.DataFrame, *, partition_date: str, layer: str, reason: pl.Expr, detail: pl.Expr
) -> pl.DataFrame:
    """`rows` as `staging.quarantine` rows of `layer`, in their order: the partition's entity and
    date (from the `partition_date` column), the source columns and record as they are, with
    `reason` and `detail` computed per row."""
    schema = polars_schema("staging.quarantine")
    out = rows.select(
        "entity",
        pl.col(partition_date).alias("partition_date"),
        pl.lit(layer).alias("layer"),
        "source_system",
        "source_file",
        "source_row",
        "source_id",
        reason.alias("reason"),
        detail.alias("detail"),
        "source_record",
    )
    return out.cast(dict(schema)).select(schema.names())


# Columns of the context and person tables that each output gathers for its own rows.
_CONTEXT_FLAGS = [
    "_context_missing",
    "_bad_flag",
    "currency_bad",
    "_mismatch",
    "_unknown_client",
    "_unknown_project",
    "_wrong_entity",
]
_DETAIL_COLUMNS = (
    [
        "entity",
        "work_date",
        "source_system",
        "source_file",
        "source_row",
        "source_id",
        "source_record",
        "_reason",
        "_dup_detail",
        "hours_e",
        "hours_bad",
        "rounded_e",
        "bill_rate_bad",
        "bill_rate_e",
        "client",
        "client_id",
        "project",
        "project_code",
        "hours_raw",
        "rounded_hours_raw",
        "bill_rate_raw",
        "cost_rate_raw",
        "billable_raw",
        "approved_raw",
        "currency_raw",
        "entity_rule",
        "landing_entity",
    ],
    [
        "client_s",
        "client_id_s",
        "project_s",
        "project_code_s",
        "task_s",
        "billable_bad",
        "row_currency",
        "client_currency",
        "client_name",
        "client_entity",
        "_project_entity",
        "customer_job",
        "_project_elsewhere",
    ],
    ["person_s", "person_id_s"],
)
_OUTPUT_COLUMNS = (
    [
        "entity",
        "work_date",
        "source_system",
        "source_id",
        "source_file",
        "source_row",
        "extracted_at",
        "notes",
        "hours",
        "hours_rounded_source",
        "source_bill_rate",
        "source_cost_rate",
    ],
    [
        "client_name",
        "customer_ref",
        "project_name",
        "_wi_project_code",
        "customer_job",
        "_wi_task_name",
        "_wi_item",
        "_wi_revenue_account",
        "is_billable",
        "is_approved",
        "billing_status",
        "client_currency",
    ],
    ["_person_id", "_person_name"],
)


def _with_gathered(
    rows: pl.LazyFrame,
    context: pl.DataFrame,
    people: pl.DataFrame,
    columns: tuple[list[str], list[str], list[str]],
) -> pl.DataFrame:
    """The selected rows' own columns, with the named context and person columns gathered for them."""
    own, ctx_cols, person_cols = columns
    frame = rows.select(*own, "_ctx", "_per").collect()
    return frame.hstack(
        [
            *context.select(ctx_cols).select(pl.all().gather(frame["_ctx"])).get_columns(),
            *people.select(person_cols).select(pl.all().gather(frame["_per"])).get_columns(),
        ]
    )


def _quarantine_rows(bad: pl.DataFrame, max_hours: Decimal) -> pl.DataFrame:
    r = pl.col("_reason")
    missing_fields = pl.concat_str(
        [
            *missing_reference_labels(),
            pl.when(pl.col("task_s").is_null()).then(pl.lit("task")),
            pl.when(pl.col("person_s").is_null() & pl.col("person_id_s").is_null()).then(pl.lit("person")),
            pl.when(pl.col("hours_e").is_null() & ~pl.col("hours_bad")).then(pl.lit("hours")),
        ],
        separator=", ",
        ignore_nulls=True,
    )
    which_hours_bad = pl.when(pl.col("hours_bad")).then(pl.lit("hours ")).otherwise(pl.lit("rounded hours "))
    which_hours_raw = pl.when(pl.col("hours_bad")).then(_q("hours_raw")).otherwise(_q("rounded_hours_raw"))
    neg_first = pl.col("hours_e") < 0
    abs_first = pl.col("hours_e") > int(max_hours.scaleb(4))
    rate_is_bill = pl.col("bill_rate_bad") | (pl.col("bill_rate_e") < 0).fill_null(False)
    client_label = pl.concat_str(
        [
            pl.lit("client "),
            _q("client"),
            pl.when(pl.col("client_id_s").is_not_null()).then(
                pl.concat_str([pl.lit(" (id "), _q("client_id"), pl.lit(")")])
            ),
        ],
        ignore_nulls=True,
    )
    detail = (
        pl.when(r == "missing_required")
        .then(pl.concat_str([pl.lit("required field(s) empty: "), missing_fields]))
        .when(r == "bad_hours")
        .then(pl.concat_str([which_hours_bad, which_hours_raw, pl.lit(" is not a number")]))
        .when(r == "negative_hours")
        .then(
            pl.concat_str(
                [
                    pl.when(neg_first).then(pl.lit("hours ")).otherwise(pl.lit("rounded hours ")),
                    pl.when(neg_first).then(_q("hours_raw")).otherwise(_q("rounded_hours_raw")),
                    pl.lit(" are negative"),
                ]
            )
        )
        .when(r == "absurd_hours")
        .then(
            pl.concat_str(
                [
                    pl.when(abs_first).then(pl.lit("hours ")).otherwise(pl.lit("rounded hours ")),
                    pl.when(abs_first).then(_q("hours_raw")).otherwise(_q("rounded_hours_raw")),
                    pl.lit(f" exceed the maximum of {max_hours} per entry"),
                ]
            )
        )
        .when(r == "bad_rate")
        .then(
            pl.concat_str(
                [
                    pl.when(rate_is_bill).then(pl.lit("bill rate ")).otherwise(pl.lit("cost rate ")),
                    pl.when(rate_is_bill).then(_q("bill_rate_raw")).otherwise(_q("cost_rate_raw")),
                    pl.lit(" is not a non-negative number"),
                ]
            )
        )
        .when(r == "bad_flag")
        .then(bad_flag_detail())
        .when(r == "unknown_currency")
        .then(unknown_currency_detail())
        .when(r == "currency_mismatch")
        .then(
            pl.format(
                "row currency {} differs from the billing currency {} of client '{}'",
                "row_currency",
                "client_currency",
                "client_name",
            )
        )
        .when(r == "unknown_client")
        .then(pl.concat_str([client_label, pl.lit(" has no mapping to a customer")]))
        .when(r == "unknown_project")
        .then(
            pl.when(pl.col("_project_elsewhere"))
            .then(
                pl.format(
                    "project code '{}' belongs to another client than '{}'", "project_code_s", "client_name"
                )
            )
            .otherwise(
                pl.concat_str(
                    [
                        pl.lit("project "),
                        _q("project"),
                        pl.lit(" (code "),
                        _q("project_code"),
                        pl.lit(") of client '"),
                        pl.col("client_name"),
                        pl.lit("' has no mapping to a customer job"),
                    ]
                )
            )
        )
        .when(r == "wrong_entity")
        .then(
            pl.concat_str(
                [
                    pl.when(pl.col("_project_entity").is_not_null())
                    .then(
                        pl.format(
                            "project '{}' is assigned to entity '{}'", "customer_job", "_project_entity"
                        )
                    )
                    .otherwise(
                        pl.format("client '{}' is mapped to entity '{}'", "client_name", "client_entity")
                    ),
                    pl.format(
                        ", not to this partition's entity '{}' (assigned by rule '{}', landed for '{}')",
                        "entity",
                        pl.col("entity_rule").fill_null("pm_account"),
                        pl.coalesce("landing_entity", "entity"),
                    ),
                ]
            )
        )
        .otherwise(pl.col("_dup_detail"))
    )
    return quarantine_frame(
        bad,
        partition_date="work_date",
        layer="clean",
        reason=pl.col("_reason"),
        detail=detail.fill_null(pl.col("_reason")),
    )


def _work_items(good: pl.DataFrame, rule_version: str) -> pl.DataFrame:
    schema = polars_schema("staging.work_items")
    out = good.select(
        stable_id_expr("source_system", "source_id", pl.lit(rule_version)).alias("work_item_id"),
        "entity",
        "work_date",
        "source_system",
        "source_id",
        "source_file",
        "source_row",
        "extracted_at",
        "client_name",
        "customer_ref",
        "project_name",
        pl.col("_wi_project_code").alias("project_code"),
        "customer_job",
        pl.col("_wi_task_name").alias("task_name"),
        pl.col("_wi_item").alias("item"),
        pl.col("_wi_revenue_account").alias("revenue_account"),
        pl.col("_person_id").alias("person_id"),
        pl.col("_person_name").alias("person_name"),
        "notes",
        "hours",
        "hours_rounded_source",
        "is_billable",
        "is_approved",
        "billing_status",
        pl.col("client_currency").alias("currency"),
        "source_bill_rate",
        "source_cost_rate",
        pl.lit(None, dtype=pl.String).alias("approved_by"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("approved_at"),  # core/approvals.py fills both
        pl.lit(rule_version).alias("rule_version"),
    )
    return out.cast(dict(schema)).select(schema.names())
