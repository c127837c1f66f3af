"""Stateful, threshold and CGM detectors: kernels against references, boundaries, golden series.

Three kinds of test for every kernel:

* property tests (hypothesis): each kernel equals its slow reference in ``tests/naive_state.py``
  on random irregular multi-series inputs (ties, long gaps, NaN at start/middle/end, empty and
  one-point series, window edges on samples, magnitudes 1e-3..1e6);
* hand-written boundary cases (a hypo of exactly 15 minutes counts, 14 does not; readings of
  exactly 70 and 180 are in range; the z-score baseline's two closed edges ...);
* golden regression tests: a seeded series with a known change at a known time, and the exact
  time the detector first crosses a decision value.

Plus real CGM traces (the published study files beside the repository, when present) going
through the CGM kernels.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import RTOL
from engine.detectors import kernels_stateful as K
from tests import naive_state as ref
from tests.strategies import MINUTE_US, T0_US, multi_series, windows

MIN = MINUTE_US
HOUR = 60 * MIN
DAY = 24 * HOUR
PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- helpers -------------------------------------------------------------------------------------

def series_scale(x, offsets):
    """Per row: the largest |reading| of its series (the scale rounding errors are relative to)."""
    scale = np.zeros(len(x))
    for k in range(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        seg = np.abs(x[a:b][~np.isnan(x[a:b])])
        scale[a:b] = seg.max() if len(seg) else 0.0
    return scale


def assert_matches(got, want, x, offsets, *, atol=None, scale_tol=1e-12):
    """NaN exactly where the reference has NaN; elsewhere equal to rtol, plus an absolute slack
    of ``scale_tol`` × the series' largest |reading| (a sum of readings near 1e6 cannot resolve
    an answer near 1e-3 better than that)."""
    assert got.dtype == np.float64 and got.shape == want.shape
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    diff = np.flatnonzero(nan_got != nan_want)
    assert not len(diff), f"NaN mismatch at rows {diff}: got {got[diff]}, want {want[diff]}"
    ok = ~nan_want
    slack = scale_tol * series_scale(x, offsets)[ok] if atol is None else atol
    tol = RTOL * np.abs(want[ok]) + slack
    bad = np.flatnonzero(np.abs(got[ok] - want[ok]) > tol)
    rows = np.flatnonzero(ok)[bad]
    assert not len(bad), f"rows {rows}: got {got[rows]}, want {want[rows]}"


@st.composite
def level(draw, x):
    """A threshold: often one of the readings themselves, so ties with the threshold happen."""
    finite = x[~np.isnan(x)]
    choices = [st.floats(-1e6, 1e6, allow_nan=False)]
    if len(finite):
        choices.append(st.sampled_from(sorted(set(finite.tolist()))))
    return draw(st.one_of(*choices))


def arrays(*pairs):
    """Series from ``[(minutes, value), ...]`` lists (value None = null) → (ts, x, offsets)."""
    ts, x, offsets = [], [], [0]
    for pairs_k in pairs:
        for minutes, value in pairs_k:
            ts.append(T0_US + int(round(minutes * MIN)))
            x.append(np.nan if value is None else float(value))
        offsets.append(len(ts))
    return (np.asarray(ts, dtype=np.int64), np.asarray(x, dtype=np.float64),
            np.asarray(offsets, dtype=np.int64))


def first_time(ts, out, above):
    """Minutes after T0 of the first row whose output exceeds ``above`` (None if never)."""
    rows = np.flatnonzero(out > above)
    return None if not len(rows) else (ts[rows[0]] - T0_US) / MIN


# --- kernels equal their references (hypothesis) -------------------------------------------------

@PROPERTY
@given(multi_series(), windows())
def test_ewma_matches_reference(data, halflife):
    ts, x, offsets = data
    assert_matches(K.ewma(ts, x, offsets, halflife), ref.ewma(ts, x, offsets, halflife),
                   x, offsets)


@PROPERTY
@given(multi_series(), windows(), windows())
def test_macd_matches_reference(data, fast, slow):
    ts, x, offsets = data
    assert_matches(K.macd(ts, x, offsets, fast, slow), ref.macd(ts, x, offsets, fast, slow),
                   x, offsets)


@PROPERTY
@given(multi_series(), windows(), st.data())
def test_cusum_matches_reference(data, baseline, draw):
    ts, x, offsets = data
    k = abs(draw.draw(level(x)))
    for kernel, reference in [(K.cusum_up, ref.cusum_up), (K.cusum_down, ref.cusum_down)]:
        assert_matches(kernel(ts, x, offsets, baseline, k),
                       reference(ts, x, offsets, baseline, k), x, offsets)


@PROPERTY
@given(multi_series(), windows(), windows(), st.integers(1, 5))
def test_zscore_matches_reference(data, window, lag, min_count):
    ts, x, offsets = data
    got = K.zscore(ts, x, offsets, window, lag, min_count)
    want = ref.zscore(ts, x, offsets, window, lag, min_count)
    # z is ill-conditioned when the baseline's spread is tiny next to its magnitude: the
    # deviations x − mean then carry rounding of about ulp(|x|), so both the numerator and the
    # standard deviation are only known to ~ eps·|x|/sd relative. Allow a few hundred times that.
    slack = np.zeros(len(x))
    for k in range(len(offsets) - 1):
        for i in range(offsets[k], offsets[k + 1]):
            if not np.isnan(want[i]):
                base = ref.zscore_baseline(ts, x, offsets[k], i, window, lag)
                big = max(abs(x[i]), np.abs(base).max())
                slack[i] = 1e-13 * big / np.std(base, ddof=1) * (1.0 + abs(want[i]))
    assert_matches(got, want, x, offsets, atol=slack[~np.isnan(want)])


@PROPERTY
@given(multi_series(), windows(max_minutes=24 * 60), windows(max_minutes=15), st.data())
def test_time_above_below_match_reference(data, max_gap, interval, draw):
    ts, x, offsets = data
    threshold = draw.draw(level(x))
    for kernel, reference in [(K.time_above, ref.time_above), (K.time_below, ref.time_below)]:
        assert_matches(kernel(ts, x, offsets, threshold, max_gap, interval),
                       reference(ts, x, offsets, threshold, max_gap, interval), x, offsets,
                       atol=0.0)


@PROPERTY
@given(multi_series(), windows(max_minutes=120), windows(), windows(max_minutes=120),
       windows(max_minutes=180), windows(max_minutes=15), st.data())
def test_events_match_reference(data, min_duration, window, end_duration, max_gap, interval,
                                draw):
    ts, x, offsets = data
    threshold = draw.draw(level(x))
    end_margin = draw.draw(st.one_of(st.just(0.0), level(x).map(abs)))
    for kernel, reference in [(K.events_below, ref.events_below),
                              (K.events_above, ref.events_above)]:
        args = (threshold, min_duration, window, end_duration, end_margin, max_gap, interval)
        assert_matches(kernel(ts, x, offsets, *args), reference(ts, x, offsets, *args),
                       x, offsets, atol=0.0)


@PROPERTY
@given(multi_series(), windows(), windows(max_minutes=240), st.data())
def test_time_in_range_and_coverage_match_reference(data, window, max_gap, draw):
    ts, x, offsets = data
    low, high = sorted([draw.draw(level(x)), draw.draw(level(x))])
    assert_matches(K.time_in_range(ts, x, offsets, low, high, window, max_gap),
                   ref.time_in_range(ts, x, offsets, low, high, window, max_gap), x, offsets,
                   atol=0.0)
    assert_matches(K.coverage(ts, x, offsets, window, max_gap),
                   ref.coverage(ts, x, offsets, window, max_gap), x, offsets, atol=0.0)


ALL_KERNELS = [
    (K.ewma, (6 * HOUR,)),
    (K.macd, (HOUR, 5 * HOUR)),
    (K.cusum_up, (2 * HOUR, 0.1)),
    (K.cusum_down, (2 * HOUR, 0.0)),
    (K.zscore, (6 * HOUR, 30 * MIN, 3)),
    (K.time_above, (1.0, 0, 0)),
    (K.time_below, (1.0, 2 * HOUR, 5 * MIN)),
    (K.events_below, (1.0, 15 * MIN, DAY, 15 * MIN, 0.0, 0, 0)),
    (K.events_above, (1.0, 15 * MIN, DAY, 15 * MIN, 0.5, 30 * MIN, 5 * MIN)),
    (K.time_in_range, (0.5, 2.0, DAY, 15 * MIN)),
    (K.coverage, (DAY, 15 * MIN)),
]


@settings(max_examples=40, deadline=None)
@given(multi_series(max_series=5))
def test_all_series_in_one_call_equal_one_call_per_series(data):
    """prange over series shares nothing: batching cannot change any series' output."""
    ts, x, offsets = data
    for kernel, params in ALL_KERNELS:
        whole = kernel(ts, x, offsets, *params)
        for k in range(len(offsets) - 1):
            a, b = offsets[k], offsets[k + 1]
            one = kernel(ts[a:b], x[a:b], np.array([0, b - a], dtype=np.int64), *params)
            np.testing.assert_array_equal(whole[a:b], one)


# --- boundaries, written by hand -----------------------------------------------------------------

def test_ewma_first_reading_initialises_ties_average_nulls_carry():
    ts, x, off = arrays([(0, None), (0, 0.0), (60, 1.0), (60, 4.0), (90, None)])
    out = K.ewma(ts, x, off, HOUR)
    # 0 → then one half-life later 1.0: (0.5·0 + 1) / 1.5; the tie at 60 joins undecayed.
    np.testing.assert_allclose(out, [np.nan, 0.0, 1 / 1.5, 5 / 2.5, 5 / 2.5], rtol=1e-15)


def test_ewma_equals_pandas_ewm_with_times():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    minutes = np.cumsum(rng.integers(0, 400, size=200))
    x = rng.normal(80, 5, size=200)
    x[[0, 17, 18, 199]] = np.nan
    ts = (T0_US + minutes * MIN).astype(np.int64)
    want = pd.Series(x).ewm(halflife=pd.Timedelta(hours=7),
                            times=pd.to_datetime(ts, unit="us")).mean().to_numpy()
    got = K.ewma(ts, x, np.array([0, 200]), 7 * HOUR)
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12)
    assert np.isnan(got[0])


def test_macd_is_zero_on_a_constant_series_and_signed_on_a_step():
    ts, x, off = arrays([(d * 1440, 80.0) for d in range(5)] +
                        [(d * 1440, 82.0) for d in range(5, 8)])
    out = K.macd(ts, x, off, 15 * HOUR, 83 * HOUR)
    assert np.all(out[:5] == 0.0)
    assert np.all(out[5:] > 0.0) and out[5] < 2.0
    down = K.macd(ts, -x, off, 15 * HOUR, 83 * HOUR)
    np.testing.assert_array_equal(down, -out)


def test_cusum_baseline_is_frozen_inclusive_and_starts_at_the_first_reading():
    # Baseline 2d from the first non-null reading (day 1): readings at days 1, 2 and 3 (the edge
    # is included) → mu0 = 80. The leading null row is before it.
    days = [(0, None), (1, 79.0), (2, 80.0), (3, 81.0), (4, 81.0), (5, None), (6, 79.2),
            (7, 82.0)]
    ts, x, off = arrays([(d * 1440, v) for d, v in days])
    up = K.cusum_up(ts, x, off, 2 * DAY, 0.5)
    down = K.cusum_down(ts, x, off, 2 * DAY, 0.5)
    np.testing.assert_allclose(up, [np.nan] * 4 + [0.5, 0.5, 0.0, 1.5], rtol=1e-15)
    np.testing.assert_allclose(down, [np.nan] * 4 + [0.0, 0.0, 0.3, 0.0], atol=1e-12)


def test_cusum_does_not_restart_under_a_sustained_shift():
    ts, x, off = arrays([(d * 1440, 80.0) for d in range(3)] +
                        [(d * 1440, 81.0) for d in range(3, 10)])
    out = K.cusum_up(ts, x, off, DAY, 0.5)
    np.testing.assert_allclose(out[3:], 0.5 * np.arange(1, 8))  # grows 0.5 a day, no reset


def test_zscore_baseline_includes_both_edges_and_stops_a_lag_before_now():
    # window 2d, lag 1d, row at day 5: baseline is [2d, 4d] inclusive.
    pts = [(2 * 1440 - 1, 1000.0), (2 * 1440, 10.0), (3 * 1440, 12.0), (4 * 1440, 17.0),
           (4 * 1440 + 1, -1000.0), (5 * 1440, 20.0)]
    ts, x, off = arrays(pts)
    out = K.zscore(ts, x, off, 2 * DAY, DAY, 3)
    base = np.array([10.0, 12.0, 17.0])
    assert out[-1] == pytest.approx((20.0 - base.mean()) / base.std(ddof=1), rel=1e-14)


def test_zscore_lag_zero_includes_the_current_reading_and_min_count_and_constant_give_null():
    ts, x, off = arrays([(0, 1.0), (1, 2.0), (2, 3.0)], [(0, 5.0), (1, 5.0), (2, 5.0)])
    out = K.zscore(ts, x, off, HOUR, 0, 3)
    assert np.isnan(out[:2]).all() and out[2] == pytest.approx(1.0, rel=1e-15)
    assert np.isnan(out[3:]).all()                       # sd = 0: undefined, not infinite
    assert not np.isnan(K.zscore(ts, x, off, HOUR, 0, 2)[1])


def test_time_below_is_strict_zero_when_false_and_nulls_neither_break_nor_extend():
    ts, x, off = arrays([(0, None), (0, 90.0), (1, 87.0), (2, 86.0), (3, None), (5, 88.0),
                         (6, 85.0), (9, 84.0)])
    np.testing.assert_array_equal(K.time_below(ts, x, off, 88.0, 0, 0),
                                  [np.nan, 0, 0, 1, 1, 0, 0, 3])
    np.testing.assert_array_equal(K.time_above(ts, x, off, 86.0, 0, 0),   # 86 is not above 86
                                  [np.nan, 0, 1, 0, 0, 0, 0, 0])


def test_time_above_max_gap_breaks_the_run():
    ts, x, off = arrays([(0, 80.0), (10, 80.0), (60, 80.0), (90, 80.0)])
    np.testing.assert_array_equal(K.time_above(ts, x, off, 70.0, 30 * MIN, 0), [0, 10, 0, 30])
    np.testing.assert_array_equal(K.time_above(ts, x, off, 70.0, 0, 0), [0, 10, 60, 90])


def test_with_an_interval_each_reading_stands_for_one_sampling_interval():
    # three 5-minute readings below 54 last 15 minutes, as the CGM consensus counts them
    ts, x, off = arrays([(0, 110.0), (5, 50.0), (10, 50.0), (15, 50.0), (20, 110.0)])
    np.testing.assert_array_equal(K.time_below(ts, x, off, 54.0, 30 * MIN, 5 * MIN),
                                  [0, 5, 10, 15, 0])
    np.testing.assert_array_equal(K.time_below(ts, x, off, 54.0, 30 * MIN, 0),
                                  [0, 0, 5, 10, 0])
    hypo = K.events_below(ts, x, off, 54.0, 15 * MIN, DAY, 15 * MIN, 16.0, 30 * MIN, 5 * MIN)
    np.testing.assert_array_equal(hypo, [0, 0, 0, 1, 1])
    two = arrays([(0, 110.0), (5, 50.0), (10, 50.0), (15, 110.0)])
    assert K.events_below(*two, 54.0, 15 * MIN, DAY, 15 * MIN, 16.0, 30 * MIN, 5 * MIN)[-1] == 0


EVENT_DEFAULTS = dict(min_duration=15 * MIN, window=DAY, end_duration=15 * MIN, end_margin=0.0,
                      max_gap=0, interval=0)


def events(kernel, ts, x, off, threshold, **kw):
    p = {**EVENT_DEFAULTS, **kw}
    return kernel(ts, x, off, threshold, p["min_duration"], p["window"], p["end_duration"],
                  p["end_margin"], p["max_gap"], p["interval"])


def test_hypo_of_exactly_15_minutes_counts_and_14_does_not():
    ts, x, off = arrays([(0, 100), (5, 50), (12, 50), (20, 50), (25, 100)],
                        [(0, 100), (5, 50), (12, 50), (19, 50), (25, 100)],
                        [(0, 54), (15, 54)],                 # at the threshold is not below
                        [(0, 50), (5, None), (10, 50), (15, 50), (16, None)])  # nulls skipped
    out = events(K.events_below, ts, x, off, 54.0)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 1] + [0] * 5 + [0, 0] + [0, 0, 0, 1, 1])


def test_hyper_event_is_symmetric():
    # > 250 for 15 min (250 itself is recovered); ends after 20..35 at or under 250; again.
    ts, x, off = arrays([(0, 251), (15, 260), (20, 250), (35, 240), (40, 251), (55, 252)])
    out = events(K.events_above, ts, x, off, 250.0)
    np.testing.assert_array_equal(out, [0, 1, 1, 1, 1, 2])


def test_episode_ends_only_after_15_minutes_recovered():
    lows = lambda start: [(start + m, 50) for m in (0, 5, 10, 15)]  # noqa: E731
    pts = (lows(0) + [(20, 100), (25, 100), (30, 100)]      # 10 min recovered: not the end
           + lows(35)                                        # same episode continues
           + [(55, 100), (60, 100), (65, 100), (70, 100)]   # 15 min recovered: ends at 70
           + lows(75))                                       # a new episode, qualifies at 90
    ts, x, off = arrays(pts)
    out = events(K.events_below, ts, x, off, 54.0)
    assert out[3] == 1 and out[10] == 1 and out[-1] == 2
    assert first_time(ts, out, 1.5) == 90


def test_level_2_episode_ending_at_70_with_end_margin():
    pts = ([(m, 50) for m in (0, 5, 10, 15)] + [(m, 60) for m in range(20, 50, 5)]
           + [(m, 50) for m in (50, 55, 60, 65)])
    ts, x, off = arrays(pts)
    assert events(K.events_below, ts, x, off, 54.0, end_margin=16.0)[-1] == 1
    assert events(K.events_below, ts, x, off, 54.0)[-1] == 2   # 60 ≥ 54 ended the first


def test_event_window_includes_its_start_edge_and_max_gap_splits_runs():
    ts, x, off = arrays([(0, 50), (15, 50), (15 + 1440, 100), (16 + 1440, 100)],
                        [(0, 50), (60, 50)])
    out = events(K.events_below, ts, x, off, 54.0)
    np.testing.assert_array_equal(out, [0, 1, 1, 0, 0, 1])   # q = 15: counted at 15 + 1d only
    assert events(K.events_below, ts, x, off, 54.0, max_gap=30 * MIN)[-1] == 0


def test_time_in_range_includes_both_bounds_and_weights_by_time():
    ts, x, off = arrays([(0, 70), (5, 180), (10, 69.9), (15, 180.1), (20, 100)],
                        [(0, 100), (12, 200), (14, 100)])
    out = K.time_in_range(ts, x, off, 70.0, 180.0, DAY, 15 * MIN)
    np.testing.assert_allclose(out, [np.nan, 100, 100, 200 / 3, 50] + [np.nan, 100, 1200 / 14],
                               rtol=1e-15)


def test_time_in_range_and_coverage_with_a_gap_longer_than_max_gap():
    ts, x, off = arrays([(0, 100), (60, 200), (65, 100)])
    tir = K.time_in_range(ts, x, off, 70.0, 180.0, DAY, 15 * MIN)
    assert tir[-1] == 75.0                                   # 15 min held + 5 min: 15 in range
    cov = K.coverage(ts, x, off, HOUR, 15 * MIN)
    # window [5, 65]: the first reading holds 5..15 into it, the second 60..65: 15 of 60 min
    np.testing.assert_allclose(cov, [0.0, 25.0, 25.0], rtol=1e-15)
    assert K.coverage(ts, x, off, HOUR, 0)[-1] == 100.0       # max_gap 0m: no limit


# --- golden regression: a known change at a known time -------------------------------------------

# Daily weights (kg) at about 08:00, seeded noise (SD 0.3 kg) around 80 kg, plus a linear gain of
# 2 kg over 3 days starting day 10 00:00 (numpy default_rng(2009); frozen here as literals).
WEIGHT_MINUTES = [529, 1885, 3346, 4812, 6274, 7739, 9070, 10551, 11940, 13420, 14836, 16282,
                  17789, 19222, 20643, 22055, 23484, 24987, 26432, 27792, 29327, 30715, 32103,
                  33569, 35026, 36493, 37911, 39400, 40800, 42284]
WEIGHT_KG = [79.6, 80.42, 80.04, 80.18, 80.18, 79.46, 79.97, 80.2, 80.11, 79.82, 80.01, 81.01,
             81.35, 81.31, 81.28, 81.96, 81.93, 82.47, 82.0, 81.86, 82.48, 81.46, 81.95, 82.65,
             82.27, 81.83, 81.99, 82.01, 82.54, 82.02]


def test_golden_weight_gain_macd_and_cusum_fire_at_known_times():
    ts, x, off = arrays(list(zip(WEIGHT_MINUTES, WEIGHT_KG)))
    macd = K.macd(ts, x, off, 15 * HOUR, 83 * HOUR)          # Zhang's spans 2d / 10d
    assert first_time(ts, macd, 0.5) == 17789                # day 12 08:29, 2.4 days into the gain
    cusum = K.cusum_up(ts, x, off, 7 * DAY, 0.5)
    assert first_time(ts, cusum, 2.0) == 19222               # day 13 08:22
    assert np.nanmax(macd[ts < T0_US + 10 * DAY]) < 0.2      # quiet before the change


def test_golden_heart_rate_step_zscore_fires_on_the_first_raised_reading():
    # Four readings a day (08, 12, 16, 20 h) with a deterministic wobble; +15 /min from day 20.
    pts = []
    for d in range(30):
        for n, h in enumerate((8, 12, 16, 20)):
            i = 4 * d + n
            pts.append((d * 1440 + h * 60, 70.0 + ((i * 37) % 11 - 5) / 2 + (15 if d >= 20 else 0)))
    ts, x, off = arrays(pts)
    z = K.zscore(ts, x, off, 14 * DAY, DAY, 3)
    assert first_time(ts, z, 3.0) == 20 * 1440 + 8 * 60


def cgm_day_with_a_low():
    """Three days of 5-minute glucose: 120 ± 30 over the day, a low on day 1 from 03:00."""
    dip = {180: 60, 185: 52, 190: 48, 195: 45, 200: 47, 205: 50, 210: 53, 215: 58, 220: 65}
    pts = []
    for m in range(0, 3 * 1440, 5):
        value = 120 + 30 * math.sin(2 * math.pi * m / 1440)
        pts.append((m, dip.get(m - 1440, value)))
    return arrays(pts)


def test_golden_cgm_low_counts_15_minutes_after_it_starts_for_one_day():
    ts, x, off = cgm_day_with_a_low()
    out = events(K.events_below, ts, x, off, 54.0)
    assert first_time(ts, out, 0.5) == 1440 + 185 + 15       # below 54 from 03:05, counted 03:20
    assert out.max() == 1
    counted = np.flatnonzero(out == 1)                       # until it leaves the 1-day window
    assert (ts[counted[-1]] - T0_US) / MIN == 2 * 1440 + 200 and np.all(np.diff(counted) == 1)
    below = K.time_below(ts, x, off, 54.0, 30 * MIN, 0)
    assert below.max() == 25.0                               # 03:05 .. 03:30


# --- the real CGM traces (iglu test data) --------------------------------------------------------

CGM_DIR = Path("/work/shared/data/cgm")
CGM_FILES = sorted(CGM_DIR.glob("*.csv"))


def load_cgm(path):
    """A CGM csv (id, time, gl; naive local time read as UTC; NA = null) → kernel arrays.

    Rows without a time (24 in tsalikian2005) are dropped, as ingest quarantines them; a null
    glucose stays as a null reading (NaN).
    """
    df = (pl.read_csv(path, null_values="NA", schema_overrides={"id": pl.String, "gl": pl.Float64,
                                                                 "time": pl.String})
          .filter(pl.col("time").is_not_null())
          .with_columns(pl.col("time").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us",
                                                       time_zone="UTC"))
          .sort("id", "time", maintain_order=True))
    ts = df["time"].dt.epoch("us").to_numpy().astype(np.int64)
    x = df["gl"].fill_null(np.nan).to_numpy().astype(np.float64)
    lengths = df.group_by("id", maintain_order=True).len()["len"].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return df, ts, x, offsets


@pytest.mark.skipif(not CGM_FILES, reason="no CGM traces in /work/shared/data/cgm")
@pytest.mark.parametrize("path", CGM_FILES, ids=lambda p: p.stem)
def test_real_cgm_traces_go_through_the_cgm_detectors(path):
    df, ts, x, off = load_cgm(path)
    assert len(off) > 2 and np.all(np.diff(off) > 0)
    tir = K.time_in_range(ts, x, off, 70.0, 180.0, 14 * DAY, 15 * MIN)
    cov = K.coverage(ts, x, off, 14 * DAY, 15 * MIN)
    hypo = events(K.events_below, ts, x, off, 54.0)
    hyper = events(K.events_above, ts, x, off, 250.0)
    for out in (tir, cov):
        finite = out[~np.isnan(out)]
        assert len(finite) > 0.9 * len(out) and finite.min() >= 0 and finite.max() <= 100
    for out in (hypo, hyper):
        assert out.min() >= 0 and np.all(out == np.round(out))

    # Hand-computed TIR of the first subject at its last reading: each reading holds until the
    # next one, at most 15 minutes; the last reading holds nothing.
    a, b = off[0], off[1]
    keep = ~np.isnan(x[a:b])
    t, g = ts[a:b][keep], x[a:b][keep]
    inside = t >= t[-1] - 14 * DAY - 15 * MIN
    t, g = t[inside], g[inside]
    hold = np.minimum(np.diff(t), 15 * MIN)
    start = np.maximum(t[:-1], t[-1] - 14 * DAY)
    hold = np.clip(np.minimum(t[:-1] + hold, t[-1]) - start, 0, None)
    ok = (g[:-1] >= 70) & (g[:-1] <= 180)
    last = a + np.flatnonzero(keep)[-1]
    assert tir[last] == pytest.approx(100 * hold[ok].sum() / hold.sum(), rel=1e-12)

    # The kernels against their references on the first 300 rows (with the trace's own gaps).
    sub = (ts[:300], x[:300], np.array([0, min(300, off[1])] + ([300] if off[1] < 300 else []),
                                       dtype=np.int64))
    assert_matches(K.time_in_range(*sub, 70.0, 180.0, DAY, 15 * MIN),
                   ref.time_in_range(*sub, 70.0, 180.0, DAY, 15 * MIN), sub[1], sub[2], atol=0.0)
    assert_matches(events(K.events_below, *sub, 70.0), events(ref.events_below, *sub, 70.0),
                   sub[1], sub[2], atol=0.0)


def test_hall2018_cohort_is_mostly_in_range():
    """Hall et al., PLoS Biol 2018: normoglycaemic to type 2 adults, so a high TIR 70-180."""
    path = CGM_DIR / "hall2018.csv"
    if not path.exists():
        pytest.skip("hall2018.csv not available")
    _, ts, x, off = load_cgm(path)
    tir = K.time_in_range(ts, x, off, 70.0, 180.0, 14 * DAY, 15 * MIN)
    last = tir[off[1:] - 1]
    assert np.median(last) > 90


# --- registration: specs reach the kernels with the right parameters -----------------------------

STATEFUL = ("ewma", "macd", "cusum_up", "cusum_down", "zscore", "time_above", "time_below",
            "events_below", "events_above", "time_in_range", "coverage")


def test_every_stateful_detector_is_registered_and_documented():
    from engine.detectors import REGISTRY

    for fn in STATEFUL:
        d = REGISTRY[fn]
        assert d.kernel.__module__ == K.__name__
        py = getattr(d.kernel, "py_func", d.kernel)  # plain function under NUMBA_DISABLE_JIT
        assert py.__code__.co_argcount == 3 + len(d.params)
        assert "False alarms:" in d.doc and "Nulls and ties:" in d.doc


def test_specs_resolve_to_the_kernels_with_defaults_and_lookbacks():
    from engine.detectors import ALL_HISTORY, evaluate, lookback, resolve_specs

    df, ts, x, off = load_cgm(CGM_DIR / "dubosson2018.csv") if CGM_FILES else (None,) * 4
    if df is None:
        pytest.skip("no CGM traces")
    tel = df.select(patient_id="id", metric=pl.lit("glucose"), ts="time", value="gl")
    specs = {
        "tir": {"metric": "glucose", "fn": "time_in_range", "low": 70, "high": 180,
                "window": "14d"},
        "hypo": {"metric": "glucose", "fn": "events_below", "threshold": 54, "window": "1d"},
        "hyper": {"metric": "glucose", "fn": "events_above", "threshold": 250, "window": "1d",
                  "end_margin": 10, "max_gap": "30m"},
        "cov": {"metric": "glucose", "fn": "coverage", "window": "14d"},
        "z": {"metric": "glucose", "fn": "zscore", "window": "1d", "lag": "1h"},
        "up": {"metric": "glucose", "fn": "cusum_up", "baseline": "1d", "k": 20},
        "low": {"metric": "glucose", "fn": "time_below", "threshold": 70},
        "m": {"metric": "glucose", "fn": "macd", "fast": "1h", "slow": "6h"},
    }
    out = evaluate(tel, specs)
    direct = {
        "tir": K.time_in_range(ts, x, off, 70.0, 180.0, 14 * DAY, 15 * MIN),
        "hypo": events(K.events_below, ts, x, off, 54.0),
        "hyper": events(K.events_above, ts, x, off, 250.0, end_margin=10.0, max_gap=30 * MIN),
        "cov": K.coverage(ts, x, off, 14 * DAY, 15 * MIN),
        "z": K.zscore(ts, x, off, DAY, HOUR, 3),
        "up": K.cusum_up(ts, x, off, DAY, 20.0),
        "low": K.time_below(ts, x, off, 70.0, 0, 0),
        "m": K.macd(ts, x, off, HOUR, 6 * HOUR),
    }
    for name, want in direct.items():
        got = out[name].fill_null(np.nan).to_numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    r = resolve_specs(specs)
    assert r["tir"].lookback_us == 14 * DAY + 15 * MIN
    assert r["z"].lookback_us == DAY + HOUR
    assert r["hypo"].lookback_us == r["up"].lookback_us == ALL_HISTORY
    assert lookback({"e": {"metric": "weight", "fn": "ewma", "halflife": "1d"}}) == 40 * DAY


def test_module_example_runs():
    import doctest

    from engine.detectors import stateful

    result = doctest.testmod(stateful)
    assert result.attempted > 0 and result.failed == 0
