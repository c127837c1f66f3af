"""Slow, obvious references for the stateful / threshold / CGM kernels (engine.detectors.stateful).

One function per kernel, same signature: ``ref(ts, x, offsets, *params) -> out``. Each works
from the written definition, row by row, looking only at rows ``<= i`` of the series (O(n²)), so
that a kernel's running state, two pointers and scratch arrays are checked against something that
has none of them. Durations are int64 µs, as the kernels receive them.
"""
from __future__ import annotations

import math

import numpy as np

MINUTE_US = 60_000_000


def _series(offsets):
    for k in range(len(offsets) - 1):
        yield int(offsets[k]), int(offsets[k + 1])


def _readings(ts, x, a, i):
    """Non-null readings among rows a..i (inclusive) as (row, t, value), in row order."""
    return [(j, int(ts[j]), float(x[j])) for j in range(a, i + 1) if not math.isnan(x[j])]


def ewma(ts, x, offsets, halflife):
    """y = Σ w_j x_j / Σ w_j over the non-null readings so far, w_j = 0.5 ** (age_j / halflife)."""
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        for i in range(a, b):
            r = _readings(ts, x, a, i)
            if not r:
                continue
            t_last = r[-1][1]
            if halflife > 0:
                w = [0.5 ** ((t_last - t) / halflife) for _, t, _ in r]
            else:
                w = [1.0 if t == t_last else 0.0 for _, t, _ in r]
            out[i] = sum(wj * v for wj, (_, _, v) in zip(w, r)) / sum(w)
    return out


def macd(ts, x, offsets, fast, slow):
    return ewma(ts, x, offsets, fast) - ewma(ts, x, offsets, slow)


def _cusum(ts, x, offsets, baseline, k, sign):
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        r = _readings(ts, x, a, b - 1)
        if not r:
            continue
        t_end = r[0][1] + baseline
        base = [v for _, t, v in r if t <= t_end]
        mu = 0.0
        for v in base:
            mu += v
        mu /= len(base)
        s = 0.0
        for i in range(a, b):
            if ts[i] <= t_end:
                continue
            if not math.isnan(x[i]):
                s = max(0.0, s + sign * (x[i] - mu) - k)
            out[i] = s
    return out


def cusum_up(ts, x, offsets, baseline, k):
    return _cusum(ts, x, offsets, baseline, k, 1.0)


def cusum_down(ts, x, offsets, baseline, k):
    return _cusum(ts, x, offsets, baseline, k, -1.0)


def zscore_baseline(ts, x, a, i, window, lag):
    """The baseline values of row i: non-null rows j <= i with t−lag−window <= ts[j] <= t−lag."""
    t = int(ts[i])
    return np.asarray([v for _, tj, v in _readings(ts, x, a, i)
                       if t - lag - window <= tj <= t - lag], dtype=np.float64)


def zscore(ts, x, offsets, window, lag, min_count):
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        for i in range(a, b):
            if math.isnan(x[i]):
                continue
            base = zscore_baseline(ts, x, a, i, window, lag)
            if len(base) < max(min_count, 2) or np.all(base == base[0]):
                continue
            sd = np.std(base, ddof=1)
            if sd > 0:
                out[i] = (x[i] - np.mean(base)) / sd
    return out


def _time_beyond(ts, x, offsets, threshold, max_gap, interval, beyond):
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        for i in range(a, b):
            r = _readings(ts, x, a, i)
            if not r:
                continue
            if not beyond(r[-1][2], threshold):
                out[i] = 0.0
                continue
            first = len(r) - 1
            while (first > 0 and beyond(r[first - 1][2], threshold)
                   and (max_gap <= 0 or r[first][1] - r[first - 1][1] <= max_gap)):
                first -= 1
            out[i] = (r[-1][1] - r[first][1] + interval) / MINUTE_US
    return out


def time_above(ts, x, offsets, threshold, max_gap, interval=0):
    return _time_beyond(ts, x, offsets, threshold, max_gap, interval, lambda v, c: v > c)


def time_below(ts, x, offsets, threshold, max_gap, interval=0):
    return _time_beyond(ts, x, offsets, threshold, max_gap, interval, lambda v, c: v < c)


def event_onsets(ts, x, a, b, threshold, min_duration, end_duration, end_margin, max_gap,
                 below, interval=0):
    """(row, qualifying time) of every episode in rows a:b, by the consensus definition.

    An episode is confirmed at the first reading at least ``min_duration - interval`` after the
    first of an unbroken run of readings beyond the threshold (its last reading standing for one
    ``interval``); it ends at the first reading at least ``end_duration - interval`` after the
    first of an unbroken run of recovered readings (at or above
    threshold + end_margin for episodes below, at or under threshold − end_margin above). A gap
    over ``max_gap`` (when > 0) between two readings forgets everything.
    """
    if below:
        def beyond(v): return v < threshold
        def recovered(v): return v >= threshold + end_margin
    else:
        def beyond(v): return v > threshold
        def recovered(v): return v <= threshold - end_margin
    onsets = []
    state, run_start, end_start, prev = "none", None, None, None
    for j, t, v in _readings(ts, x, a, b - 1):
        if prev is not None and max_gap > 0 and t - prev > max_gap:
            state = "none"
        prev = t
        if state == "event":
            if recovered(v):
                end_start = t if end_start is None else end_start
                if t - end_start + interval >= end_duration:
                    state = "none"
            else:
                end_start = None
            continue
        if not beyond(v):
            state = "none"
            continue
        if state == "none":
            state, run_start = "candidate", t
        if t - run_start + interval >= min_duration:
            state, end_start = "event", None
            onsets.append((j, t))
    return onsets


def _events(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
            max_gap, interval, below):
    out = np.zeros(len(x))
    for a, b in _series(offsets):
        onsets = event_onsets(ts, x, a, b, threshold, min_duration, end_duration,
                              end_margin, max_gap, below, interval)
        for i in range(a, b):
            t = int(ts[i])
            out[i] = sum(1 for j, q in onsets if j <= i and t - window <= q <= t)
    return out


def events_below(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
                 max_gap, interval=0):
    return _events(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
                   max_gap, interval, True)


def events_above(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
                 max_gap, interval=0):
    return _events(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
                   max_gap, interval, False)


def held_times(ts, x, a, i, low, high, window, max_gap):
    """(covered µs, in-range µs) of the window [t−window, t] at row i.

    Each non-null reading j <= i holds its value over [ts[j], min(ts[j] + max_gap, next, t)),
    ``next`` being the time of the next non-null reading at or before row i; max_gap <= 0 means
    no limit.
    """
    t = int(ts[i])
    r = _readings(ts, x, a, i)
    covered = in_range = 0
    for n, (_, tj, v) in enumerate(r):
        end = t if n + 1 == len(r) else r[n + 1][1]
        if max_gap > 0:
            end = min(end, tj + max_gap)
        length = max(0, min(end, t) - max(tj, t - window))
        covered += length
        if low <= v <= high:
            in_range += length
    return covered, in_range


def time_in_range(ts, x, offsets, low, high, window, max_gap):
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        for i in range(a, b):
            covered, in_range = held_times(ts, x, a, i, low, high, window, max_gap)
            if covered > 0:
                out[i] = 100.0 * in_range / covered
    return out


def coverage(ts, x, offsets, window, max_gap):
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        for i in range(a, b):
            if window > 0:
                covered, _ = held_times(ts, x, a, i, -np.inf, np.inf, window, max_gap)
                out[i] = 100.0 * covered / window
    return out


def minutes_window_readings(ts, x, a, i, window):
    """(t, value, minutes held) of the non-null readings of row i's window (t − window, t].

    Each reading holds until the next non-null reading at or before row i (``None`` for the
    latest, which stands for the interval); the hold is capped at max_gap by the caller.
    """
    t = int(ts[i])
    r = _readings(ts, x, a, i)
    out = []
    for n, (_, tj, v) in enumerate(r):
        if t - window < tj <= t:
            out.append((tj, v, None if n + 1 == len(r) else r[n + 1][1] - tj))
    return out


def _minutes_beyond(ts, x, offsets, threshold, window, max_gap, interval, beyond):
    out = np.full(len(x), np.nan)
    for a, b in _series(offsets):
        for i in range(a, b):
            readings = minutes_window_readings(ts, x, a, i, window)
            if not readings:
                continue
            total = 0
            for _, v, held in readings:
                if held is None:
                    held = interval                 # the latest reading
                elif max_gap > 0:
                    held = min(held, max_gap)
                if beyond(v, threshold):
                    total += held
            out[i] = total / MINUTE_US
    return out


def minutes_above(ts, x, offsets, threshold, window, max_gap, interval):
    return _minutes_beyond(ts, x, offsets, threshold, window, max_gap, interval,
                           lambda v, c: v > c)


def minutes_below(ts, x, offsets, threshold, window, max_gap, interval):
    return _minutes_beyond(ts, x, offsets, threshold, window, max_gap, interval,
                           lambda v, c: v < c)
