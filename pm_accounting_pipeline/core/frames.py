"""Frame helpers shared by the core: grouping and lookups keyed by hashed key columns.

Grouping or joining a million rows on several string columns makes polars encode every key
row; hashing the key columns once into 128 bits (two independently seeded 64-bit row hashes) is
an order of magnitude cheaper. The work itself groups and joins on the first hash alone and then
checks that the second hash agrees within every group, so a result is exact unless two keys
collide on all 128 bits (the same budget the row ids in `core.ids` rely on). On a 64-bit
collision the helpers fall back to grouping on both hashes. The hashes never leave the process.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

KEY = ["_k1", "_k2"]


def key_hashes(frame: pl.DataFrame) -> pl.DataFrame:
    """Two independent 64-bit hashes of each row of `frame` (nulls and values hash differently)."""
    return pl.DataFrame({"_k1": frame.hash_rows(seed=0x6B31), "_k2": frame.hash_rows(seed=0x6B32)}).rechunk()


def group_rows(
    frame: pl.DataFrame,
    keys: list[str],
    aggs: list[pl.Expr],
    rows_as: str | None = None,
    index: str = "_idx",
    where: pl.Expr | None = None,
) -> pl.DataFrame:
    """`frame.filter(where).group_by(keys, maintain_order=True).agg(aggs)`, on hashed keys.

    Groups come in order of first appearance; with `rows_as`, each group also gets the list of
    its rows' `index` values in row order. Only the hashes and the other columns are filtered
    and grouped; the key columns are read back from one row per group.
    """
    values = [c for c in frame.columns if c not in keys]
    work = frame.select(values).hstack(key_hashes(frame.select(keys))).with_row_index("_pos")
    if where is not None:
        work = work.filter(where)
    extra = [pl.col(index).alias(rows_as)] if rows_as else []
    check = [pl.col("_k2").min().alias("_k2_min"), pl.col("_k2").max().alias("_k2_max")]
    first = pl.col("_pos").first().alias("_first")
    out = work.group_by("_k1", maintain_order=True).agg(first, *aggs, *extra, *check)
    if (out["_k2_min"] != out["_k2_max"]).any():  # two keys share the first 64 bits
        out = work.group_by(KEY, maintain_order=True).agg(first, *aggs, *extra)
    key_values = frame.select(keys).select(pl.all().gather(out["_first"]))
    return key_values.hstack(out.drop("_k1", "_k2", "_k2_min", "_k2_max", "_first", strict=False))


def lookup_distinct(
    df: pl.DataFrame, cols: list[str], derive: Callable[[pl.DataFrame], pl.DataFrame]
) -> pl.DataFrame:
    """Add the columns `derive` computes from `cols`, evaluated once per distinct combination.

    Source columns repeat heavily (a few hundred client names or hour values across a million
    rows), so regex and matching work runs on one representative row per distinct combination
    and the results are gathered back in row order and stacked onto `df`, so the wide frame is
    never copied. `derive` gets the representatives (plus the hash columns, which it must keep)
    and returns one row per representative.
    """
    positions, table = lookup_positions(df, cols, derive)
    added = [c for c in table.columns if c not in cols and c not in KEY]
    return df.hstack(table.select(added).select(pl.all().gather(positions)))


def lookup_positions(
    df: pl.DataFrame, cols: list[str], derive: Callable[[pl.DataFrame], pl.DataFrame]
) -> tuple[pl.Series, pl.DataFrame]:
    """Like `lookup_distinct`, but return each row's position in the derived table and the table.

    For columns only some rows need (e.g. the outputs of accepted rows): gather them later, for
    just those rows, with `table[col].gather(positions.filter(mask))`.
    """
    keys = df.select(cols)
    hashes = key_hashes(keys)
    found = _lookup(keys, hashes, derive, on=["_k1"])
    if found is None:  # two keys share the first 64 bits: match on all 128
        found = _lookup(keys, hashes, derive, on=KEY)
    assert found is not None
    return found


def _lookup(
    keys: pl.DataFrame, hashes: pl.DataFrame, derive: Callable[[pl.DataFrame], pl.DataFrame], on: list[str]
) -> tuple[pl.Series, pl.DataFrame] | None:
    firsts = hashes.with_row_index("_i").unique(on, keep="first", maintain_order=True)
    representatives = keys.select(pl.all().gather(firsts["_i"])).hstack(firsts.select(KEY))
    # Gathers over one contiguous chunk are much faster than over many small ones.
    table = derive(representatives).rechunk()
    index = table.select(*on, *([] if "_k2" in on else [pl.col("_k2").alias("_k2_rep")])).with_row_index(
        "_pos"
    )
    matched = hashes.join(index, on=on, how="left", maintain_order="left")
    if matched.height != keys.height:
        raise ValueError(f"lookup on {keys.columns} returned several rows for one key")
    if "_k2" not in on and (matched["_k2"] != matched["_k2_rep"]).any():
        return None
    return matched["_pos"], table
