"""Numba kernels of ingest: one pass for every row's reason and converted value, and the order.

The wrapper (:mod:`engine.ingest`) turns the columns into codes and arrays; these kernels never
see a polars object. Their plain reference is the polars implementation in
``tests/naive_ingest.py``, which the property tests compare them with on random dirty input.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL
from . import times

# reason codes: 0 is "used"; the others index REASON_ORDER (engine.ingest) from 1, in the order
# they are checked
(R_OK, R_MISSING_PATIENT, R_UNKNOWN_PATIENT, R_MISSING_TS, R_UNPARSEABLE_TS, R_NAIVE_TS,
 R_NONEXISTENT_TS, R_UNKNOWN_METRIC, R_MISSING_VALUE, R_UNPARSEABLE_VALUE, R_NON_FINITE,
 R_UNCONVERTIBLE_UNIT, R_IMPLAUSIBLE_VALUE, R_TOO_EARLY, R_FUTURE, R_CONFLICT) = range(16)
#: value flags
V_OK, V_MISSING, V_UNPARSEABLE = 0, 1, 2


@njit(**JIT_PARALLEL)
def row_reasons(pkey, ptab, known, ts, tflag, mkey, mtab, vflag, v, ukey, utab, has_unit,
                scale, offset, low, high, integer, ucanon, earliest_us, latest_us,
                reason, value, pcode, mcode):
    """Reason code, canonical value, patient code and metric code of every row.

    Codes come through dictionary encodings (:mod:`.encode`): the patient code of row ``i`` is
    ``ptab[pkey[i]]`` (-1: empty id) and ``known[p]`` says whether the patients table lists it;
    the metric code ``mtab[mkey[i]]`` (-1: unknown); the unit code ``utab[ukey[i]]`` (-1: none
    given, the canonical unit is assumed; read only when ``has_unit``). ``ts``/``tflag`` come from
    :func:`engine.ingest.times.to_utc_us`, ``vflag``/``v`` are the value. ``scale[m, u]``/
    ``offset[m, u]`` convert (NaN: not convertible); ``low``/``high``/``integer`` are per metric;
    readings before ``earliest_us`` or after ``latest_us`` are quarantined. The four per-row
    results are written into ``reason`` (uint8), ``value`` (float64), ``pcode`` (int32) and
    ``mcode`` (int16), which the caller allocates: memory the kernel allocated itself would be
    fresh pages at every run (see :mod:`engine.memory`).

    Returns how many used rows have a value changed by conversion and how many carry a
    unit other than their metric's canonical spelling ``ucanon[m]`` (when both are 0 the input's
    own value and unit columns are already clean).
    """
    n = pkey.size
    changed = 0
    other_unit = 0
    for i in prange(n):
        r = R_OK
        x = np.nan
        p, f, m = ptab[pkey[i]], tflag[i], mtab[mkey[i]]
        u = utab[ukey[i]] if has_unit else -1
        if p < 0:
            r = R_MISSING_PATIENT
        elif not known[p]:
            r = R_UNKNOWN_PATIENT
        elif f == times.MISSING:
            r = R_MISSING_TS
        elif f == times.BAD:
            r = R_UNPARSEABLE_TS
        elif f == times.NONEXISTENT:
            r = R_NONEXISTENT_TS
        elif f == times.NAIVE:
            r = R_NAIVE_TS
        elif m < 0:
            r = R_UNKNOWN_METRIC
        elif vflag[i] == V_MISSING:
            r = R_MISSING_VALUE
        elif vflag[i] == V_UNPARSEABLE:
            r = R_UNPARSEABLE_VALUE
        elif not np.isfinite(v[i]):
            r = R_NON_FINITE
        else:
            if u < 0:
                x = v[i] + 0.0          # as a conversion by 1 would: -0.0 reads 0.0
            else:
                a = scale[m, u]
                x = v[i] * a + offset[m, u]
                if a != a:
                    r = R_UNCONVERTIBLE_UNIT
            if r == R_OK:
                if x < low[m] or x > high[m] or (integer[m] and x != np.floor(x)):
                    r = R_IMPLAUSIBLE_VALUE
                elif ts[i] < earliest_us:
                    r = R_TOO_EARLY
                elif ts[i] > latest_us:
                    r = R_FUTURE
                else:
                    if x != v[i] or (x == 0.0 and np.signbit(v[i])):
                        changed += 1
                    if u != ucanon[m]:
                        other_unit += 1
        reason[i] = r
        value[i] = x
        pcode[i] = p
        mcode[i] = m
    return changed, other_unit


@njit(**JIT)
def is_ordered(rows, p, m, ts):
    """True when ``rows`` (row indices) are in (patient, metric, time) order, ties allowed."""
    for k in range(1, rows.size):
        i, j = rows[k - 1], rows[k]
        if p[j] != p[i]:
            if p[j] < p[i]:
                return False
        elif m[j] != m[i]:
            if m[j] < m[i]:
                return False
        elif ts[j] < ts[i]:
            return False
    return True


@njit(**JIT)
def all_used_and_strictly_ordered(reason, p, m, ts):
    """True when every row is used and the rows are in strictly increasing (patient, metric,
    time) order: nothing to sort, no duplicate to collapse."""
    for i in range(reason.size):
        if reason[i] != R_OK:
            return False
        if i:
            if p[i] != p[i - 1]:
                if p[i] < p[i - 1]:
                    return False
            elif m[i] != m[i - 1]:
                if m[i] < m[i - 1]:
                    return False
            elif ts[i] <= ts[i - 1]:
                return False
    return True


@njit(**JIT)
def is_identity(rows):
    """True when ``rows[k] == k`` for every k."""
    for k in range(rows.size):
        if rows[k] != k:
            return False
    return True


@njit(**JIT)
def same_as_previous(rows, p, m, ts):
    """``out[k]``: row ``rows[k]`` has the patient, metric and time of ``rows[k - 1]``."""
    out = np.zeros(rows.size, np.bool_)
    for k in range(1, rows.size):
        i, j = rows[k - 1], rows[k]
        out[k] = p[j] == p[i] and m[j] == m[i] and ts[j] == ts[i]
    return out


@njit(**JIT)
def series_starts(pnew, mnew):
    """Offsets (int64[s+1]) of the series of sorted rows, given where the patient and where
    the metric differ from the previous row's (uint8 flags, row 0's ignored)."""
    n = pnew.size
    starts = np.empty(n + 1, np.int64)
    s = 0
    for i in range(n):
        if i == 0 or pnew[i] | mnew[i]:
            starts[s] = i
            s += 1
    starts[s] = n
    return starts[:s + 1].copy()


@njit(**JIT)
def series_bounds(p, m):
    """Offsets (int64[s+1]) of the runs of equal (patient, metric) of sorted codes."""
    n = p.size
    starts = np.empty(n + 1, np.int64)
    s = 0
    for i in range(n):
        if i == 0 or p[i] != p[i - 1] or m[i] != m[i - 1]:
            starts[s] = i
            s += 1
    starts[s] = n
    return starts[:s + 1].copy()


@njit(**JIT)
def _group_by_series(rows, p, m, n_metrics, n_patients):
    """``rows`` grouped by (patient, metric) in code order, keeping their order within a group
    (a counting sort), and the group offsets."""
    n_keys = n_patients * n_metrics
    count = np.zeros(n_keys + 1, np.int64)
    for i in rows:
        count[p[i] * n_metrics + m[i] + 1] += 1
    for k in range(n_keys):
        count[k + 1] += count[k]
    starts = count.copy()
    out = np.empty(rows.size, np.int64)
    for i in rows:
        k = p[i] * n_metrics + m[i]
        out[count[k]] = i
        count[k] += 1
    return out, starts


@njit(**JIT_PARALLEL)
def _sort_within(out, starts, ts):
    """Sort each group of ``out`` by time, stably (a merge sort only where times go back)."""
    for g in prange(starts.size - 1):
        a, b = starts[g], starts[g + 1]
        ordered = True
        for k in range(a + 1, b):
            if ts[out[k]] < ts[out[k - 1]]:
                ordered = False
                break
        if not ordered:
            seg = out[a:b].copy()
            t = np.empty(b - a, np.int64)
            for k in range(b - a):
                t[k] = ts[seg[k]]
            perm = np.argsort(t, kind="mergesort")
            for k in range(b - a):
                out[a + k] = seg[perm[k]]


def order(ok_rows: np.ndarray, p: np.ndarray, m: np.ndarray, ts: np.ndarray,
          n_patients: int, n_metrics: int) -> np.ndarray:
    """``ok_rows`` sorted by (patient, metric, time, row), skipped when already in that order.

    A counting sort by (patient, metric), then a stable sort by time within each series: O(n)
    plus small sorts where a series' times go back, instead of a general three-key sort.
    """
    if is_ordered(ok_rows, p, m, ts):
        return ok_rows
    out, starts = _group_by_series(ok_rows, p, m, n_metrics, n_patients)
    _sort_within(out, starts, ts)
    return out
