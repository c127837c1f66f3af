"""Polars Series over numpy buffers, without a copy.

The detector outputs, the timeline columns and the episodes' times are numpy arrays (with an
Arrow validity bitmap where some are null). An Arrow array is assembled over their buffers as
they are, and handed to polars through the Arrow PyCapsule interface (``__arrow_c_array__``),
which polars imports without a copy. Handing polars the ``pyarrow.Array`` itself would take
its pyarrow path, whose first call imports ``pyarrow.compute`` (a quarter of a second of every
run); ``pa.array`` on a numpy array with a timestamp type would import pandas (half a second).
"""
from __future__ import annotations

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


def series(name: str, arrow_type: pa.DataType, data: np.ndarray,
           validity: np.ndarray | None = None) -> pl.Series:
    """A Series of ``arrow_type`` over the C-contiguous ``data`` (one value per element) and
    the Arrow validity bitmap ``validity`` (uint8, bit ``i % 8`` of byte ``i // 8``: element
    ``i`` is not null; None: no null). The Series keeps both arrays alive."""
    arr = pa.Array.from_buffers(arrow_type, data.size,
                                [None if validity is None else pa.py_buffer(validity),
                                 pa.py_buffer(data)])
    return pl.Series(_CArray(arr)).alias(name)
