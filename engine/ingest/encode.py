"""Dictionary encoding of input columns: one small integer per row, the distinct values once.

Why: every check ingest makes on a text column (is the id empty once stripped, is the metric a
canonical name or a LOINC code, can this unit be converted) depends on the value alone, so it is
made once per *distinct* value — a few thousand patients, a few dozen metric spellings — and
carried to the rows by their codes. Exports are usually grouped by patient (and often sorted),
so the distinct values are found from the *runs* of equal values (:meth:`polars.Expr.rle_id`,
one sequential pass, the columns in parallel) rather than by hashing every row; hashing is the
fallback for shuffled input.

An encoding is a pair ``(key, values)``: ``key[i]`` (uint32, per row) indexes ``values``, which
may repeat a value (one entry per run); :func:`lookup` maps each entry to a code of the caller's
choosing and the kernels read ``code[key[i]]`` without materialising a per-row code array.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

from ..config import JIT

#: below this many rows per run on average, a column is treated as shuffled (hash every row)
MIN_ROWS_PER_RUN = 8


@dataclass(frozen=True)
class Encoded:
    """``values[key[i]]`` is row ``i``'s value (null where the column is null)."""

    key: np.ndarray
    values: pl.Series


@njit(**JIT)
def run_starts(run):
    """Row index of the first row of each run of a ``rle_id`` array."""
    n = run.size
    out = np.empty(int(run[n - 1]) + 1 if n else 0, np.int64)
    for i in range(n):
        if i == 0 or run[i] != run[i - 1]:
            out[run[i]] = i
    return out


def encode_columns(frame: pl.DataFrame, names) -> dict[str, Encoded]:
    """Encode several columns of ``frame`` (their run ids are computed in parallel)."""
    names = [c for c in names if c in frame.columns]
    if not names or frame.height == 0:
        return {c: Encoded(np.zeros(frame.height, np.uint32), frame[c].clear()) for c in names}
    runs = frame.select(pl.col(c).rle_id().alias(c) for c in names)
    out = {}
    for c in names:
        run = runs[c].to_numpy()
        col = frame[c]
        if (int(run[-1]) + 1) * MIN_ROWS_PER_RUN <= frame.height or int(run[-1]) < 1024:
            out[c] = Encoded(run, col.gather(run_starts(run)))
        else:
            out[c] = _hash_encode(col)
    return out


def encode(col: pl.Series) -> Encoded:
    """Encode one column."""
    return encode_columns(col.to_frame("c"), ["c"])["c"]


def _hash_encode(col: pl.Series) -> Encoded:
    values = col.unique(maintain_order=True)
    index = pl.Series(np.arange(values.len(), dtype=np.uint32))
    key = col.replace_strict(values, index, return_dtype=pl.UInt32)
    if key.null_count():       # a null value: replace_strict maps it via the null entry
        key = key.fill_null(int(values.is_null().arg_true()[0]))
    return Encoded(key.to_numpy(), values)


def lookup(values: pl.Series, fn, dtype=np.int32) -> np.ndarray:
    """``fn`` of each distinct value of ``values`` (None for a null), as an array aligned to
    ``values``: the code table of an :class:`Encoded`. ``fn`` runs once per distinct value."""
    texts = values.to_list()
    memo: dict = {}
    out = np.empty(len(texts), dtype=dtype)
    for i, v in enumerate(texts):
        if v not in memo:
            memo[v] = fn(v)
        out[i] = memo[v]
    return out
