"""engine.timeline.ts_series and engine.arrow_buffers: Series over numpy buffers, without a copy
and without importing pandas or pyarrow.compute."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
from hypothesis import given, settings, strategies as st

from engine.schema import TS_DTYPE
from engine.timeline import ts_series


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**62, 2**62), st.booleans()), max_size=40),
       st.integers(0, 3))
def test_ts_series_equals_a_polars_cast(rows, skip):
    us = np.array([u for u, _ in rows], np.int64)[skip:]         # a view with an offset too
    missing = np.array([m for _, m in rows], np.bool_)[skip:]
    got = ts_series(us, "t", missing=missing)
    want = pl.Series("t", us, dtype=pl.Int64).cast(TS_DTYPE)
    want = pl.select(pl.when(pl.Series(~missing)).then(want)).to_series().alias("t")
    assert got.dtype == TS_DTYPE
    assert got.equals(want)
    assert ts_series(us, "t").equals(pl.Series("t", us, dtype=pl.Int64).cast(TS_DTYPE))


def test_scoring_without_a_model_never_imports_pandas_or_pyarrow_compute():
    """pandas costs half a second to import and pyarrow.compute a quarter: nothing on the
    rules' path may pull them in (engine.arrow_buffers)."""
    code = ("import sys, engine\n"
            "from engine.paths import sample_cohort\n"
            "tel, pats = sample_cohort()\n"
            "r = engine.Engine.from_paths(model=None).score(tel, pats)\n"
            "assert r.queue.height > 0\n"
            "print('pandas' in sys.modules, 'pyarrow.compute' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_buffer_series_keep_their_name_and_share_arrow_memory():
    import pyarrow as pa

    from engine import arrow_buffers
    values = arrow_buffers.empty(3, np.float64)
    values[:] = [1.0, 2.0, 3.0]
    s = arrow_buffers.series("v", pa.float64(), values,
                             np.packbits(np.array([1, 0, 1], np.bool_), bitorder="little"))
    assert s.name == "v" and s.dtype == pl.Float64 and s.to_list() == [1.0, None, 3.0]
    values[2] = 9.0                      # no copy: the Series reads the Arrow buffer itself
    assert s[2] == 9.0
