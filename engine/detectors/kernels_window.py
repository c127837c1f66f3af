"""Numba kernels for trailing time-window statistics, all series in one call.

Every kernel follows the contract of :mod:`engine.detectors.registry`:
``kernel(ts, x, offsets, *params) -> out`` with ``ts`` int64 µs sorted within each series, ``x``
float64 (NaN = null reading), ``offsets`` int64[s+1], ``out`` float64 aligned to the rows. The
outer loop is a ``prange`` over series; a series writes only its own slice of ``out`` and its own
scratch buffers, so threads share nothing.

The window of row ``i`` (time ``t``) is the rows ``j <= i`` of its series with
``t - lag - W <= ts[j] <= t - lag``: both ends closed; with ``lag`` 0 (the detectors' default)
rows tied with ``t`` are in only if they come before ``i`` (row order breaks ties, so row ``i``'s
output never depends on later rows); with a lag every row of the window is before ``i``. Because
``ts`` is sorted this is always a contiguous run ``lo..hi-1`` (``hi = i + 1`` for lag 0) and both
pointers only move forward: each kernel is a two-pointer sweep, O(n) per series (O(n·w) worst
case for the median buffer shifts, which are memmoves). Each sweep first drops the rows that left
(``ts < t - lag - W``), then adds the rows that entered (``ts <= t - lag``), skipping those that
entered and left at once (a gap longer than the window); with lag 0 that is "drop, then add row
``i``", so the arithmetic, and every output bit, is the same as before lags existed. Null
readings never enter a window; a null row still gets the statistic of the non-null rows in its
window unless the detector needs the row's own value (delta and pct_change with lag 0).

Each public kernel has a lagged twin, ``<name>_lagged(ts, x, offsets, window, lag)``; the plain
one is the twin at lag 0 (a spec without a lag resolves to it, see
:mod:`engine.detectors.registry`).

Each kernel calls a per-series function ``_<name>_series(ts, x, a, b, ...)`` on the series'
slices with ``a`` the literal 0 (the fused pass of :mod:`.kernels_fused` makes the very same calls,
so its outputs are bit for bit those of the kernels). Why slices and a literal 0: numba compiles a
specialisation for the literal, so LLVM knows every index is >= 0; it then drops numba's
negative-index wrap-around from each access (two cycles on every dependent load of a window
pointer) and vectorises the loops that only do arithmetic.

Running sums are compensated (Neumaier's scheme, with a branch-free TwoSum) so that removing a
large value leaves no residue, and the variance and slope use sums shifted by a value inside the
window, re-centred (by an exact O(w) recomputation) whenever the shift drifts far from the window
mean: this keeps the relative error near machine precision even for windows mixing 1e-3 and 1e6.
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
#: unsigned offsets: numba indexes with an unsigned integer without the wrap-around of negative
#: indices (a shift, a mask and a conditional move on each load of a window pointer, which LLVM
#: cannot prove non-negative)
_U1, _U2, _U3 = np.uint64(1), np.uint64(2), np.uint64(3)
DELTA, PCT_CHANGE = 0, 1
MIN, MAX = 0, 1


@njit(**JIT)
def _two_sum(a, b):
    """Knuth's TwoSum: ``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly."""
    s = a + b
    bp = s - a
    return s, (a - (s - bp)) + (b - bp)


@njit(**JIT)
def _add(s, c, v):
    """Compensated step: returns the new (sum, compensation) after adding ``v``.

    ``c`` accumulates the exact rounding error of each ``s + v``, as in Neumaier's algorithm,
    but the error is found with the branch-free TwoSum rather than by branching on
    ``|s| >= |v|``: both give the same exact error (so the same bits), and a branch that depends
    on the data is mispredicted about half the time on shifted sums that wander around zero.
    """
    t, e = _two_sum(s, v)
    return t, c + e


@njit(**JIT)
def _dd_diff(s, c, s0, c0):
    """``(s + c) - (s0 + c0)`` of two compensated sums, the leading parts cancelled exactly."""
    t, e = _two_sum(s, -s0)
    return t + (e + (c - c0))


@njit(**JIT)
def _advance(ts, lo, i, start):
    """The first row ``>= lo`` of the series with ``ts >= start`` (``lo <= i``, ``ts[i] >= start``).

    Four candidates are compared at once, without a data-dependent branch, before a loop for
    the rare rest: on irregular sampling 0, 1, 2, ... rows leave a window per new row with
    probabilities close to 1/2, 1/4, 1/8, ..., so the exit of a plain ``while ts[lo] < start``
    loop is mispredicted about once a row. Reads are capped at row ``i`` (the window's last row,
    whose time is not before ``start``), so they never leave the window.
    """
    u, e = np.uint64(lo), np.uint64(i)
    k = ((ts[u] < start) + (ts[min(u + _U1, e)] < start) + (ts[min(u + _U2, e)] < start)
         + (ts[min(u + _U3, e)] < start))
    lo += k
    if k == 4:
        while ts[np.uint64(lo)] < start:
            lo += 1
    return lo


@njit(**JIT)
def _skip(ts, hi, i, start):
    """The first row ``>= hi`` (at most ``i + 1``) whose time is not before ``start``.

    Called when the window is empty (``lo == hi``): the rows passed over entered and left the
    window between two rows (a gap longer than the window, with a lag), so they are never added.
    With lag 0 it returns ``hi`` (= ``i``, whose time is never before ``start``).
    """
    while hi <= i and ts[hi] < start:
        hi += 1
    return hi


# --------------------------------------------------------------------------------------------
# sum, mean, count
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _sum_series(ts, x, a, b, window, lag, what, out):
    if lag == 0:
        _sum_series_prefix(ts, x, a, b, window, what, out, np.empty((3, b - a + 1)))
        return
    lo, hi, n, s, c = a, a, 0, 0.0, 0.0
    for i in range(a, b):
        end = ts[i] - lag
        start = end - window
        while ts[lo] < start and lo < hi:
            v = x[lo]
            if v == v:
                n -= 1
                if n == 0:
                    s, c = 0.0, 0.0  # an empty window restarts from an exact zero
                else:
                    s, c = _add(s, c, -v)
            lo += 1
        if lag == 0:
            v = x[i]
            if v == v:
                n += 1
                s, c = _add(s, c, v)
            hi = i + 1
        else:
            if lo == hi:
                hi = _skip(ts, hi, i, start)
                lo = hi
            while hi <= i and ts[hi] <= end:
                v = x[hi]
                if v == v:
                    n += 1
                    s, c = _add(s, c, v)
                hi += 1
        if what == COUNT:
            out[i] = n
        elif n == 0:
            out[i] = np.nan
        elif what == SUM:
            out[i] = s + c
        else:
            out[i] = (s + c) / n


@njit(**JIT)
def _sum_series_prefix(ts, x, a, b, window, what, out, work):
    """:func:`_sum_series` at lag 0, from compensated prefix sums.

    Why: taking the rows that left the window out of a running sum one by one is a loop whose
    length (0, 1, 2 ... rows per new row on irregular sampling) the branch predictor misses
    about once a row. Here the running sum only grows: ``(ps[j], pc[j])`` is the compensated
    sum (value, error) of the non-null readings before row ``j`` and ``pn[j]`` their count, the
    window's first row comes from :func:`_advance` (no data-dependent branch), and the window's
    sum is the difference of two prefixes, taken with TwoSum so that the leading parts cancel
    exactly and the errors carry the rest: a window of small values after large ones keeps its
    digits, as the running sums did. ``work`` is scratch, float64[>= 3, >= b - a + 1] (the
    fused pass hands every series the same).
    """
    m = b - a
    ps, pc, pn = work[0, :m + 1], work[1, :m + 1], work[2, :m + 1]
    ps[0], pc[0], pn[0] = 0.0, 0.0, 0.0
    lo, n, s, c = a, 0, 0.0, 0.0
    for i in range(a, b):
        v = x[i]
        ok = v == v
        s, c = _add(s, c, v if ok else 0.0)
        n += ok
        ps[i - a + 1], pc[i - a + 1], pn[i - a + 1] = s, c, n
        lo = _advance(ts, lo, i, ts[i] - window)
        f = np.uint64(lo - a)
        k = n - pn[f]
        w = _dd_diff(s, c, ps[f], pc[f])
        if what == COUNT:
            out[i] = k
        elif what == SUM:
            out[i] = np.nan if k == 0 else w
        else:
            out[i] = np.nan if k == 0 else w / k


@njit(**JIT_PARALLEL)
def _rolling_sums(ts, x, offsets, window, lag, what):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _sum_series(ts[a:b], x[a:b], 0, b - a, window, lag, what, out[a:b])
    return out


@njit(**JIT)
def rolling_sum(ts, x, offsets, window):
    """Sum of the non-null readings in the window; NaN when it holds none."""
    return _rolling_sums(ts, x, offsets, window, 0, SUM)


@njit(**JIT)
def rolling_mean(ts, x, offsets, window):
    """Mean of the non-null readings in the window; NaN when it holds none."""
    return _rolling_sums(ts, x, offsets, window, 0, MEAN)


@njit(**JIT)
def rolling_count(ts, x, offsets, window):
    """Number of non-null readings in the window (0.0 when none)."""
    return _rolling_sums(ts, x, offsets, window, 0, COUNT)


@njit(**JIT)
def rolling_sum_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_sum` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_sums(ts, x, offsets, window, lag, SUM)


@njit(**JIT)
def rolling_mean_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_mean` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_sums(ts, x, offsets, window, lag, MEAN)


@njit(**JIT)
def rolling_count_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_count` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_sums(ts, x, offsets, window, lag, COUNT)


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
def _std_in(v, n, k, s0, c0, s1, c1, s2, c2, want_mean):
    """The running state of :func:`_std_series` after a non-null reading ``v`` enters."""
    if n == 0:
        k = v
    n += 1
    d = v - k
    if want_mean:
        s0, c0 = _add(s0, c0, v)
    s1, c1 = _add(s1, c1, d)
    s2, c2 = _add(s2, c2, d * d)
    return n, k, s0, c0, s1, c1, s2, c2


@njit(**JIT)
def _sweep_series(ts, x, a, b, window, out_mean, out_std, want_mean, work, sum_window, what,
                  mm_window, mm, omin, omax, want_std):
    """:func:`_std_series` at lag 0, from compensated prefix sums (see :func:`_sum_series_prefix`),
    with a sum, mean or count and a min and/or max of windows of their own in the same sweep;
    without the std when ``want_std`` is False (``window`` is then not read).

    The prefixes are of ``d = x - k`` and ``d * d`` for a shift ``k`` (first the series' first
    reading), so that the window's sums of squared deviations do not cancel; when the window's
    mean drifts far from ``k`` (the re-centring test of :func:`_std_series`), ``k`` becomes a
    window value near the mean and the prefixes are rebuilt from the window's first row (rows
    before it are never read again), as the running sums were re-centred. ``work`` is
    scratch, float64[>= 9, >= b - a + 1].

    With ``want_mean``, ``out_mean`` gets the sum, mean or count (``what``) of the window of
    ``sum_window`` µs (at lag 0 too; the std's own window, or another): the prefixes of ``x``
    and of the readings' count are never rebuilt, so the same sweep serves a window of any
    length, and the outputs are those of :func:`_sum_series_prefix` bit for bit (the same
    prefixes, differences and divisions).

    With ``mm`` MIN, MAX or BOTH (-1: none), ``omin`` and/or ``omax`` get the min and/or max of
    the window of ``mm_window`` µs, by the very steps of :func:`_minmax_series` at lag 0 (the
    same outputs, bit for bit).

    Why one sweep: each statistic's window pointer is a chain of dependent loads
    (:func:`_advance`, about 12 cycles a row) that bounds its own loop; in one loop the chains
    of the three windows overlap, and the series' rows are read once. On the detector benchmark
    (mean 1 h, min and max 6 h, std 24 h of each metric) one sweep took 17.3 ns a row on one
    thread where the separate loops took 19.5.
    """
    m = b - a
    p1, q1 = work[0, :m + 1], work[1, :m + 1]    # prefix sums of d (value, error)
    p2, q2 = work[2, :m + 1], work[3, :m + 1]    # of d * d
    p0, q0 = work[4, :m + 1], work[5, :m + 1]    # of x, for an exact sum
    pn, cnt = work[6, :m + 1], work[7, :m]       # readings before each row; in its window
    cnt0 = work[8, :m]                           # readings in the sum's window
    p1[0], q1[0], p2[0], q2[0], pn[0] = 0.0, 0.0, 0.0, 0.0, 0.0
    if want_mean:
        p0[0], q0[0] = 0.0, 0.0
    k = 0.0
    for i in range(a, b):
        if x[i] == x[i]:
            k = x[i]
            break
    lo, lo0, n = a, a, 0
    same = want_std and sum_window == window
    f, w = np.uint64(0), 0.0
    sufmin = np.empty(m + 1 if mm == MIN or mm == BOTH else 0)
    sufmax = np.empty(m + 1 if mm == MAX or mm == BOTH else 0)
    lom, mid, last = a, a, a - 1        # the min/max state of _minmax_series
    bmin, bmax = np.inf, -np.inf
    s1, c1, s2, c2, s0, c0 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for i in range(a, b):
        v = x[i]
        ok = v == v
        n += ok
        j = i - a + 1
        pn[j] = n
        if want_std:
            d = v - k if ok else 0.0
            s1, c1 = _add(s1, c1, d)
            s2, c2 = _add(s2, c2, d * d)
            p1[j], q1[j], p2[j], q2[j] = s1, c1, s2, c2
            lo = _advance(ts, lo, i, ts[i] - window)
            f = np.uint64(lo - a)
            w = n - pn[f]
            cnt[i - a] = w
        if want_mean:
            s0, c0 = _add(s0, c0, v if ok else 0.0)
            p0[j], q0[j] = s0, c0
            if not same:
                lo0 = _advance(ts, lo0, i, ts[i] - sum_window)
            f0 = f if same else np.uint64(lo0 - a)
            cnt0[i - a] = n - pn[f0]
            out_mean[i] = _dd_diff(s0, c0, p0[f0], q0[f0])
        if mm >= 0:
            if ok:
                last = i
                bmin = min(bmin, v)
                bmax = max(bmax, v)
            lom = _advance(ts, lom, i, ts[i] - mm_window)
            if lom >= mid:
                _minmax_fold(x, a, lom, i + 1, sufmin, sufmax, mm)
                mid, bmin, bmax = i + 1, np.inf, -np.inf
            lmin, lmax = _minmax_at(a, lom, last, bmin, bmax, sufmin, sufmax, mm)
            if mm != MAX:
                omin[i] = lmin
            if mm != MIN:
                omax[i] = lmax
        if not want_std:
            continue
        S1 = _dd_diff(s1, c1, p1[f], q1[f])
        m2n = _dd_diff(s2, c2, p2[f], q2[f]) * w - S1 * S1
        if w >= 2 and S1 * S1 > RECENTRE * m2n:
            k = _closest_to_mean(x, lo, i + 1, w)
            s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0
            p1[f], q1[f], p2[f], q2[f] = 0.0, 0.0, 0.0, 0.0
            for r in range(lo, i + 1):
                if x[r] == x[r]:
                    d = x[r] - k
                    s1, c1 = _add(s1, c1, d)
                    s2, c2 = _add(s2, c2, d * d)
                p1[r - a + 1], q1[r - a + 1], p2[r - a + 1], q2[r - a + 1] = s1, c1, s2, c2
            S1 = s1 + c1
            m2n = (s2 + c2) * w - S1 * S1
        out_std[i] = m2n if w >= 2 else 0.0
    _std_finish(cnt, cnt0, a, b, out_mean, out_std, want_mean, what, want_std)


@njit(**JIT)
def _std_series(ts, x, a, b, window, lag, out_mean, out_std, want_mean):
    if lag == 0:
        _sweep_series(ts, x, a, b, window, out_mean, out_std, want_mean,
                      np.empty((9, b - a + 1)), window, MEAN, 0, -1, out_std, out_std, True)
        return
    cnt = np.empty(b - a)            # readings in each row's window
    lo, hi, n = a, a, 0              # the window is rows lo..hi-1
    k = 0.0                          # the shift: a value of the window
    s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0  # compensated sums of (x - k) and (x - k)^2
    s0, c0 = 0.0, 0.0                # compensated raw sum, for an exact mean
    for i in range(a, b):
        end = ts[i] - lag
        start = end - window
        while ts[lo] < start and lo < hi:
            v = x[lo]
            if v == v:
                n -= 1
                if n == 0:
                    s0, c0, s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
                else:
                    d = v - k
                    if want_mean:
                        s0, c0 = _add(s0, c0, -v)
                    s1, c1 = _add(s1, c1, -d)
                    s2, c2 = _add(s2, c2, -d * d)
            lo += 1
        if lag == 0:
            v = x[i]
            if v == v:
                n, k, s0, c0, s1, c1, s2, c2 = _std_in(v, n, k, s0, c0, s1, c1, s2, c2,
                                                       want_mean)
            hi = i + 1
        else:
            if lo == hi:
                hi = _skip(ts, hi, i, start)
                lo = hi
            while hi <= i and ts[hi] <= end:
                v = x[hi]
                if v == v:
                    n, k, s0, c0, s1, c1, s2, c2 = _std_in(v, n, k, s0, c0, s1, c1, s2, c2,
                                                           want_mean)
                hi += 1
        cnt[i - a] = n
        if want_mean:
            out_mean[i] = s0 + c0        # exactly 0.0 when n == 0 (the sums restart at 0)
        if n < 2:
            out_std[i] = 0.0
            continue
        S1 = s1 + c1
        m2n = (s2 + c2) * n - S1 * S1    # n times the sum of squared deviations from the mean
        if S1 * S1 > RECENTRE * m2n:
            # the shift is far from the mean: cancellation would eat the digits, so re-centre
            # on a window value near the mean and recompute the sums exactly over the window
            k = _closest_to_mean(x, lo, hi, n)
            s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0
            for j in range(lo, hi):
                if x[j] == x[j]:
                    d = x[j] - k
                    s1, c1 = _add(s1, c1, d)
                    s2, c2 = _add(s2, c2, d * d)
            S1 = s1 + c1
            m2n = (s2 + c2) * n - S1 * S1
        out_std[i] = m2n
    _std_finish(cnt, cnt, a, b, out_mean, out_std, want_mean, MEAN, True)


@njit(**JIT)
def _std_finish(cnt, cnt0, a, b, out_mean, out_std, want_mean, what, want_std):
    """Rows ``a..b``: the std from ``n`` times its window's sum of squared deviations
    (``cnt[i - a]`` readings in row ``i``'s window) and, with ``want_mean``, the sum, mean or
    count (``what``) from the sum of ``cnt0[i - a]`` readings held in ``out_mean``.

    The divisions and square roots run in a loop of their own, branch-free so that it
    vectorises: in the update loops they cost more than the rest of the update. With fewer
    than two readings n (n - 1) is 0 and the std is 0 / 0 = NaN; so is the mean of none (and
    the sum of none is NaN, as :func:`_sum_series_prefix` gives it).
    """
    if want_mean and what == MEAN:
        for i in range(a, b):
            out_mean[i] = out_mean[i] / cnt0[i - a]
    elif want_mean and what == SUM:
        for i in range(a, b):
            out_mean[i] = np.nan if cnt0[i - a] == 0 else out_mean[i]
    elif want_mean:
        out_mean[a:b] = cnt0
    if not want_std:
        return
    for i in range(a, b):
        q = cnt[i - a]
        m2n = out_std[i]
        out_std[i] = np.sqrt((m2n if m2n > 0.0 else 0.0) / (q * (q - 1.0)))


@njit(**JIT_PARALLEL)
def _rolling_std(ts, x, offsets, window, lag):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _std_series(ts[a:b], x[a:b], 0, b - a, window, lag, out[a:b], out[a:b], False)
    return out


@njit(**JIT_PARALLEL)
def _rolling_mean_std(ts, x, offsets, window, lag):
    out = np.empty((2, x.size))
    mean, std = out[0], out[1]
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _std_series(ts[a:b], x[a:b], 0, b - a, window, lag, mean[a:b], std[a:b], True)
    return out


@njit(**JIT)
def rolling_std(ts, x, offsets, window):
    """Sample standard deviation (ddof 1) of the window; NaN with fewer than 2 readings."""
    return _rolling_std(ts, x, offsets, window, 0)


@njit(**JIT)
def rolling_mean_std(ts, x, offsets, window):
    """Mean and sample std of the same window in one pass: returns a (2, n) array."""
    return _rolling_mean_std(ts, x, offsets, window, 0)


@njit(**JIT)
def rolling_std_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_std` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_std(ts, x, offsets, window, lag)


@njit(**JIT)
def rolling_mean_std_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_mean_std` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_mean_std(ts, x, offsets, window, lag)


# --------------------------------------------------------------------------------------------
# min, max: a queue made of two stacks (suffix extremes in front, running extremes behind)
# --------------------------------------------------------------------------------------------
# Why not the classic monotonic deque: its pops depend on the data and are mispredicted about
# once a row, which made min and max the slowest detectors. Here the window's rows lo..hi-1 are
# split at ``mid``: rows lo..mid-1 have their suffix extreme precomputed (suf[j] = extreme of
# rows j..mid-1), rows mid..hi-1 are folded into one running extreme. A query is one load and one
# comparison; when lo passes mid the rows lo..hi-1 are folded into fresh suffixes (each row is
# folded once, so O(1) amortised). Nulls fold as +inf (min) / -inf (max); whether the window
# holds any reading is told by the last non-null row, so a genuine +-inf reading is kept.
BOTH = 2


@njit(**JIT)
def _minmax_series(ts, x, a, b, window, lag, omin, omax, want):
    """Rolling min (``want`` MIN or BOTH) into ``omin`` and max (MAX or BOTH) into ``omax``."""
    m = b - a
    # one spare slot: with a lag the window may be empty with lo == hi == b, and the query
    # below reads suf[lo - a] without a branch (the value is then not used)
    sufmin = np.empty(m + 1 if want != MAX else 0)
    sufmax = np.empty(m + 1 if want != MIN else 0)
    lo, hi, mid, last = a, a, a, a - 1  # last: the latest non-null row added so far
    bmin, bmax = np.inf, -np.inf
    for i in range(a, b):
        end = ts[i] - lag
        start = end - window
        if lag == 0:
            v = x[i]
            if v == v:
                last = i
                bmin = min(bmin, v)
                bmax = max(bmax, v)
            hi = i + 1
            lo = _advance(ts, lo, i, start)
        else:
            while hi <= i and ts[hi] <= end:
                v = x[hi]
                if v == v:
                    last = hi
                    bmin = min(bmin, v)
                    bmax = max(bmax, v)
                hi += 1
            if hi > lo and ts[hi - 1] >= start:
                lo = _advance(ts, lo, hi - 1, start)
            else:
                lo = hi                 # every row added so far has left the window
        if lo >= mid:
            _minmax_fold(x, a, lo, hi, sufmin, sufmax, want)
            mid = hi
            bmin, bmax = np.inf, -np.inf
        lmin, lmax = _minmax_at(a, lo, last, bmin, bmax, sufmin, sufmax, want)
        if want != MAX:
            omin[i] = lmin
        if want != MIN:
            omax[i] = lmax


@njit(**JIT)
def _minmax_fold(x, a, lo, hi, sufmin, sufmax, want):
    """The front stack is empty: fold rows ``hi-1..lo`` into suffix extremes. Kept out of the
    sweeps' loops (once every few rows), so that LLVM inlines what runs every row."""
    fmin, fmax = np.inf, -np.inf
    for j in range(hi - 1, lo - 1, -1):
        u = x[j]
        if want != MAX:
            fmin = min(fmin, u if u == u else np.inf)
            sufmin[j - a] = fmin
        if want != MIN:
            fmax = max(fmax, u if u == u else -np.inf)
            sufmax[j - a] = fmax


@njit(**JIT)
def _minmax_at(a, lo, last, bmin, bmax, sufmin, sufmax, want):
    """``(min, max)`` of the window of rows ``lo..`` (NaN when it holds no reading; the one
    not wanted is NaN): the state of :func:`_minmax_series`, which :func:`_sweep_series`
    shares (``last`` the latest non-null row added)."""
    f = np.uint64(lo - a)
    lmin = min(sufmin[f], bmin) if want != MAX else np.nan
    lmax = max(sufmax[f], bmax) if want != MIN else np.nan
    if last < lo:
        return np.nan, np.nan
    return lmin, lmax


@njit(**JIT_PARALLEL)
def _rolling_extreme(ts, x, offsets, window, lag, which):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _minmax_series(ts[a:b], x[a:b], 0, b - a, window, lag, out[a:b], out[a:b], which)
    return out


@njit(**JIT_PARALLEL)
def _rolling_min_max(ts, x, offsets, window, lag):
    out = np.empty((2, x.size))
    omin, omax = out[0], out[1]
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _minmax_series(ts[a:b], x[a:b], 0, b - a, window, lag, omin[a:b], omax[a:b], BOTH)
    return out


@njit(**JIT)
def rolling_min(ts, x, offsets, window):
    """Smallest non-null reading in the window; NaN when it holds none."""
    return _rolling_extreme(ts, x, offsets, window, 0, MIN)


@njit(**JIT)
def rolling_max(ts, x, offsets, window):
    """Largest non-null reading in the window; NaN when it holds none."""
    return _rolling_extreme(ts, x, offsets, window, 0, MAX)


@njit(**JIT)
def rolling_min_max(ts, x, offsets, window):
    """Min and max of the same window in one pass: returns a (2, n) array."""
    return _rolling_min_max(ts, x, offsets, window, 0)


@njit(**JIT)
def rolling_min_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_min` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_extreme(ts, x, offsets, window, lag, MIN)


@njit(**JIT)
def rolling_max_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_max` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_extreme(ts, x, offsets, window, lag, MAX)


@njit(**JIT)
def rolling_min_max_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_min_max` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_min_max(ts, x, offsets, window, lag)


# --------------------------------------------------------------------------------------------
# median: sorted buffer, binary-search insert and remove
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _median_in(buf, n, v):
    """Insert ``v`` into the sorted ``buf[:n]``; returns the new length."""
    p = np.searchsorted(buf[:n], v)
    for q in range(n, p, -1):
        buf[q] = buf[q - 1]
    buf[p] = v
    return n + 1


@njit(**JIT)
def _median_series(ts, x, a, b, window, lag, out):
    buf = np.empty(b - a)
    lo, hi, n = a, a, 0               # buf[:n] holds the values of rows lo..hi-1, sorted
    for i in range(a, b):
        end = ts[i] - lag
        start = end - window
        while ts[lo] < start and lo < hi:
            v = x[lo]
            if v == v:
                p = np.searchsorted(buf[:n], v)   # an equal value is at p
                for q in range(p, n - 1):
                    buf[q] = buf[q + 1]
                n -= 1
            lo += 1
        if lag == 0:
            v = x[i]
            if v == v:
                n = _median_in(buf, n, v)
            hi = i + 1
        else:
            if lo == hi:
                hi = _skip(ts, hi, i, start)
                lo = hi
            while hi <= i and ts[hi] <= end:
                v = x[hi]
                if v == v:
                    n = _median_in(buf, n, v)
                hi += 1
        if n == 0:
            out[i] = np.nan
        elif n % 2 == 1:
            out[i] = buf[n // 2]
        else:
            out[i] = (buf[n // 2 - 1] + buf[n // 2]) / 2.0


@njit(**JIT_PARALLEL)
def _rolling_median(ts, x, offsets, window, lag):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _median_series(ts[a:b], x[a:b], 0, b - a, window, lag, out[a:b])
    return out


@njit(**JIT)
def rolling_median(ts, x, offsets, window):
    """Median of the non-null readings in the window; NaN when it holds none."""
    return _rolling_median(ts, x, offsets, window, 0)


@njit(**JIT)
def rolling_median_lagged(ts, x, offsets, window, lag):
    """:func:`rolling_median` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_median(ts, x, offsets, window, lag)


# --------------------------------------------------------------------------------------------
# delta and pct_change: the last non-null value of the window against its first
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _change_series(ts, x, a, b, window, lag, what, out):
    first = a                          # first non-null row >= lo (== hi when none yet)
    hi, last = a, a - 1                # the window ends at hi - 1; last: latest non-null < hi
    for i in range(a, b):
        end = ts[i] - lag
        start = end - window
        if lag == 0:
            hi = i + 1
        else:
            while hi <= i and ts[hi] <= end:
                if x[hi] == x[hi]:
                    last = hi
                hi += 1
        while first < hi and (ts[first] < start or x[first] != x[first]):
            first += 1
        # lag 0: the change up to the row's own reading (none at a null row); with a lag, up to
        # the last reading of the lagged window (first < hi: the window holds one, so last does)
        if lag == 0:
            v = x[i]
        else:
            v = x[last] if first < hi else np.nan
        if v != v or first >= hi:
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
def _rolling_change(ts, x, offsets, window, lag, what):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _change_series(ts[a:b], x[a:b], 0, b - a, window, lag, what, out[a:b])
    return out


@njit(**JIT)
def delta(ts, x, offsets, window):
    """Reading minus the first non-null reading of the window; NaN at a null row."""
    return _rolling_change(ts, x, offsets, window, 0, DELTA)


@njit(**JIT)
def pct_change(ts, x, offsets, window):
    """``delta`` in percent of the first reading; NaN at a null row or a zero first reading."""
    return _rolling_change(ts, x, offsets, window, 0, PCT_CHANGE)


@njit(**JIT)
def delta_lagged(ts, x, offsets, window, lag):
    """Last minus first non-null reading of ``[t - lag - window, t - lag]`` (lag 0: delta)."""
    return _rolling_change(ts, x, offsets, window, lag, DELTA)


@njit(**JIT)
def pct_change_lagged(ts, x, offsets, window, lag):
    """:func:`delta_lagged` in percent of the first reading of the lagged window."""
    return _rolling_change(ts, x, offsets, window, lag, PCT_CHANGE)


# --------------------------------------------------------------------------------------------
# slope: least squares per hour, shifted compensated sums re-centred on drift
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _slope_in(u, d, su, cu, sd, cd, suu, cuu, sud, cud, sdd, cdd):
    """The compensated sums of :func:`_slope_series` after a reading (u hours, d) enters."""
    su, cu = _add(su, cu, u)
    sd, cd = _add(sd, cd, d)
    suu, cuu = _add(suu, cuu, u * u)
    sud, cud = _add(sud, cud, u * d)
    sdd, cdd = _add(sdd, cdd, d * d)
    return su, cu, sd, cd, suu, cuu, sud, cud, sdd, cdd


@njit(**JIT)
def _slope_series(ts, x, a, b, window, lag, out):
    lo, hi, n = a, a, 0
    kt, kx = ts[a] if b > a else 0, 0.0
    # compensated sums of u = (t - kt) in hours, d = x - kx, u*u, u*d, d*d
    su = cu = sd = cd = suu = cuu = sud = cud = sdd = cdd = 0.0
    first, last_t = a, np.int64(0)     # first non-null row of the window; time of the last one
    for i in range(a, b):
        end = ts[i] - lag
        start = end - window
        while ts[lo] < start and lo < hi:
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
        if lag == 0:
            j0 = i                           # the rows entering: row i alone
            hi = i + 1
        else:
            if lo == hi:
                hi = _skip(ts, hi, i, start)
                lo = hi
            j0 = hi
            while hi <= i and ts[hi] <= end:
                hi += 1
        for j in range(j0, hi):
            v = x[j]
            if v == v:
                if n == 0:
                    kt, kx = ts[j], v
                n += 1
                last_t = ts[j]
                su, cu, sd, cd, suu, cuu, sud, cud, sdd, cdd = _slope_in(
                    (ts[j] - kt) / US_PER_HOUR, v - kx,
                    su, cu, sd, cd, suu, cuu, sud, cud, sdd, cdd)
        while first < hi and (ts[first] < start or x[first] != x[first]):
            first += 1
        if n < 2 or ts[first] == last_t:
            out[i] = np.nan                 # fewer than two distinct times
            continue
        U, D = su + cu, sd + cd
        vu = (suu + cuu) - U * U / n
        vd = (sdd + cdd) - D * D / n
        if U * U / n > RECENTRE * vu or D * D / n > RECENTRE * vd:
            kx = _closest_to_mean(x, lo, hi, n)
            kt = _closest_time(ts, x, lo, hi, kt, U / n)
            su = cu = sd = cd = suu = cuu = sud = cud = sdd = cdd = 0.0
            for j in range(lo, hi):
                if x[j] == x[j]:
                    su, cu, sd, cd, suu, cuu, sud, cud, sdd, cdd = _slope_in(
                        (ts[j] - kt) / US_PER_HOUR, x[j] - kx,
                        su, cu, sd, cd, suu, cuu, sud, cud, sdd, cdd)
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
def _rolling_slope(ts, x, offsets, window, lag):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _slope_series(ts[a:b], x[a:b], 0, b - a, window, lag, out[a:b])
    return out


@njit(**JIT)
def slope(ts, x, offsets, window):
    """Least-squares slope per hour of the window; NaN with fewer than 2 distinct times."""
    return _rolling_slope(ts, x, offsets, window, 0)


@njit(**JIT)
def slope_lagged(ts, x, offsets, window, lag):
    """:func:`slope` of the window ``[t - lag - window, t - lag]``."""
    return _rolling_slope(ts, x, offsets, window, lag)


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
            out[i] = ts[i] - last        # µs; converted to minutes below
        if x[i] == x[i]:
            seen, last = True, ts[i]
    if not flag:
        # one division per row, in a loop of its own so that it vectorises
        for i in range(a, b):
            out[i] = out[i] / US_PER_MINUTE


@njit(**JIT_PARALLEL)
def _gaps(ts, x, offsets, limit, flag):
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _gap_series(ts[a:b], x[a:b], 0, b - a, limit, flag, out[a:b])
    return out


@njit(**JIT)
def since_last(ts, x, offsets):
    """Minutes since the previous non-null reading of the series; NaN before the first."""
    return _gaps(ts, x, offsets, 0, False)


@njit(**JIT)
def silence(ts, x, offsets, limit):
    """1.0 when the gap since the previous non-null reading exceeds ``limit`` µs, else 0.0."""
    return _gaps(ts, x, offsets, limit, True)


# --------------------------------------------------------------------------------------------
# previous: the latest non-null reading at an earlier row at least ``gap`` before the row
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _previous_series(ts, x, a, b, gap, out):
    hi, last = a, a - 1              # rows < hi are the candidates; last: the latest non-null
    for i in range(a, b):
        cut = ts[i] - gap
        while hi < i and ts[hi] <= cut:
            if x[hi] == x[hi]:
                last = hi
            hi += 1
        out[i] = x[last] if last >= a else np.nan


@njit(**JIT_PARALLEL)
def previous(ts, x, offsets, gap):
    """Value of the latest non-null reading at an earlier row with ``ts <= t - gap``; else NaN."""
    out = np.empty(x.size)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        _previous_series(ts[a:b], x[a:b], 0, b - a, gap, out[a:b])
    return out


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
