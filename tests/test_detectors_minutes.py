"""``minutes_above`` / ``minutes_below``: cumulative minutes beyond a threshold in (t - W, t].

A property test against ``tests/naive_state.py`` on random irregular series (thresholds often
equal to a reading, ties, gaps longer than max_gap and than the window, nulls), the convention
pinned by the CGM consensus (18 five-minute readings above 250 make 90 minutes, 17 make 85, a
full 120-minute window 120), the open left end of the window, max_gap, nulls, ties, and the spec
through ``evaluate``.
"""
from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.detectors import REGISTRY, evaluate, resolve_specs
from engine.detectors import kernels_stateful as K
from tests import naive_state as ref
from tests.strategies import MINUTE_US, T0_US, multi_series, windows
from tests.test_detectors_stateful import PROPERTY, arrays, assert_matches, level

MIN = MINUTE_US
HOUR = 60 * MIN
nan = np.nan


def cgm(values, start=0, every=5):
    """One series of readings every ``every`` minutes from ``start`` (None = null)."""
    return arrays([(start + every * k, v) for k, v in enumerate(values)])


@PROPERTY
@given(multi_series(), windows(), windows(max_minutes=240), windows(max_minutes=15), st.data())
def test_minutes_above_below_match_reference(data, window, max_gap, interval, draw):
    ts, x, offsets = data
    threshold = draw.draw(level(x))
    for kernel, reference in [(K.minutes_above, ref.minutes_above),
                              (K.minutes_below, ref.minutes_below)]:
        args = (threshold, window, max_gap, interval)
        assert_matches(kernel(ts, x, offsets, *args), reference(ts, x, offsets, *args),
                       x, offsets, atol=0.0)


@settings(max_examples=40, deadline=None)
@given(multi_series(max_series=5), windows(), windows(max_minutes=240), windows(max_minutes=15))
def test_one_call_equals_one_call_per_series(data, window, max_gap, interval):
    ts, x, offsets = data
    for kernel in (K.minutes_above, K.minutes_below):
        whole = kernel(ts, x, offsets, 1.0, window, max_gap, interval)
        for k in range(len(offsets) - 1):
            a, b = offsets[k], offsets[k + 1]
            one = kernel(ts[a:b], x[a:b], np.array([0, b - a], dtype=np.int64), 1.0, window,
                         max_gap, interval)
            np.testing.assert_array_equal(whole[a:b], one)


# --- the convention the CGM consensus pins -------------------------------------------------------

CONSENSUS = (250.0, 120 * MIN, 30 * MIN, 5 * MIN)   # threshold, window, max_gap, interval


def test_18_readings_above_make_90_minutes_and_17_make_85():
    # half an hour in range, then 18 readings above 250, then back in range
    ts, x, off = cgm([180.0] * 6 + [300.0] * 18 + [180.0] * 4)
    out = K.minutes_above(ts, x, off, *CONSENSUS)
    np.testing.assert_array_equal(out[:6], 0.0)
    np.testing.assert_array_equal(out[6:24], 5.0 * np.arange(1, 19))
    assert out[22] == 85.0 and out[23] == 90.0
    assert (out[23] >= 90) and not (out[22] >= 90)
    # back in range: the 18 readings still stand for their 90 minutes while in the window
    np.testing.assert_array_equal(out[24:], 90.0)


def test_a_full_window_of_readings_above_reads_120_and_stays_there():
    ts, x, off = cgm([300.0] * 40)
    out = K.minutes_above(ts, x, off, *CONSENSUS)
    # reading k (at 5k minutes) has k + 1 readings in the window until the 24th; from then on
    # the window (t - 120, t] holds 24 readings, each standing for 5 minutes
    np.testing.assert_array_equal(out[:24], 5.0 * np.arange(1, 25))
    np.testing.assert_array_equal(out[23:], 120.0)


def test_the_window_is_open_on_the_left():
    ts, x, off = arrays([(0, 300.0), (120, 300.0)])
    args = (250.0, 120 * MIN, 0, 0)          # no max_gap, the latest stands for nothing
    # at 120: the reading at exactly t - 120 is out; one microsecond more window takes it in
    np.testing.assert_array_equal(K.minutes_above(ts, x, off, *args), [0.0, 0.0])
    np.testing.assert_array_equal(K.minutes_above(ts, x, off, 250.0, 120 * MIN + 1, 0, 0),
                                  [0.0, 120.0])
    # a window of 0 holds no reading: null, not 0
    assert np.isnan(K.minutes_above(ts, x, off, 250.0, 0, 0, 5 * MIN)).all()


def test_max_gap_caps_a_hold_and_a_reading_leaves_with_its_whole_hold():
    # the worked example of the documentation
    ts, x, off = arrays([(600, 300.0), (645, 300.0), (650, 200.0), (725, 240.0)])
    np.testing.assert_array_equal(K.minutes_above(ts, x, off, *CONSENSUS), [5, 35, 35, 5])
    # max_gap 0m: no limit, the first reading holds the whole 45 minutes
    np.testing.assert_array_equal(K.minutes_above(ts, x, off, 250.0, 120 * MIN, 0, 5 * MIN),
                                  [5, 50, 50, 5])


def test_strict_inequality_and_the_below_side():
    ts, x, off = cgm([54.0, 53.9, 50.0, 54.0, 60.0])
    below = K.minutes_below(ts, x, off, 54.0, 120 * MIN, 30 * MIN, 5 * MIN)
    np.testing.assert_array_equal(below, [0, 5, 10, 10, 10])
    above = K.minutes_above(ts, x, off, 54.0, 120 * MIN, 30 * MIN, 5 * MIN)
    np.testing.assert_array_equal(above, [0, 0, 0, 0, 5])      # 54.0 is not above 54


def test_null_rows_get_the_window_at_their_own_time():
    ts, x, off = arrays([(-5, None), (0, 300.0), (3, None), (5, 300.0), (100, None),
                         (200, None)])
    out = K.minutes_above(ts, x, off, *CONSENSUS)
    # before any reading: null; at 3 the reading at 0 is the latest and stands for 5 minutes;
    # at 100 the reading at 0 holds until 5 and the one at 5 stands for 5; at 200 the window
    # (80, 200] holds no reading: null
    np.testing.assert_array_equal(out, [nan, 5, 5, 10, 10, nan])


def test_tied_readings_hold_nothing_but_the_last():
    ts, x, off = arrays([(0, 300.0), (0, 100.0), (5, 300.0)])
    out = K.minutes_above(ts, x, off, *CONSENSUS)
    # at the tie only the rows up to it count: 300 then 100 at the same instant; 300 holds 0
    np.testing.assert_array_equal(out, [5, 0, 5])


# --- registration and evaluation -----------------------------------------------------------------

def test_registered_with_the_window_as_lookback_and_documented():
    for fn, kernel in (("minutes_above", K.minutes_above), ("minutes_below", K.minutes_below)):
        d = REGISTRY[fn]
        assert d.kernel is kernel and d.output == "minutes"
        assert [p.name for p in d.params] == ["threshold", "window", "max_gap", "interval"]
        py = getattr(d.kernel, "py_func", d.kernel)
        assert py.__code__.co_argcount == 3 + len(d.params)
        assert "False alarms:" in d.doc and "Nulls and ties:" in d.doc
        assert "t - window < ts <= t" in d.doc and "time_in_range" in d.doc
        r = resolve_specs({"m": {"metric": "glucose", "fn": fn, "threshold": 250,
                                 "window": "120m"}})["m"]
        assert r.params == {"threshold": 250.0, "window": 120 * MIN, "max_gap": 15 * MIN,
                            "interval": 0}
        assert r.lookback_us == 120 * MIN
    assert "Lancet Diabetes Endocrinol\n    2023;11(1):42-57" in REGISTRY["minutes_above"].doc


def test_extended_hyperglycaemia_through_evaluate():
    values = [180.0] * 6 + [300.0] * 18 + [180.0] * 4
    tel = pl.DataFrame({"patient_id": "p", "metric": "glucose",
                        "ts": pl.Series([T0_US + 5 * k * MIN for k in range(len(values))])
                        .cast(pl.Datetime("us", "UTC")), "value": values})
    out = evaluate(tel, {"ext": {"metric": "glucose", "fn": "minutes_above", "threshold": 250,
                                 "window": "120m", "max_gap": "30m", "interval": "5m"}})
    fired = out.with_row_index().filter(pl.col("ext") >= 90)["index"].to_list()
    assert fired[0] == 23 and out["ext"][22] == 85.0
