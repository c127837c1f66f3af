"""Slow, obvious references for the window kernels of :mod:`engine.detectors.kernels_window`.

One function per kernel, same signature; the window statistics take an optional trailing ``lag``
(their ``*_lagged`` kernels; 0 for the plain ones). Each row's window is rebuilt from scratch by
reading the definition literally: rows ``j <= i`` of the series with
``ts[i] - lag - W <= ts[j] <= ts[i] - lag`` and a non-null value. Sums use :func:`math.fsum`
(correctly rounded) and the variance and slope use two passes, so the references are at least as
accurate as the kernels they check.
"""
from __future__ import annotations

import math

import numpy as np

NO_ROW = np.iinfo(np.int64).min


def window_values(ts, x, a, i, window, lag=0):
    """(times, values) of the non-null rows in row i's window; series starts at row a."""
    end = int(ts[i]) - lag
    rows = [j for j in range(a, i + 1)
            if end - window <= ts[j] <= end and not math.isnan(x[j])]
    return [int(ts[j]) for j in rows], [float(x[j]) for j in rows]


def _each_row(ts, x, offsets, window, stat, lag=0):
    out = np.full(len(x), np.nan)
    for k in range(len(offsets) - 1):
        a, b = int(offsets[k]), int(offsets[k + 1])
        for i in range(a, b):
            t, v = window_values(ts, x, a, i, window, lag)
            out[i] = stat(t, v, i)
    return out


def rolling_sum(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, lambda t, v, i: math.fsum(v) if v else np.nan, lag)


def rolling_mean(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window,
                     lambda t, v, i: math.fsum(v) / len(v) if v else np.nan, lag)


def rolling_count(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, lambda t, v, i: float(len(v)), lag)


def _std(t, v, i):
    if len(v) < 2:
        return np.nan
    m = math.fsum(v) / len(v)
    return math.sqrt(math.fsum((u - m) ** 2 for u in v) / (len(v) - 1))


def rolling_std(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, _std, lag)


def rolling_mean_std(ts, x, offsets, window, lag=0):
    return np.vstack([rolling_mean(ts, x, offsets, window, lag),
                      rolling_std(ts, x, offsets, window, lag)])


def rolling_min(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, lambda t, v, i: min(v) if v else np.nan, lag)


def rolling_max(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, lambda t, v, i: max(v) if v else np.nan, lag)


def rolling_min_max(ts, x, offsets, window, lag=0):
    return np.vstack([rolling_min(ts, x, offsets, window, lag),
                      rolling_max(ts, x, offsets, window, lag)])


def rolling_median(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window,
                     lambda t, v, i: float(np.median(v)) if v else np.nan, lag)


def _change(x, percent, lag):
    def stat(t, v, i):
        # lag 0: the row's own reading (null at a null row); with a lag: the window's last one
        now = x[i] if lag == 0 else (v[-1] if v else np.nan)
        if math.isnan(now) or not v:
            return np.nan
        first = v[0]   # the earliest non-null value at or after ts - lag - window
        if not percent:
            return now - first
        return np.nan if first == 0.0 else 100.0 * (now - first) / first
    return stat


def delta(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, _change(x, False, lag), lag)


def pct_change(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, _change(x, True, lag), lag)


def _slope(t, v, i):
    if len(set(t)) < 2:
        return np.nan
    hours = [(u - t[0]) / 3_600_000_000 for u in t]
    mt = math.fsum(hours) / len(hours)
    mv = math.fsum(v) / len(v)
    cov = math.fsum((h - mt) * (y - mv) for h, y in zip(hours, v))
    var = math.fsum((h - mt) ** 2 for h in hours)
    return cov / var


def slope(ts, x, offsets, window, lag=0):
    return _each_row(ts, x, offsets, window, _slope, lag)


def _previous_non_null(ts, x, a, i):
    prev = [int(ts[j]) for j in range(a, i) if not math.isnan(x[j])]
    return prev[-1] if prev else None


def _each_gap(ts, x, offsets, stat):
    out = np.full(len(x), np.nan)
    for k in range(len(offsets) - 1):
        a, b = int(offsets[k]), int(offsets[k + 1])
        for i in range(a, b):
            p = _previous_non_null(ts, x, a, i)
            if p is not None:
                out[i] = stat(int(ts[i]) - p)
    return out


def since_last(ts, x, offsets):
    return _each_gap(ts, x, offsets, lambda gap: gap / 60_000_000)


def silence(ts, x, offsets, limit):
    return _each_gap(ts, x, offsets, lambda gap: 1.0 if gap > limit else 0.0)


def previous(ts, x, offsets, gap):
    """x of the latest non-null row j < i of the series with ts[j] <= ts[i] - gap, else NaN."""
    out = np.full(len(x), np.nan)
    for k in range(len(offsets) - 1):
        a, b = int(offsets[k]), int(offsets[k + 1])
        for i in range(a, b):
            earlier = [float(x[j]) for j in range(a, i)
                       if ts[j] <= ts[i] - gap and not math.isnan(x[j])]
            if earlier:
                out[i] = earlier[-1]
    return out


def last_seen(ts, x, offsets, group_offsets, eval_ts, eval_group):
    out = np.full(len(eval_ts), NO_ROW, dtype=np.int64)
    for r, (e, q) in enumerate(zip(eval_ts, eval_group)):
        if q < 0:
            continue
        a, b = int(offsets[group_offsets[q]]), int(offsets[group_offsets[q + 1]])
        seen = [int(ts[j]) for j in range(a, b) if ts[j] <= e and not math.isnan(x[j])]
        if seen:
            out[r] = max(seen)
    return out
