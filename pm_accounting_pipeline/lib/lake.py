"""The Parquet lake: one file per table x entity x partition key x writing asset.

Every write goes to a temporary file that is renamed over the target, so a reader (an analyst's
DuckDB query, a parallel run) sees the old file or the new one, never half of one, and never waits
on a lock. Re-materialising a partition replaces exactly its files. An empty result still writes an
empty file (its presence records that the partition was run), so a re-run that produces nothing
replaces what was there before; only the quarantine, which is empty for most partitions, skips the
empty file where none exists yet (a missing file reads as zero rows).

Within one process the last frames written (a few tables) are kept, so the next asset in the same run
reads the same partitions without a round trip through disk (checked against the files'
modification stamps; any other request goes to disk).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.contracts.layers import TABLES, empty_frame, polars_schema

_MEMO: dict[tuple[str, str], tuple[pl.DataFrame, dict[str, int], frozenset[tuple[str, str]]]] = {}
_MEMO_LOCK = threading.Lock()
# Tables whose empty partitions are not written unless a file is there to be replaced.
SPARSE_TABLES = frozenset({"staging.quarantine"})
# The next asset reads what the previous one wrote: a few recent frames cover a run's hand-offs.
MEMO_TABLES = 6


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.partition(".")
    if not name:
        raise ValueError(f"table must be schema.name, got {table!r}")
    return schema, name


@dataclass(frozen=True)
class Lake:
    root: Path
    compression: str = field(default="lz4")  # faster to write than zstd; DuckDB and polars read it

    def table_dir(self, table: str) -> Path:
        schema, name = _split(table)
        return self.root / schema / name

    def path(self, table: str, entity: str, key: str, writer: str) -> Path:
        return self.table_dir(table) / entity / f"{key}.{writer}.parquet"

    def glob(self, table: str) -> str:
        return str(self.table_dir(table) / "**" / "*.parquet")

    def ensure_schema_files(self) -> None:
        """Write a zero-row file with the contract schema per table so views work before any run."""
        for table in TABLES:
            target = self.table_dir(table) / "_schema.parquet"
            frame = empty_frame(table)
            if target.exists():
                try:
                    if pl.read_parquet_schema(target) == dict(frame.schema):
                        continue
                except Exception:  # a damaged schema file is simply rewritten
                    pass
            self._atomic_write(frame, target)

    def _atomic_write(self, df: pl.DataFrame, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        df.write_parquet(tmp, compression=self.compression, statistics=False)
        os.replace(tmp, target)

    def write_partitions(
        self,
        table: str,
        df: pl.DataFrame,
        partitions: Iterable[tuple[str, str]],
        writer: str,
        keys: pl.Expr | pl.Series,
    ) -> dict[tuple[str, str], int]:
        """Write `df` split by (entity, key_expr) into one file per requested partition.

        `keys` gives each row's partition key (an expression over df, or a Series aligned with it).
        Every requested partition gets a file (empty if it has no rows); rows outside the
        requested partitions are an error, because they would be silently lost otherwise.
        Returns the row count per partition.
        """
        schema = polars_schema(table)
        if list(df.columns) != list(schema.names()):
            raise ValueError(f"{table}: columns {df.columns} differ from the contract {list(schema.names())}")
        wanted = sorted(set(partitions))
        keyed = df.with_columns(keys.cast(pl.String).alias("__key"))
        groups = {
            (str(k[0]), str(k[1])): g.drop("__key")
            for k, g in keyed.group_by(["entity", "__key"], maintain_order=True)
        }
        stray = set(groups) - set(wanted)
        if stray:
            raise ValueError(f"{table}: rows for partitions outside this run: {sorted(stray)[:5]}")
        empty = empty_frame(table)
        jobs = [(self.path(table, e, k, writer), groups.get((e, k), empty)) for e, k in wanted]
        if table in SPARSE_TABLES:
            # An empty result replaces a file that is there; where there is none, there is nothing
            # to replace (a missing file reads as zero rows), so most quarantine partitions cost no
            # write. Other tables keep a file per partition: it records that the day was run.
            jobs = [(p, g) for p, g in jobs if g.height or p.exists()]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda job: self._atomic_write(job[1], job[0]), jobs))
        stamps = {str(p): p.stat().st_mtime_ns for p, _ in jobs}
        with _MEMO_LOCK:
            memo_key = (str(self.root), f"{table}|{writer}")
            _MEMO.pop(memo_key, None)
            _MEMO[memo_key] = (df, stamps, frozenset(wanted))
            while len(_MEMO) > MEMO_TABLES:  # bound the memory held: the oldest frame goes first
                del _MEMO[next(iter(_MEMO))]
        return {pk: groups[pk].height if pk in groups else 0 for pk in wanted}

    def read(
        self,
        table: str,
        partitions: Iterable[tuple[str, str]] | None = None,
        writer: str | None = None,
    ) -> pl.DataFrame:
        """Read the given (entity, key) partitions of a table (all when None), any writer unless named."""
        if partitions is not None:
            wanted = set(partitions)
            files = [
                p
                for e, k in sorted(wanted)
                for p in sorted((self.table_dir(table) / e).glob(f"{k}.{writer or '*'}.parquet"))
            ]
        else:
            pattern = f"*.{writer}.parquet" if writer else "*.parquet"
            files = sorted(p for p in self.table_dir(table).glob(f"*/{pattern}"))
        if not files:
            return empty_frame(table)
        by_writer: dict[str, list[Path]] = {}
        for f in files:
            by_writer.setdefault(f.name.split(".")[-2], []).append(f)
        frames = []
        for w, fs in sorted(by_writer.items()):
            memo = self._from_memo(table, w, wanted) if partitions is not None else None
            frames.append(
                memo
                if memo is not None
                else pl.read_parquet(fs, schema=polars_schema(table), missing_columns="insert")
            )
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")

    def _from_memo(self, table: str, writer: str, wanted: set[tuple[str, str]]) -> pl.DataFrame | None:
        with _MEMO_LOCK:
            hit = _MEMO.get((str(self.root), f"{table}|{writer}"))
        if hit is None:
            return None
        df, stamps, covered = hit
        if wanted != covered:
            return None
        for e, k in wanted:
            p = self.path(table, e, k, writer)
            if stamps.get(str(p)) != (p.stat().st_mtime_ns if p.exists() else None):
                return None
        return df


def clear_memo() -> None:
    with _MEMO_LOCK:
        _MEMO.clear()
