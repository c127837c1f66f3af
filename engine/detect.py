"""Detect, the second stage: every detector use of every loaded pack, computed once.

Packs name detectors for their own rules (``weight_gain_3d: {metric: weight, fn: delta,
window: 3d}``); two packs — or a pack and a site — often ask for the same one. :class:`DetectorPlan`
deduplicates them on what they compute (metric, function and parameters), and :func:`detect` runs
each distinct detector once, in one fused kernel pass over every series (each series runs its
own metric's detectors).

Outputs are laid out per metric *block*: the rows of one metric (every patient's series of that
metric, in the clean frame's order) and one output row per detector of that metric, so their
size is rows × detectors *of that row's metric* — not rows × all detectors, most of them null
on other metrics' rows. All blocks live in one flat float64 buffer (NaN where an output is
undefined), which the timeline stage reads directly; :meth:`Detections.frame` shows a block as a
polars frame for a notebook.

>>> import polars as pl
>>> from datetime import datetime, timezone
>>> from engine.ingest import ingest_frame
>>> raw = pl.DataFrame({"patient_id": ["p1"] * 3, "metric": ["weight"] * 3,
...     "ts": [datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 4)],
...     "value": [80.0, 80.8, 82.5]})
>>> clean = ingest_frame(raw, now=datetime(2025, 1, 1, tzinfo=timezone.utc))
>>> plan = DetectorPlan.from_specs({"gain": {"metric": "weight", "fn": "delta", "window": "3d"}})
>>> det = detect(clean.clean, plan, clean.index)
>>> det.frame("weight")["delta(window=3d)"].round(2).to_list()
[0.0, 0.8, 2.5]
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from numba import njit

from .config import JIT
from .detectors import fused
from .detectors import kernels_fused as kf
from .detectors.registry import FLOAT, frozen
from .detectors.spec import ResolvedSpec, resolve_specs
from .durations import format_duration
from .errors import SpecError
from .ingest.index import SeriesIndex
from .memory import POOL
from .schema import METRIC_NAMES


def spec_key(spec: ResolvedSpec) -> str:
    """What a detector computes, as a name: ``delta(window=3d)`` (the metric is its block)."""
    parts = []
    for p in spec.detector.params:
        v = spec.params[p.name]
        parts.append(f"{p.name}={v!r}" if p.kind == FLOAT else
                     f"{p.name}={format_duration(v) if p.kind == 'duration' else v}")
    return f"{spec.fn}({', '.join(parts)})"


@dataclass(frozen=True)
class DetectorPlan:
    """The distinct detectors to compute, and which detector use reads which.

    Attributes
    ----------
    by_metric : dict
        metric name -> {key: ResolvedSpec}, the distinct detectors of that metric
        (:func:`spec_key` names them).
    uses : dict
        A use's name (a pack detector's timeline column, ``heart_failure.weight_gain_3d``, or a
        spec name given to :meth:`from_specs`) -> (metric, key).
    """

    by_metric: dict
    uses: dict

    @property
    def n_detectors(self) -> int:
        return sum(len(v) for v in self.by_metric.values())

    @classmethod
    def from_specs(cls, specs: Mapping) -> "DetectorPlan":
        """A plan from ``{name: spec}`` (rule-file form or resolved)."""
        resolved = resolve_specs(specs)
        return cls._build({name: s for name, s in resolved.items()})

    @classmethod
    def of(cls, packs) -> "DetectorPlan":
        """The plan of every registered detector of every pack (silence is the timeline's)."""
        return cls._build({d.column: d.resolved for p in packs for d in p.detectors.values()
                           if d.kind == "detector"})

    @classmethod
    def _build(cls, uses: dict) -> "DetectorPlan":
        by_metric: dict[str, dict[str, ResolvedSpec]] = {}
        out = {}
        for name, spec in uses.items():
            if spec.metric is None:
                raise SpecError(f"Spec {name!r} has no metric: a plan computes each detector on "
                                "its own metric.")
            key = spec_key(spec)
            by_metric.setdefault(spec.metric, {}).setdefault(key, replace(spec, name=key))
            out[name] = (spec.metric, key)
        return cls({m: by_metric[m] for m in sorted(by_metric)}, out)


@njit(**JIT)
def _block_positions(smetric, lengths, n_metrics):
    """Position of each series in its metric's block, and each block's size."""
    pos = np.empty(smetric.size, np.int64)
    size = np.zeros(n_metrics, np.int64)
    for k in range(smetric.size):
        m = smetric[k]
        pos[k] = size[m]
        size[m] += lengths[k]
    return pos, size


@dataclass(frozen=True)
class Block:
    """The detector outputs of one metric.

    ``values[r]`` is detector ``names[r]`` on the block's rows; ``series`` are the series (of the
    index) in the block, in order, and ``offsets`` their rows in the block.
    """

    metric: str
    names: tuple[str, ...]
    series: np.ndarray
    offsets: np.ndarray
    values: np.ndarray

    def column(self, r: int) -> pl.Series:
        """Output row ``r`` as a Float64 Series, null where NaN (the rows share ``values``)."""
        return pl.Series(self.names[r], self.values[r], nan_to_null=True)


@dataclass(frozen=True)
class Detections:
    """What :func:`detect` computed.

    Attributes
    ----------
    plan : DetectorPlan
    blocks : dict
        metric name -> :class:`Block`.
    position : np.ndarray
        int64[s]: each series' first row in its metric's block.
    flat : np.ndarray
        Every block's values in one buffer (the blocks' ``values`` are views of it).
    base : dict
        (metric, key) -> offset of that detector's output row in ``flat``.
    clean, index
        The telemetry it was computed on.
    """

    plan: DetectorPlan
    blocks: dict
    position: np.ndarray
    flat: np.ndarray
    base: dict
    clean: pl.DataFrame
    index: SeriesIndex

    def frame(self, metric: str) -> pl.DataFrame:
        """The rows of ``metric`` (``patient_id, ts, value``) with one column per detector."""
        b = self.blocks.get(metric)
        code = METRIC_NAMES.index(metric)
        series = np.flatnonzero(self.index.metric == code)
        rows = _rows_of(self.index.offsets, series)
        base = self.clean.select("patient_id", "ts", "value")[rows]
        if b is None:
            return base
        return base.with_columns(b.column(r) for r in range(len(b.names)))

    def column(self, use: str) -> pl.Series:
        """A detector use's output aligned to the clean rows (null on other metrics' rows)."""
        metric, key = self.plan.uses[use]
        full = np.full(self.index.n_rows, np.nan)
        b = self.blocks.get(metric)
        if b is not None:
            rows = _rows_of(self.index.offsets, b.series)
            full[rows] = b.values[b.names.index(key)]
        return pl.Series(use, full, nan_to_null=True)


def _rows_of(offsets: np.ndarray, series: np.ndarray) -> np.ndarray:
    if series.size == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in series]) \
        if series.size < 64 else concat_ranges(offsets, series)


@njit(**JIT)
def concat_ranges(offsets, series):
    """The rows of the series ``series`` (int64, in order), given their ``offsets``."""
    n = 0
    for k in series:
        n += offsets[k + 1] - offsets[k]
    out = np.empty(n, np.int64)
    j = 0
    for k in series:
        for i in range(offsets[k], offsets[k + 1]):
            out[j] = i
            j += 1
    return out


def arrays(clean: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``ts`` (int64 µs) and ``value`` (float64, NaN for null) of clean telemetry, read-only."""
    ts = clean["ts"].dt.cast_time_unit("us").to_physical().rechunk().to_numpy()
    x = clean["value"].cast(pl.Float64).rechunk().to_numpy()
    return frozen(ts, np.int64), frozen(x, np.float64)


def detect(clean: pl.DataFrame, plan: DetectorPlan, index: SeriesIndex | None = None,
           ) -> Detections:
    """Run every detector of ``plan`` over clean telemetry, in one fused pass over every series.

    ``clean`` is ingest's frame (sorted by patient, metric, time; trusted, not checked) and
    ``index`` its series index (computed when not given).
    """
    index = index if index is not None else SeriesIndex.of(clean)
    ts, x = arrays(clean)
    return detect_arrays(ts, x, index, plan, clean=clean)


def detect_arrays(ts: np.ndarray, x: np.ndarray, index: SeriesIndex, plan: DetectorPlan, *,
                  clean: pl.DataFrame | None = None) -> Detections:
    """:func:`detect` on the arrays of clean telemetry (``ts`` int64 µs, ``x`` float64)."""
    ts, x = frozen(ts, np.int64), frozen(x, np.float64)
    lengths = np.diff(index.offsets)
    position, size = _block_positions(index.metric, lengths, len(METRIC_NAMES))
    want = {m: specs for m, specs in plan.by_metric.items()
            if size[METRIC_NAMES.index(m)] > 0}
    total = sum(len(specs) * int(size[METRIC_NAMES.index(m)]) for m, specs in want.items())
    flat = POOL.empty(total, np.float64)
    blocks, base, at = {}, {}, 0
    series_group = np.full(index.n_series, -1, np.int64)
    group_ops, ops, dest, ip, fp = [0], [], [], [], []
    for g, (metric, specs) in enumerate(want.items()):
        code = METRIC_NAMES.index(metric)
        n_m = int(size[code])
        series = np.flatnonzero(index.metric == code).astype(np.int64)
        series_group[series] = g
        boffsets = np.append(position[series], n_m).astype(np.int64)
        r = len(specs)
        p = fused.plan(list(specs.values()))
        ops.append(p.ops)
        ip.append(p.ip)
        fp.append(p.fp)
        # where each op's output row(s) of this block start in ``flat``
        dest.append(np.where(p.rows >= 0, at + p.rows * n_m, -1))
        group_ops.append(group_ops[-1] + p.ops.size)
        names = tuple(specs)
        blocks[metric] = Block(metric, names, series,
                               boffsets, flat[at:at + r * n_m].reshape(r, n_m))
        for row, key in enumerate(names):
            base[(metric, key)] = at + row * n_m
        at += r * n_m
    if want and index.n_rows:
        # one pass over every series, each running its own metric's detectors (no validity
        # bitmaps: the timeline reads NaN as undefined; a frame makes them on demand)
        kf.fused_blocks(ts, x, index.offsets, series_group, frozen(position, np.int64),
                        frozen(fused.chunk_bounds(index.offsets), np.int64),
                        np.asarray(group_ops, np.int64), np.concatenate(ops),
                        np.concatenate(dest).astype(np.int64), np.concatenate(ip),
                        np.concatenate(fp), flat, np.empty(index.n_series, np.int64))
    return Detections(plan, blocks, position, flat, base, clean, index)
