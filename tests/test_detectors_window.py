"""Window-statistic kernels against their naive references, hand-written edge cases, golden runs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import ATOL, RTOL
from engine.detectors import kernels_window as kw
from engine.detectors.evaluate import frozen
from tests import naive
from tests.strategies import MINUTE_US, T0_US, multi_series, windows

H = 60 * MINUTE_US
D = 24 * H
WINDOWED = ["rolling_sum", "rolling_mean", "rolling_count", "rolling_std", "rolling_min",
            "rolling_max", "rolling_median", "delta", "pct_change", "slope", "rolling_mean_std",
            "rolling_min_max"]
PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def arrays(ts, x, sizes=None):
    """Kernel inputs from lists; ``sizes`` splits the rows into series (one series by default)."""
    sizes = [len(ts)] if sizes is None else sizes
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return (frozen(np.asarray(ts, dtype=np.int64), np.int64),
            frozen(np.asarray(x, dtype=np.float64), np.float64), frozen(offsets, np.int64))


def close(got, ref):
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, equal_nan=True)


# --------------------------------------------------------------------------------------------
# kernels == references on random irregular multi-series input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WINDOWED)
@PROPERTY
@given(data=multi_series(), window=windows())
def test_window_kernel_matches_reference(name, data, window):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    close(getattr(kw, name)(ts, x, offsets, window), getattr(naive, name)(ts, x, offsets, window))


@PROPERTY
@given(data=multi_series(max_len=60), window=windows(), limit=windows())
def test_gap_kernels_match_reference(data, window, limit):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    close(kw.since_last(ts, x, offsets), naive.since_last(ts, x, offsets))
    close(kw.silence(ts, x, offsets, limit), naive.silence(ts, x, offsets, limit))


@st.composite
def silence_inputs(draw):
    ts, x, offsets = draw(multi_series(max_series=8))
    s = len(offsets) - 1
    # group consecutive series into patients, some patients with no series at all
    cuts = sorted(draw(st.lists(st.integers(0, s), min_size=1, max_size=4)))
    group_offsets = np.asarray([0] + cuts + [s], dtype=np.int64)
    g = len(group_offsets) - 1
    lo = int(ts.min()) - D if len(ts) else T0_US
    hi = int(ts.max()) + D if len(ts) else T0_US + D
    picks = st.one_of(st.integers(lo, hi), st.sampled_from(ts.tolist() or [lo]))
    e = np.asarray(draw(st.lists(picks, max_size=30)), dtype=np.int64)
    groups = np.asarray(draw(st.lists(st.integers(-1, g - 1), min_size=len(e),
                                      max_size=len(e))), dtype=np.int64)
    return ts, x, offsets, group_offsets, e, groups


@PROPERTY
@given(silence_inputs())
def test_last_seen_matches_reference(args):
    args = tuple(frozen(a, a.dtype) for a in args)
    np.testing.assert_array_equal(kw.last_seen(*args), naive.last_seen(*args))


@PROPERTY
@given(data=multi_series(max_series=1, max_len=60), window=windows())
def test_one_call_equals_one_call_per_series(data, window):
    """Series never leak into each other: splitting a call per series changes nothing."""
    ts, x, offsets = data
    doubled = (frozen(np.concatenate([ts, ts]), np.int64),
               frozen(np.concatenate([x, x]), np.float64),
               frozen(np.asarray([0, len(ts), 2 * len(ts)]), np.int64))
    for name in ("rolling_std", "rolling_max", "rolling_median", "slope", "rolling_mean",
                 "rolling_min"):
        one = getattr(kw, name)(*arrays(ts, x), window)
        np.testing.assert_array_equal(getattr(kw, name)(*doubled, window),
                                      np.concatenate([one, one]))


# --------------------------------------------------------------------------------------------
# hand-written cases: boundaries, ties, single points, nulls
# --------------------------------------------------------------------------------------------
def test_window_includes_its_left_end_exactly():
    ts, x, off = arrays([0, H, 2 * H, 3 * H], [1.0, 2.0, 4.0, 8.0])
    # a 1h window at 2h holds the readings at 1h and 2h: the left end t - W is included
    np.testing.assert_array_equal(kw.rolling_sum(ts, x, off, H), [1.0, 3.0, 6.0, 12.0])
    # one microsecond shorter drops it
    np.testing.assert_array_equal(kw.rolling_sum(ts, x, off, H - 1), [1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(kw.delta(ts, x, off, H), [0.0, 1.0, 2.0, 4.0])
    np.testing.assert_array_equal(kw.rolling_count(ts, x, off, 0), [1.0, 1.0, 1.0, 1.0])


def test_ties_count_rows_before_but_not_after():
    ts, x, off = arrays([0, H, H, H], [5.0, 1.0, 9.0, 3.0])
    np.testing.assert_array_equal(kw.rolling_max(ts, x, off, 0), [5.0, 1.0, 9.0, 9.0])
    np.testing.assert_array_equal(kw.rolling_min(ts, x, off, 0), [5.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(kw.rolling_count(ts, x, off, 0), [1.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(kw.delta(ts, x, off, 0), [0.0, 0.0, 8.0, 2.0])
    np.testing.assert_array_equal(kw.since_last(ts, x, off), [np.nan, 60.0, 0.0, 0.0])
    # two distinct times are needed for a slope: the tied rows at 1h alone give none
    s = kw.slope(ts, x, off, 0)
    assert np.isnan(s).all()


def test_min_max_keep_infinite_readings_and_give_null_on_windows_without_one():
    ts, x, off = arrays([0, H, 2 * H, 5 * H, 6 * H], [np.inf, np.nan, -np.inf, np.nan, 3.0])
    np.testing.assert_array_equal(kw.rolling_min(ts, x, off, H),
                                  [np.inf, np.inf, -np.inf, np.nan, 3.0])
    np.testing.assert_array_equal(kw.rolling_max(ts, x, off, H),
                                  [np.inf, np.inf, -np.inf, np.nan, 3.0])
    # a window sliding over many rows: the two-stack rebuilds its suffixes many times
    rng = np.random.default_rng(3)
    t, v, o = arrays(np.cumsum(rng.integers(0, 4, 400)) * MINUTE_US, rng.standard_normal(400))
    np.testing.assert_array_equal(kw.rolling_min_max(t, v, o, 7 * MINUTE_US),
                                  naive.rolling_min_max(t, v, o, 7 * MINUTE_US))


def test_single_points_and_empty_series():
    ts, x, off = arrays([0, 5 * H], [7.0, 3.0], sizes=[1, 0, 1, 0])
    np.testing.assert_array_equal(kw.rolling_mean(ts, x, off, D), [7.0, 3.0])
    np.testing.assert_array_equal(kw.rolling_median(ts, x, off, D), [7.0, 3.0])
    assert np.isnan(kw.rolling_std(ts, x, off, D)).all()
    assert np.isnan(kw.slope(ts, x, off, D)).all()
    assert np.isnan(kw.since_last(ts, x, off)).all()
    empty = arrays([], [], sizes=[0, 0])
    for name in WINDOWED:
        pair = name in ("rolling_mean_std", "rolling_min_max")    # (2, n) outputs
        assert getattr(kw, name)(*empty, H).shape == ((2, 0) if pair else (0,))


def test_nulls_never_enter_a_window():
    nan = np.nan
    ts, x, off = arrays([0, H, 2 * H, 3 * H, 4 * H], [nan, 2.0, nan, 4.0, nan])
    np.testing.assert_array_equal(kw.rolling_count(ts, x, off, D), [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(kw.rolling_mean(ts, x, off, D), [nan, 2.0, 2.0, 3.0, 3.0])
    np.testing.assert_array_equal(kw.rolling_sum(ts, x, off, D), [nan, 2.0, 2.0, 6.0, 6.0])
    # the current value is needed for a change: null rows give null
    np.testing.assert_array_equal(kw.delta(ts, x, off, D), [nan, 0.0, nan, 2.0, nan])
    np.testing.assert_array_equal(kw.since_last(ts, x, off), [nan, nan, 60.0, 120.0, 60.0])
    np.testing.assert_array_equal(kw.silence(ts, x, off, 90 * MINUTE_US),
                                  [nan, nan, 0.0, 1.0, 0.0])


def test_std_median_pct_change_slope_values():
    ts, x, off = arrays([0, H, 2 * H, 3 * H], [2.0, 4.0, 4.0, 0.0])
    close(kw.rolling_std(ts, x, off, D), [np.nan, np.sqrt(2.0), np.sqrt(4 / 3), np.sqrt(11 / 3)])
    np.testing.assert_array_equal(kw.rolling_median(ts, x, off, D), [2.0, 3.0, 4.0, 3.0])
    np.testing.assert_array_equal(kw.pct_change(ts, x, off, D), [0.0, 100.0, 100.0, -100.0])
    ts0, x0, off0 = arrays([0, H], [0.0, 5.0])
    assert np.isnan(kw.pct_change(ts0, x0, off0, D)[1])   # of a zero base: undefined
    lin = arrays([0, 30 * MINUTE_US, 2 * H, 5 * H], [10.0, 11.5, 16.0, 25.0])   # 3 per hour
    close(kw.slope(*lin, D), [np.nan, 3.0, 3.0, 3.0])


def test_constant_window_has_zero_std_after_a_large_value_leaves():
    ts, x, off = arrays(np.arange(6) * H, [1e6, 98.5, 98.5, 98.5, 98.5, 98.5])
    assert kw.rolling_std(ts, x, off, 2 * H)[-1] == 0.0
    assert kw.slope(ts, x, off, 2 * H)[-1] == 0.0


def test_magnitudes_1e6_then_1e_3_keep_full_precision():
    """The hard case for running sums: huge values leave, tiny ones stay."""
    rng = np.random.default_rng(7)
    big = 1e6 * (1 + 1e-3 * rng.standard_normal(500))
    small = 1e-3 * (1 + 1e-2 * rng.standard_normal(500))
    x = np.concatenate([big, small, big[:50], small[:200]])
    ts, x, off = arrays(np.arange(len(x)) * MINUTE_US, x)
    for name in ("rolling_std", "rolling_mean", "rolling_sum", "slope", "rolling_median",
                 "rolling_min", "rolling_max"):
        got, ref = getattr(kw, name)(ts, x, off, 60 * MINUTE_US), \
            getattr(naive, name)(ts, x, off, 60 * MINUTE_US)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0, equal_nan=True, err_msg=name)


def test_first_unsorted_finds_the_row_going_back_in_time():
    ts, x, off = arrays([0, 5, 1, 2], [0.0] * 4, sizes=[2, 2])
    assert kw.first_unsorted(ts, off) == -1       # 5 then 1 is a new series, not a step back
    ts, x, off = arrays([0, 5, 2, 1], [0.0] * 4, sizes=[2, 2])
    assert kw.first_unsorted(ts, off) == 3


# --------------------------------------------------------------------------------------------
# golden regression: a seeded weight series with a gain starting at a known day
# --------------------------------------------------------------------------------------------
def _weights():
    """Daily weights at 07:30 (±20 min), noise sd 0.3 kg; from day 30, +0.8 kg/day."""
    rng = np.random.default_rng(20240101)
    days = np.arange(60)
    ts = T0_US + days * D + (7 * 60 + 30) * MINUTE_US + rng.integers(-20, 21, 60) * MINUTE_US
    x = 80.0 + rng.normal(0, 0.3, 60) + np.where(days >= 30, 0.8 * (days - 29), 0.0)
    x[[11, 33]] = np.nan    # two missed weighings, one during the gain
    return arrays(ts, x)


def test_golden_weight_gain_fires_on_day_34():
    ts, x, off = _weights()
    gain = kw.delta(ts, x, off, 3 * D)
    fired = np.flatnonzero(gain > 2.0)
    # the gain starts on day 30; "> 2 kg in 3 days" first fires on day 34 (day 33 was missed,
    # and on day 32 the window started 3 minutes after day 29's weighing)
    assert fired[0] == 34
    assert ts[fired[0]] == T0_US + 34 * D + (7 * 60 + 30) * MINUTE_US + _jitter(34)
    np.testing.assert_allclose(gain[34], 2.7264, atol=5e-5)
    # and never before the change, noise alone never gives 2 kg in 3 days
    assert not (gain[:30] > 2.0).any()


def _jitter(day):
    rng = np.random.default_rng(20240101)
    return int(rng.integers(-20, 21, 60)[day]) * MINUTE_US


def test_golden_slope_and_silence():
    ts, x, off = _weights()
    trend = kw.slope(ts, x, off, 7 * D) * 24          # kg per day
    assert abs(np.mean(trend[40:]) - 0.8) < 0.05      # the gain rate is recovered
    assert abs(np.nanmean(trend[8:29])) < 0.1         # no trend before it
    gaps = kw.silence(ts, x, off, 36 * H)
    # the readings after the missed weighings are the ones that end a silence of > 36 h
    np.testing.assert_array_equal(np.flatnonzero(gaps == 1.0), [12, 34])
