"""Numba kernels of the timeline stage: each patient's evaluation times, and the as-of value of
every column a pack's rules read at each of them.

The wrapper (:mod:`engine.timeline`) encodes a pack's needs as arrays; the kernels loop over
patients with ``prange`` (a patient writes only its own slice of the outputs). Their plain
reference is the polars implementation in ``tests/naive_timeline.py`` (timeline by
``concat + unique + sort``, values by ``join_asof``), which the property tests compare them with.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL

#: column kinds: a metric's reading, a detector's output, minutes since the last reading of a set
#: of metrics, whether a reading of a set of metrics is at exactly this time
RAW, DET, SILENCE, FRESH = 0, 1, 2, 3
#: ``start`` of a patient without an enrolment time
NO_START = np.iinfo(np.int64).min
_MAX = np.iinfo(np.int64).max
US_PER_MINUTE = 60_000_000.0


@njit(**JIT)
def _end_at(ts, a, b, has_until, until):
    """First row of ``a..b`` after ``until`` (``b`` when none is, or without ``until``)."""
    if not has_until or b == a or ts[b - 1] <= until:
        return b
    lo, hi = a, b
    while lo < hi:
        mid = (lo + hi) >> 1
        if ts[mid] <= until:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**JIT_PARALLEL)
def sizes(ts, offsets, pser, smetric, in_scope, start, obs_all, obs_mask, every, has_until,
          until, obs_times=True):
    """Per patient: an upper bound of its timeline length, its first cadence tick and their
    number.

    The timeline of a patient in scope is the times of its readings of the observed metrics
    (``obs_all``: every metric; else ``obs_mask[m]``) up to ``until``, plus, with a cadence
    ``every`` (µs, 0 for none), the multiples of ``every`` from its first reading — or its
    ``start`` (enrolment) when earlier and ``until`` is given — to ``until`` (without ``until``:
    to its last reading). With ``obs_times`` False the readings only bound the cadence: the
    timeline is the cadence ticks alone.
    """
    n_pat = pser.size - 1
    cap = np.zeros(n_pat, np.int64)
    tick0 = np.zeros(n_pat, np.int64)
    nticks = np.zeros(n_pat, np.int64)
    for p in prange(n_pat):
        if not in_scope[p]:
            continue
        n_obs, first, last = 0, _MAX, -_MAX
        for k in range(pser[p], pser[p + 1]):
            if obs_all or obs_mask[smetric[k]]:
                a = offsets[k]
                b = _end_at(ts, a, offsets[k + 1], has_until, until)
                if b > a:
                    n_obs += b - a
                    first = min(first, ts[a])
                    last = max(last, ts[b - 1])
        if every > 0:
            lo = first
            if has_until and start[p] != NO_START:
                lo = min(lo, start[p])
            hi = until if has_until else (last if n_obs > 0 else -_MAX)
            if lo != _MAX and hi != -_MAX:
                t0 = -((-lo) // every) * every          # the first multiple of every >= lo
                if t0 <= hi:
                    tick0[p] = t0
                    nticks[p] = (hi - t0) // every + 1
        cap[p] = (n_obs if obs_times else 0) + nticks[p]
    return cap, tick0, nticks


@njit(**JIT)
def _merge(src, a, m, b, dst):
    """Merge the sorted runs ``src[a:m]`` and ``src[m:b]`` into ``dst[a:b]``."""
    i, j, k = a, m, a
    while i < m and j < b:
        if src[j] < src[i]:
            dst[k] = src[j]
            j += 1
        else:
            dst[k] = src[i]
            i += 1
        k += 1
    while i < m:
        dst[k] = src[i]
        i += 1
        k += 1
    while j < b:
        dst[k] = src[j]
        j += 1
        k += 1


@njit(**JIT)
def _sorted_runs(buf, tmp, bounds, nr):
    """Merge ``nr`` sorted runs of ``buf`` (run ``i`` is ``bounds[i]:bounds[i+1]``) pairwise
    until one is left; returns the array holding it (``buf`` or ``tmp``)."""
    src, dst = buf, tmp
    b = bounds.copy()
    while nr > 1:
        out = 0
        for i in range(0, nr, 2):
            if i + 1 < nr:
                _merge(src, b[i], b[i + 1], b[i + 2], dst)
            else:
                dst[b[i]:b[i + 1]] = src[b[i]:b[i + 1]]
            b[out] = b[i]
            out += 1
        b[out] = b[nr]
        nr = out
        src, dst = dst, src
    return src


@njit(**JIT_PARALLEL)
def times(ts, offsets, pser, smetric, in_scope, obs_all, obs_mask, every, has_until, until,
          cap_off, tick0, nticks, buf, obs_times=True):
    """Write each patient's sorted, distinct timeline times at the start of its region
    ``buf[cap_off[p]:cap_off[p+1]]``; returns their number per patient."""
    n_pat = pser.size - 1
    count = np.zeros(n_pat, np.int64)
    for p in prange(n_pat):
        c0, c1 = cap_off[p], cap_off[p + 1]
        if c1 == c0:
            continue
        length = c1 - c0
        run = np.empty(length, np.int64)
        bounds = np.empty(pser[p + 1] - pser[p] + 2, np.int64)
        nr, w = 0, 0
        for k in range(pser[p], pser[p + 1]):
            if obs_times and (obs_all or obs_mask[smetric[k]]):
                a = offsets[k]
                b = _end_at(ts, a, offsets[k + 1], has_until, until)
                if b > a:
                    bounds[nr] = w
                    nr += 1
                    for i in range(a, b):
                        run[w] = ts[i]
                        w += 1
        if nticks[p] > 0:
            bounds[nr] = w
            nr += 1
            for i in range(nticks[p]):
                run[w] = tick0[p] + i * every
                w += 1
        bounds[nr] = w
        out = _sorted_runs(run, np.empty(length, np.int64), bounds, nr)
        n = 0
        for i in range(w):
            if n == 0 or out[i] != buf[c0 + n - 1]:
                buf[c0 + n] = out[i]
                n += 1
        count[p] = n
    return count


@njit(**JIT_PARALLEL)
def compact(buf, cap_off, count, tl_off, tl_ts, tl_pat):
    """Copy each patient's times from its region of ``buf`` to the timeline arrays."""
    for p in prange(count.size):
        a, c = tl_off[p], cap_off[p]
        for i in range(count[p]):
            tl_ts[a + i] = buf[c + i]
            tl_pat[a + i] = p


@njit(**JIT)
def round9(v):
    """``v`` rounded to 9 decimals, half to even, as polars' ``round(9)`` does (a value too
    large to scale is returned as it is)."""
    y = v * 1e9
    if not np.isfinite(y):
        return v
    return np.rint(y) / 1e9


@njit(**JIT_PARALLEL)
def validity(out, valid):
    """Arrow validity bits of each row of ``out`` (bit ``i % 8`` of byte ``i // 8``: not NaN)."""
    n = out.shape[1]
    nbytes = (n + 7) >> 3
    for c in range(out.shape[0]):
        row = out[c]
        vrow = valid[c]
        for byte in prange(nbytes):
            bits = 0
            a = byte << 3
            for i in range(a, min(a + 8, n)):
                v = row[i]
                if v == v:
                    bits |= 1 << (i - a)
            vrow[byte] = bits


@njit(**dict(JIT, cache=False))    # compiled into its callers only: no cache entry of its own
def _set_times(ts, offsets, smetric, s0, s1, any_metric, mask):
    """The sorted times of the readings of a patient's series ``s0..s1`` whose metric is in the
    set (``any_metric``, else ``mask[m]``)."""
    total, nr = 0, 0
    for k in range(s0, s1):
        if any_metric or mask[smetric[k]]:
            total += offsets[k + 1] - offsets[k]
            nr += 1
    buf = np.empty(total, np.int64)
    bounds = np.empty(nr + 1, np.int64)
    w, r = 0, 0
    for k in range(s0, s1):
        if any_metric or mask[smetric[k]]:
            bounds[r] = w
            r += 1
            for i in range(offsets[k], offsets[k + 1]):
                buf[w] = ts[i]
                w += 1
    bounds[nr] = w
    if nr <= 1:
        return buf
    return _sorted_runs(buf, np.empty(total, np.int64), bounds, nr)


@njit(**JIT_PARALLEL)
def columns(ts, x, offsets, pser, smetric, spos, start, tl_off, tl_ts, ckind, cmetric,
            cany, csets, cbase, cstale, flat, out, order, source, need):
    """Fill ``out[c, i]``, column ``c`` at timeline row ``i`` (NaN: null). Only the patients
    ``p`` with ``need[c, p]`` are computed; the others' rows of column ``c`` are null.

    Column ``c`` is of kind ``ckind[c]``:

    * RAW: the latest reading of metric ``cmetric[c]`` at or before the time, null when older
      than ``cstale[c]`` µs (inclusive);
    * DET: the same row's detector output, read at ``flat[cbase[c] + spos[k] + row - offsets[k]]``
      (series ``k``, ``spos`` its position in its metric's block), rounded to 9 decimals
      (:func:`round9`) as rules compare it;
    * SILENCE: minutes since the latest reading of a metric in the set (``cany[c]``: any metric;
      else ``csets[c, m]``), a reading at the time itself counting; when there is none, since
      the patient's ``start`` if it is not later; else null;
    * FRESH: 1.0 when a metric of the set has a reading at exactly the time, else 0.0.

    Columns are filled in the order ``order``, in which columns of the same ``source`` (the
    metric of a RAW or DET column, the metric set of a SILENCE or FRESH one: equal sources,
    equal ids) follow each other: a patient's as-of reading of each timeline time (RAW, DET)
    or latest reading of the set (SILENCE, FRESH) is found once per source and shared by its
    columns, rather than walked again for each (a pack reads ten detectors of one metric).
    """
    n_pat = pser.size - 1
    n_cols = ckind.size
    for p in prange(n_pat):
        t0, t1 = tl_off[p], tl_off[p + 1]
        if t1 == t0:
            continue
        s0, s1 = pser[p], pser[p + 1]
        row = np.empty(t1 - t0, np.int64)     # RAW, DET: the as-of row (< a: none)
        age = np.empty(t1 - t0, np.int64)     # its age at the time (µs)
        last = np.empty(t1 - t0, np.int64)    # SILENCE, FRESH: the latest reading's time
        held = -1                             # the source row/age or last now hold
        k, a = -1, 0
        for q in range(n_cols):
            c = order[q]
            kind = ckind[c]
            o = out[c]
            if not need[c, p]:
                for i in range(t0, t1):
                    o[i] = np.nan
                continue
            if kind == RAW or kind == DET:
                if source[c] != held:
                    held = source[c]
                    k = -1
                    for j in range(s0, s1):
                        if smetric[j] == cmetric[c]:
                            k = j
                    if k >= 0:
                        a, b = offsets[k], offsets[k + 1]
                        j = a
                        for i in range(t0, t1):
                            t = tl_ts[i]
                            while j < b and ts[j] <= t:
                                j += 1
                            row[i - t0] = j - 1
                            age[i - t0] = t - ts[j - 1] if j > a else 0
                if k < 0:
                    for i in range(t0, t1):
                        o[i] = np.nan
                    continue
                stale = cstale[c]
                if kind == RAW:
                    for i in range(t0, t1):
                        r = row[i - t0]
                        o[i] = np.nan if r < a or age[i - t0] > stale else x[r]
                else:
                    at = cbase[c] + spos[k] - a
                    for i in range(t0, t1):
                        r = row[i - t0]
                        o[i] = np.nan if r < a or age[i - t0] > stale else round9(flat[at + r])
            else:
                if source[c] != held:
                    held = source[c]
                    seen = _set_times(ts, offsets, smetric, s0, s1, cany[c], csets[c])
                    j = 0
                    best = -_MAX
                    for i in range(t0, t1):
                        t = tl_ts[i]
                        while j < seen.size and seen[j] <= t:
                            best = seen[j]
                            j += 1
                        last[i - t0] = best
                for i in range(t0, t1):
                    t = tl_ts[i]
                    best = last[i - t0]
                    if kind == FRESH:
                        o[i] = 1.0 if best == t else 0.0
                    else:
                        since = best
                        if since == -_MAX and start[p] != NO_START and start[p] <= t:
                            since = start[p]
                        o[i] = np.nan if since == -_MAX else (t - since) / US_PER_MINUTE


@njit(**JIT_PARALLEL)
def local_clock(ts, patient, zone, need, first_hour, grid, hour, dow, exact):
    """Local hour of day (a decimal, to the second) and ISO day of week (1 = Monday) of each µs
    time ``ts[i]`` of a patient ``p = patient[i]`` with ``need[p]`` (NaN for the others) in
    zone ``zone[p]``, whose UTC offset (µs) at each whole hour from
    ``first_hour`` is ``grid[zone, hour - first_hour]``. A time in an hour where its zone's
    offset changes gets ``exact[i] = True`` and must be recomputed from its exact offset (the
    caller does: a clock change is a few rows a year).

    Times and local times are after 1970 (the engine's are after 2000), so the arithmetic is
    unsigned: a third faster than signed floor division."""
    hour_us = np.uint64(3_600_000_000)
    day_us = np.uint64(86_400_000_000)
    second_us = np.uint64(1_000_000)
    first = np.uint64(first_hour)
    for i in prange(ts.size):
        if not need[patient[i]]:
            hour[i] = np.nan
            dow[i] = np.nan
            exact[i] = False
            continue
        k = np.uint64(ts[i]) // hour_us - first
        z = zone[patient[i]]
        off = grid[z, k]
        exact[i] = off != grid[z, k + np.uint64(1)]
        local = np.uint64(ts[i] + off)
        day = local // day_us
        hour[i] = np.float64((local - day * day_us) // second_us) / 3600.0
        # 1970-01-01, day 0, was a Thursday (ISO 4)
        dow[i] = np.float64((day + np.uint64(3)) % np.uint64(7)) + 1.0
