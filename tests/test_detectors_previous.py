"""``previous``: the latest non-null reading at an earlier row, at least ``gap`` before the row.

A property test against ``tests/naive.py`` on random irregular series (ties, gaps, nulls, single
points), hand-written boundaries (ties with gap 0, the closed gap boundary, null rows), and the
ICOPE use case through ``evaluate``: positive now and negative at the previous screening.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
from hypothesis import given

from engine.detectors import REGISTRY, ALL_HISTORY, evaluate, resolve_specs
from engine.detectors import kernels_window as kw
from engine.detectors.evaluate import frozen
from tests import naive
from tests.strategies import MINUTE_US, multi_series, windows
from tests.test_detectors_window import PROPERTY, arrays

H = 60 * MINUTE_US
D = 24 * H
nan = np.nan


@PROPERTY
@given(data=multi_series(max_len=60), gap=windows())
def test_previous_matches_reference(data, gap):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    # a copy of one reading: exact equality, NaN where the reference has NaN
    np.testing.assert_array_equal(kw.previous(ts, x, offsets, gap),
                                  naive.previous(ts, x, offsets, gap))


@PROPERTY
@given(data=multi_series(max_series=1, max_len=60), gap=windows())
def test_previous_one_call_equals_one_call_per_series(data, gap):
    ts, x, offsets = data
    doubled = (frozen(np.concatenate([ts, ts]), np.int64),
               frozen(np.concatenate([x, x]), np.float64),
               frozen(np.asarray([0, len(ts), 2 * len(ts)]), np.int64))
    one = kw.previous(*arrays(ts, x), gap)
    np.testing.assert_array_equal(kw.previous(*doubled, gap), np.concatenate([one, one]))


def test_gap_zero_takes_any_earlier_row_ties_included_in_row_order():
    ts, x, off = arrays([0, H, H, H], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(kw.previous(ts, x, off, 0), [nan, 1.0, 2.0, 3.0])
    # a gap of one microsecond skips the tied rows
    np.testing.assert_array_equal(kw.previous(ts, x, off, 1), [nan, 1.0, 1.0, 1.0])


def test_the_gap_boundary_is_closed():
    ts, x, off = arrays([0, 2 * H, 3 * H], [1.0, 2.0, 3.0])
    # at 3h with gap 1h: the reading at exactly 2h counts
    np.testing.assert_array_equal(kw.previous(ts, x, off, H), [nan, 1.0, 2.0])
    np.testing.assert_array_equal(kw.previous(ts, x, off, H + 1), [nan, 1.0, 1.0])
    np.testing.assert_array_equal(kw.previous(ts, x, off, 3 * H), [nan, nan, 1.0])
    np.testing.assert_array_equal(kw.previous(ts, x, off, 3 * H + 1), [nan, nan, nan])


def test_a_null_row_gets_the_previous_reading_relative_to_its_own_time():
    ts, x, off = arrays([0, H, 2 * H, 3 * H, 4 * H], [nan, 1.0, nan, 3.0, nan])
    # a null reading is never a previous one; a null row gets the latest reading before it
    np.testing.assert_array_equal(kw.previous(ts, x, off, 0), [nan, nan, 1.0, 1.0, 3.0])
    # with a gap, relative to the null row's own time: at 4h, at or before 2h
    np.testing.assert_array_equal(kw.previous(ts, x, off, 2 * H), [nan, nan, nan, 1.0, 1.0])


def test_single_points_and_empty_series():
    ts, x, off = arrays([0, 5 * H], [7.0, 3.0], sizes=[1, 0, 1, 0])
    assert np.isnan(kw.previous(ts, x, off, 0)).all()
    assert kw.previous(*arrays([], [], sizes=[0, 0]), 0).shape == (0,)


def test_registered_with_all_history_and_documented():
    d = REGISTRY["previous"]
    assert d.output == "value" and [p.name for p in d.params] == ["gap"]
    r = resolve_specs({"p": {"metric": "icope_cognition", "fn": "previous"}})["p"]
    assert r.params == {"gap": 0} and r.lookback_us == ALL_HISTORY
    assert "False alarms:" in d.doc and "Nulls and ties:" in d.doc and "ICOPE" in d.doc


def test_icope_positive_now_and_negative_at_the_previous_screening():
    """Step 1 every 4 months (ICOPE MONITOR); a repeat 3 days later, a missed one (null)."""
    t0 = datetime(2024, 1, 1, 10, tzinfo=timezone.utc)
    days = [0, 120, 123, 240, 360]
    answers = [0.0, 1.0, 1.0, None, 1.0]
    tel = pl.DataFrame({"patient_id": "p", "metric": "icope_cognition",
                        "ts": [t0 + timedelta(days=d) for d in days], "value": answers},
                       schema={"patient_id": pl.String, "metric": pl.String,
                               "ts": pl.Datetime("us", "UTC"), "value": pl.Float64})
    out = evaluate(tel, {"before": {"metric": "icope_cognition", "fn": "previous"},
                         "before_60d": {"metric": "icope_cognition", "fn": "previous",
                                        "gap": "60d"}})
    assert out["before"].to_list() == [None, 0.0, 1.0, 1.0, 1.0]
    # at least 60 days before: the repeat at day 123 still compares with day 0
    assert out["before_60d"].to_list() == [None, 0.0, 0.0, 1.0, 1.0]
    new = out.filter((pl.col("value") == 1) & (pl.col("before") == 0))
    assert new["ts"].to_list() == [t0 + timedelta(days=120)]
