"""Hypothesis strategies shared by the detector tests (kernels vs references).

The kernels' input form is ``(ts, x, offsets)``: ``ts`` int64 µs sorted ascending inside each
series, ``x`` float64 with NaN for a null reading, ``offsets`` int64[s+1] with series ``k`` at rows
``offsets[k]:offsets[k+1]``. :func:`multi_series` draws such inputs with the awkward cases the
detector contract lists: ties in ``ts``, gaps longer than any window, NaN at the start, middle and
end of a series, single-point series, empty series, and values of very different magnitudes.

Timestamps are drawn on a one-minute grid (steps of whole minutes) and :func:`windows` draws
windows that are whole minutes too, so a window edge often falls exactly on a sample: the closed
``[t - W, t]`` boundary is exercised on most examples, not by luck.

Usage::

    from hypothesis import given
    from tests.strategies import multi_series, windows

    @given(multi_series(), windows())
    def test_kernel(data, window_us):
        ts, x, offsets = data
        ...
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

MINUTE_US = 60_000_000
#: a fixed, realistic epoch origin (2024-01-01T00:00:00Z) so ts values have production magnitude
T0_US = 1_704_067_200_000_000

# Minute steps between consecutive samples: ties (0), dense (1-5), regular (10-60),
# and gaps far longer than the windows drawn by `windows()` (up to two weeks).
_STEP = st.one_of(
    st.just(0),
    st.integers(1, 5),
    st.sampled_from([10, 15, 30, 60]),
    st.integers(60, 24 * 60 * 14),
)

# Finite readings over nine orders of magnitude, plus the odd exact repeat (ties in value
# matter for min/max/median) and negative values (deltas of any sign).
_MAGNITUDE = st.one_of(
    st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False),
    st.floats(-1e6, -1e-3, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, 70.0, 98.5]),
)


@st.composite
def one_series(draw, max_len: int = 40, nan_rate: float | None = None):
    """One series: ``(ts int64[m], x float64[m])``, ts non-decreasing on a minute grid."""
    m = draw(st.integers(0, max_len))
    steps = draw(st.lists(_STEP, min_size=m, max_size=m))
    start = T0_US + draw(st.integers(0, 60 * 24 * 30)) * MINUTE_US
    ts = start + np.cumsum(np.asarray(steps, dtype=np.int64), dtype=np.int64) * MINUTE_US
    ts = ts.astype(np.int64)
    # A series is mostly one scale (like a real metric) but may mix scales (the hard case for
    # running sums): draw a base magnitude then either small jitter or free values.
    free = draw(st.booleans())
    if free:
        x = np.asarray(draw(st.lists(_MAGNITUDE, min_size=m, max_size=m)), dtype=np.float64)
    else:
        base = draw(_MAGNITUDE)
        jit = draw(st.lists(st.floats(-0.05, 0.05, allow_nan=False), min_size=m, max_size=m))
        x = base * (1.0 + np.asarray(jit, dtype=np.float64))
        x = x.astype(np.float64)
    if m:
        rate = nan_rate if nan_rate is not None else draw(st.sampled_from([0.0, 0.0, 0.1, 0.3]))
        mask = np.asarray(draw(st.lists(st.floats(0, 1), min_size=m, max_size=m))) < rate
        # NaN at the very start and the very end are cases of their own: force them sometimes.
        if draw(st.booleans()):
            mask[0] = draw(st.booleans())
            mask[-1] = draw(st.booleans())
        x[mask] = np.nan
    return ts, x


@st.composite
def multi_series(draw, max_series: int = 6, max_len: int = 40, nan_rate: float | None = None):
    """Several series concatenated: ``(ts int64[n], x float64[n], offsets int64[s+1])``.

    Parameters
    ----------
    max_series : int
        Up to this many series (at least one; any may be empty).
    max_len : int
        Up to this many rows per series.
    nan_rate : float, optional
        Fraction of null (NaN) readings; drawn from {0, 0.1, 0.3} when not given.
    """
    s = draw(st.integers(1, max_series))
    parts = [draw(one_series(max_len=max_len, nan_rate=nan_rate)) for _ in range(s)]
    lengths = np.asarray([len(p[0]) for p in parts], dtype=np.int64)
    offsets = np.zeros(s + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    if offsets[-1]:
        ts = np.concatenate([p[0] for p in parts]).astype(np.int64)
        x = np.concatenate([p[1] for p in parts]).astype(np.float64)
    else:
        ts = np.zeros(0, dtype=np.int64)
        x = np.zeros(0, dtype=np.float64)
    return ts, x, offsets


def windows(min_minutes: int = 0, max_minutes: int = 3 * 24 * 60):
    """A window length in µs, a whole number of minutes so edges land on samples.

    Includes 0 (the window holds the current instant only: the row and its earlier ties).
    """
    return st.one_of(
        st.sampled_from([m for m in (0, 1, 5, 30, 60, 360, 1440)
                         if min_minutes <= m <= max_minutes]),
        st.integers(min_minutes, max_minutes),
    ).map(lambda m: int(m) * MINUTE_US)


def sorted_times(ts: np.ndarray, offsets: np.ndarray) -> bool:
    """True when ``ts`` is non-decreasing within every series (a sanity check for tests)."""
    for k in range(len(offsets) - 1):
        seg = ts[offsets[k]:offsets[k + 1]]
        if len(seg) > 1 and np.any(np.diff(seg) < 0):
            return False
    return True
