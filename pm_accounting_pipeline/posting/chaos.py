"""The seeded fault-injection harness that proves effectively-once posting.

Each seed builds a small ledger, enqueues it (sometimes twice: duplicate events), then posts to one
target (QuickBooks or Xero sandbox, or the built-in ledger) through rounds of trouble: 5xx answers,
429 storms, timeouts, answers lost after commit, requests delivered twice, posting subprocesses killed
with SIGKILL at random moments, and source corrections in between (changed amounts, deleted
documents). Afterwards faults stop, dead letters are replayed and delivery runs to the end. Then:
the target holds exactly one copy of every document that should be there and nothing else, amounts
match, the ledger nets to the final ledger and balances, and the outbox is consistent.

Every fault decision, ledger and correction comes from the seed; where exactly a SIGKILL lands
depends on how fast the machine runs the child, so kill points vary between machines (the
invariants must hold wherever they land).

`python -m pm_accounting_pipeline.posting.chaos --seeds 1000` (what `make chaos` runs) prints counts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import stamina.instrumentation

from pm_accounting_pipeline.posting import dlq, outbox
from pm_accounting_pipeline.posting.delivery import Deliverer, DeliverySettings, Throttle, reset_breakers
from pm_accounting_pipeline.posting.documents import LedgerTables, build_documents
from pm_accounting_pipeline.posting.outbox import Scope
from pm_accounting_pipeline.posting.reconcile import reconcile_targets
from pm_accounting_pipeline.posting.sample import sample_ledger
from pm_accounting_pipeline.posting.store import DuckDBStore, PostingStore
from pm_accounting_pipeline.posting.targets.base import TargetAdapter, TargetLimits
from pm_accounting_pipeline.posting.targets.gl import GeneralLedgerTarget, trial_balance
from pm_accounting_pipeline.posting.targets.qbo import QboTarget
from pm_accounting_pipeline.posting.targets.xero import XeroTarget
from pm_accounting_pipeline.sandboxes import qbo as qbo_sandbox
from pm_accounting_pipeline.sandboxes import xero as xero_sandbox
from pm_accounting_pipeline.sandboxes.faults import FaultConfig, RateLimit
from pm_accounting_pipeline.sandboxes.qbo_xero_http import AccountingFaults, SandboxHandle

TOKEN = "chaos-token"
TARGETS = ("qbo", "xero", "general_ledger")
# Generous limits: the chaos is in the injected faults, not in the published quotas.
CHAOS_LIMITS = TargetLimits(requests=100_000, period_s=1.0, batch_size=30)
# Tiny statements: one DuckDB thread avoids waking a pool for each of them.
_DB_CONFIG = {"threads": "1"}
# Client timeouts: short while faults rage (a stalled request is one of them), generous in calm
# weather so a busy machine cannot fail a seed by being slow.
STORM_TIMEOUT_S = 0.08
CALM_TIMEOUT_S = 5.0
SCOPE_START = datetime(2026, 1, 1).date()
SCOPE_END = datetime(2026, 1, 31).date()


class VirtualClock:
    """Outbox time: advanced between rounds so persisted back-offs elapse without waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 2, 1, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, hours: float = 24.0) -> None:
        self.now += timedelta(hours=hours)


@dataclass
class SeedResult:
    seed: int
    target: str
    documents: int = 0
    kills: int = 0
    rounds: int = 0
    replayed: int = 0
    corrections: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _settings(seed: int) -> DeliverySettings:
    return DeliverySettings(
        max_attempts=2,
        in_run_attempts=3,
        backoff_base_s=0.001,
        backoff_cap_s=0.004,
        persisted_backoff_base_s=60.0,
        persisted_backoff_cap_s=600.0,
        max_retry_after_s=5.0,
        retry_after_scale=0.002,
        breaker_fail_max=6,
        breaker_reset_s=0.05,
        respect_rate_limits=False,
        seed=seed,
    )


def _faults(rng: random.Random, seed: int) -> AccountingFaults:
    # One seed in five is a storm of 5xx heavy enough to exhaust retries and fill the dead-letter queue.
    heavy = rng.random() < 0.2
    return AccountingFaults(
        base=FaultConfig(
            error_rate=0.75 if heavy else rng.choice([0.0, 0.1, 0.25]),
            drop_rate=0.0 if heavy else rng.choice([0.0, 0.05]),
            truncate_rate=0.0 if heavy else rng.choice([0.0, 0.05]),
            storm_rate=0.0 if heavy else rng.choice([0.0, 0.05, 0.1]),
            storm_seconds=0.02,
            seed=seed,
        ),
        lost_after_commit_rate=rng.choice([0.0, 0.15, 0.3]),
        timeout_rate=rng.choice([0.0, 0.03]),
        timeout_s=0.12,
        duplicate_rate=rng.choice([0.0, 0.2]),
        seed=seed,
    )


def _adapter(
    target: str, store: PostingStore, servers: dict[str, SandboxHandle], timeout_s: float = STORM_TIMEOUT_S
) -> TargetAdapter:
    if target == "general_ledger":
        return GeneralLedgerTarget(store)
    cls = QboTarget if target == "qbo" else XeroTarget
    return cls(servers[target].url, TOKEN, limits=CHAOS_LIMITS, timeout_s=timeout_s, gzip_min_bytes=1024)


def _deliver(
    store: PostingStore,
    target: str,
    servers: dict[str, SandboxHandle],
    settings: DeliverySettings,
    clock: VirtualClock,
    timeout_s: float = STORM_TIMEOUT_S,
) -> None:
    adapter = _adapter(target, store, servers, timeout_s)
    try:
        Deliverer(
            store, adapter, settings, clock=clock, throttle=Throttle(adapter.limits, enabled=False)
        ).run()
    finally:
        adapter.close()


def _killed_run(
    db: Path,
    target: str,
    servers: dict[str, SandboxHandle],
    settings: DeliverySettings,
    clock: VirtualClock,
    delay_s: float,
) -> bool:
    """Post in a forked child and SIGKILL it after `delay_s`; True if it was killed mid-run."""
    pid = os.fork()
    if pid == 0:  # child: own connections only, never returns into the parent's code
        code = 0
        try:
            store = DuckDBStore(db, config=_DB_CONFIG)
            _deliver(store, target, servers, settings, clock)
            store.close()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.002)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True


def _enqueue(
    store: PostingStore,
    ledger: LedgerTables,
    target: str,
    servers: dict[str, SandboxHandle],
    scope: Scope | None,
) -> None:
    adapter = _adapter(target, store, servers)
    try:
        outbox.enqueue_documents(store, build_documents(ledger), [adapter], scope=scope)
    finally:
        adapter.close()


def _fresh_db(workdir: Path, seed: int) -> Path:
    """A migrated, empty ledger database for the seed (copied from a template made once per workdir)."""
    template = workdir / "template.duckdb"
    if not template.exists():
        DuckDBStore(template).migrate_and_close()
    db = workdir / f"chaos-{seed}.duckdb"
    shutil.copyfile(template, db)
    return db


def run_seed(seed: int, servers: dict[str, SandboxHandle], workdir: Path) -> SeedResult:
    """One seed of chaos against one target; `servers` are running QBO and Xero sandboxes (reset here)."""
    started = time.monotonic()
    rng = random.Random(seed)
    target = TARGETS[seed % len(TARGETS)]
    result = SeedResult(seed, target)
    settings = _settings(seed)
    clock = VirtualClock()
    reset_breakers()
    handle = servers.get(target)
    if handle is not None:
        handle.reset(seed)
        handle.set_faults(_faults(rng, seed))
    db = _fresh_db(workdir, seed)
    n_inv, n_ent = rng.randint(2, 6), rng.randint(1, 3)
    scope = Scope(("acme", "beta"), SCOPE_START, SCOPE_END)
    ledger = sample_ledger(seed, n_inv, n_ent)
    kill_seed = seed % 3 == 1 or rng.random() < 0.2
    store: PostingStore = DuckDBStore(db, config=_DB_CONFIG)
    try:
        for _ in range(rng.choice([1, 2])):  # a duplicate event enqueues the same batch again
            _enqueue(store, ledger, target, servers, scope)
        for round_no in range(rng.randint(2, 3)):
            result.rounds += 1
            if kill_seed and rng.random() < 0.7:
                store.close()
                if _killed_run(db, target, servers, settings, clock, rng.uniform(0.0, 0.15)):
                    result.kills += 1
                store = DuckDBStore(db, config=_DB_CONFIG)
            _deliver(store, target, servers, settings, clock)
            if rng.random() < 0.3:  # the same posting run triggered twice
                _deliver(store, target, servers, settings, clock)
            clock.advance()
            if round_no == 0 and rng.random() < 0.6:
                bump = {rng.randrange(n_inv): rng.randint(1, 5000)}
                drop = {rng.randrange(n_inv)} if rng.random() < 0.5 else set()
                ledger = sample_ledger(seed, n_inv, n_ent, bump=bump, drop=drop - set(bump))
                _enqueue(store, ledger, target, servers, scope)
                result.corrections += 1
        # Calm weather: faults off, dead letters replayed, deliver until nothing is left.
        if handle is not None:
            handle.set_faults(AccountingFaults.none(seed))
        reset_breakers()
        for _ in range(8):
            open_entries = [e["dlq_id"] for e in dlq.list_entries(store)]
            if open_entries:
                result.replayed += len(dlq.replay(store, open_entries, "chaos"))
            _deliver(store, target, servers, settings, clock, CALM_TIMEOUT_S)
            clock.advance()
            if outbox.backlog(store) == 0 and not dlq.list_entries(store):
                break
        result.problems.extend(verify(store, target, servers, ledger))
        result.documents = int(store.scalar("SELECT count(*) FROM {s}.documents") or 0)
        if handle is not None:
            result.faults = {k: v for k, v in handle.counters.items() if v}
    except Exception as exc:  # a crash of the harness itself is a failed seed, with its reason
        result.problems.append(f"harness error: {exc.__class__.__name__}: {exc}")
    finally:
        store.close()
        for suffix in ("", ".wal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    result.elapsed_s = time.monotonic() - started
    return result


def verify(
    store: PostingStore, target: str, servers: dict[str, SandboxHandle], ledger: LedgerTables
) -> list[str]:
    """Every invariant the harness promises, as a list of violations (empty when all hold)."""
    problems: list[str] = []
    statuses = outbox.counts_by_status(store)
    not_posted = {k: v for k, v in statuses.items() if k[1] != "posted"}
    if not_posted:
        problems.append(f"outbox rows not posted: {not_posted}")
    expected = {r[0] for r in store.query("SELECT doc_uid FROM {s}.documents")}
    bad_sync = store.scalar(
        "SELECT count(*) FROM {s}.outbox o LEFT JOIN {s}.sync_records r ON r.doc_uid = o.doc_uid AND "
        "r.target = o.target WHERE o.status = 'posted' AND (r.posted_at IS NULL OR r.remote_id IS NULL OR "
        "r.remote_id <> o.remote_id OR o.attempts < 1)"
    )
    if bad_sync:
        problems.append(f"{bad_sync} posted rows without a matching sync record")
    adapter = _adapter(target, store, servers, CALM_TIMEOUT_S)
    try:
        report = reconcile_targets(store, [adapter], ["acme", "beta"])
    finally:
        adapter.close()
    if report.duplicates_remote.height:
        problems.append(f"documents held more than once: {report.duplicates_remote['doc_uid'].to_list()}")
    if report.missing_remote.height:
        problems.append(f"documents missing at the target: {report.missing_remote['doc_uid'].to_list()}")
    if report.missing_local.height:
        problems.append(
            f"documents at the target that the ledger does not know: {report.missing_local.to_dicts()}"
        )
    if report.amount_mismatches.height:
        problems.append(f"amounts differ: {report.amount_mismatches.to_dicts()}")
    held = set(report.summary["target"].to_list()) and int(report.summary["remote_count"].sum())
    if held != len(expected):
        problems.append(f"target holds {held} documents, the ledger has {len(expected)}")
    if target == "general_ledger":
        tb = trial_balance(store)
        if tb.filter(
            (pl.col("debit_minor") != pl.col("credit_minor"))
            | (pl.col("functional_debit") != pl.col("functional_credit"))
        ).height:
            problems.append("general ledger does not balance")
        problems.extend(_net_matches_final_ledger(store, ledger))
    return problems


def _net_matches_final_ledger(store: PostingStore, ledger: LedgerTables) -> list[str]:
    """Originals, reversals and revisions together must net to exactly the final ledger."""
    keys = ["entity", "account", "currency"]
    posted = store.query_frame(
        "SELECT entity, account, currency, sum(debit_minor) - sum(credit_minor) AS net FROM {s}.gl_lines "
        "GROUP BY entity, account, currency",
        schema={"entity": pl.String, "account": pl.String, "currency": pl.String, "net": pl.Int64},
    )
    final = ledger.journal_lines.group_by(keys).agg(
        (pl.col("debit_minor").sum() - pl.col("credit_minor").sum()).alias("net")
    )
    cmp = posted.join(final, on=keys, how="full", coalesce=True, suffix="_final").with_columns(
        pl.col("net", "net_final").fill_null(0)
    )
    bad = cmp.filter(pl.col("net") != pl.col("net_final"))
    return [f"posted ledger differs from the final ledger: {bad.to_dicts()[:3]}"] if bad.height else []


def start_servers(seed: int = 0) -> dict[str, SandboxHandle]:
    unlimited = RateLimit(1_000_000, 1.0)
    return {
        "qbo": qbo_sandbox.serve(
            token=TOKEN, rate_limit=unlimited, batch_limit=unlimited, seed=seed, max_concurrent=None
        ),
        "xero": xero_sandbox.serve(
            token=TOKEN, rate_limit=unlimited, day_limit=unlimited, seed=seed, max_concurrent=None
        ),
    }


def run_chaos(
    seeds: int | Iterable[int] = 1000, *, verbose: bool = False, stream: Any = None
) -> dict[str, Any]:
    """Run the harness over `seeds` (a count or the seeds themselves); print and return the counts."""
    stream = stream or sys.stdout
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([])
    servers = start_servers()
    # tmpfs when there is one: the harness commits a lot, and a kill needs no fsync to be survivable.
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix="pm-chaos-", dir=shm if shm.is_dir() else None))
    started = time.monotonic()
    results: list[SeedResult] = []
    try:
        for seed in seed_list:
            r = run_seed(seed, servers, workdir)
            results.append(r)
            if verbose or not r.ok:
                status = "ok" if r.ok else "FAILED: " + " | ".join(r.problems)
                print(
                    f"seed {seed} {r.target}: {r.documents} docs, {r.kills} kills, {r.replayed} replayed, "
                    f"{r.elapsed_s:.2f}s {status}",
                    file=stream,
                )
    finally:
        for h in servers.values():
            h.close()
        shutil.rmtree(workdir, ignore_errors=True)
        stamina.instrumentation.set_on_retry_hooks(hooks)
    faults: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults)
    summary = {
        "seeds": len(results),
        "passed": sum(r.ok for r in results),
        "failed": [r.seed for r in results if not r.ok],
        "documents": sum(r.documents for r in results),
        "sigkills": sum(r.kills for r in results),
        "corrections": sum(r.corrections for r in results),
        "dead_letters_replayed": sum(r.replayed for r in results),
        "by_target": dict(Counter(r.target for r in results)),
        "faults": dict(sorted(faults.items())),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(
        f"chaos: {summary['passed']}/{summary['seeds']} seeds passed in {summary['elapsed_s']} s; "
        f"{summary['documents']} documents, {summary['sigkills']} SIGKILLs, {summary['corrections']} corrections, "
        f"{summary['dead_letters_replayed']} dead letters replayed",
        file=stream,
    )
    print(f"chaos: faults injected {summary['faults']}", file=stream)
    if summary["failed"]:
        print(f"chaos: FAILED seeds {summary['failed']}", file=stream)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="number of seeds (0..N-1)")
    parser.add_argument("--first", type=int, default=0, help="first seed")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    summary = run_chaos(range(args.first, args.first + args.seeds), verbose=args.verbose)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
