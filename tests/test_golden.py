"""Golden queues: the alerts of fixed runs must not change unless a change means them to.

The files in ``tests/golden/`` were written by ``python -m tests.golden.runs`` (see there); a
restructuring of the pipeline must give the same alerts, ids, reasons, evidence and times.
"""
from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.golden.runs import HERE, runs


@pytest.fixture(scope="module")
def current():
    return runs()


@pytest.mark.parametrize("name", ["sample", "sample_meuse", "other", "other_later"])
def test_queue_equals_golden(current, name):
    golden = pl.read_parquet(HERE / f"{name}.parquet")
    got = current[name]
    assert got.height == golden.height, f"{name}: {got.height} alerts, golden {golden.height}"
    assert_frame_equal(got, golden)
