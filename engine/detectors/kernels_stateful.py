"""Numba kernels of the stateful, threshold and CGM detectors (registered in :mod:`.stateful`).

Every kernel keeps the detector contract (:mod:`engine.detectors.registry`):
``kernel(ts, x, offsets, *params) -> out`` with ``ts`` int64 µs sorted within each series (ties
allowed, row order breaks them), ``x`` float64 with NaN for a null reading, ``offsets`` int64[s+1]
delimiting the series, ``out`` float64[n] aligned to the rows. All series go through one call:
``prange`` runs over series and each series writes only its own slice of ``out`` (and of any
scratch array). A kernel never raises; it writes NaN where its output is undefined. The output at
row ``i`` depends only on rows ``<= i`` of its series.

The maths and the semantics (ends, nulls, ties) are documented once, on the registered detectors
in :mod:`engine.detectors.stateful`; comments here say why the code is written the way it is.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL
from .kernels_window import _add  # Neumaier's compensated step, shared with the window kernels

_NAN = np.nan
_MINUTE_US = 60_000_000.0
#: stands for "no limit" where a duration of 0 means no limit (max_gap); 2**62 µs ≈ 146,000
#: years, so ``ts + _NO_LIMIT`` cannot overflow int64 for any real timestamp
_NO_LIMIT = np.int64(2 ** 62)


# --- EWMA and MACD -------------------------------------------------------------------------------

@njit(**JIT)
def _ewma_into(ts, x, out, a, b, halflife, sign):
    """Add ``sign`` × the time-aware EWMA of rows ``a:b`` into ``out[a:b]``.

    Normalised form: y = Σ w_j x_j / Σ w_j with w_j = 0.5 ** ((t − t_j) / halflife). It is kept
    as the weight total ``w`` and the mean ``y`` updated in place, so ``y`` stays in the data's
    scale (no growing weighted sum of values to lose digits in).
    """
    y = _NAN
    w = 0.0
    t_prev = np.int64(0)
    started = False
    for i in range(a, b):
        v = x[i]
        if v == v:
            if not started:
                y = v
                w = 1.0
                started = True
            else:
                dt = ts[i] - t_prev
                if halflife > 0:
                    decay = 0.5 ** (dt / halflife)
                else:
                    # halflife 0: only the latest instant counts; ties at it are averaged
                    decay = 1.0 if dt == 0 else 0.0
                w = decay * w + 1.0
                y += (v - y) / w
            t_prev = ts[i]
        out[i] += sign * y


@njit(**JIT_PARALLEL)
def ewma(ts, x, offsets, halflife):
    """Time-aware exponentially weighted moving average (``halflife`` in µs)."""
    out = np.zeros(len(x))
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _ewma_into(ts[a:b], x[a:b], out[a:b], 0, b - a, halflife, 1.0)
    return out


@njit(**JIT_PARALLEL)
def macd(ts, x, offsets, fast, slow):
    """EWMA with half-life ``fast`` minus EWMA with half-life ``slow`` (both µs)."""
    out = np.zeros(len(x))
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _ewma_into(ts[a:b], x[a:b], out[a:b], 0, b - a, fast, 1.0)
        _ewma_into(ts[a:b], x[a:b], out[a:b], 0, b - a, slow, -1.0)
    return out


# --- CUSUM ---------------------------------------------------------------------------------------

@njit(**JIT)
def _cusum_series(ts, x, out, a, b, baseline, k, sign):
    f = a
    while f < b and x[f] != x[f]:
        f += 1
    if f == b:
        return
    # Baseline: every non-null reading up to (and at) first reading + baseline, frozen.
    t_end = ts[f] + baseline
    total = 0.0
    n = 0
    j = f
    while j < b and ts[j] <= t_end:
        if x[j] == x[j]:
            total += x[j]
            n += 1
        j += 1
    mu = total / n
    s = 0.0
    for i in range(j, b):
        v = x[i]
        if v == v:
            s = max(0.0, s + sign * (v - mu) - k)
        out[i] = s


@njit(**JIT_PARALLEL)
def cusum(ts, x, offsets, baseline, k, sign):
    """One-sided Page CUSUM against a frozen baseline mean; ``sign`` +1 upward, −1 downward."""
    out = np.full(len(x), _NAN)
    for s in prange(len(offsets) - 1):
        a, b = offsets[s], offsets[s + 1]
        _cusum_series(ts[a:b], x[a:b], out[a:b], 0, b - a, baseline, k, sign)
    return out


@njit(**JIT)
def cusum_up(ts, x, offsets, baseline, k):
    """Upward CUSUM: S = max(0, S + x − μ0 − k)."""
    return cusum(ts, x, offsets, baseline, k, 1.0)


@njit(**JIT)
def cusum_down(ts, x, offsets, baseline, k):
    """Downward CUSUM: S = max(0, S + μ0 − x − k)."""
    return cusum(ts, x, offsets, baseline, k, -1.0)


# --- z-score against a lagged personal baseline --------------------------------------------------

@njit(**JIT)
def _zscore_series(ts, x, out, a, b, window, lag, min_count):
    # Sums of d = x − ref and d² over the baseline, ``ref`` being one reading inside it. A shift
    # inside the data keeps Σd² − (Σd)²/n free of catastrophic cancellation; compensated sums keep
    # a large value that has left the window from leaving its rounding behind. When the ``ref``
    # row leaves, the sums are rebuilt from the rows still inside with the newest one as ``ref``:
    # that row stays until every row now inside has left, so each row is rebuilt O(1) times.
    fin = np.empty((4, b - a))  # per row: sum of d, sum of d², count, x - ref (see the end)
    lo = a
    hi = a
    cnt = 0
    ndiff = 0  # readings in the baseline different from ref: 0 means a constant baseline
    s1 = c1 = s2 = c2 = 0.0
    ref = 0.0
    ref_row = -1
    for i in range(a, b):
        t_end = ts[i] - lag
        t_start = t_end - window
        while hi <= i and ts[hi] <= t_end:
            v = x[hi]
            if v == v:
                if cnt == 0:
                    ref = v
                    ref_row = hi
                    s1 = c1 = s2 = c2 = 0.0
                    ndiff = 0
                d = v - ref
                s1, c1 = _add(s1, c1, d)
                s2, c2 = _add(s2, c2, d * d)
                cnt += 1
                if v != ref:
                    ndiff += 1
            hi += 1
        rebuild = False
        while lo < hi and ts[lo] < t_start:
            v = x[lo]
            if v == v:
                cnt -= 1
                if lo == ref_row:
                    rebuild = True
                elif not rebuild:
                    d = v - ref
                    s1, c1 = _add(s1, c1, -d)
                    s2, c2 = _add(s2, c2, -(d * d))
                    if v != ref:
                        ndiff -= 1
            lo += 1
        if rebuild and cnt > 0:
            r = hi - 1
            while x[r] != x[r]:
                r -= 1
            ref = x[r]
            ref_row = r
            s1 = c1 = s2 = c2 = 0.0
            ndiff = 0
            for j in range(lo, hi):
                v = x[j]
                if v == v:
                    d = v - ref
                    s1, c1 = _add(s1, c1, d)
                    s2, c2 = _add(s2, c2, d * d)
                    if v != ref:
                        ndiff += 1
        v = x[i]
        j = i - a
        if v != v or cnt < min_count or cnt < 2 or ndiff == 0:
            fin[2, j] = _NAN            # no z-score at this row
            continue
        fin[0, j] = s1 + c1
        fin[1, j] = s2 + c2
        fin[2, j] = cnt
        fin[3, j] = v - ref
    # The divisions and the square root run in a loop of their own, branch-free so that it
    # vectorises (in the loop above they cost as much as the rest); a NaN count gives NaN.
    for i in range(a, b):
        sum1, sum2, cnt_f, dv = fin[0, i - a], fin[1, i - a], fin[2, i - a], fin[3, i - a]
        mean_d = sum1 / cnt_f
        var = (sum2 - mean_d * sum1) / (cnt_f - 1.0)
        out[i] = (dv - mean_d) / np.sqrt(var) if var > 0.0 else _NAN


@njit(**JIT_PARALLEL)
def zscore(ts, x, offsets, window, lag, min_count):
    """z of each reading against the readings in ``[t − lag − window, t − lag]`` (µs)."""
    out = np.full(len(x), _NAN)
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _zscore_series(ts[a:b], x[a:b], out[a:b], 0, b - a, window, lag, min_count)
    return out


# --- time above / below a threshold --------------------------------------------------------------

@njit(**JIT)
def _time_beyond_series(ts, x, out, a, b, threshold, max_gap, interval, sign):
    gap = max_gap if max_gap > 0 else _NO_LIMIT
    run = False
    start = np.int64(0)
    t_prev = np.int64(0)
    seen = False
    cur = _NAN
    for i in range(a, b):
        v = x[i]
        if v == v:
            t = ts[i]
            if seen and t - t_prev > gap:
                run = False
            if sign * v > sign * threshold:  # sign −1 turns "above" into "below", exactly
                if not run:
                    run = True
                    start = t
                cur = (t - start + interval) / _MINUTE_US
            else:
                run = False
                cur = 0.0
            t_prev = t
            seen = True
        out[i] = cur


@njit(**JIT_PARALLEL)
def time_beyond(ts, x, offsets, threshold, max_gap, interval, sign):
    out = np.full(len(x), _NAN)
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _time_beyond_series(ts[a:b], x[a:b], out[a:b], 0, b - a, threshold, max_gap, interval,
                            sign)
    return out


@njit(**JIT)
def time_above(ts, x, offsets, threshold, max_gap, interval):
    """Minutes the readings have been continuously above ``threshold`` (0.0 when not)."""
    return time_beyond(ts, x, offsets, threshold, max_gap, interval, 1.0)


@njit(**JIT)
def time_below(ts, x, offsets, threshold, max_gap, interval):
    """Minutes the readings have been continuously below ``threshold`` (0.0 when not)."""
    return time_beyond(ts, x, offsets, threshold, max_gap, interval, -1.0)


# --- episodes below / above a threshold (CGM consensus events) -----------------------------------

@njit(**JIT)
def _events_series(ts, x, out, qbuf, a, b, threshold, min_duration, window, end_duration,
                   end_margin, max_gap, interval, sign):
    # sign −1 counts episodes below, +1 above; multiplying by sign flips comparisons exactly.
    gap = max_gap if max_gap > 0 else _NO_LIMIT
    thr = sign * threshold
    # recovered: at or past threshold + end_margin (below) / threshold − end_margin (above)
    end_thr = thr - end_margin
    state = 0  # 0: nothing, 1: candidate run beyond threshold, 2: confirmed event
    run_start = np.int64(0)
    ending = False  # inside an event, a run of recovered readings has begun at end_start
    end_start = np.int64(0)
    t_prev = np.int64(0)
    seen = False
    nq = 0  # qualifying times recorded so far in qbuf[a:a+nq], ascending
    first = 0  # first qualifying time still inside the window
    for i in range(a, b):
        t = ts[i]
        v = x[i]
        if v == v:
            if seen and t - t_prev > gap:
                state = 0
            u = sign * v
            if state == 2:
                if u <= end_thr:
                    if not ending:
                        ending = True
                        end_start = t
                    if t - end_start + interval >= end_duration:
                        state = 0
                else:
                    ending = False
            elif u > thr:
                if state == 0:
                    state = 1
                    run_start = t
                if t - run_start + interval >= min_duration:
                    state = 2
                    ending = False
                    qbuf[a + nq] = t
                    nq += 1
            else:
                state = 0
            t_prev = t
            seen = True
        while first < nq and qbuf[a + first] < t - window:
            first += 1
        out[i] = nq - first


@njit(**JIT_PARALLEL)
def events_beyond(ts, x, offsets, threshold, min_duration, window, end_duration,
                  end_margin, max_gap, interval, sign):
    out = np.zeros(len(x))
    qbuf = np.empty(len(x), dtype=np.int64)
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _events_series(ts[a:b], x[a:b], out[a:b], qbuf[a:b], 0, b - a, threshold,
                       min_duration, window, end_duration, end_margin, max_gap, interval, sign)
    return out


@njit(**JIT)
def events_below(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
                 max_gap, interval):
    """Episodes below ``threshold`` lasting ≥ ``min_duration`` that qualified in the window."""
    return events_beyond(ts, x, offsets, threshold, min_duration, window, end_duration,
                         end_margin, max_gap, interval, -1.0)


@njit(**JIT)
def events_above(ts, x, offsets, threshold, min_duration, window, end_duration, end_margin,
                 max_gap, interval):
    """Episodes above ``threshold`` lasting ≥ ``min_duration`` that qualified in the window."""
    return events_beyond(ts, x, offsets, threshold, min_duration, window, end_duration,
                         end_margin, max_gap, interval, 1.0)


# --- time in range and coverage (time-weighted, bounded hold) ------------------------------------

@njit(**JIT)
def _held_time_series(ts, x, out, held, a, b, low, high, window, max_gap, percent_of_window):
    # Each reading holds from its time until the next reading, at most max_gap. The completed
    # holds of readings inside the window are kept as exact int64 µs sums (no rounding drift);
    # only the oldest may stick out of the window's start and the newest is cut at t.
    gap = max_gap if max_gap > 0 else _NO_LIMIT
    last = -1
    p = a
    covered = np.int64(0)
    in_range = np.int64(0)
    for i in range(a, b):
        t = ts[i]
        v = x[i]
        if v == v:
            if last >= 0:
                d = min(ts[last] + gap, t) - ts[last]
                held[last] = d
                covered += d
                if low <= x[last] <= high:
                    in_range += d
            last = i
        if last < 0:
            if percent_of_window and window > 0:
                out[i] = 0.0
            continue
        lo = t - window
        while p < last:
            if x[p] != x[p]:
                p += 1
            elif ts[p] + held[p] <= lo:
                covered -= held[p]
                if low <= x[p] <= high:
                    in_range -= held[p]
                p += 1
            else:
                break
        c = covered
        r = in_range
        if p < last and ts[p] < lo:
            c -= lo - ts[p]
            if low <= x[p] <= high:
                r -= lo - ts[p]
        start = max(ts[last], lo)
        end = min(ts[last] + gap, t)
        if end > start:
            c += end - start
            if low <= x[last] <= high:
                r += end - start
        if percent_of_window:
            if window > 0:
                out[i] = 100.0 * c / window
        elif c > 0:
            out[i] = 100.0 * r / c


@njit(**JIT_PARALLEL)
def time_in_range(ts, x, offsets, low, high, window, max_gap):
    """Percent of the held time in ``[t − window, t]`` with a reading in ``[low, high]``."""
    out = np.full(len(x), _NAN)
    held = np.zeros(len(x), dtype=np.int64)
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _held_time_series(ts[a:b], x[a:b], out[a:b], held[a:b], 0, b - a, low, high, window,
                          max_gap, False)
    return out


@njit(**JIT_PARALLEL)
def coverage(ts, x, offsets, window, max_gap):
    """Percent of ``[t − window, t]`` held by a reading (data sufficiency)."""
    out = np.full(len(x), _NAN)
    held = np.zeros(len(x), dtype=np.int64)
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _held_time_series(ts[a:b], x[a:b], out[a:b], held[a:b], 0, b - a, -np.inf, np.inf,
                          window, max_gap, True)
    return out


# --- cumulative time beyond a threshold in a trailing window -------------------------------------

@njit(**JIT)
def _minutes_beyond_series(ts, x, out, held, a, b, threshold, window, max_gap, interval, sign):
    # The readings of the window are the non-null rows with t − window < ts <= t (rows <= i).
    # Each one but the latest holds min(time to the next reading, max_gap), kept in ``held`` as
    # exact int64 µs; ``total`` sums the holds of the readings beyond the threshold from row p
    # (the first reading still in the window) to the latest one, which stands for ``interval``.
    gap = max_gap if max_gap > 0 else _NO_LIMIT
    thr = sign * threshold              # sign −1 turns "above" into "below", exactly
    last = a - 1
    p = a
    total = np.int64(0)
    for i in range(a, b):
        t = ts[i]
        v = x[i]
        if v == v:
            if last >= a:
                h = min(t - ts[last], gap)
                held[last] = h
                if sign * x[last] > thr:
                    total += h
            last = i
        if last < a:
            continue                    # no reading yet: out stays NaN
        lo = t - window
        while p < last and (x[p] != x[p] or ts[p] <= lo):
            if x[p] == x[p] and sign * x[p] > thr:
                total -= held[p]
            p += 1
        if ts[last] <= lo:
            continue                    # no reading in the window (window 0, or a long gap)
        now = interval if sign * x[last] > thr else 0
        out[i] = (total + now) / _MINUTE_US


@njit(**JIT_PARALLEL)
def minutes_beyond(ts, x, offsets, threshold, window, max_gap, interval, sign):
    out = np.full(len(x), _NAN)
    held = np.empty(len(x), dtype=np.int64)
    for k in prange(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        _minutes_beyond_series(ts[a:b], x[a:b], out[a:b], held[a:b], 0, b - a, threshold,
                               window, max_gap, interval, sign)
    return out


@njit(**JIT)
def minutes_above(ts, x, offsets, threshold, window, max_gap, interval):
    """Minutes above ``threshold`` of the readings in ``(t − window, t]``, each held to the next."""
    return minutes_beyond(ts, x, offsets, threshold, window, max_gap, interval, 1.0)


@njit(**JIT)
def minutes_below(ts, x, offsets, threshold, window, max_gap, interval):
    """Minutes below ``threshold`` of the readings in ``(t − window, t]``, each held to the next."""
    return minutes_beyond(ts, x, offsets, threshold, window, max_gap, interval, -1.0)
