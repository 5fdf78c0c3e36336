"""Chaos seeds 100-199: SIGKILLed posting runs, lost answers, 429 storms, 5xx, duplicates.

The 200 seeds are split over two files so that `pytest -n 2 --dist loadfile` runs them side by side.
"""

from __future__ import annotations

import io

from pm_accounting_pipeline.posting.chaos import run_chaos


def test_every_document_lands_exactly_once_under_chaos() -> None:
    out = io.StringIO()
    summary = run_chaos(range(100, 200), stream=out)
    assert summary["failed"] == [], out.getvalue()
    assert summary["passed"] == 100
    # the harness really did hurt: kills, lost answers, storms, dead letters replayed
    assert summary["sigkills"] > 20 and summary["dead_letters_replayed"] > 0
    assert summary["faults"]["lost_after_commit"] > 10 and summary["faults"]["rate_limited"] > 5
