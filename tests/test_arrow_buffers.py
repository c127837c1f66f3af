"""engine.arrow_buffers: polars is never handed memory that Python owns.

Polars frees a column on whichever of its threads drops the last reference; memory a numpy array
or ``bytes`` owns can only be released holding the GIL, so such a column can stall a process
whose GIL-holding thread waits on polars (pickling a frame does: Spark's workers stalled there).
These tests check the ownership directly: once the numpy array is gone, nothing of it survives
in the Series (a weak reference to it dies) and the Series still reads the right values.
"""
from __future__ import annotations

import gc
import io
import pickle
import weakref

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc
from hypothesis import given, settings, strategies as st

from engine import arrow_buffers


def _bits(valid: np.ndarray) -> np.ndarray:
    return np.packbits(valid.astype(np.bool_), bitorder="little")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=False)), max_size=50),
       st.integers(0, 3), st.booleans())
def test_a_series_equals_the_values_and_holds_no_numpy_array(values, skip, arrow_memory):
    want = values[skip:]
    n = len(values)
    data = arrow_buffers.empty(n, np.float64) if arrow_memory else np.empty(n, np.float64)
    data[:] = [np.nan if v is None else v for v in values]
    valid = _bits(np.array([v is not None for v in values], np.bool_)[skip:])
    view = data[skip:]                                 # a view with an offset too
    watch = weakref.ref(data)
    s = arrow_buffers.series("v", pa.float64(), view, valid)
    del data, view
    gc.collect()
    assert watch() is None                             # the Series keeps no numpy array alive
    assert s.to_list() == want


def test_rows_of_arrow_memory_are_read_in_place_and_other_arrays_copied():
    block = arrow_buffers.empty((2, 4), np.float64)
    block[:] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    row = arrow_buffers.series("r", pa.float64(), block[1])
    block[1, 0] = 50.0
    assert row.to_list() == [50.0, 6.0, 7.0, 8.0]          # in place
    plain = np.array([1.0, 2.0])
    copied = arrow_buffers.series("c", pa.float64(), plain)
    plain[0] = 10.0
    assert copied.to_list() == [1.0, 2.0]                  # a copy in Arrow memory
    strided = arrow_buffers.series("s", pa.float64(), block[:, 1])
    assert strided.to_list() == [2.0, 6.0]


def test_arrow_buffer_refuses_memory_arrow_did_not_allocate():
    assert arrow_buffers.arrow_buffer(np.zeros(4)) is None
    a = arrow_buffers.empty(8, np.int64)
    assert arrow_buffers.arrow_buffer(a[2:5]).size == 24
    assert arrow_buffers.arrow_buffer(a[::2]) is None       # not contiguous


def test_an_owned_batch_no_longer_lies_on_the_python_memory_it_was_read_from():
    """Spark's batches reach a worker read from a Python stream: their buffers are the Python
    objects read. ``owned`` copies them into Arrow memory."""
    table = pa.table({"x": pa.array([1.5, None, 3.0]), "id": pa.array(["a", "b", None])})
    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    raw = np.frombuffer(sink.getvalue(), np.uint8).copy()  # Python-owned, weak-referenceable
    watch = weakref.ref(raw)
    batch = pyarrow.ipc.open_stream(pa.py_buffer(raw)).read_next_batch()
    owned = arrow_buffers.owned(batch)
    del batch, raw
    gc.collect()
    assert watch() is None
    frame = pl.from_arrow(owned)
    assert frame.to_dict(as_series=False) == {"x": [1.5, None, 3.0], "id": ["a", "b", None]}
    assert pickle.loads(pickle.dumps(frame)).equals(frame)
