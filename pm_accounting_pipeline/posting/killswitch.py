"""The kill switch: stop automated posting at once, without a deploy, while everything else runs.

Posting to a target is on only if every switch says so: the mapping document (`posting.enabled`
and the target's `enabled`, the deploy-time toggle), a row in the ledger database's `switches`
table (global `posting` or `posting:<target>`, flipped by `pm-accounting killswitch on|off`), and the
absence of the file `<data_dir>/posting/KILL_SWITCH` (an emergency brake that works even when the
database is busy). Manual posting of selected documents ignores the switches on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.posting.model import utcnow
from pm_accounting_pipeline.posting.outbox import record_event
from pm_accounting_pipeline.posting.store import PostingStore

GLOBAL = "posting"


@dataclass
class SwitchState:
    enabled: bool
    reasons: list[str] = field(default_factory=list)


def switch_file(data_dir: Path) -> Path:
    return Path(data_dir) / "posting" / "KILL_SWITCH"


def _name(target: str | None) -> str:
    return GLOBAL if target is None else f"{GLOBAL}:{target}"


def posting_state(
    store: PostingStore,
    target: str | None = None,
    *,
    data_dir: Path | None = None,
    mapping: MappingDocument | None = None,
) -> SwitchState:
    """Whether automated posting (to `target`, or at all) may run now, and every reason it may not."""
    reasons: list[str] = []
    if mapping is not None:
        if not mapping.posting.enabled:
            reasons.append("mapping document: posting.enabled is false")
        for t in mapping.posting.targets:
            if target is not None and t.name == target and not t.enabled:
                reasons.append(f"mapping document: target {target} is disabled")
    names = [GLOBAL] + ([_name(target)] if target else [])
    for name, enabled, reason, actor, at in store.query(
        "SELECT name, enabled, reason, changed_by, changed_at FROM {s}.switches WHERE name = ANY(?)", [names]
    ):
        if not enabled:
            reasons.append(
                f"kill switch {name} engaged by {actor or 'unknown'} at {at:%Y-%m-%d %H:%M:%S} UTC: "
                f"{reason or 'no reason given'}"
            )
    if data_dir is not None:
        path = switch_file(data_dir)
        if path.exists():
            text = path.read_text(encoding="utf-8").strip() or "no reason given"
            reasons.append(f"kill switch file {path}: {text}")
    return SwitchState(enabled=not reasons, reasons=reasons)


def engage(store: PostingStore, reason: str, actor: str, target: str | None = None) -> None:
    """Stop automated posting (globally or for one target); recorded as an event."""
    _set(store, False, reason, actor, target)


def release(store: PostingStore, reason: str, actor: str, target: str | None = None) -> None:
    """Let automated posting run again; recorded as an event."""
    _set(store, True, reason, actor, target)


def _set(store: PostingStore, enabled: bool, reason: str, actor: str, target: str | None) -> None:
    now = utcnow()
    name = _name(target)
    with store.transaction():
        store.execute(
            "INSERT INTO {s}.switches (name, enabled, reason, changed_by, changed_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, reason = excluded.reason, "
            "changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            [name, enabled, reason, actor, now],
        )
        record_event(
            store,
            "killswitch." + ("released" if enabled else "engaged"),
            name,
            actor,
            {"reason": reason},
            now,
        )
