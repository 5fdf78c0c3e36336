"""Asset checks on posting: the outbox backlog does not grow old, the dead-letter queue stays empty."""

import dagster as dg

from pm_accounting_pipeline.defs.posting.assets import POSTED_LEDGER_ENTRIES
from pm_accounting_pipeline.posting import dlq, outbox


def dlq_by_reason(entries: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        key = f"{e['target']}/{e['reason']}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def build_posting_checks(max_backlog_age_hours: float = 24.0) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=POSTED_LEDGER_ENTRIES,
        name="outbox_backlog",
        required_resource_keys={"posting"},
        description=f"no outbox row has waited more than {max_backlog_age_hours:g} h to be posted",
    )
    def outbox_backlog(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with context.resources.posting.open() as store:
            backlog = outbox.backlog(store)
            age_h = outbox.oldest_backlog_age_seconds(store) / 3600
            by_status = {f"{t}/{s}": n for (t, s), n in sorted(outbox.counts_by_status(store).items())}
        return dg.AssetCheckResult(
            passed=age_h <= max_backlog_age_hours,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "backlog": backlog,
                "oldest_waiting_hours": round(age_h, 2),
                "by_target_status": dg.MetadataValue.json(by_status),
            },
        )

    @dg.asset_check(
        asset=POSTED_LEDGER_ENTRIES,
        name="dead_letter_queue",
        required_resource_keys={"posting"},
        description="the dead-letter queue holds no open entry (each one needs a person: replay or discard)",
    )
    def dead_letter_queue(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with context.resources.posting.open() as store:
            entries = dlq.list_entries(store, open_only=True)
        return dg.AssetCheckResult(
            passed=not entries,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "open_entries": len(entries),
                "by_target_reason": dg.MetadataValue.json(dlq_by_reason(entries)),
            },
        )

    return [outbox_backlog, dead_letter_queue]
