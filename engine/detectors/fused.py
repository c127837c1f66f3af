"""Run a set of resolved specs in one fused kernel pass and return them as polars columns.

:func:`plan` encodes the specs as the opcode and parameter arrays of
:func:`engine.detectors.kernels_fused.fused` (a mean and a std, or a min and a max, of the
same window and metric become one op; so do two or three of a std, a sum, mean or count and
a min and max of one metric at lag 0, whatever their windows), :func:`run` calls it over a
:class:`~engine.detectors.evaluate.SeriesView` and wraps each output row, with the validity
bitmap the kernel wrote, as a Float64 polars Series without copying (NaN outputs are nulls).

Only the detectors listed in :data:`OPCODES` are fused (all registered ones); a detector
registered later with another kernel is not, and :mod:`.evaluate` runs its kernel on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from . import kernels_fused as kf
from . import kernels_stateful as ks
from . import kernels_window as kw
from .. import arrow_buffers
from .registry import FLOAT, frozen
from .spec import ResolvedSpec

#: one-spec kernel -> the fused opcode computing the same output. A window statistic has two
#: kernels, the plain one (no lag) and its lagged twin, and one opcode: the lag is ``ip[1]``,
#: 0 (the padding) for the plain kernel, whose specs have no lag parameter
OPCODES = {
    kw.rolling_sum: kf.OP_SUM, kw.rolling_mean: kf.OP_MEAN, kw.rolling_count: kf.OP_COUNT,
    kw.rolling_std: kf.OP_STD, kw.rolling_min: kf.OP_MIN, kw.rolling_max: kf.OP_MAX,
    kw.rolling_median: kf.OP_MEDIAN, kw.delta: kf.OP_DELTA, kw.pct_change: kf.OP_PCT_CHANGE,
    kw.slope: kf.OP_SLOPE,
    kw.rolling_sum_lagged: kf.OP_SUM, kw.rolling_mean_lagged: kf.OP_MEAN,
    kw.rolling_count_lagged: kf.OP_COUNT, kw.rolling_std_lagged: kf.OP_STD,
    kw.rolling_min_lagged: kf.OP_MIN, kw.rolling_max_lagged: kf.OP_MAX,
    kw.rolling_median_lagged: kf.OP_MEDIAN, kw.delta_lagged: kf.OP_DELTA,
    kw.pct_change_lagged: kf.OP_PCT_CHANGE, kw.slope_lagged: kf.OP_SLOPE,
    kw.since_last: kf.OP_SINCE_LAST, kw.silence: kf.OP_SILENCE, kw.previous: kf.OP_PREVIOUS,
    ks.ewma: kf.OP_EWMA, ks.macd: kf.OP_MACD, ks.cusum_up: kf.OP_CUSUM_UP,
    ks.cusum_down: kf.OP_CUSUM_DOWN, ks.zscore: kf.OP_ZSCORE, ks.time_above: kf.OP_TIME_ABOVE,
    ks.time_below: kf.OP_TIME_BELOW, ks.events_below: kf.OP_EVENTS_BELOW,
    ks.events_above: kf.OP_EVENTS_ABOVE, ks.time_in_range: kf.OP_TIME_IN_RANGE,
    ks.coverage: kf.OP_COVERAGE, ks.minutes_above: kf.OP_MINUTES_ABOVE,
    ks.minutes_below: kf.OP_MINUTES_BELOW,
}
#: (first, second, pair opcode): a first and a second of the same metric, window and lag share
#: one pass; plain and lagged kernels alike (a plain spec's lag is 0)
PAIRS = (
    ((kw.rolling_mean, kw.rolling_mean_lagged), (kw.rolling_std, kw.rolling_std_lagged),
     kf.OP_MEAN_STD),
    ((kw.rolling_min, kw.rolling_min_lagged), (kw.rolling_max, kw.rolling_max_lagged),
     kf.OP_MIN_MAX),
)
#: statistics of three kinds at lag 0, a std, a sum, mean or count, and a min and/or max, run in
#: one sweep (``OP_SWEEP``) when a metric has two kinds or three, whatever their windows (see
#: :func:`_sweeps`): the kernels of each kind (plain, or lagged with a lag of 0), and for a sum
#: its ``what``
STDS = (kw.rolling_std, kw.rolling_std_lagged)
SUMS = {kw.rolling_sum: kw.SUM, kw.rolling_sum_lagged: kw.SUM,
        kw.rolling_mean: kw.MEAN, kw.rolling_mean_lagged: kw.MEAN,
        kw.rolling_count: kw.COUNT, kw.rolling_count_lagged: kw.COUNT}
MINS = (kw.rolling_min, kw.rolling_min_lagged)
MAXS = (kw.rolling_max, kw.rolling_max_lagged)
#: rows per chunk of series handed to one prange iteration: at least this many, so that a
#: chunk's scratch allocation is amortised, and about 16 chunks per thread for load balance
CHUNK_ROWS_MIN = 16_384
CHUNKS_PER_THREAD = 16


def fusable(spec: ResolvedSpec) -> bool:
    """True when ``spec``'s detector has a fused opcode."""
    return spec.detector.kernel in OPCODES


@dataclass(frozen=True)
class Plan:
    """A spec set encoded for :func:`engine.detectors.kernels_fused.fused`.

    Attributes
    ----------
    names : tuple of str
        The spec (output column) of each output row.
    ops, groups, rows, ip, fp : np.ndarray
        The kernel's op arrays (see :mod:`.kernels_fused`); ``groups`` index ``metrics``.
    metrics : tuple of str
        The metric of each group id (specs applied to every metric have group -1).
    """

    names: tuple
    ops: np.ndarray
    groups: np.ndarray
    rows: np.ndarray
    ip: np.ndarray
    fp: np.ndarray
    metrics: tuple


def _params(spec: ResolvedSpec):
    """(int params, float params) of ``spec`` in the registry's order, durations in µs."""
    ints = [spec.params[p.name] for p in spec.detector.params if p.kind != FLOAT]
    floats = [spec.params[p.name] for p in spec.detector.params if p.kind == FLOAT]
    return ints, floats


def _window_key(spec: ResolvedSpec) -> tuple:
    """(metric, window, lag) of a window statistic; no "lag" in a plain spec's params is 0."""
    return spec.metric, spec.params["window"], spec.params.get("lag", 0)


def _sweeps(specs) -> list:
    """The sweeps of lag-0 statistics: ``[(std, sum, min, max)]``, each the spec of a std, a
    sum, mean or count, a min, a max of one metric (any windows; min and max of one window), or
    None, with at least two of the three kinds (std, sum, min/max) present: taken in spec order,
    as long as a metric has specs of two kinds left."""
    pools = {}                  # metric -> {"std": [...], "sum": [...], "min": [...], ...}
    for s in specs:
        if s.params.get("lag", 0) != 0:
            continue
        kernel = s.detector.kernel
        kind = ("std" if kernel in STDS else "sum" if kernel in SUMS else
                "min" if kernel in MINS else "max" if kernel in MAXS else None)
        if kind:
            pools.setdefault(s.metric, {}).setdefault(kind, []).append(s)
    sweeps = []
    for pool in pools.values():
        stds, sums, lows, highs = (pool.get(k, []) for k in ("std", "sum", "min", "max"))
        while bool(stds) + bool(sums) + bool(lows or highs) >= 2:
            std = stds.pop(0) if stds else None
            total = sums.pop(0) if sums else None
            low = lows.pop(0) if lows else None
            if low is None:
                high = highs.pop(0) if highs else None
            else:
                same = [h for h in highs if h.params["window"] == low.params["window"]]
                high = same[0] if same else None
                if high is not None:
                    highs.remove(high)
            sweeps.append((std, total, low, high))
    return sweeps


def plan(specs) -> Plan:
    """Encode fusable resolved specs (an iterable of :class:`ResolvedSpec`) as one op set."""
    specs = list(specs)
    names = tuple(s.name for s in specs)
    row_of = {s.name: r for r, s in enumerate(specs)}
    metrics = tuple(dict.fromkeys(s.metric for s in specs if s.metric is not None))
    group_of = {m: g for g, m in enumerate(metrics)}
    group_of[None] = -1
    # a sweep's op is emitted where its std is, else its sum (the order of ops does not matter)
    sweeps = {next(t for t in parts if t is not None).name: parts for parts in _sweeps(specs)}
    in_sweep = {t.name for parts in sweeps.values() for t in parts if t is not None}
    rest = [s for s in specs if s.name not in in_sweep]
    # a mean and a std (a min and a max) of the same metric, window and lag share one pass
    second = {}              # name of the first spec of a pair -> (pair opcode, second spec)
    for first_k, second_k, op in PAIRS:
        waiting = {}
        for s in rest:
            if s.detector.kernel in second_k:
                waiting.setdefault(_window_key(s), []).append(s)
        for s in rest:
            if s.detector.kernel in first_k:
                queue = waiting.get(_window_key(s))
                if queue:
                    second[s.name] = (op, queue.pop(0))
    taken = (in_sweep - set(sweeps)) | {t.name for _, t in second.values()}
    ops, groups, rows, ip, fp = [], [], [], [], []
    for s in specs:
        if s.name in taken:
            continue
        ints, floats = _params(s)
        if s.name in sweeps:
            std, total, low, high = sweeps[s.name]
            ops.append(kf.OP_SWEEP)
            rows.append([-1 if t is None else row_of[t.name] for t in (std, total, low, high)])
            extreme = low or high
            ints = [std.params["window"] if std else -1, 0,
                    total.params["window"] if total else 0,
                    SUMS[total.detector.kernel] if total else -1,
                    extreme.params["window"] if extreme else 0,
                    -1 if extreme is None else kw.BOTH if low and high else
                    kw.MIN if low else kw.MAX]
        elif s.name in second:
            op, t = second[s.name]
            ops.append(op)
            rows.append([row_of[s.name], row_of[t.name]])
        else:
            ops.append(OPCODES[s.detector.kernel])
            rows.append([row_of[s.name]])
        rows[-1] += [-1] * (kf.N_OUTPUTS - len(rows[-1]))
        groups.append(group_of[s.metric])
        ip.append(ints + [0] * (kf.N_INT_PARAMS - len(ints)))
        fp.append(floats + [0.0] * (kf.N_FLOAT_PARAMS - len(floats)))
    p = len(ops)
    return Plan(names=names,
                ops=np.asarray(ops, dtype=np.int64),
                groups=np.asarray(groups, dtype=np.int64),
                rows=np.asarray(rows, dtype=np.int64).reshape(p, kf.N_OUTPUTS),
                ip=np.asarray(ip, dtype=np.int64).reshape(p, kf.N_INT_PARAMS),
                fp=np.asarray(fp, dtype=np.float64).reshape(p, kf.N_FLOAT_PARAMS),
                metrics=metrics)


def chunk_bounds(offsets: np.ndarray) -> np.ndarray:
    """Series boundaries of the chunks the fused kernel's ``prange`` runs over (int64[c+1])."""
    s = offsets.size - 1
    n = int(offsets[-1]) if s > 0 else 0
    target = max(CHUNK_ROWS_MIN, n // (CHUNKS_PER_THREAD * numba.get_num_threads()))
    cuts = np.searchsorted(offsets, np.arange(target, n, target, dtype=np.int64))
    return np.unique(np.concatenate([[0], cuts, [s]])).astype(np.int64)


def run_arrays(ts, x, offsets, series_group, p: Plan):
    """Call the fused kernel: ``(out float64[r, n], valid uint8[r, ceil(n/8)], bad)``.

    ``ts``, ``x``, ``offsets`` as every kernel takes them (read-only, C-contiguous),
    ``series_group`` int64[s] the group id (``p.metrics`` index, or -1) of each series. ``bad``
    is the first row whose time goes back within its series, or -1 when every series is sorted
    (the outputs are then complete; otherwise they must not be used).
    """
    r, s, n = len(p.names), offsets.size - 1, x.size
    # allocated outside numba: in Arrow memory, which the outputs' Series read in place
    # (engine.arrow_buffers)
    out = arrow_buffers.empty((r, n), np.float64)
    valid = arrow_buffers.empty((r, (n + 7) // 8), np.uint8)
    part = np.empty((r, 2 * s), dtype=np.uint8)
    unsorted = np.full(s, -1, dtype=np.int64)
    if n:
        kf.fused(ts, x, offsets, frozen(series_group, np.int64),
                 frozen(chunk_bounds(offsets), np.int64),
                 *(frozen(a, a.dtype) for a in (p.ops, p.groups, p.rows, p.ip, p.fp)),
                 out, valid, part, unsorted)
        kf.merge_shared_bytes(offsets, part, valid)
    bad = unsorted[unsorted >= 0]
    return out, valid, int(bad[0]) if bad.size else -1


def as_series(name: str, values: np.ndarray, valid: np.ndarray) -> pl.Series:
    """A Float64 Series over ``values`` with Arrow validity bitmap ``valid``, without a copy.

    The Series keeps ``values`` and ``valid`` (and the arrays they are views of) alive.
    """
    n = values.size
    if n == 0:
        return pl.Series(name, [], dtype=pl.Float64)
    return arrow_buffers.series(name, pa.float64(), values, valid)


def run(view, specs) -> tuple[dict[str, pl.Series], int]:
    """Evaluate fusable resolved ``specs`` over ``view`` (a SeriesView).

    Returns ``({name: Series}, bad)``: ``bad`` as in :func:`run_arrays` (-1: all sorted).
    """
    p = plan(specs)
    group = np.full(len(view.metrics), -1, dtype=np.int64)
    for g, metric in enumerate(p.metrics):
        group[view.metrics == metric] = g
    out, valid, bad = run_arrays(view.ts, view.x, view.offsets, group, p)
    return {name: as_series(name, out[r], valid[r]) for r, name in enumerate(p.names)}, bad
