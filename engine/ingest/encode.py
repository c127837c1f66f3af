"""Dictionary encoding of input columns: one small integer per row, the distinct values once.

Why: every check ingest makes on a text column (is the id empty once stripped, is the metric a
canonical name or a LOINC code, can this unit be converted) depends on the value alone, so it is
made once per *distinct* value — a few thousand patients, a few dozen metric spellings — and
carried to the rows by their codes. Exports are usually grouped by patient (and often sorted),
so the distinct values are found from the *runs* of equal values (:func:`rle_id`, one
sequential pass over a text column's Arrow views) rather than by hashing every row; hashing is
the fallback for shuffled input.

An encoding is a pair ``(key, values)``: ``key[i]`` (uint32, per row) indexes ``values``, which
may repeat a value (one entry per run); :func:`lookup` maps each entry to a code of the caller's
choosing and the kernels read ``code[key[i]]`` without materialising a per-row code array.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL

#: below this many rows per run on average, a column is treated as shuffled (hash every row)
MIN_ROWS_PER_RUN = 8


@dataclass(frozen=True)
class Encoded:
    """``values[key[i]]`` is row ``i``'s value (null where the column is null)."""

    key: np.ndarray
    values: pl.Series


#: :func:`_view_changes`' flags: the row's text equals the previous row's, differs from it, or
#: may (two long texts alike in length and first bytes, stored apart: their bytes decide)
SAME, CHANGED, UNDECIDED = 0, 1, 2


@njit(**JIT)
def pair_flag(views, vbytes, j, i):
    """Row ``i``'s text against row ``j``'s: SAME, CHANGED or UNDECIDED (:func:`_view_changes`
    says how the views decide)."""
    w0, w1 = views[i, 0], views[i, 1]
    p0, p1 = views[j, 0], views[j, 1]
    if w0 == p0 and w1 == p1:
        return SAME
    length = w0 & 0xFFFFFFFF
    if length != p0 & 0xFFFFFFFF:
        return CHANGED
    if length <= 12:
        for k in range(4, 4 + length):
            if vbytes[i, k] != vbytes[j, k]:
                return CHANGED
        return SAME
    return CHANGED if w0 != p0 else UNDECIDED


@njit(**JIT_PARALLEL)
def _view_changes(views, vbytes, out):
    """Flag each row of an Arrow string-view array against the previous row (row 0: SAME).

    A view is 16 bytes: the length (4), then either the text itself when it has at most 12
    bytes, or its first 4 bytes, the index of the data buffer holding it and its offset there.
    Equal views are equal texts (short texts are zero-padded); different lengths, or short
    texts with a different byte, differ; long texts with the same length and first bytes at
    different places are UNDECIDED (the caller compares them). Each row depends only on itself
    and its predecessor, so the rows are split among the threads.
    """
    n = views.shape[0]
    if n:
        out[0] = SAME
    for i in prange(1, n):
        out[i] = pair_flag(views, vbytes, i - 1, i)


@njit(**JIT)
def _run_ids(changed, out):
    """Running count of the rows flagged CHANGED (row ``i``'s run id)."""
    run = 0
    for i in range(changed.size):
        run += changed[i]
        out[i] = run


def string_views(chunk: pl.Series) -> np.ndarray | None:
    """The 16-byte Arrow string views of a one-chunk text Series (uint8[n, 16], read in place),
    or None when it is not held so (not text, sliced, or another layout)."""
    if chunk.dtype != pl.String:
        return None
    arr = chunk.to_arrow(compat_level=pl.CompatLevel.newest())
    if not isinstance(arr, pa.StringViewArray) or arr.offset:
        return None
    m = len(arr)
    return np.frombuffer(arr.buffers()[1], np.uint8, count=16 * m).reshape(m, 16)


def change_flags(col: pl.Series) -> np.ndarray | None:
    """uint8 per row: 1 where a text column's value differs from the previous row's (row 0: 0).

    Read in place from the column's Arrow string views (see :func:`rle_id`); None for a column
    that cannot be read so (not text, with nulls, empty, or not held as string views), which
    the caller hands to polars.
    """
    n = col.len()
    if col.dtype != pl.String or col.null_count() or n == 0 or n >= 1 << 32:
        return None
    flags = np.empty(n, np.uint8)
    at = 0
    for chunk in col.get_chunks():
        m = chunk.len()
        if m == 0:
            continue
        vbytes = string_views(chunk)
        if vbytes is None:
            return None
        _view_changes(vbytes.view(np.int64), vbytes, flags[at:at + m])
        if at:                           # the first row against the previous chunk's last
            flags[at] = CHANGED if col[at] != col[at - 1] else SAME
        at += m
    undecided = np.flatnonzero(flags == UNDECIDED)
    if undecided.size:
        rows = pl.Series(undecided)
        differ = (col.gather(rows) != col.gather(rows - 1)).to_numpy()
        flags[undecided] = differ
    return flags


def rle_id(col: pl.Series) -> np.ndarray:
    """uint32 id of each row's run of equal values, as :meth:`polars.Expr.rle_id` gives.

    A text column without nulls is read in place: one pass compares the 16-byte Arrow view of
    each row with the previous row's (the text itself for a short id, its length and first
    bytes for a long one, whose remaining bytes polars then compares only where those agree).
    About 3× faster than polars' own on a column read from Parquet in row groups, and ingest
    runs it on every text column. Other columns go to polars.
    """
    flags = change_flags(col)
    if flags is None:
        return col.rle_id().to_numpy()
    out = np.empty(flags.size, np.uint32)
    _run_ids(flags, out)
    return out


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
    """Encode several columns of ``frame``."""
    names = [c for c in names if c in frame.columns]
    if not names or frame.height == 0:
        return {c: Encoded(np.zeros(frame.height, np.uint32), frame[c].clear()) for c in names}
    out = {}
    for c in names:
        run = rle_id(frame[c])
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
