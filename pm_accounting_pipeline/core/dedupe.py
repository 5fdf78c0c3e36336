"""Client de-duplication: which mapped client a source spelling is, decided by rules and fuzzy scores.

The rules, in order (the first that applies decides, and the decision log names it):

1. `source_id`: the row's client id is a mapped client's `source_id` (ids compared trimmed);
2. `exact_name` / `alias`: the normalised name (`core.clean.normalise_name`: case, accents,
   punctuation, legal form) equals a client's normalised name or alias;
3. `decision_merge` / `decision_keep_apart`: a person decided this spelling in the review list
   (`client_matching.decisions` of the mapping document);
4. fuzzy matching with rapidfuzz against the names and aliases of the clients of the row's entity:
   the best client's score (0-100) at or above `high_threshold` merges automatically
   (`fuzzy_auto`); from `low_threshold` up to the high threshold the spelling goes to the review
   list (`fuzzy_review`); when the runner-up client scores within AMBIGUITY_MARGIN of the best and
   at least the low threshold, a person must choose (`fuzzy_ambiguous`, review); below the low
   threshold the spelling is kept apart (`no_match`).

Cleaning applies the merges (`with_matched_names`), so a spelling in review or kept apart stays
quarantined as `unknown_client` until a person accepts it or maps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from pm_accounting_pipeline.config.schema import MappingDocument, parse_mapping
from pm_accounting_pipeline.core.clean import normalise_name

AMBIGUITY_MARGIN = 3.0
_SCORERS = {
    "token_sort_ratio": fuzz.token_sort_ratio,
    "token_set_ratio": fuzz.token_set_ratio,
    "ratio": fuzz.ratio,
    "WRatio": fuzz.WRatio,
}

MATCH_SCHEMA = pl.Schema(
    {
        "entity": pl.String,
        "client": pl.String,
        "client_id": pl.String,
        "name_key": pl.String,
        "rule": pl.String,
        "outcome": pl.String,
        "client_idx": pl.Int64,
        "client_name": pl.String,
        "customer_ref": pl.String,
        "score": pl.Float64,
        "runner_up": pl.String,
        "runner_up_score": pl.Float64,
    }
)


def _blank_to_null(e: pl.Expr) -> pl.Expr:
    s = e.str.strip_chars()
    return pl.when(s.str.len_bytes() > 0).then(s).otherwise(None)


def _clients(mapping: MappingDocument) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "client_idx": list(range(len(mapping.clients))),
            "client_name": [c.name for c in mapping.clients],
            "customer_ref": [c.customer_ref for c in mapping.clients],
            "client_entity": [c.entity for c in mapping.clients],
            "source_id": [c.source_id.strip() if c.source_id else None for c in mapping.clients],
        },
        schema={
            "client_idx": pl.Int64,
            "client_name": pl.String,
            "customer_ref": pl.String,
            "client_entity": pl.String,
            "source_id": pl.String,
        },
    )


def _keys(mapping: MappingDocument) -> pl.DataFrame:
    """(client_idx, key, kind) for every client name ("exact_name") and alias ("alias")."""
    rows = [(i, c.name, "exact_name") for i, c in enumerate(mapping.clients)]
    rows += [(i, a, "alias") for i, c in enumerate(mapping.clients) for a in c.aliases]
    frame = pl.DataFrame(
        rows, schema={"client_idx": pl.Int64, "text": pl.String, "kind": pl.String}, orient="row"
    )
    return frame.with_columns(key=normalise_name("text")).select("client_idx", "key", "kind")


def _decisions(mapping: MappingDocument) -> pl.DataFrame:
    index = {c.name: i for i, c in enumerate(mapping.clients)}
    decisions = mapping.client_matching.decisions
    frame = pl.DataFrame(
        {
            "text": [d.name for d in decisions],
            "decision": [d.decision for d in decisions],
            "decided_idx": [index.get(d.client) if d.client else None for d in decisions],
        },
        schema={"text": pl.String, "decision": pl.String, "decided_idx": pl.Int64},
    )
    return frame.with_columns(name_key=normalise_name("text")).select("name_key", "decision", "decided_idx")


def match_clients(names: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    """Decide each distinct (entity, client, client_id) of `names` (see the module docstring).

    Returns one row per distinct input combination in MATCH_SCHEMA: the rule, the outcome
    (matched, review, kept_apart), the client it matched or was compared with, and the scores.
    """
    settings = mapping.client_matching
    d = names.select(
        pl.col("entity").cast(pl.String),
        pl.col("client").cast(pl.String),
        pl.col("client_id").cast(pl.String),
    ).unique(maintain_order=True)
    d = d.with_columns(_name=_blank_to_null(pl.col("client")), _id=_blank_to_null(pl.col("client_id")))
    d = d.with_columns(name_key=pl.when(pl.col("_name").is_not_null()).then(normalise_name(pl.col("_name"))))
    clients = _clients(mapping)
    by_id = (
        clients.filter(pl.col("source_id").is_not_null())
        .unique("source_id", keep="first")
        .select(pl.col("source_id").alias("_id"), pl.col("client_idx").alias("_by_id"))
    )
    keys = _keys(mapping)
    # Names before aliases, then the first client: the order cleaning resolves them in.
    by_key = (
        keys.sort(pl.col("kind") != "exact_name", "client_idx")
        .unique("key", keep="first", maintain_order=True)
        .select(
            pl.col("key").alias("name_key"),
            pl.col("client_idx").alias("_by_key"),
            pl.col("kind").alias("_kind"),
        )
    )
    d = d.join(by_id, on="_id", how="left").join(by_key, on="name_key", how="left")
    d = d.join(_decisions(mapping), on="name_key", how="left")

    exact = pl.col("_by_id").is_not_null() | pl.col("_by_key").is_not_null()
    decided = ~exact & pl.col("decision").is_not_null()
    pending = d.filter(~exact & ~decided.fill_null(False) & pl.col("name_key").is_not_null())
    fuzzy = _fuzzy(pending.select("entity", "name_key").unique(), keys, clients, settings.scorer)
    d = d.join(fuzzy, on=["entity", "name_key"], how="left")

    low, high = settings.low_threshold, settings.high_threshold
    ambiguous = (pl.col("_runner_score") >= low) & (
        pl.col("_best_score") - pl.col("_runner_score") < AMBIGUITY_MARGIN
    )
    rule = (
        pl.when(pl.col("_by_id").is_not_null())
        .then(pl.lit("source_id"))
        .when(pl.col("_by_key").is_not_null())
        .then(pl.col("_kind"))
        .when(pl.col("decision") == "merge")
        .then(pl.lit("decision_merge"))
        .when(pl.col("decision") == "keep_apart")
        .then(pl.lit("decision_keep_apart"))
        .when(pl.lit(not settings.enabled))
        .then(pl.lit("matching_disabled"))
        .when(pl.col("_best_score").is_null() | (pl.col("_best_score") < low))
        .then(pl.lit("no_match"))
        .when(ambiguous.fill_null(False))
        .then(pl.lit("fuzzy_ambiguous"))
        .when(pl.col("_best_score") >= high)
        .then(pl.lit("fuzzy_auto"))
        .otherwise(pl.lit("fuzzy_review"))
    )
    d = d.with_columns(rule=rule)
    outcome = (
        pl.when(pl.col("rule").is_in(["source_id", "exact_name", "alias", "decision_merge", "fuzzy_auto"]))
        .then(pl.lit("matched"))
        .when(pl.col("rule").is_in(["fuzzy_review", "fuzzy_ambiguous"]))
        .then(pl.lit("review"))
        .otherwise(pl.lit("kept_apart"))
    )
    idx = pl.coalesce(
        "_by_id",
        "_by_key",
        pl.when(pl.col("rule") == "decision_merge").then(pl.col("decided_idx")),
        pl.when(pl.col("rule").is_in(["fuzzy_auto", "fuzzy_review", "fuzzy_ambiguous", "no_match"])).then(
            pl.col("_best_idx")
        ),
    )
    scored = pl.col("rule").is_in(["fuzzy_auto", "fuzzy_review", "fuzzy_ambiguous", "no_match"])
    d = d.with_columns(
        outcome=outcome,
        client_idx=idx,
        score=pl.when(scored).then(pl.col("_best_score")),
        runner_up_idx=pl.when(scored).then(pl.col("_runner_idx")),
        runner_up_score=pl.when(scored).then(pl.col("_runner_score")),
    )
    names_of = clients.select("client_idx", "client_name", "customer_ref")
    d = d.join(names_of, on="client_idx", how="left").join(
        names_of.select(
            pl.col("client_idx").alias("runner_up_idx"), pl.col("client_name").alias("runner_up")
        ),
        on="runner_up_idx",
        how="left",
    )
    return d.select(MATCH_SCHEMA.names()).cast(dict(MATCH_SCHEMA))


def _fuzzy(pending: pl.DataFrame, keys: pl.DataFrame, clients: pl.DataFrame, scorer: str) -> pl.DataFrame:
    """Best and runner-up client (by their best-scoring name or alias) per (entity, name_key)."""
    schema = {
        "entity": pl.String,
        "name_key": pl.String,
        "_best_idx": pl.Int64,
        "_best_score": pl.Float64,
        "_runner_idx": pl.Int64,
        "_runner_score": pl.Float64,
    }
    parts = [pl.DataFrame(schema=schema)]
    keyed = keys.join(clients.select("client_idx", "client_entity"), on="client_idx").sort(
        "client_idx", "key"
    )
    for (entity,), group in pending.group_by(["entity"], maintain_order=True):
        choices = keyed.filter(pl.col("client_entity") == entity)
        if choices.height == 0 or group.height == 0:
            continue
        queries = group["name_key"].to_list()
        matrix = process.cdist(queries, choices["key"].to_list(), scorer=_SCORERS[scorer], workers=1)
        owners = choices["client_idx"].to_numpy()
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        per_client = np.maximum.reduceat(np.asarray(matrix, dtype=np.float64), starts, axis=1)
        client_ids = owners[starts]
        order = np.argsort(-per_client, axis=1, kind="stable")
        rows = np.arange(len(queries))
        best = order[:, 0]
        runner = order[:, 1] if per_client.shape[1] > 1 else None
        parts.append(
            pl.DataFrame(
                {
                    "entity": [entity] * len(queries),
                    "name_key": queries,
                    "_best_idx": client_ids[best],
                    "_best_score": np.round(per_client[rows, best], 2),
                    "_runner_idx": client_ids[runner] if runner is not None else [None] * len(queries),
                    "_runner_score": np.round(per_client[rows, runner], 2)
                    if runner is not None
                    else [None] * len(queries),
                },
                schema=schema,
            )
        )
    return pl.concat(parts, how="vertical")


def with_matched_names(
    client_names: pl.DataFrame, raw: pl.DataFrame, mapping: MappingDocument
) -> pl.DataFrame:
    """The (name_key, client_idx) table cleaning matches names with, extended by the spellings in
    `raw` that a review decision or an automatic fuzzy merge assigns to a client.

    A spelling whose automatic merge differs between entities is left out (it stays unmatched and
    shows in the decision log) rather than guessed.
    """
    if raw.height == 0 or not mapping.clients:
        return client_names
    keys = raw.select("entity", "client", "client_id")
    # One row per distinct spelling, found by a row hash (a million rows hold a few hundred). Two
    # spellings sharing all 64 bits would leave one unmatched (quarantined), never mis-mapped.
    distinct = keys.select(pl.all().gather(keys.hash_rows(seed=0xC11E).arg_unique()))
    decided = match_clients(distinct, mapping).filter(pl.col("rule").is_in(["decision_merge", "fuzzy_auto"]))
    extra = (
        decided.group_by("name_key")
        .agg(pl.col("client_idx").unique())
        .filter(pl.col("client_idx").list.len() == 1)
        .select("name_key", pl.col("client_idx").list.first())
        .join(client_names.select("name_key"), on="name_key", how="anti")
        .sort("name_key")
    )
    if extra.height == 0:
        return client_names
    return pl.concat([client_names, extra.cast(dict(client_names.schema))], how="vertical")


def decision_log(raw: pl.DataFrame, mapping: MappingDocument) -> pl.DataFrame:
    """`staging.client_matches` rows for raw time entries: one per (entity, work date, spelling, id)."""
    from pm_accounting_pipeline.contracts.layers import polars_schema

    schema = polars_schema("staging.client_matches")
    if raw.height == 0:
        return pl.DataFrame(schema=schema)
    counts = raw.group_by("entity", "work_date", "client", "client_id").agg(
        pl.len().cast(pl.Int64).alias("rows")
    )
    matched = match_clients(counts.select("entity", "client", "client_id"), mapping)
    settings = mapping.client_matching
    out = counts.join(
        matched, on=["entity", "client", "client_id"], how="left", nulls_equal=True
    ).with_columns(
        partition_date=pl.col("work_date"),
        source_name=pl.col("client"),
        source_client_id=pl.col("client_id"),
        scorer=pl.lit(settings.scorer),
        low_threshold=pl.lit(settings.low_threshold, dtype=pl.Float64),
        high_threshold=pl.lit(settings.high_threshold, dtype=pl.Float64),
        rule_version=pl.lit(mapping.rule_version),
    )
    return (
        out.select(schema.names())
        .cast(dict(schema))
        .sort("entity", "partition_date", "source_name", "source_client_id", nulls_last=True)
    )


def review_list(matches: pl.DataFrame, mapping: MappingDocument | None = None) -> pl.DataFrame:
    """The spellings waiting for a person: one row per (entity, spelling) whose latest decision is
    review, with the suggested client, its score, the runner-up and how many rows carry it.

    With `mapping`, spellings decided since the log was written are left out.
    """
    pending = matches.filter(pl.col("outcome") == "review")
    out = (
        pending.sort("partition_date")
        .group_by("entity", "source_name")
        .agg(
            pl.col("name_key").last(),
            pl.col("rule").last(),
            pl.col("client_name").last().alias("suggested_client"),
            pl.col("customer_ref").last().alias("suggested_customer_ref"),
            pl.col("score").last(),
            pl.col("runner_up").last(),
            pl.col("runner_up_score").last(),
            pl.col("rows").sum().alias("rows"),
            pl.col("partition_date").min().alias("first_seen"),
            pl.col("partition_date").max().alias("last_seen"),
        )
        .sort("entity", pl.col("score").neg(), "source_name")
    )
    if mapping is not None and mapping.client_matching.decisions:
        decided = _decisions(mapping).select("name_key")
        out = out.join(decided, on="name_key", how="anti")
    return out


# --- decisions written back into the mapping document ---------------------------------------------


@dataclass(frozen=True)
class RecordedDecision:
    path: Path
    name: str
    decision: str
    client: str | None


def record_decision(
    path: Path,
    name: str,
    decision: str,
    client: str | None = None,
    score: float | None = None,
    decided_by: str | None = None,
    decided_on: date | None = None,
    note: str | None = None,
) -> RecordedDecision:
    """Add (or replace) the decision for a spelling in `client_matching.decisions` of the mapping
    document at `path`, keeping the rest of the file (comments, order) as it is.

    The edited document is validated before it is written; an invalid result raises
    MappingDocumentError and leaves the file untouched.
    """
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml = YAML()
    yaml.preserve_quotes = True
    text = path.read_text(encoding="utf-8")
    doc = yaml.load(text)
    section = doc.get("client_matching")
    if section is None:
        section = CommentedMap()
        doc["client_matching"] = section
    decisions = section.get("decisions")
    if decisions is None:
        decisions = CommentedSeq()
        section["decisions"] = decisions
    wanted = " ".join(name.casefold().split())
    for i in reversed(range(len(decisions))):
        if " ".join(str(decisions[i].get("name", "")).casefold().split()) == wanted:
            del decisions[i]
    entry = CommentedMap()
    entry["name"] = name
    entry["decision"] = decision
    if client is not None:
        entry["client"] = client
    if score is not None:
        entry["score"] = float(score)
    if decided_by:
        entry["decided_by"] = decided_by
    if decided_on is not None:
        entry["decided_on"] = decided_on.isoformat()
    if note:
        entry["note"] = note
    decisions.append(entry)
    out = StringIO()
    yaml.dump(doc, out)
    new_text = out.getvalue()
    import yaml as pyyaml

    parse_mapping(pyyaml.safe_load(new_text), str(path))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)
    return RecordedDecision(path=path, name=name, decision=decision, client=client)
