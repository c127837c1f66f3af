"""engine.timeline.ts_series: µs to UTC timestamps, nulls by mask, without importing pandas."""
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


def test_scoring_without_a_model_never_imports_pandas():
    """pandas costs half a second to import: nothing on the rules' path may pull it in."""
    code = ("import sys, engine\n"
            "from engine.paths import sample_cohort\n"
            "tel, pats = sample_cohort()\n"
            "r = engine.Engine.from_paths(model=None).score(tel, pats)\n"
            "assert r.queue.height > 0\n"
            "print('pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
