"""Polars Series over Arrow memory the kernels fill, without a copy.

The detector outputs, the timeline columns and the episodes' times are numpy arrays (with an
Arrow validity bitmap where some are null). An Arrow array is assembled over their buffers and
handed to polars through the Arrow PyCapsule interface (``__arrow_c_array__``), which polars
imports without a copy. Handing polars the ``pyarrow.Array`` itself would take its pyarrow path,
whose first call imports ``pyarrow.compute`` (a quarter of a second of every run); ``pa.array``
on a numpy array with a timestamp type would import pandas (half a second).

Whose memory: polars frees a column on whichever of its threads drops the last reference. Memory
that Python owns (a numpy array, ``bytes``) can only be released holding the GIL, so a polars
thread freeing it waits for the GIL — forever when the thread holding the GIL is itself waiting
for polars (``DataFrame.serialize``, i.e. pickling a frame, does so: Spark's workers stalled
there). So polars is only ever handed memory that Arrow allocated, whose release needs no GIL:
arrays meant to become columns are allocated by :func:`empty` (numpy views of an Arrow buffer)
and read in place; any other array is copied into Arrow memory first (:func:`series`).
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa


class _CArray:
    """An Arrow array seen only through the PyCapsule interface."""

    __slots__ = ("array",)

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __arrow_c_array__(self, requested_schema=None):
        return self.array.__arrow_c_array__(requested_schema)


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, like ``np.empty``, over a buffer Arrow allocated:
    :func:`series` reads it (and its views) without a copy. Arrow's allocator keeps freed memory
    for the next allocations, so a chunk's arrays reuse the previous chunk's pages."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, tuple) else (shape,)))
    n = math.prod(shape)
    buf = pa.allocate_buffer(max(n * dtype.itemsize, 1))
    return np.frombuffer(buf, dtype=dtype, count=n).reshape(shape)


def arrow_buffer(a: np.ndarray) -> pa.Buffer | None:
    """The Arrow buffer under ``a`` (C-contiguous), sliced to ``a``'s bytes; None when ``a``
    does not lie in memory Arrow allocated (see :func:`empty`)."""
    if not a.flags.c_contiguous:
        return None
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, pa.Buffer):
        return None
    start = a.__array_interface__["data"][0] - base.address
    if start < 0 or start + a.nbytes > base.size:
        return None
    return base.slice(start, a.nbytes)


def _owned(a: np.ndarray) -> pa.Buffer:
    """``a``'s bytes in Arrow memory: its own buffer when it has one, else a copy."""
    buf = arrow_buffer(a)
    if buf is None:
        copy = empty(a.shape, a.dtype)
        copy[...] = a
        buf = arrow_buffer(copy)
    return buf


def series(name: str, arrow_type: pa.DataType, data: np.ndarray,
           validity: np.ndarray | None = None) -> pl.Series:
    """A Series of ``arrow_type`` over ``data`` (one value per element) and the Arrow validity
    bitmap ``validity`` (uint8, bit ``i % 8`` of byte ``i // 8``: element ``i`` is not null;
    None: no null). Arrays allocated by :func:`empty` (or views of them) are read in place,
    others copied into Arrow memory: the Series never holds memory Python owns."""
    arr = pa.Array.from_buffers(arrow_type, data.size,
                                [None if validity is None else _owned(validity),
                                 _owned(data)])
    return pl.Series(_CArray(arr)).alias(name)


def owned(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` over Arrow memory: a batch read from a Python stream (Spark's Arrow batches
    reach its Python workers so) lies on the ``bytes`` Python read, which polars must not hold
    (see the module's text). One copy, through the Arrow IPC format."""
    import pyarrow.ipc

    return pyarrow.ipc.read_record_batch(batch.serialize(), batch.schema)
