"""The project-local Dagster instance: DAGSTER_HOME under the data folder unless set.

The embedded default is Dagster's SQLite storage with one change: the event log keeps one open
connection per SQLite file with `synchronous=NORMAL` (still WAL). Dagster's stock storage opens and
closes a connection for every event (closing a WAL database checkpoints it) and fsyncs every
commit; a single-run backfill records one materialisation per partition per asset, so a two-month
demo spent minutes in fsync alone. In WAL mode NORMAL stays consistent after a crash of the
process; only a power loss can drop the last moments of run history, which is acceptable for a
local instance and is why production uses PostgreSQL (`deploy/dagster.yaml`).

It also stores the asset events Dagster hands over in batches (one event per partition of a range
run: planned materialisations when the run is created, materialisations when a step ends) in one
transaction per SQLite file instead of two transactions per event.
"""

from __future__ import annotations

import fcntl
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool

MAX_OPEN_SHARDS = 16
EVENT_BATCH_SIZE = 1000


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class FastSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage whose connections use synchronous=NORMAL (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        # Let Dagster hand over the asset events of a range run in batches (store_event_batch
        # below). Dagster reads this at every event; an explicit setting is left alone.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> FastSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> sa.Engine:
        engines: OrderedDict[str, sa.Engine] = self.__dict__.setdefault("_fast_engines", OrderedDict())
        engine = engines.get(shard)
        if engine is not None:
            engines.move_to_end(shard)
        else:
            # One pooled connection per shard: closing the last connection to a WAL database
            # checkpoints it (an fsync), which Dagster's NullPool did after every event.
            engine = sa.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            sa.event.listen(engine, "connect", _pragmas)
            engines[shard] = engine
            while len(engines) > MAX_OPEN_SHARDS:  # a long-lived webserver reads many run shards
                engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store a batch of asset events (Dagster sends one per partition of a range run) in one
        transaction per SQLite file instead of two per event; anything else goes one by one."""
        batchable = [
            e
            for e in events
            if e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS and e.run_id == events[0].run_id
        ]
        if len(batchable) < 2:
            for event in events:
                self.store_event(event)
            return
        inserts = [self.prepare_insert_event(e) for e in batchable]
        with self.run_connection(batchable[0].run_id) as conn:
            for statement in inserts:
                conn.execute(statement)
        with self.index_transaction() as conn:
            ids = []
            for statement in inserts:
                with db_result(conn, statement) as result:
                    ids.append(result.inserted_primary_key[0])
            self._store_asset_event_tags(conn, batchable, ids)
            pairs = list(zip(batchable, ids, strict=True))
            kinds = {e.dagster_event_type for e in batchable}
            if kinds in ({DagsterEventType.ASSET_MATERIALIZATION}, {DagsterEventType.ASSET_OBSERVATION}):
                # Each event of one kind overwrites the same columns of its asset's row, so only
                # the last one per asset decides them (as dagster-postgres does for a batch).
                pairs = list({e.dagster_event.asset_key: (e, i) for e, i in pairs}.values())
            for event, event_id in pairs:
                self._store_asset_event(conn, event, event_id)
        taken = {id(e) for e in batchable}
        for event in events:
            if id(event) not in taken:
                self.store_event(event)

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before every asset event whether a table exists, through a new engine and
        # connection each time; tables are never dropped while the instance runs, so a yes is kept.
        known: set[str] = self.__dict__.setdefault("_known_tables", set())
        if table_name in known:
            return True
        found = super().has_table(table_name)
        if found:
            known.add(table_name)
        return found

    def dispose(self) -> None:
        for engine in self.__dict__.get("_fast_engines", {}).values():
            engine.dispose()
        super().dispose()


def storage_overrides(home: Path) -> dict[str, Any]:
    """Instance config selecting the fast event log under `home` (also used by tests)."""
    return {
        "event_log_storage": {
            "module": "pm_accounting_pipeline.lib.instance",
            "class": "FastSqliteEventLogStorage",
            "config": {"base_dir": str(home / "history" / "runs")},
        }
    }


def dagster_yaml(home: Path) -> str:
    ev = storage_overrides(home)["event_log_storage"]
    return f"""\
# Project-local Dagster instance (embedded default: SQLite under this folder).
# The event log uses SQLite with synchronous=NORMAL; see pm_accounting_pipeline/lib/instance.py.
# For production with PostgreSQL see deploy/dagster.yaml in the repository.
event_log_storage:
  module: {ev["module"]}
  class: {ev["class"]}
  config:
    base_dir: {ev["config"]["base_dir"]}
telemetry:
  enabled: false
concurrency:
  default_op_concurrency_limit: 4
"""


def ensure_dagster_home(data_dir: Path) -> Path:
    """Point DAGSTER_HOME at <data>/dagster_home (unless already set) and seed its dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or (data_dir / "dagster_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(dagster_yaml(home))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(data_dir: Path) -> dg.DagsterInstance:
    """The instance for in-process CLI runs: the project-local one, minus compute-log capture.

    Capturing a step's output in process mirrors the captured file back to the terminal with a
    `tail -F`, which floods the console with every event line; the CLI shows progress and a
    summary instead, and every event is still stored (and shown in the UI).
    """
    from dagster._core.instance.ref import InstanceRef

    home = ensure_dagster_home(data_dir)
    ref = InstanceRef.from_dir(
        str(home),
        overrides={
            "compute_logs": {
                "module": "dagster._core.storage.noop_compute_log_manager",
                "class": "NoOpComputeLogManager",
            }
        },
    )
    # Two CLI runs started together on a fresh DAGSTER_HOME would both create Dagster's SQLite
    # tables ("table jobs already exists"); creating the instance under a file lock serialises that.
    with (home / ".instance.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.from_ref(ref)
        # Touch every storage while holding the lock, in case one is created lazily.
        _ = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        instance.get_runs(limit=1)
        return instance
