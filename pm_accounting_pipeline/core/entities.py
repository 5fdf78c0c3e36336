"""Entity assignment: the legal entity each raw row belongs to, decided when raw rows are read.

A row arrives with the entity of the PM account (Harvest account) or landing folder it came
from. The mapping document's `entity_assignment` section lists the rules in precedence order:

- `project`: `entity_assignment.projects` names the entity billing the row's project;
- `client`: the entity billing the row's client (`clients[].entity`);
- `person`: the person's employer (`group.people`, by person id, else by normalised name);
- `pm_account`: the entity of the account or landing folder (always decides, when listed).

The first rule that yields an entity decides. The row keeps `landing_entity` (where it came from)
and records the deciding rule in `entity_rule`, so the audit trail shows why it is where it is.
Clients and projects are matched exactly as cleaning matches them (core/clean.py), so the two
layers agree on them.

A row goes to quarantine instead (layer `raw`, filed under its landing entity and work date) when
- no rule decides it (`no_entity`: e.g. `pm_account` left out of the precedence),
- the deciding rule names an entity the document does not list (`unknown_entity`),
- the deciding rule contradicts the entity billing the row's client or project (`wrong_entity`):
  with `person` or `pm_account` ranked above `client`, an entity would book work for a client
  another entity bills. This is how a deployment asks for cross-entity rows to be held back.

Every input row is in exactly one output: `raw.height == rows.height + quarantine.height`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_accounting_pipeline.config.entities import ENTITY_RULES
from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import empty_frame, polars_schema
from pm_accounting_pipeline.core.clean import (
    _client_names,
    _map_references,
    client_frame,
    normalise_name,
    project_frame,
    task_frame,
)
from pm_accounting_pipeline.core.dedupe import with_matched_names
from pm_accounting_pipeline.core.frames import KEY, lookup_distinct
from pm_accounting_pipeline.core.intercompany import employer_frame

_CONTEXT = ["landing_entity", "client", "client_id", "project", "project_code"]
_PERSON = ["person", "person_id"]


@dataclass(frozen=True)
class AssignmentResult:
    """Assigned rows (the input's columns, `entity`, `landing_entity` and `entity_rule` set) and
    the rows no entity could be given (staging.quarantine rows)."""

    rows: pl.DataFrame
    quarantine: pl.DataFrame


def project_entities(mapping: MappingDocument) -> pl.DataFrame:
    """`entity_assignment.projects` per mapped project: (project_idx, project_entity)."""
    overrides = mapping.entity_assignment.projects
    rows = [
        (i, overrides.get(p.customer_job) or (overrides.get(p.code) if p.code else None))
        for i, p in enumerate(mapping.projects)
    ]
    return pl.DataFrame(
        rows, schema={"project_idx": pl.Int64, "project_entity": pl.String}, orient="row"
    ).filter(pl.col("project_entity").is_not_null())


def _blank_to_null(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    return pl.when(s.str.len_bytes() > 0).then(s).otherwise(None)


def _context(raw: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    """Client and project entities per distinct (landing entity, client, project) combination."""
    clients = client_frame(mapping)
    # The same spellings cleaning accepts: names, aliases, review decisions and automatic merges,
    # the latter among the clients of the entity the row was landed for.
    names = with_matched_names(
        _client_names(mapping),
        raw.select(pl.col("landing_entity").alias("entity"), "client", "client_id"),
        mapping,
    )
    projects = project_frame(mapping)
    tasks = task_frame(mapping).head(0)
    overrides = project_entities(mapping)

    def derive(d: pl.DataFrame) -> pl.DataFrame:
        m = _map_references(
            d.with_columns(pl.lit(None, dtype=pl.String).alias("task")),
            clients=clients,
            client_names=names,
            projects=projects,
            tasks=tasks,
        )
        m = m.join(overrides, on="project_idx", how="left")
        own_project = pl.col("project_idx").is_not_null() & ~pl.col("_project_elsewhere")
        return m.select(
            *KEY,
            *_CONTEXT,
            pl.when(own_project).then(pl.col("project_entity")).alias("_project_entity"),
            pl.when(own_project).then(pl.col("customer_job")).alias("_customer_job"),
            pl.col("client_entity").alias("_client_entity"),
            pl.col("client_name").alias("_client_name"),
        )

    return lookup_distinct(raw, _CONTEXT, derive)


def _people(raw: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    """The employer of each distinct (person, person_id) in `group.people`, else null."""
    people = employer_frame(mapping)
    by_id = people.filter(pl.col("person_id").is_not_null()).select(
        pl.col("person_id").alias("_pid"), pl.col("employer").alias("_by_id")
    )
    by_name = people.filter(pl.col("person_id").is_null()).select(
        "person_key", pl.col("employer").alias("_by_name")
    )

    def derive(d: pl.DataFrame) -> pl.DataFrame:
        d = d.with_columns(
            _pid=_blank_to_null(pl.col("person_id")),
            person_key=normalise_name(_blank_to_null(pl.col("person"))),
        )
        d = d.join(by_id, on="_pid", how="left").join(by_name, on="person_key", how="left")
        return d.select(*KEY, *_PERSON, pl.coalesce("_by_id", "_by_name").alias("_person_entity"))

    return lookup_distinct(raw, _PERSON, derive)


def _q(col: str) -> pl.Expr:
    return pl.concat_str([pl.lit("'"), pl.col(col).fill_null(""), pl.lit("'")])


def assign_entities(
    raw: pl.DataFrame, mapping: MappingDocument, date_column: str = "work_date"
) -> AssignmentResult:
    """Give every row of `raw` its legal entity by the document's `entity_assignment` rules.

    `raw` has the columns of raw.time_entries (at least entity, client, client_id, project,
    project_code, person, person_id, the date column, the source lineage columns and
    source_record). `entity` is read as the landing entity when `landing_entity` is empty, so
    assigning an already assigned frame gives the same result.
    """
    quarantine_schema = polars_schema("staging.quarantine")
    columns = raw.columns
    landing = pl.coalesce("landing_entity", "entity") if "landing_entity" in columns else pl.col("entity")
    df = raw.with_columns(landing.alias("landing_entity"))
    if "entity_rule" not in columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("entity_rule"))
    out_columns = [*columns, *[c for c in ("landing_entity", "entity_rule") if c not in columns]]
    if df.height == 0:
        return AssignmentResult(df.select(out_columns), empty_frame("staging.quarantine"))

    precedence = list(mapping.entity_assignment.precedence)
    df = _people(_context(df, mapping), mapping)
    candidates = {
        "project": pl.col("_project_entity"),
        "client": pl.col("_client_entity"),
        "person": pl.col("_person_entity"),
        "pm_account": pl.col("landing_entity"),
    }
    assert set(candidates) == set(ENTITY_RULES)
    chosen = pl.coalesce([candidates[r] for r in precedence])
    rule: pl.Expr = pl.lit(None, dtype=pl.String)
    for r in reversed(precedence):
        rule = pl.when(candidates[r].is_not_null()).then(pl.lit(r)).otherwise(rule)
    billing = pl.coalesce("_project_entity", "_client_entity")
    known = pl.lit(pl.Series(mapping.entity_ids, dtype=pl.String)).implode()
    df = df.with_columns(_entity=chosen, _rule=rule, _billing=billing)
    reason = (
        pl.when(pl.col("_entity").is_null())
        .then(pl.lit("no_entity"))
        .when(~pl.col("_entity").is_in(known))
        .then(pl.lit("unknown_entity"))
        .when(pl.col("_billing").is_not_null() & (pl.col("_billing") != pl.col("_entity")))
        .then(pl.lit("wrong_entity"))
    )
    df = df.with_columns(_reason=reason)

    rows = (
        df.filter(pl.col("_reason").is_null())
        .with_columns(entity=pl.col("_entity"), entity_rule=pl.col("_rule"))
        .select(out_columns)
    )
    bad = df.filter(pl.col("_reason").is_not_null())
    by = pl.concat_str([pl.lit("by rule '"), pl.col("_rule"), pl.lit("'")])
    billed_by = (
        pl.when(pl.col("_project_entity").is_not_null())
        .then(pl.format("project '{}' is billed by entity '{}'", "_customer_job", "_project_entity"))
        .otherwise(pl.format("client '{}' is billed by entity '{}'", "_client_name", "_client_entity"))
    )
    detail = (
        pl.when(pl.col("_reason") == "no_entity")
        .then(
            pl.concat_str(
                [
                    pl.lit(f"no rule of entity_assignment.precedence {precedence} applies: client "),
                    _q("client"),
                    pl.lit(" has no mapping, person "),
                    _q("person"),
                    pl.lit(" is not in group.people"),
                ]
            )
        )
        .when(pl.col("_reason") == "unknown_entity")
        .then(
            pl.concat_str(
                [
                    pl.lit("assigned "),
                    by,
                    pl.lit(" to entity "),
                    _q("_entity"),
                    pl.lit(f", which the mapping document does not list ({mapping.entity_ids})"),
                ]
            )
        )
        .otherwise(
            pl.concat_str(
                [
                    billed_by,
                    pl.lit(", but rule '"),
                    pl.col("_rule"),
                    pl.lit(f"' of entity_assignment.precedence {precedence} assigns it to "),
                    _q("_entity"),
                    pl.lit(" (landed for "),
                    _q("landing_entity"),
                    pl.lit(")"),
                ]
            )
        )
    )
    quarantine = bad.select(
        pl.col("landing_entity").alias("entity"),
        pl.col(date_column).alias("partition_date"),
        pl.lit("raw").alias("layer"),
        "source_system",
        "source_file",
        "source_row",
        "source_id",
        pl.col("_reason").alias("reason"),
        detail.alias("detail"),
        "source_record",
    ).cast(dict(quarantine_schema))
    return AssignmentResult(rows, quarantine.select(quarantine_schema.names()))


def rows_by_rule(rows: pl.DataFrame) -> dict[str, int]:
    """Assigned rows per entity_rule (run metadata)."""
    counts = rows.group_by("entity_rule").len().sort("entity_rule")
    return {str(r): int(n) for r, n in counts.iter_rows()}


def rerouted(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows assigned to another entity than their landing entity, per (landing_entity, entity, rule)."""
    return (
        rows.filter(pl.col("entity") != pl.col("landing_entity"))
        .group_by("landing_entity", "entity", "entity_rule")
        .len("rows")
        .sort("landing_entity", "entity", "entity_rule")
    )
