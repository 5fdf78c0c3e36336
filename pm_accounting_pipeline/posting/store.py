"""Where posting keeps its state: one small storage interface, DuckDB (embedded) and PostgreSQL.

The tables (document registry, outbox, sync records, attempts, dead-letter queue, switches, events,
and the built-in general ledger) live in one schema of the ledger database: `data/ledger.duckdb` on
the embedded default (never the analysts' warehouse file), a PostgreSQL database in production.
SQL is written once with `?` placeholders in the dialect both engines share; the two classes differ
only in connecting, placeholders and bulk loading (Parquet for DuckDB, COPY for PostgreSQL).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

DEFAULT_SCHEMA = "posting"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

DDL = """
CREATE TABLE IF NOT EXISTS {s}.documents (
    doc_uid TEXT PRIMARY KEY,
    document_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    revision INTEGER NOT NULL,
    entity TEXT NOT NULL,
    posting_date DATE NOT NULL,
    currency TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    content TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    reverses_uid TEXT,
    original_kind TEXT,
    replaces_uid TEXT,
    ledger_batch TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (document_id, kind, revision)
);
CREATE TABLE IF NOT EXISTS {s}.outbox (
    outbox_id TEXT PRIMARY KEY,
    doc_uid TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    document_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    entity TEXT NOT NULL,
    posting_date DATE NOT NULL,
    target TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    attempts_base INTEGER NOT NULL,
    next_attempt_at TIMESTAMP,
    last_error TEXT,
    batch_key TEXT,
    remote_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.sync_records (
    doc_uid TEXT NOT NULL,
    target TEXT NOT NULL,
    document_id TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    remote_id TEXT,
    attempts INTEGER NOT NULL,
    first_attempt_at TIMESTAMP,
    last_attempt_at TIMESTAMP,
    posted_at TIMESTAMP,
    PRIMARY KEY (doc_uid, target)
);
CREATE TABLE IF NOT EXISTS {s}.attempts (
    outbox_id TEXT NOT NULL,
    attempt_no INTEGER NOT NULL,
    attempted_at TIMESTAMP NOT NULL,
    request_key TEXT,
    outcome TEXT,
    status_code INTEGER,
    error TEXT,
    finished_at TIMESTAMP,
    PRIMARY KEY (outbox_id, attempt_no)
);
CREATE TABLE IF NOT EXISTS {s}.dlq (
    dlq_id TEXT PRIMARY KEY,
    outbox_id TEXT NOT NULL,
    target TEXT NOT NULL,
    doc_uid TEXT NOT NULL,
    document_id TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    reason TEXT NOT NULL,
    error TEXT,
    request TEXT,
    response TEXT,
    attempt_history TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP,
    resolution TEXT,
    resolution_reason TEXT,
    resolved_by TEXT
);
CREATE TABLE IF NOT EXISTS {s}.switches (
    name TEXT PRIMARY KEY,
    enabled BOOLEAN NOT NULL,
    reason TEXT,
    changed_by TEXT,
    changed_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.events (
    event_id TEXT PRIMARY KEY,
    event_at TIMESTAMP NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    actor TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS {s}.gl_entries (
    idempotency_key TEXT PRIMARY KEY,
    gl_entry_id TEXT NOT NULL UNIQUE,
    doc_uid TEXT NOT NULL,
    document_id TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    posting_date DATE NOT NULL,
    currency TEXT NOT NULL,
    total_debit_minor BIGINT NOT NULL,
    payload_hash TEXT NOT NULL,
    posted_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.gl_lines (
    gl_entry_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    entity TEXT NOT NULL,
    posting_date DATE NOT NULL,
    account TEXT NOT NULL,
    account_role TEXT NOT NULL,
    currency TEXT NOT NULL,
    debit_minor BIGINT NOT NULL,
    credit_minor BIGINT NOT NULL,
    functional_currency TEXT NOT NULL,
    functional_debit DECIMAL(18, 3) NOT NULL,
    functional_credit DECIMAL(18, 3) NOT NULL,
    customer_ref TEXT,
    PRIMARY KEY (gl_entry_id, line_no)
);
"""

INDEXES = (
    "CREATE INDEX IF NOT EXISTS outbox_status_idx ON {s}.outbox (target, status)",
    "CREATE INDEX IF NOT EXISTS documents_docid_idx ON {s}.documents (document_id)",
)


class PostingStore(ABC):
    """A connection to the ledger database's posting schema.

    Statements run in autocommit mode unless inside `transaction()`, which nests (inner blocks join
    the outer transaction). Not thread-safe: one store per thread or process.
    """

    dialect: str

    def __init__(self, schema: str = DEFAULT_SCHEMA) -> None:
        if not _IDENT.match(schema):
            raise ValueError(f"schema name {schema!r} must be a lower-case SQL identifier")
        self.schema = schema
        self._depth = 0
        self._owner = threading.get_ident()

    # -- engine-specific -----------------------------------------------------------------------------
    @abstractmethod
    def _raw_execute(self, sql: str, params: Sequence[Any] | None) -> Any: ...

    @abstractmethod
    def _fetchall(self, cursor: Any) -> list[tuple]: ...

    @abstractmethod
    def _rowcount(self, cursor: Any) -> int: ...

    @abstractmethod
    def insert_frame(self, table: str, df: pl.DataFrame) -> int:
        """Bulk-insert a frame whose columns name the table's columns; returns rows inserted."""

    @abstractmethod
    def close(self) -> None: ...

    # -- shared ----------------------------------------------------------------------------------------
    def t(self, table: str) -> str:
        return f"{self.schema}.{table}"

    def sql(self, text: str) -> str:
        """Expand `{s}` to the schema name."""
        return text.replace("{s}", self.schema)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        cur = self._raw_execute(self.sql(sql), params)
        return self._rowcount(cur)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self.transaction():
            for row in rows:
                self._raw_execute(self.sql(sql), row)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self._fetchall(self._raw_execute(self.sql(sql), params))

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self._raw_execute(self.sql(sql), params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in self._fetchall(cur)]

    def query_frame(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        schema: pl.Schema | dict[str, pl.DataType] | None = None,
    ) -> pl.DataFrame:
        cur = self._raw_execute(self.sql(sql), params)
        names = [d[0] for d in cur.description]
        rows = self._fetchall(cur)
        if schema is None:
            return pl.DataFrame(rows, schema=names, orient="row")
        return pl.DataFrame(rows, schema=schema, orient="row")

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._raw_execute("BEGIN TRANSACTION" if self.dialect == "duckdb" else "BEGIN", None)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._raw_execute("ROLLBACK", None)
            raise
        self._depth = 0
        self._raw_execute("COMMIT", None)

    def migrate(self) -> None:
        """Create the schema and tables if they do not exist (idempotent)."""
        with self.transaction():
            self._raw_execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}", None)
            for stmt in DDL.split(";"):
                if stmt.strip():
                    self._raw_execute(self.sql(stmt), None)
            if self.dialect == "postgres":
                # DuckDB's zone maps serve these scans; an ART index would only slow its updates down.
                for stmt in INDEXES:
                    self._raw_execute(self.sql(stmt), None)

    def migrate_and_close(self) -> None:
        self.migrate()
        self.close()

    def __enter__(self) -> PostingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBStore(PostingStore):
    """The embedded ledger database (`<data_dir>/ledger.duckdb`)."""

    dialect = "duckdb"

    def __init__(
        self,
        path: Path | str,
        schema: str = DEFAULT_SCHEMA,
        read_only: bool = False,
        config: dict[str, str] | None = None,
    ) -> None:
        import duckdb

        super().__init__(schema)
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(path), read_only=read_only, config=config or {})

    def _raw_execute(self, sql: str, params: Sequence[Any] | None) -> Any:
        return self._con.execute(sql, list(params) if params is not None else None)

    def _fetchall(self, cursor: Any) -> list[tuple]:
        return cursor.fetchall()

    def _rowcount(self, cursor: Any) -> int:
        # DuckDB reports affected rows as a one-row result for DML statements.
        try:
            rows = cursor.fetchall()
        except Exception:
            return -1
        if rows and len(rows[0]) == 1 and isinstance(rows[0][0], int):
            return int(rows[0][0])
        return -1

    def insert_frame(self, table: str, df: pl.DataFrame) -> int:
        if df.height == 0:
            return 0
        cols = ", ".join(df.columns)
        fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="posting-bulk-")
        os.close(fd)
        try:
            df.write_parquet(tmp, statistics=False)
            self._con.execute(
                f"INSERT INTO {self.t(table)} ({cols}) SELECT {cols} FROM read_parquet(?)", [tmp]
            )
        finally:
            os.unlink(tmp)
        return df.height

    def close(self) -> None:
        self._con.close()


class PostgresStore(PostingStore):
    """The production ledger database (PostgreSQL through psycopg2)."""

    dialect = "postgres"

    def __init__(self, url: str, schema: str = DEFAULT_SCHEMA) -> None:
        import psycopg2

        super().__init__(schema)
        dsn = re.sub(r"^postgresql\+psycopg2://", "postgresql://", url)
        self._con = psycopg2.connect(dsn)
        self._con.autocommit = True

    @staticmethod
    def _pg(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def _raw_execute(self, sql: str, params: Sequence[Any] | None) -> Any:
        cur = self._con.cursor()
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(self._pg(sql), list(params))
        return cur

    def _fetchall(self, cursor: Any) -> list[tuple]:
        return cursor.fetchall()

    def _rowcount(self, cursor: Any) -> int:
        return int(cursor.rowcount)

    def insert_frame(self, table: str, df: pl.DataFrame) -> int:
        if df.height == 0:
            return 0
        buf = io.StringIO()
        df.write_csv(buf, include_header=False, null_value="\\N")
        buf.seek(0)
        cols = ", ".join(df.columns)
        cur = self._con.cursor()
        cur.copy_expert(f"COPY {self.t(table)} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
        return df.height

    def drop_schema(self) -> None:
        """Remove the whole posting schema (tests use one throw-away schema each)."""
        self._raw_execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE", None)

    def close(self) -> None:
        self._con.close()


def ledger_db_path(data_dir: Path) -> Path:
    return Path(data_dir) / "ledger.duckdb"


def open_store(
    data_dir: Path | str, database_url: str | None = None, schema: str = DEFAULT_SCHEMA, migrate: bool = True
) -> PostingStore:
    """Open the ledger database: PostgreSQL when `database_url` says so, else `<data_dir>/ledger.duckdb`.

    `database_url` may also be `duckdb:///path/to/file.duckdb`.
    """
    store: PostingStore
    if database_url and database_url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        store = PostgresStore(database_url, schema)
    elif database_url and database_url.startswith("duckdb:///"):
        store = DuckDBStore(database_url.removeprefix("duckdb:///"), schema)
    elif database_url:
        raise ValueError(
            f"unsupported ledger database URL {database_url!r} (postgresql://... or duckdb:///path)"
        )
    else:
        store = DuckDBStore(ledger_db_path(Path(data_dir)), schema)
    if migrate:
        store.migrate()
    return store
