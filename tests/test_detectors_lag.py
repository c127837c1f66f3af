"""The ``lag`` of the window detectors: the window of a row at t is [t - lag - W, t - lag].

* property tests (hypothesis): each lagged kernel equals its reference in ``tests/naive.py`` on
  random irregular multi-series input (ties, gaps longer than window + lag, nulls, single points),
  and at lag 0 equals the plain kernel bit for bit;
* hand-written boundaries: both ends of the lagged window, ties at its right end, the row's own
  reading never in a lagged window, delta / pct_change / slope over the lagged window's readings,
  a null row;
* specs: a spec without a lag (or with lag 0m) resolves exactly as before lags existed (kernel,
  params, key); the lookback includes the lag; the fused plan pairs mean+std and min+max only
  when their lags are equal too.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given

from engine.detect import spec_key
from engine.detectors import REGISTRY, evaluate, fused, lookback, resolve_specs
from engine.detectors import kernels_fused as kf
from engine.detectors import kernels_window as kw
from engine.detectors.evaluate import frozen
from tests import naive
from tests.strategies import MINUTE_US, T0_US, multi_series, windows
from tests.test_detectors_window import PROPERTY, WINDOWED, arrays, close

H = 60 * MINUTE_US
D = 24 * H
#: registered window detectors taking a lag, with their plain and lagged kernels
WINDOW_FNS = {"sum": "rolling_sum", "mean": "rolling_mean", "count": "rolling_count",
              "std": "rolling_std", "min": "rolling_min", "max": "rolling_max",
              "median": "rolling_median", "delta": "delta", "pct_change": "pct_change",
              "slope": "slope"}


def lagged(name):
    return getattr(kw, name + "_lagged")


# --------------------------------------------------------------------------------------------
# kernels == references; lag 0 == the plain kernel, bit for bit
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WINDOWED)
@PROPERTY
@given(data=multi_series(), window=windows(), lag=windows())
def test_lagged_kernel_matches_reference(name, data, window, lag):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    close(lagged(name)(ts, x, offsets, window, lag),
          getattr(naive, name)(ts, x, offsets, window, lag))


@PROPERTY
@given(data=multi_series(max_len=60), window=windows())
def test_lag_zero_is_the_plain_kernel_bit_for_bit(data, window):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    for name in WINDOWED:
        plain = getattr(kw, name)(ts, x, offsets, window)
        zero = lagged(name)(ts, x, offsets, window, 0)
        np.testing.assert_array_equal(zero.view(np.int64), plain.view(np.int64), err_msg=name)


@PROPERTY
@given(data=multi_series(max_series=1, max_len=60), window=windows(), lag=windows())
def test_lagged_one_call_equals_one_call_per_series(data, window, lag):
    ts, x, offsets = data
    doubled = (frozen(np.concatenate([ts, ts]), np.int64),
               frozen(np.concatenate([x, x]), np.float64),
               frozen(np.asarray([0, len(ts), 2 * len(ts)]), np.int64))
    for name in WINDOWED:
        one = lagged(name)(*arrays(ts, x), window, lag)
        np.testing.assert_array_equal(lagged(name)(*doubled, window, lag),
                                      np.concatenate([one, one], axis=-1), err_msg=name)


# --------------------------------------------------------------------------------------------
# hand-written boundaries
# --------------------------------------------------------------------------------------------
def test_lagged_window_includes_both_ends_exactly():
    ts, x, off = arrays([0, H, 2 * H, 3 * H, 4 * H], [1.0, 2.0, 4.0, 8.0, 16.0])
    nan = np.nan
    # window 1h, lag 1h: at 4h the window is [2h, 3h], both readings on its ends
    np.testing.assert_array_equal(kw.rolling_sum_lagged(ts, x, off, H, H),
                                  [nan, 1.0, 3.0, 6.0, 12.0])
    # one microsecond less lag: [2h + 1us, 3h + 1us] keeps 3h only; one more: [2h - 1, 3h - 1]
    assert kw.rolling_sum_lagged(ts, x, off, H, H - 1)[-1] == 8.0
    assert kw.rolling_sum_lagged(ts, x, off, H, H + 1)[-1] == 4.0
    # one microsecond shorter window: [2h + 1us, 3h]
    assert kw.rolling_sum_lagged(ts, x, off, H - 1, H)[-1] == 8.0
    np.testing.assert_array_equal(kw.rolling_count_lagged(ts, x, off, 0, H), [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(kw.rolling_count_lagged(ts, x, off, 0, H + 1), [0] * 5)


def test_a_lagged_window_holds_every_tie_at_its_end_and_never_the_row():
    ts, x, off = arrays([0, H, H, H, 2 * H], [5.0, 1.0, 9.0, 3.0, 7.0])
    # at 2h with lag 1h, window 0: the three readings tied at 1h, all before the row
    np.testing.assert_array_equal(kw.rolling_count_lagged(ts, x, off, 0, H), [0, 1, 1, 1, 3])
    np.testing.assert_array_equal(kw.rolling_max_lagged(ts, x, off, 0, H),
                                  [np.nan, 5.0, 5.0, 5.0, 9.0])
    assert kw.rolling_median_lagged(ts, x, off, 0, H)[-1] == 3.0
    # with any lag the row's own reading is out: one microsecond is enough
    np.testing.assert_array_equal(kw.rolling_count_lagged(ts, x, off, D, 1), [0, 1, 1, 1, 4])
    np.testing.assert_array_equal(kw.rolling_count(ts, x, off, D), [1, 2, 3, 4, 5])


def test_delta_and_pct_change_with_a_lag_span_the_lagged_window():
    nan = np.nan
    days = [0, D, 2 * D, 3 * D, 4 * D, 5 * D, 6 * D]
    kg = [80.0, 80.5, 81.0, 82.0, 83.5, 84.0, nan]
    ts, x, off = arrays(days, kg)
    # window 2d, lag 1d: at day 5 the window is [day 2, day 4]: 83.5 - 81.0
    got = kw.delta_lagged(ts, x, off, 2 * D, D)
    np.testing.assert_array_equal(got, [nan, 0.0, 0.5, 1.0, 1.5, 2.5, 2.0])
    # the null row (day 6) gets the change of [day 3, day 5] like any row; without a lag the
    # change ends at the row's own reading: null there
    assert np.isnan(kw.delta(ts, x, off, 2 * D)[-1])
    pct = kw.pct_change_lagged(ts, x, off, 2 * D, D)
    close(pct[5], 100.0 * 2.5 / 81.0)
    close(pct[6], 100.0 * 2.0 / 82.0)
    # a lagged window holding one reading gives 0; an empty one null
    one = arrays([0, 5 * H], [3.0, 4.0])
    np.testing.assert_array_equal(kw.delta_lagged(*one, H, 5 * H), [nan, 0.0])
    np.testing.assert_array_equal(kw.delta_lagged(*one, H, 6 * H + 1), [nan, nan])
    zero = arrays([0, H, 2 * H], [0.0, 5.0, 6.0])
    assert np.isnan(kw.pct_change_lagged(*zero, D, H)[-1])          # of a zero first reading


def test_slope_with_a_lag_is_the_trend_of_the_lagged_window():
    ts, x, off = arrays([0, H, 2 * H, 3 * H, 4 * H], [10.0, 13.0, 16.0, 100.0, -50.0])
    # at 4h, lag 2h, window 2h: [0, 2h], 3 per hour whatever came after
    got = kw.slope_lagged(ts, x, off, 2 * H, 2 * H)
    np.testing.assert_array_equal(np.isnan(got), [True, True, True, False, False])
    close(got[3:], [3.0, 3.0])


def test_median_baseline_of_the_14_days_before_the_last_2():
    # resting pulse 60 for 14 days, then 80: the baseline leaves the change out
    hours = np.arange(0, 16 * 24, 6)
    bpm = np.where(hours < 14 * 24, 60.0, 80.0)
    ts, x, off = arrays(T0_US + hours * H, bpm)
    base = kw.rolling_median_lagged(ts, x, off, 14 * D, 2 * D)
    recent = kw.rolling_median(ts, x, off, 2 * D)
    assert base[-1] == 60.0 and recent[-1] == 80.0
    # two days before the change, the baseline still is the 14 days before that
    assert base[hours.tolist().index(14 * 24 - 6)] == 60.0


def test_rows_that_enter_and_leave_between_two_rows_are_never_counted():
    # a gap of 10 h: the readings at 0..3 min enter and leave the window [t - 2h, t - 1h] of
    # the row at 10h at once
    ts, x, off = arrays([0, MINUTE_US, 2 * MINUTE_US, 3 * MINUTE_US, 10 * H, 10 * H + 1],
                        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    for name in WINDOWED:
        got = lagged(name)(ts, x, off, H, H)
        np.testing.assert_array_equal(got, getattr(naive, name)(ts, x, off, H, H), err_msg=name)
    np.testing.assert_array_equal(kw.rolling_count_lagged(ts, x, off, H, H), [0] * 6)


# --------------------------------------------------------------------------------------------
# specs: the plain form, lookback, keys, evaluation, fused pairs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", sorted(WINDOW_FNS))
def test_without_a_lag_a_spec_resolves_exactly_as_before_lags_existed(fn):
    plain_kernel = getattr(kw, WINDOW_FNS[fn])
    d = REGISTRY[fn]
    assert [p.name for p in d.params] == ["window", "lag"]
    assert d.kernel is lagged(WINDOW_FNS[fn]) and d.plain.kernel is plain_kernel
    assert "lag" in d.doc and "t - lag - W <= ts <= t - lag" in d.doc
    for spec in ({"metric": "weight", "fn": fn, "window": "3d"},
                 {"metric": "weight", "fn": fn, "window": "3d", "lag": "0m"},
                 {"metric": "weight", "fn": fn, "window": "3d", "lag": "0d"}):
        r = resolve_specs({"g": spec})["g"]
        assert r.detector.kernel is plain_kernel and r.params == {"window": 3 * D}
        assert r.kernel_args == (3 * D,) and r.lookback_us == 3 * D
        assert spec_key(r) == f"{fn}(window=3d)"
    r = resolve_specs({"g": {"metric": "weight", "fn": fn, "window": "3d", "lag": "12h"}})["g"]
    assert r.detector is d and r.kernel_args == (3 * D, 12 * H)
    assert r.lookback_us == 3 * D + 12 * H
    assert spec_key(r) == f"{fn}(window=3d, lag=12h)"
    py = getattr(d.kernel, "py_func", d.kernel)
    assert py.__code__.co_argcount == 3 + len(d.params)


def test_lookback_includes_the_lag():
    assert lookback({"b": {"metric": "heart_rate", "fn": "median", "window": "14d",
                           "lag": "2d"},
                     "d": {"metric": "weight", "fn": "delta", "window": "3d"}}) == 16 * D


def test_evaluate_a_lagged_baseline_against_the_recent_level():
    rows = [(h, 60.0) for h in range(0, 14 * 24, 6)] + [(h, 80.0) for h in range(14 * 24,
                                                                               16 * 24, 6)]
    rows.insert(5, (rows[4][0], None))            # a null row tied with the reading before it
    tel = pl.DataFrame({"patient_id": "p", "metric": "heart_rate",
                        "ts": pl.Series([T0_US + h * H for h, _ in rows])
                        .cast(pl.Datetime("us", "UTC")),
                        "value": [v for _, v in rows]})
    out = evaluate(tel, {"base": {"metric": "heart_rate", "fn": "median", "window": "14d",
                                  "lag": "2d"},
                         "now": {"metric": "heart_rate", "fn": "median", "window": "1d"},
                         "plain": {"metric": "heart_rate", "fn": "median", "window": "14d",
                                   "lag": "0m"}})
    ts = tel["ts"].dt.epoch("us").to_numpy()
    x = tel["value"].fill_null(np.nan).to_numpy()
    off = np.array([0, len(rows)])
    want = kw.rolling_median_lagged(frozen(ts, np.int64), frozen(x, np.float64),
                                    frozen(off, np.int64), 14 * D, 2 * D)
    np.testing.assert_array_equal(out["base"].fill_null(np.nan).to_numpy(), want)
    assert out["base"][-1] == 60.0 and out["now"][-1] == 80.0
    assert out["base"][0] is None                        # nothing 2 days before the first
    np.testing.assert_array_equal(out["plain"].to_numpy(),
                                  kw.rolling_median(frozen(ts, np.int64), frozen(x, np.float64),
                                                    frozen(off, np.int64), 14 * D))


def test_fused_pairs_need_the_same_lag():
    r = resolve_specs({"m": {"metric": "weight", "fn": "mean", "window": "1d", "lag": "1d"},
                       "s": {"metric": "weight", "fn": "std", "window": "1d", "lag": "1d"},
                       "m0": {"metric": "weight", "fn": "mean", "window": "1d"},
                       "s2": {"metric": "weight", "fn": "std", "window": "1d", "lag": "2d"},
                       "lo": {"metric": "spo2", "fn": "min", "window": "6h"},
                       "hi": {"metric": "spo2", "fn": "max", "window": "6h", "lag": "1h"},
                       "lo1": {"metric": "spo2", "fn": "min", "window": "6h", "lag": "1h"}})
    p = fused.plan(r.values())
    names = list(p.names)
    ops = list(zip(p.ops.tolist(), p.rows.tolist(), p.ip.tolist()))
    assert (kf.OP_MEAN_STD, [names.index("m"), names.index("s"), -1, -1],
            [D, D, 0, 0, 0, 0]) in ops
    assert (kf.OP_MEAN, [names.index("m0"), -1, -1, -1], [D, 0, 0, 0, 0, 0]) in ops
    assert (kf.OP_STD, [names.index("s2"), -1, -1, -1], [D, 2 * D, 0, 0, 0, 0]) in ops
    assert (kf.OP_MIN, [names.index("lo"), -1, -1, -1], [6 * H, 0, 0, 0, 0, 0]) in ops
    assert (kf.OP_MIN_MAX, [names.index("lo1"), names.index("hi"), -1, -1],
            [6 * H, H, 0, 0, 0, 0]) in ops
    assert len(ops) == 5


@PROPERTY
@given(data=multi_series(max_series=6, max_len=50), window=windows(max_minutes=2880),
       lag=windows(max_minutes=2880))
def test_fused_lagged_ops_and_pairs_equal_their_kernels(data, window, lag):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    w, g = f"{window // MINUTE_US}m", f"{lag // MINUTE_US}m"
    specs = {f"{fn}_{k}": {"fn": fn, "window": w, **({"lag": g} if k else {})}
             for fn in WINDOW_FNS for k in (0, 1)}
    resolved = resolve_specs(specs, metric_required=False)
    p = fused.plan(resolved.values())
    # the plain std sweeps with a plain sum and min and max; with a lag the pairs share a pass
    assert kf.OP_SWEEP in p.ops
    assert lag == 0 or (kf.OP_MEAN_STD in p.ops and kf.OP_MIN_MAX in p.ops)
    out, valid, bad = fused.run_arrays(ts, x, offsets, np.full(offsets.size - 1, -1), p)
    assert bad == -1
    for row, name in enumerate(p.names):
        s = resolved[name]
        want = s.detector.kernel(ts, x, offsets, *s.kernel_args)
        np.testing.assert_array_equal(out[row], want, err_msg=name)
