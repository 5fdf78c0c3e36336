"""Deterministic identifiers: UUIDv5 over the things that make a row what it is, never random."""

from __future__ import annotations

import uuid

import polars as pl

NAMESPACE = uuid.UUID("6f1c7d0e-2b7a-5c1e-9a43-7d1b0c5e3f21")


def stable_id(*parts: object) -> str:
    """UUIDv5 of the parts joined with a separator that cannot appear in them unescaped."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join("" if p is None else str(p) for p in parts)))


def stable_id_expr(*cols: pl.Expr | str, prefix: str = "") -> pl.Expr:
    """Vectorised deterministic id: a 128-bit hash rendered as a UUID-shaped string.

    uuid5 per row in Python is too slow for millions of rows, so rows get an id derived from two
    independent 64-bit polars hashes (seeded, stable across runs and machines for a given polars
    version) of the concatenated key. Use `stable_id` for documents (invoices, entries).
    """
    exprs = [pl.col(c) if isinstance(c, str) else c for c in cols]
    key = pl.concat_str([pl.lit(prefix), *[e.cast(pl.String).fill_null("\x00") for e in exprs]], separator="\x1f")
    h1 = key.hash(seed=0x5EED).cast(pl.UInt64)
    h2 = key.hash(seed=0xACC7).cast(pl.UInt64)
    hex1 = h1.map_batches(_hex16, return_dtype=pl.String)
    hex2 = h2.map_batches(_hex16, return_dtype=pl.String)
    return pl.concat_str(
        [
            hex1.str.slice(0, 8),
            pl.lit("-"),
            hex1.str.slice(8, 4),
            pl.lit("-"),
            hex1.str.slice(12, 4),
            pl.lit("-"),
            hex2.str.slice(0, 4),
            pl.lit("-"),
            hex2.str.slice(4, 12),
        ]
    )


def _hex16(s: pl.Series) -> pl.Series:
    return s.to_frame("h").select(pl.col("h").map_elements(lambda v: f"{v:016x}", return_dtype=pl.String))[
        "h"
    ]
