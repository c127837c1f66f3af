"""One numba pass that runs many detector specs over every series, while the series is in cache.

Why: evaluating one kernel per spec re-read ``ts`` and ``x`` (16 B/row) for every spec, allocated
each output inside numba (no huge pages: a page fault per 4 KiB, ~40 ms per 80 MB column), wrote
it with ordinary stores (each output cache line is first read back, "read-for-ownership") and
then had polars scan it again for NaN. :func:`fused` loops once over the series (``prange`` over
chunks of series) and, for each series, runs every requested detector's per-series function on
the series' rows (a few KB, in L1/L2) into a small scratch buffer; it then streams the buffer to
the output (allocated outside numba, in Arrow memory, :mod:`engine.arrow_buffers`, or in the
pool of :mod:`engine.memory`) with non-temporal stores, writing the output's Arrow validity bits
(NaN → null) on the way (:mod:`.intrinsics`), so that each output row becomes a polars column
without another pass. What remains is the detectors' own work, whose main cost is finding each
window's first row, a chain of dependent loads per window (:func:`.kernels_window._advance`);
``OP_SWEEP`` runs the window statistics of a metric in one loop, where those chains overlap.

The per-series functions are the very ones the one-spec kernels of :mod:`.kernels_window` and
:mod:`.kernels_stateful` run, called on the series' slice (rows ``0..m``), so the fused outputs
equal the one-spec outputs bit for bit (tested).

A spec set is encoded as arrays (built by :mod:`.fused` from resolved specs):

``ops``     int64[p]     the opcode of each op (``OP_*`` below)
``groups``  int64[p]     the series group (metric) the op runs on; -1: every series. On the
                         series of other groups the op's output is null.
``rows``    int64[p, 4]  output rows the op writes, -1 for none: one for most ops, two for the
                         pairs ``OP_MEAN_STD`` (mean, std) and ``OP_MIN_MAX`` (min, max), up
                         to four for ``OP_SWEEP`` (std, sum, min, max)
``ip``      int64[p, 6]  the op's duration and int parameters, in the registry's order
``fp``      float64[p, 2] its float parameters, in the registry's order

The window statistics (sum ... slope, and the pairs) read their window from ``ip[0]`` and their
lag from ``ip[1]``: a spec without a lag (the plain form of the detector, see
:mod:`.registry`) has no second int parameter, and the zero padding of ``ip`` is its lag 0.
``OP_SWEEP`` runs, at lag 0 and in one sweep of the series (:func:`.kernels_window.
_sweep_series`), a std over ``ip[0]`` µs (-1 for none; output ``rows[0]``), a sum, mean or
count over ``ip[2]`` µs (``ip[3]``: ``kernels_window.SUM``, ``MEAN`` or ``COUNT``; -1 for none; output
``rows[1]``) and a min and/or max over ``ip[4]`` µs (``ip[5]``: ``kernels_window.MIN``, ``MAX``
or ``BOTH``; -1 for none; outputs ``rows[2]``, ``rows[3]``): two of the three kinds, or all.
:mod:`.fused` builds them from a metric's lag-0 statistics.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL
from . import kernels_stateful as ks
from . import kernels_window as kw
from .intrinsics import store_fence, stream_copy, valid8

(OP_SUM, OP_MEAN, OP_COUNT, OP_STD, OP_MEAN_STD, OP_MIN, OP_MAX, OP_MEDIAN, OP_DELTA,
 OP_PCT_CHANGE, OP_SLOPE, OP_SINCE_LAST, OP_SILENCE, OP_EWMA, OP_MACD, OP_CUSUM_UP,
 OP_CUSUM_DOWN, OP_ZSCORE, OP_TIME_ABOVE, OP_TIME_BELOW, OP_EVENTS_BELOW, OP_EVENTS_ABOVE,
 OP_TIME_IN_RANGE, OP_COVERAGE, OP_MIN_MAX, OP_PREVIOUS, OP_MINUTES_ABOVE,
 OP_MINUTES_BELOW, OP_SWEEP) = range(29)
#: widths of the parameter arrays (the most duration/int and float params of any op)
N_INT_PARAMS, N_FLOAT_PARAMS = 6, 2
#: the most output rows of one op (``OP_SWEEP``)
N_OUTPUTS = 4
#: series longer than this are computed straight into the output (ordinary stores) rather than
#: through the scratch buffer, which then stays small (4 x 64 Ki float64 = 2 MiB at most)
SCRATCH_ROWS = 1 << 16


@njit(**JIT)
def _window_op(op, window, lag, ts, x, m, d0, d1, work):
    """Run the window statistic ``op`` (:func:`_is_window_op`) with ``window`` and ``lag`` µs.

    :func:`_run_op` calls it with a literal 0 for lag 0, so that numba compiles a
    specialisation for it in which the lagged paths of the window functions are dead code:
    without it the branch on the lag, taken at run time, cost the plain detectors 10 to 30 %.
    """
    if op == OP_MEAN:
        if lag == 0:        # called directly: through _sum_series it ran 40 % slower here
            kw._sum_series_prefix(ts, x, 0, m, window, kw.MEAN, d0, work)
        else:
            kw._sum_series(ts, x, 0, m, window, lag, kw.MEAN, d0)
    elif op == OP_MIN_MAX:
        kw._minmax_series(ts, x, 0, m, window, lag, d0, d1, kw.BOTH)
    elif op == OP_MIN:
        kw._minmax_series(ts, x, 0, m, window, lag, d0, d0, kw.MIN)
    elif op == OP_MAX:
        kw._minmax_series(ts, x, 0, m, window, lag, d0, d0, kw.MAX)
    elif op == OP_STD:
        if lag == 0:
            kw._sweep_series(ts, x, 0, m, window, d0, d0, False, work, window, kw.MEAN, 0, -1,
                             d0, d0, True)
        else:
            kw._std_series(ts, x, 0, m, window, lag, d0, d0, False)
    elif op == OP_MEAN_STD:         # lagged: at lag 0 the plan makes a mean and a std a sweep
        kw._std_series(ts, x, 0, m, window, lag, d0, d1, True)
    elif op == OP_DELTA:
        kw._change_series(ts, x, 0, m, window, lag, kw.DELTA, d0)
    elif op == OP_SUM:
        if lag == 0:
            kw._sum_series_prefix(ts, x, 0, m, window, kw.SUM, d0, work)
        else:
            kw._sum_series(ts, x, 0, m, window, lag, kw.SUM, d0)
    elif op == OP_COUNT:
        if lag == 0:
            kw._sum_series_prefix(ts, x, 0, m, window, kw.COUNT, d0, work)
        else:
            kw._sum_series(ts, x, 0, m, window, lag, kw.COUNT, d0)
    elif op == OP_MEDIAN:
        kw._median_series(ts, x, 0, m, window, lag, d0)
    elif op == OP_PCT_CHANGE:
        kw._change_series(ts, x, 0, m, window, lag, kw.PCT_CHANGE, d0)
    else:
        kw._slope_series(ts, x, 0, m, window, lag, d0)


@njit(**JIT)
def _is_window_op(op):
    """True for the window statistics (sum ... slope, and the pairs): window ``ip[0]``, lag
    ``ip[1]``."""
    return op <= OP_SLOPE or op == OP_MIN_MAX


@njit(**JIT)
def _run_op(op, ip, fp, ts, x, m, d0, d1, d2, d3, ibuf, work):
    """Run one op on one series (rows ``0..m`` of the slices ``ts``, ``x``) into its outputs
    ``d0`` (``d1`` ... ``d3``: see ``rows``).

    Outputs the one-spec kernels pre-fill (NaN or 0) are pre-filled here the same way, so every
    row of ``d0`` is written. ``ibuf`` (int64[>= m]) and ``work`` (float64[9, >= m + 1]) are
    scratch the chunk allocates once for all its series.
    """
    if _is_window_op(op):
        if ip[1] == 0:
            _window_op(op, ip[0], 0, ts, x, m, d0, d1, work)
        else:
            _window_op(op, ip[0], ip[1], ts, x, m, d0, d1, work)
    elif op == OP_SWEEP:
        kw._sweep_series(ts, x, 0, m, ip[0], d1, d0, ip[3] >= 0, work, ip[2], ip[3], ip[4],
                         ip[5], d2, d3, ip[0] >= 0)
    elif op == OP_SINCE_LAST:
        kw._gap_series(ts, x, 0, m, np.int64(0), False, d0)
    elif op == OP_ZSCORE:
        d0[:] = np.nan
        ks._zscore_series(ts, x, d0, 0, m, ip[0], ip[1], ip[2])
    elif op == OP_TIME_ABOVE:
        d0[:] = np.nan
        ks._time_beyond_series(ts, x, d0, 0, m, fp[0], ip[0], ip[1], 1.0)
    elif op == OP_TIME_BELOW:
        d0[:] = np.nan
        ks._time_beyond_series(ts, x, d0, 0, m, fp[0], ip[0], ip[1], -1.0)
    elif op == OP_SILENCE:
        kw._gap_series(ts, x, 0, m, ip[0], True, d0)
    elif op == OP_EWMA:
        d0[:] = 0.0
        ks._ewma_into(ts, x, d0, 0, m, ip[0], 1.0)
    elif op == OP_MACD:
        d0[:] = 0.0
        ks._ewma_into(ts, x, d0, 0, m, ip[0], 1.0)
        ks._ewma_into(ts, x, d0, 0, m, ip[1], -1.0)
    elif op == OP_CUSUM_UP:
        d0[:] = np.nan
        ks._cusum_series(ts, x, d0, 0, m, ip[0], fp[0], 1.0)
    elif op == OP_CUSUM_DOWN:
        d0[:] = np.nan
        ks._cusum_series(ts, x, d0, 0, m, ip[0], fp[0], -1.0)
    elif op == OP_EVENTS_BELOW:
        d0[:] = 0.0
        ks._events_series(ts, x, d0, ibuf, 0, m, fp[0], ip[0], ip[1], ip[2], fp[1], ip[3], ip[4],
                          -1.0)
    elif op == OP_EVENTS_ABOVE:
        d0[:] = 0.0
        ks._events_series(ts, x, d0, ibuf, 0, m, fp[0], ip[0], ip[1], ip[2], fp[1], ip[3], ip[4],
                          1.0)
    elif op == OP_TIME_IN_RANGE:
        d0[:] = np.nan
        ibuf[:m] = 0
        ks._held_time_series(ts, x, d0, ibuf, 0, m, fp[0], fp[1], ip[0], ip[1], False)
    elif op == OP_COVERAGE:
        d0[:] = np.nan
        ibuf[:m] = 0
        ks._held_time_series(ts, x, d0, ibuf, 0, m, -np.inf, np.inf, ip[0], ip[1], True)
    elif op == OP_PREVIOUS:
        kw._previous_series(ts, x, 0, m, ip[0], d0)
    elif op == OP_MINUTES_ABOVE:
        d0[:] = np.nan
        ks._minutes_beyond_series(ts, x, d0, ibuf, 0, m, fp[0], ip[0], ip[1], ip[2], 1.0)
    elif op == OP_MINUTES_BELOW:
        d0[:] = np.nan
        ks._minutes_beyond_series(ts, x, d0, ibuf, 0, m, fp[0], ip[0], ip[1], ip[2], -1.0)
    else:
        d0[:] = np.nan          # unknown opcode: cannot happen (fused.py builds the codes)


@njit(**JIT)
def _first_unsorted(ts, a):
    """``a`` + the first index of ``ts`` whose value is below the previous one, or -1.

    The whole series is scanned without an early exit, so that the loop vectorises; it also
    brings the series' times into cache for the ops that follow.
    """
    back = False
    for j in range(1, ts.size):
        back |= ts[j] < ts[j - 1]
    if back:
        for j in range(1, ts.size):
            if ts[j] < ts[j - 1]:
                return a + j
    return -1


@njit(**JIT)
def _valid_bits(d, a, b, vrow, part, k):
    """Arrow validity bits (1 = not NaN) of rows ``a..b`` whose values are ``d[0..b-a]``.

    Bytes of ``vrow`` whose 8 rows all lie in ``a..b`` are written here; the (at most two) bytes
    this series shares with its neighbours get this series' bits in ``part[2k]`` (first byte) and
    ``part[2k+1]`` (last byte), ORed together by :func:`merge_shared_bytes` once every series is
    done, so that no two threads write the same byte.
    """
    first, last = a >> 3, (b - 1) >> 3
    for byte in range((a + 7) >> 3, b >> 3):
        vrow[byte] = valid8(d, (byte << 3) - a)
    part[2 * k] = 0
    part[2 * k + 1] = 0
    if _first_shared(a, b):
        bits = 0
        for i in range(a, min(b, (first + 1) << 3)):
            v = d[i - a]
            if v == v:
                bits |= 1 << (i & 7)
        part[2 * k] = bits
    if _last_shared(a, b):
        bits = 0
        for i in range(last << 3, b):
            v = d[i - a]
            if v == v:
                bits |= 1 << (i & 7)
        part[2 * k + 1] = bits


@njit(**JIT)
def _first_shared(a, b):
    """True when the first validity byte of rows ``a..b`` (``a < b``) holds rows of other series."""
    first = a >> 3
    return (first << 3) < a or ((first + 1) << 3) > b


@njit(**JIT)
def _last_shared(a, b):
    """True when the last byte of rows ``a..b`` is not the first and holds rows after ``b``."""
    last = (b - 1) >> 3
    return last != (a >> 3) and ((last + 1) << 3) > b


@njit(**JIT_PARALLEL)
def merge_shared_bytes(offsets, part, valid):
    """Write the validity bytes shared by neighbouring series (see :func:`_valid_bits`).

    Shared bytes come in increasing order as ``k`` increases, so one sweep ORs together the bits
    of the series that share each byte.
    """
    for r in prange(valid.shape[0]):
        cur, acc = -1, 0
        for h in range(2 * (offsets.size - 1)):
            k = h >> 1
            a, b = offsets[k], offsets[k + 1]
            if a == b:
                continue
            if h & 1 == 0:
                if not _first_shared(a, b):
                    continue
                byte = a >> 3
            else:
                if not _last_shared(a, b):
                    continue
                byte = (b - 1) >> 3
            if byte != cur:
                if cur >= 0:
                    valid[r, cur] = acc
                cur, acc = byte, 0
            acc |= part[r, h]
        if cur >= 0:
            valid[r, cur] = acc


@njit(**JIT)
def _chunk_scratch(offsets, s0, s1):
    """The scratch a chunk of series ``s0..s1`` allocates once for all of them: ``(cap,
    scratch float64[N_OUTPUTS, cap], ibuf int64[longest], work float64[9, longest + 1])``,
    ``cap`` the rows a series may have to go through ``scratch`` (longer ones are written in
    place) and ``work`` the prefix sums of the window statistics."""
    longest = 0
    for k in range(s0, s1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    cap = min(longest, SCRATCH_ROWS)
    return (cap, np.empty((N_OUTPUTS, cap)), np.empty(longest, dtype=np.int64),
            np.empty((9, longest + 1)))


@njit(**JIT)
def _run_into(op, ip, fp, tsk, xk, m, ok, flat, scratch, starts, direct, ibuf, work):
    """Run op ``op`` on a series into its outputs, which start at ``starts[t]`` of ``flat``
    (-1: none; the output then aliases the first present one, and is never written): in place when
    ``direct``, else into the rows of ``scratch``, for the caller to copy. A series whose times
    go back (``ok`` False) gets NaN.

    The four outputs are sliced here, in one branch or the other: taken from a helper that
    returned either slice, they made the min and max run 3x slower (measured, 29 against 9 ns
    a row on one thread; the slices' types were the same, so the cost is in the code LLVM
    made of the returned arrays)."""
    if direct:
        first = starts[0]
        for t in range(1, N_OUTPUTS):
            first = starts[t] if first < 0 else first
        e0 = starts[0] if starts[0] >= 0 else first
        e1 = starts[1] if starts[1] >= 0 else first
        e2 = starts[2] if starts[2] >= 0 else first
        e3 = starts[3] if starts[3] >= 0 else first
        d0, d1, d2, d3 = flat[e0:e0 + m], flat[e1:e1 + m], flat[e2:e2 + m], flat[e3:e3 + m]
    else:
        d0, d1, d2, d3 = scratch[0, :m], scratch[1, :m], scratch[2, :m], scratch[3, :m]
    if ok:
        _run_op(op, ip, fp, tsk, xk, m, d0, d1, d2, d3, ibuf, work)
    else:
        d0[:] = np.nan
        d1[:] = np.nan
        d2[:] = np.nan
        d3[:] = np.nan


@njit(**JIT_PARALLEL)
def fused(ts, x, offsets, series_group, chunks, ops, groups, rows, ip, fp, out, valid, part,
          unsorted):
    """Run the ops of a spec set over every series; fill ``out``, ``valid``, ``part``, ``unsorted``.

    Parameters
    ----------
    ts, x
        The readings (module :mod:`.registry`).
    offsets
        Series ``k`` is rows ``offsets[k]:offsets[k+1]`` of ``ts`` and ``x``, and its outputs
        the same columns of ``out``.
    series_group : int64[s]
        The group (metric) of each series, matched against ``groups``.
    chunks : int64[c+1]
        Chunk ``q`` is the series ``chunks[q]:chunks[q+1]``; ``prange`` runs over chunks, which
        allocate their scratch once.
    ops, groups, rows, ip, fp
        The spec set (module docstring).
    out : float64[r, n]
        Output rows (every element written; NaN where undefined or where the op does not apply).
    valid : uint8[r, (n + 7) // 8]
        Arrow validity bitmaps of the output rows (bit ``i % 8`` of byte ``i // 8``: row ``i``
        is not NaN), complete once :func:`merge_shared_bytes` has run.
    part : uint8[r, 2 s]
        Scratch for the validity bytes shared by neighbouring series.
    unsorted : int64[s]
        For each series, its first row (of ``ts``) whose time is earlier than the previous
        row's, or -1. The ops skip such a series (their window pointers assume sorted times),
        so the caller must raise rather than use the outputs when any is >= 0.
    """
    n = x.size
    flat = out.reshape(out.size)
    for q in prange(chunks.size - 1):
        s0, s1 = chunks[q], chunks[q + 1]
        cap, scratch, ibuf, work = _chunk_scratch(offsets, s0, s1)
        starts = np.empty(N_OUTPUTS, dtype=np.int64)
        for k in range(s0, s1):
            a, b = offsets[k], offsets[k + 1]
            m = b - a
            unsorted[k] = -1
            if m == 0:
                continue
            tsk, xk = ts[a:b], x[a:b]
            unsorted[k] = _first_unsorted(tsk, a)
            ok = unsorted[k] < 0
            direct = m > cap
            for j in range(ops.size):
                for t in range(N_OUTPUTS):
                    starts[t] = rows[j, t] * n + a if rows[j, t] >= 0 else -1
                mine = groups[j] < 0 or groups[j] == series_group[k]
                _run_into(ops[j], ip[j], fp[j], tsk, xk, m, ok and mine, flat, scratch,
                          starts, direct, ibuf, work)
                for t in range(N_OUTPUTS):
                    r = rows[j, t]
                    if r >= 0 and direct:
                        _valid_bits(flat[starts[t]:starts[t] + m], a, b, valid[r], part[r], k)
                    elif r >= 0:
                        _valid_bits(scratch[t, :m], a, b, valid[r], part[r], k)
                        stream_copy(scratch[t, :m], out[r, a:b])
        store_fence()


@njit(**JIT_PARALLEL)
def fused_blocks(ts, x, offsets, series_group, position, chunks, group_ops, ops, dest, ip, fp,
                 flat, unsorted):
    """:func:`fused` for outputs laid out per metric block, every block in one pass.

    The series are read in their own order (``offsets``, all metrics interleaved as clean
    telemetry holds them) and each runs only the ops of its group: ``group_ops[g]:group_ops
    [g+1]`` are the ops of group ``g = series_group[k]`` (a series whose group is -1 runs none).
    Op ``j`` writes its output ``t`` at ``flat[dest[j, t] + position[k] + i]`` (-1: the op has
    no output ``t``, see ``rows`` in the module docstring): ``dest`` is where the op's row of
    its block starts, ``position[k]`` where series ``k`` starts in its block. No validity bits:
    NaN marks undefined outputs. ``unsorted`` as in :func:`fused` (the outputs of an unsorted
    series are NaN). Compared with one :func:`fused` call per block, the threads meet once
    rather than once a block, and the readings are read in order.
    """
    for q in prange(chunks.size - 1):
        s0, s1 = chunks[q], chunks[q + 1]
        cap, scratch, ibuf, work = _chunk_scratch(offsets, s0, s1)
        starts = np.empty(N_OUTPUTS, dtype=np.int64)
        for k in range(s0, s1):
            unsorted[k] = -1
            g = series_group[k]
            if g < 0 or group_ops[g] == group_ops[g + 1] or offsets[k] == offsets[k + 1]:
                continue                 # no detector of this metric, or no reading
            a, b = offsets[k], offsets[k + 1]
            m = b - a
            tsk, xk = ts[a:b], x[a:b]
            unsorted[k] = _first_unsorted(tsk, a)
            ok = unsorted[k] < 0
            direct = m > cap
            at = position[k]
            for j in range(group_ops[g], group_ops[g + 1]):
                for t in range(N_OUTPUTS):
                    starts[t] = dest[j, t] + at if dest[j, t] >= 0 else -1
                _run_into(ops[j], ip[j], fp[j], tsk, xk, m, ok, flat, scratch, starts, direct,
                          ibuf, work)
                if not direct:
                    for t in range(N_OUTPUTS):
                        if starts[t] >= 0:
                            stream_copy(scratch[t, :m], flat[starts[t]:starts[t] + m])
        store_fence()
