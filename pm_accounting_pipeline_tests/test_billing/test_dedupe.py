"""Client de-duplication: each spelling is decided by a named rule with its score, thresholds are
tunable, the review list is actionable, decisions go back into the mapping document, and
cleaning honours them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from pm_accounting_pipeline.config.schema import MappingDocumentError, load_mapping
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.dedupe import decision_log, match_clients, record_decision, review_list
from pm_accounting_pipeline_tests.test_billing.helpers import mapping_with
from pm_accounting_pipeline_tests.test_core.builders import make_raw, mapping_dict

SPELLINGS = [
    ("us", "ACME Corp", None),
    ("us", "Acme Corporation, Inc.", None),
    ("us", "Whatever", "1001"),
    ("us", "Acme Corporatoin", None),
    ("uk", "Brittania Ltd", None),
    ("us", "Acme Corp Intl", None),
    ("us", "Brittania Ltd", None),
]


def _names(rows: list[tuple[str, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"entity": pl.String, "client": pl.String, "client_id": pl.String}, orient="row"
    )


def _decide(mapping, rows=SPELLINGS) -> list[tuple]:
    out = match_clients(_names(rows), mapping)
    return out.select("client", "rule", "outcome", "client_name", "score").rows()


def test_each_spelling_is_decided_by_a_named_rule_with_its_score() -> None:
    assert _decide(mapping_with()) == [
        ("ACME Corp", "alias", "matched", "Acme Corporation", None),
        ("Acme Corporation, Inc.", "exact_name", "matched", "Acme Corporation", None),  # legal form dropped
        ("Whatever", "source_id", "matched", "Acme Corporation", None),
        ("Acme Corporatoin", "fuzzy_auto", "matched", "Acme Corporation", 93.75),  # >= 92: merged
        ("Brittania Ltd", "fuzzy_review", "review", "Britannia Ltd", 88.89),  # 80..92: review
        ("Acme Corp Intl", "no_match", "kept_apart", "Acme Corporation", 78.26),  # < 80: apart
        # only clients of the row's entity are candidates: Britannia Ltd bills from the UK
        ("Brittania Ltd", "no_match", "kept_apart", "Tokyo Trading KK", 36.36),
    ]


def test_thresholds_are_tunable() -> None:
    strict = mapping_with(client_matching={"high_threshold": 95, "low_threshold": 90})
    loose = mapping_with(client_matching={"high_threshold": 85, "low_threshold": 75})
    assert [r[1] for r in _decide(strict)[3:6]] == ["fuzzy_review", "no_match", "no_match"]
    assert [r[1] for r in _decide(loose)[3:6]] == ["fuzzy_auto", "fuzzy_auto", "fuzzy_review"]


def test_two_clients_scoring_alike_go_to_review_even_above_the_high_threshold() -> None:
    m = mapping_with(
        extra_clients=[
            {"name": "Northwind Traders", "customer_ref": "C-NW1", "entity": "us", "currency": "USD"},
            {"name": "Northwind Tradersx", "customer_ref": "C-NW2", "entity": "us", "currency": "USD"},
        ]
    )
    rule, outcome, client, score = (
        match_clients(_names([("us", "Northwind Tradrs", None)]), m)
        .select("rule", "outcome", "runner_up", "runner_up_score")
        .row(0)
    )
    assert (rule, outcome) == ("fuzzy_ambiguous", "review")
    assert client in ("Northwind Traders", "Northwind Tradersx") and score >= 80


def test_review_decisions_override_fuzzy_matching() -> None:
    m = mapping_with(
        client_matching={
            "decisions": [
                {"name": "Acme Corp Intl", "decision": "merge", "client": "Acme Corporation"},
                {"name": "acme  corporatoin", "decision": "keep_apart"},
            ]
        }
    )
    decided = {r[0]: r[1:3] for r in _decide(m)}
    assert decided["Acme Corp Intl"] == ("decision_merge", "matched")
    assert decided["Acme Corporatoin"] == ("decision_keep_apart", "kept_apart")


def test_cleaning_merges_automatic_and_accepted_spellings_and_quarantines_the_rest() -> None:
    m = mapping_with(
        client_matching={
            "decisions": [{"name": "Acme Corp Intl", "decision": "merge", "client": "Acme Corporation"}]
        }
    )
    raw = make_raw(
        [
            {"source_id": "1", "client": "Acme Corporatoin"},
            {"source_id": "2", "client": "Acme Corp Intl"},
            {"source_id": "3", "client": "Acmee Corp Intl"},
        ]
    )
    out = clean_and_map(raw, m)
    assert sorted(out.work_items.select("source_id", "customer_ref").rows()) == [
        ("1", "C-ACME"),
        ("2", "C-ACME"),
    ]
    assert out.quarantine.select("source_id", "reason").rows() == [("3", "unknown_client")]


def test_decision_log_has_one_row_per_spelling_and_day_with_its_rows() -> None:
    raw = make_raw(
        [
            {"source_id": "1", "client": "Acme Corporatoin"},
            {"source_id": "2", "client": "Acme Corporatoin"},
            {"source_id": "3", "client": "ACME Corp", "work_date": date(2026, 3, 3)},
        ]
    )
    log = decision_log(raw, mapping_with())
    assert log.select(
        "partition_date", "source_name", "rule", "rows", "scorer", "low_threshold", "high_threshold"
    ).rows() == [
        (date(2026, 3, 2), "Acme Corporatoin", "fuzzy_auto", 2, "token_sort_ratio", 80.0, 92.0),
        (date(2026, 3, 3), "ACME Corp", "alias", 1, "token_sort_ratio", 80.0, 92.0),
    ]


def test_review_list_aggregates_pending_spellings_and_drops_decided_ones() -> None:
    raw = make_raw(
        [
            {
                "source_id": "1",
                "entity": "uk",
                "client": "Brittania Ltd",
                "project": "Migration",
                "work_date": date(2026, 3, 2),
            },
            {
                "source_id": "2",
                "entity": "uk",
                "client": "Brittania Ltd",
                "project": "Migration",
                "work_date": date(2026, 3, 5),
            },
        ]
    )
    log = decision_log(raw, mapping_with())
    pending = review_list(log)
    assert pending.select(
        "entity", "source_name", "suggested_client", "score", "rows", "first_seen", "last_seen"
    ).rows() == [("uk", "Brittania Ltd", "Britannia Ltd", 88.89, 2, date(2026, 3, 2), date(2026, 3, 5))]
    decided = mapping_with(
        client_matching={"decisions": [{"name": "Brittania Ltd", "decision": "keep_apart"}]}
    )
    assert review_list(log, decided).height == 0


def _write_mapping(path: Path) -> Path:
    text = "# Deployment mapping: reviewed monthly\n" + yaml.safe_dump(mapping_dict(), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def test_accepting_a_spelling_writes_a_decision_and_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = _write_mapping(tmp_path / "mapping.yaml")
    record_decision(
        path,
        "Brittania Ltd",
        "merge",
        client="Britannia Ltd",
        score=88.89,
        decided_by="ana",
        decided_on=date(2026, 4, 2),
    )
    record_decision(path, "brittania  ltd", "keep_apart", decided_by="ana")  # replaces the first
    text = path.read_text()
    assert text.startswith("# Deployment mapping: reviewed monthly\n")
    mapping = load_mapping(path)
    assert [(d.name, d.decision, d.client, d.decided_by) for d in mapping.client_matching.decisions] == [
        ("brittania  ltd", "keep_apart", None, "ana")
    ]
    assert mapping.clients == load_mapping(_write_mapping(tmp_path / "plain.yaml")).clients


def test_a_decision_that_would_make_the_document_invalid_is_refused(tmp_path: Path) -> None:
    path = _write_mapping(tmp_path / "mapping.yaml")
    before = path.read_text()
    with pytest.raises(MappingDocumentError, match="unknown client 'Britania'"):
        record_decision(path, "Brittania Ltd", "merge", client="Britania")
    assert path.read_text() == before
