"""Numba kernels for trailing time-window statistics, all series in one call.

Every kernel follows the contract of :mod:`engine.detectors.registry`:
``kernel(ts, x, offsets, *params) -> out`` with ``ts`` int64 µs sorted within each series, ``x``
float64 (NaN = null reading), ``offsets`` int64[s+1], ``out`` float64 aligned to the rows. The
outer loop is a ``prange`` over series; a series writes only its own slice of ``out`` and its own
scratch buffers, so threads share nothing.

The window of row ``i`` (time ``t``) is the rows ``j <= i`` of its series with
``t - W <= ts[j]``: both ends closed; rows tied with ``t`` are in only if they come before ``i``
(row order breaks ties, so row ``i``'s output never depends on later rows). Because ``ts`` is
sorted this is always a contiguous run ``lo..i`` and ``lo`` only moves forward: each kernel is a
two-pointer sweep, O(n) per series (O(n·w) worst case for the median buffer shifts, which are
memmoves). Null readings never enter a window; a null row still gets the statistic of the non-null
rows in its window unless the detector needs the row's own value (delta, pct_change).

Running sums use Neumaier-compensated accumulators so that removing a large value leaves no
residue, and the variance and slope use sums shifted by a value inside the window, re-centred
(by an exact O(w) recomputation) whenever the shift drifts far from the window mean: this keeps
the relative error near machine precision even for windows mixing 1e-3 and 1e6.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL

US_PER_HOUR = 3_600_000_000.0
US_PER_MINUTE = 60_000_000.0
#: re-centre the shifted sums when (mean - shift)^2 exceeds this many variances; the relative
#: error of the variance is then about RECENTRE * 2**-52 at worst
RECENTRE = 1.0e4

SUM, MEAN, COUNT = 0, 1, 2
DELTA, PCT_CHANGE = 0, 1
MIN, MAX = 0, 1


@njit(**JIT)
def _add(s, c, v):
    """Neumaier step: returns the new (sum, compensation) after adding ``v``."""
    t = s + v
    if abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


# --------------------------------------------------------------------------------------------
# sum, mean, count
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _sum_series(ts, x, a, b, window, what, out):
    lo, n, s, c = a, 0, 0.0, 0.0
    for i in range(a, b):
        start = ts[i] - window
        while ts[lo] < start:
            v = x[lo]
            if v == v:
                n -= 1
                if n == 0:
                    s, c = 0.0, 0.0  # an empty window restarts from an exact zero
                else:
                    s, c = _add(s, c, -v)
            lo += 1
        v = x[i]
        if v == v:
            n += 1
            s, c = _add(s, c, v)
        if what == COUNT:
            out[i] = n
        elif n == 0:
            out[i] = np.nan
        elif what == SUM:
            out[i] = s + c
        else:
            out[i] = (s + c) / n


@njit(**JIT_PARALLEL)
def _rolling_sums(ts, x, offsets, window, what):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _sum_series(ts, x, offsets[k], offsets[k + 1], window, what, out)
    return out


@njit(**JIT)
def rolling_sum(ts, x, offsets, window):
    """Sum of the non-null readings in the window; NaN when it holds none."""
    return _rolling_sums(ts, x, offsets, window, SUM)


@njit(**JIT)
def rolling_mean(ts, x, offsets, window):
    """Mean of the non-null readings in the window; NaN when it holds none."""
    return _rolling_sums(ts, x, offsets, window, MEAN)


@njit(**JIT)
def rolling_count(ts, x, offsets, window):
    """Number of non-null readings in the window (0.0 when none)."""
    return _rolling_sums(ts, x, offsets, window, COUNT)


# --------------------------------------------------------------------------------------------
# mean and sample standard deviation (shifted, compensated, re-centred on drift)
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _closest_to_mean(x, lo, hi, n):
    """A non-null value of x[lo:hi] closest to the mean of the non-null values.

    Its squared distance to the mean is at most the (population) variance, which is what makes
    it a good shift for the running sums.
    """
    s, c = 0.0, 0.0
    for j in range(lo, hi):
        if x[j] == x[j]:
            s, c = _add(s, c, x[j])
    m = (s + c) / n
    best, gap = m, np.inf
    for j in range(lo, hi):
        v = x[j]
        if v == v and abs(v - m) < gap:
            best, gap = v, abs(v - m)
    return best


@njit(**JIT)
def _std_series(ts, x, a, b, window, out_mean, out_std, want_mean):
    lo, n = a, 0
    k = 0.0                          # the shift: a value of the window
    s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0  # compensated sums of (x - k) and (x - k)^2
    s0, c0 = 0.0, 0.0                # compensated raw sum, for an exact mean
    for i in range(a, b):
        start = ts[i] - window
        while ts[lo] < start:
            v = x[lo]
            if v == v:
                n -= 1
                if n == 0:
                    s0, c0, s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
                else:
                    d = v - k
                    s0, c0 = _add(s0, c0, -v)
                    s1, c1 = _add(s1, c1, -d)
                    s2, c2 = _add(s2, c2, -d * d)
            lo += 1
        v = x[i]
        if v == v:
            if n == 0:
                k = v
            n += 1
            d = v - k
            s0, c0 = _add(s0, c0, v)
            s1, c1 = _add(s1, c1, d)
            s2, c2 = _add(s2, c2, d * d)
        if want_mean:
            out_mean[i] = (s0 + c0) / n if n > 0 else np.nan
        if n < 2:
            out_std[i] = np.nan
            continue
        S1 = s1 + c1
        m2 = (s2 + c2) - S1 * S1 / n
        if S1 * S1 / n > RECENTRE * m2:
            # the shift is far from the mean: cancellation would eat the digits, so re-centre
            # on a window value near the mean and recompute the sums exactly over the window
            k = _closest_to_mean(x, lo, i + 1, n)
            s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0
            for j in range(lo, i + 1):
                if x[j] == x[j]:
                    d = x[j] - k
                    s1, c1 = _add(s1, c1, d)
                    s2, c2 = _add(s2, c2, d * d)
            S1 = s1 + c1
            m2 = (s2 + c2) - S1 * S1 / n
        out_std[i] = np.sqrt(m2 / (n - 1)) if m2 > 0.0 else 0.0


@njit(**JIT_PARALLEL)
def rolling_std(ts, x, offsets, window):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _std_series(ts, x, offsets[k], offsets[k + 1], window, out, out, False)
    return out


@njit(**JIT_PARALLEL)
def rolling_mean_std(ts, x, offsets, window):
    """Mean and sample std of the same window in one pass: returns a (2, n) array."""
    out = np.empty((2, x.size))
    mean, std = out[0], out[1]
    for k in prange(offsets.size - 1):
        _std_series(ts, x, offsets[k], offsets[k + 1], window, mean, std, True)
    return out


# --------------------------------------------------------------------------------------------
# min, max: monotonic deque of row indices
# --------------------------------------------------------------------------------------------
# Scratch buffers are allocated per series (small, recycled by malloc) rather than one n-sized
# array per call: a fresh 8n-byte array costs n/512 page faults on first touch.
@njit(**JIT)
def _extreme_series(ts, x, a, b, window, which, out):
    dq = np.empty(b - a, dtype=np.int64)
    lo, head, tail = a, 0, 0   # dq[head:tail] holds rows whose values decrease (max) / increase
    for i in range(a, b):
        start = ts[i] - window
        while ts[lo] < start:
            lo += 1
        while head < tail and dq[head] < lo:
            head += 1
        v = x[i]
        if v == v:
            if which == MAX:
                while tail > head and x[dq[tail - 1]] <= v:
                    tail -= 1
            else:
                while tail > head and x[dq[tail - 1]] >= v:
                    tail -= 1
            dq[tail] = i
            tail += 1
        out[i] = x[dq[head]] if tail > head else np.nan


@njit(**JIT_PARALLEL)
def _rolling_extreme(ts, x, offsets, window, which):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _extreme_series(ts, x, offsets[k], offsets[k + 1], window, which, out)
    return out


@njit(**JIT)
def rolling_min(ts, x, offsets, window):
    """Smallest non-null reading in the window; NaN when it holds none."""
    return _rolling_extreme(ts, x, offsets, window, MIN)


@njit(**JIT)
def rolling_max(ts, x, offsets, window):
    """Largest non-null reading in the window; NaN when it holds none."""
    return _rolling_extreme(ts, x, offsets, window, MAX)


# --------------------------------------------------------------------------------------------
# median: sorted buffer, binary-search insert and remove
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _median_series(ts, x, a, b, window, out):
    buf = np.empty(b - a)
    lo, n = a, 0                      # buf[:n] holds the window's values, sorted
    for i in range(a, b):
        start = ts[i] - window
        while ts[lo] < start:
            v = x[lo]
            if v == v:
                p = np.searchsorted(buf[:n], v)   # an equal value is at p
                for q in range(p, n - 1):
                    buf[q] = buf[q + 1]
                n -= 1
            lo += 1
        v = x[i]
        if v == v:
            p = np.searchsorted(buf[:n], v)
            for q in range(n, p, -1):
                buf[q] = buf[q - 1]
            buf[p] = v
            n += 1
        if n == 0:
            out[i] = np.nan
        elif n % 2 == 1:
            out[i] = buf[n // 2]
        else:
            out[i] = (buf[n // 2 - 1] + buf[n // 2]) / 2.0


@njit(**JIT_PARALLEL)
def rolling_median(ts, x, offsets, window):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _median_series(ts, x, offsets[k], offsets[k + 1], window, out)
    return out


# --------------------------------------------------------------------------------------------
# delta and pct_change: the current value against the first non-null value of the window
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _change_series(ts, x, a, b, window, what, out):
    first = a                          # first non-null row >= lo (== i + 1 when none yet)
    for i in range(a, b):
        start = ts[i] - window
        while first <= i and (ts[first] < start or x[first] != x[first]):
            first += 1
        v = x[i]
        if v != v or first > i:
            out[i] = np.nan
            continue
        v0 = x[first]
        if what == DELTA:
            out[i] = v - v0
        elif v0 == 0.0:
            out[i] = np.nan
        else:
            out[i] = 100.0 * (v - v0) / v0


@njit(**JIT_PARALLEL)
def _rolling_change(ts, x, offsets, window, what):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _change_series(ts, x, offsets[k], offsets[k + 1], window, what, out)
    return out


@njit(**JIT)
def delta(ts, x, offsets, window):
    """Reading minus the first non-null reading of the window; NaN at a null row."""
    return _rolling_change(ts, x, offsets, window, DELTA)


@njit(**JIT)
def pct_change(ts, x, offsets, window):
    """``delta`` in percent of the first reading; NaN at a null row or a zero first reading."""
    return _rolling_change(ts, x, offsets, window, PCT_CHANGE)


# --------------------------------------------------------------------------------------------
# slope: least squares per hour, shifted compensated sums re-centred on drift
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _slope_series(ts, x, a, b, window, out):
    lo, n = a, 0
    kt, kx = ts[a] if b > a else 0, 0.0
    # compensated sums of u = (t - kt) in hours, d = x - kx, u*u, u*d, d*d
    su = cu = sd = cd = suu = cuu = sud = cud = sdd = cdd = 0.0
    first, last_t = a, np.int64(0)     # first non-null row of the window; time of the last one
    for i in range(a, b):
        start = ts[i] - window
        while ts[lo] < start:
            v = x[lo]
            if v == v:
                n -= 1
                if n == 0:
                    su = cu = sd = cd = suu = cuu = sud = cud = sdd = cdd = 0.0
                else:
                    u = (ts[lo] - kt) / US_PER_HOUR
                    d = v - kx
                    su, cu = _add(su, cu, -u)
                    sd, cd = _add(sd, cd, -d)
                    suu, cuu = _add(suu, cuu, -u * u)
                    sud, cud = _add(sud, cud, -u * d)
                    sdd, cdd = _add(sdd, cdd, -d * d)
            lo += 1
        v = x[i]
        if v == v:
            if n == 0:
                kt, kx = ts[i], v
            n += 1
            last_t = ts[i]
            u = (ts[i] - kt) / US_PER_HOUR
            d = v - kx
            su, cu = _add(su, cu, u)
            sd, cd = _add(sd, cd, d)
            suu, cuu = _add(suu, cuu, u * u)
            sud, cud = _add(sud, cud, u * d)
            sdd, cdd = _add(sdd, cdd, d * d)
        while first <= i and (ts[first] < start or x[first] != x[first]):
            first += 1
        if n < 2 or ts[first] == last_t:
            out[i] = np.nan                 # fewer than two distinct times
            continue
        U, D = su + cu, sd + cd
        vu = (suu + cuu) - U * U / n
        vd = (sdd + cdd) - D * D / n
        if U * U / n > RECENTRE * vu or D * D / n > RECENTRE * vd:
            kx = _closest_to_mean(x, lo, i + 1, n)
            kt = _closest_time(ts, x, lo, i + 1, kt, U / n)
            su = cu = sd = cd = suu = cuu = sud = cud = sdd = cdd = 0.0
            for j in range(lo, i + 1):
                if x[j] == x[j]:
                    u = (ts[j] - kt) / US_PER_HOUR
                    d = x[j] - kx
                    su, cu = _add(su, cu, u)
                    sd, cd = _add(sd, cd, d)
                    suu, cuu = _add(suu, cuu, u * u)
                    sud, cud = _add(sud, cud, u * d)
                    sdd, cdd = _add(sdd, cdd, d * d)
            U, D = su + cu, sd + cd
            vu = (suu + cuu) - U * U / n
        out[i] = ((sud + cud) - U * D / n) / vu


@njit(**JIT)
def _closest_time(ts, x, lo, hi, kt, mean_u):
    """The time of a non-null row of [lo, hi) closest to the mean time (kt + mean_u hours)."""
    best, gap = kt, np.inf
    for j in range(lo, hi):
        if x[j] == x[j]:
            g = abs((ts[j] - kt) / US_PER_HOUR - mean_u)
            if g < gap:
                best, gap = ts[j], g
    return best


@njit(**JIT_PARALLEL)
def slope(ts, x, offsets, window):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _slope_series(ts, x, offsets[k], offsets[k + 1], window, out)
    return out


# --------------------------------------------------------------------------------------------
# since_last, silence: gaps between non-null readings
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _gap_series(ts, x, a, b, limit, flag, out):
    seen, last = False, np.int64(0)
    for i in range(a, b):
        if not seen:
            out[i] = np.nan
        elif flag:
            out[i] = 1.0 if ts[i] - last > limit else 0.0
        else:
            out[i] = (ts[i] - last) / US_PER_MINUTE
        if x[i] == x[i]:
            seen, last = True, ts[i]


@njit(**JIT_PARALLEL)
def _gaps(ts, x, offsets, limit, flag):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        _gap_series(ts, x, offsets[k], offsets[k + 1], limit, flag, out)
    return out


@njit(**JIT)
def since_last(ts, x, offsets):
    """Minutes since the previous non-null reading of the series; NaN before the first."""
    return _gaps(ts, x, offsets, 0, False)


@njit(**JIT)
def silence(ts, x, offsets, limit):
    """1.0 when the gap since the previous non-null reading exceeds ``limit`` µs, else 0.0."""
    return _gaps(ts, x, offsets, limit, True)


NO_ROW = np.iinfo(np.int64).min


@njit(**JIT_PARALLEL)
def last_seen(ts, x, offsets, group_offsets, eval_ts, eval_group):
    """Latest time of a non-null reading at or before each evaluation time, over a group of series.

    Parameters
    ----------
    ts, x, offsets
        Series as in every kernel.
    group_offsets : int64[g+1]
        Group ``q`` (a patient) is the series ``group_offsets[q]:group_offsets[q+1]``.
    eval_ts : int64[e]
        Evaluation times, µs, in any order.
    eval_group : int64[e]
        The group of each evaluation time; -1 for a group with no series.

    Returns
    -------
    int64[e]
        ``max ts[j] <= eval_ts[r]`` over non-null rows ``j`` of the group's series, or
        ``NO_ROW`` (int64 min) when there is none. O(e · series per group · log rows).
    """
    out = np.empty(eval_ts.size, dtype=np.int64)
    for r in prange(eval_ts.size):
        best = NO_ROW
        q = eval_group[r]
        if q >= 0:
            e = eval_ts[r]
            for k in range(group_offsets[q], group_offsets[q + 1]):
                a, b = offsets[k], offsets[k + 1]
                j = a + np.searchsorted(ts[a:b], e, side="right") - 1
                while j >= a and x[j] != x[j]:   # step back over null readings
                    j -= 1
                if j >= a and ts[j] > best:
                    best = ts[j]
        out[r] = best
    return out


@njit(**JIT_PARALLEL)
def first_unsorted(ts, offsets):
    """First row whose time is earlier than the previous row of its series, or -1 when sorted."""
    s = offsets.size - 1
    bad = np.full(s, -1, dtype=np.int64)
    for k in prange(s):
        for i in range(offsets[k] + 1, offsets[k + 1]):
            if ts[i] < ts[i - 1]:
                bad[k] = i
                break
    for k in range(s):
        if bad[k] >= 0:
            return bad[k]
    return -1
