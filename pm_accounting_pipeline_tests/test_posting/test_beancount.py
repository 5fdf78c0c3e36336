"""The beancount export of the ledger is accepted by beancount's own checker."""

from __future__ import annotations

from pathlib import Path

from pm_accounting_pipeline.posting import outbox
from pm_accounting_pipeline.posting.beancount_export import (
    beancount_text,
    check_beancount,
    export_beancount,
    gl_lines,
    ledger_lines,
)
from pm_accounting_pipeline.posting.delivery import DeliverySettings, deliver
from pm_accounting_pipeline.posting.documents import build_documents
from pm_accounting_pipeline.posting.sample import SampleEntity, sample_ledger
from pm_accounting_pipeline.posting.store import PostingStore
from pm_accounting_pipeline.posting.targets.gl import GeneralLedgerTarget


def test_posted_ledger_with_reversals_passes_bean_check(
    duck: PostingStore, tmp_path: Path, fast: DeliverySettings
) -> None:
    gl = GeneralLedgerTarget(duck)
    outbox.enqueue_documents(duck, build_documents(sample_ledger(41, 6, 4)), [gl])
    outbox.enqueue_documents(duck, build_documents(sample_ledger(41, 6, 4, bump={2: 99})), [gl])
    deliver(duck, gl, fast)
    lines = gl_lines(duck)
    path = export_beancount(lines, tmp_path / "ledger.beancount", operating_currencies=["USD"])
    assert check_beancount(path) == []
    text = path.read_text()
    assert text.count(" * ") == 12  # 10 documents + 1 reversal + 1 new revision
    assert "reversal" in text and "Assets:Acme:AccountsReceivable-1200" in text


def test_ledger_lines_export_with_three_decimal_and_zero_decimal_currencies() -> None:
    led = sample_ledger(42, 5, 0, currencies=("KWD", "JPY"), entities=(SampleEntity("acme_us", "USD"),))
    text = beancount_text(ledger_lines(led))
    assert check_beancount(text) == []
    assert "Assets:AcmeUs:AccountsReceivable-1200" in text


def test_checker_reports_an_unbalanced_transaction() -> None:
    broken = (
        "2026-01-01 open Assets:A-1\n2026-01-01 open Income:B-4\n\n"
        '2026-01-02 * "x" "y"\n  Assets:A-1  10.00 USD\n  Income:B-4  -9.00 USD\n'
    )
    problems = check_beancount(broken)
    assert problems and "balance" in problems[0].lower()
