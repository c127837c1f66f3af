"""Evaluate detector specs over telemetry: polars in, one fused kernel pass, polars out.

The wrapper does everything the kernels must not: it checks the frame, finds the series (one per
``(patient_id, metric)``, contiguous because clean telemetry is sorted by
``(patient_id, metric, ts)``), hands numpy views of ``ts`` (int64 µs) and ``value`` (float64, null
→ NaN) to the kernels with the series offsets — all patients in one call, no Python loop over
patients — and turns NaN outputs back into nulls.

Every spec whose detector has a fused opcode (all registered detectors) runs in ONE call of
:func:`engine.detectors.kernels_fused.fused` over all series of all metrics (:mod:`.fused`); a
detector registered with a kernel the fused pass does not know runs its own kernel, one call per
spec over the series of its metric.

Arrays handed to kernels are always C-contiguous and read-only, whether polars gave a zero-copy
view or a copy (:func:`~engine.detectors.registry.frozen`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import InputError, SpecError
from ..durations import parse_duration
from ..schema import METRICS
from . import fused
from . import kernels_window as kw
from .registry import frozen
from .spec import ResolvedSpec, resolve_specs

#: columns of the telemetry frame that evaluation reads, in the order of its output
COLUMNS = ("patient_id", "metric", "ts", "value")
_US_PER_MINUTE = 60_000_000.0


@dataclass(frozen=True)
class SeriesView:
    """Telemetry rows as the kernels see them.

    Attributes
    ----------
    frame : pl.DataFrame
        The rows kept (``patient_id, metric, ts, value``), in input order.
    ts, x : np.ndarray
        int64 µs and float64 (NaN for null), read-only, aligned to ``frame``.
    offsets : np.ndarray
        int64[s+1]: series ``k`` (one ``(patient_id, metric)``) is rows ``offsets[k]:offsets[k+1]``.
    patients, metrics : np.ndarray
        The patient_id and metric of each series (object arrays of str, length s).
    """

    frame: pl.DataFrame
    ts: np.ndarray
    x: np.ndarray
    offsets: np.ndarray
    patients: np.ndarray
    metrics: np.ndarray


def _check_columns(df: object, what: str, columns) -> pl.DataFrame:
    if not isinstance(df, pl.DataFrame):
        raise InputError(f"{what} must be a polars DataFrame. Got {type(df).__name__} instead.")
    for c in columns:
        if c not in df.columns:
            raise InputError(f"{what} has no column {c!r}; it needs {', '.join(columns)}.",
                             column=c)
    df = df.select(columns)
    casts = []
    for c in columns:
        dtype = df.schema[c]
        if c in ("patient_id", "metric"):
            if isinstance(dtype, (pl.Categorical, pl.Enum)):
                casts.append(pl.col(c).cast(pl.String))
            elif dtype != pl.String:
                raise InputError(f"{what} column {c!r} must be strings. Got {dtype} instead.",
                                 column=c)
        elif c in ("ts", "enrolled_at"):
            if not isinstance(dtype, pl.Datetime):
                raise InputError(f"{what} column {c!r} must be a Datetime. Got {dtype} instead.",
                                 column=c)
            if dtype.time_unit != "us":
                casts.append(pl.col(c).dt.cast_time_unit("us"))
        elif c == "value":
            if not dtype.is_numeric():
                raise InputError(f"{what} column 'value' must be numeric. Got {dtype} instead.",
                                 column=c)
            if dtype != pl.Float64:
                casts.append(pl.col(c).cast(pl.Float64))
    if casts:
        df = df.with_columns(casts)
    must = [c for c in columns if c in ("patient_id", "metric", "ts")]
    nulls = df.select(pl.col(must).null_count()).row(0)
    for c, k in zip(must, nulls):
        if k:
            raise InputError(f"{what} column {c!r} has {k} null(s); every row needs one.",
                             column=c)
    return df


def series_view(telemetry: pl.DataFrame, metrics=None, check_sorted: bool = True) -> SeriesView:
    """Check ``telemetry`` and build the kernels' view of the rows of ``metrics`` (all if None).

    ``check_sorted=False`` leaves out the check that times never go back within a series, for a
    caller that checks it itself (the fused pass does, on the rows it reads anyway, and reports
    with :func:`raise_unsorted`). The check is still made here when rows of other metrics are
    dropped, so that a reported row number is always a row of ``telemetry``.

    Raises
    ------
    InputError
        A missing column or wrong type, a null key, or rows not sorted by
        ``(patient_id, metric, ts)``.
    """
    frame = _check_columns(telemetry, "telemetry", COLUMNS)
    n = frame.height
    pid, met = pl.col("patient_id"), pl.col("metric")
    if n:
        # rows where the patient or the metric changes: the two comparisons are two
        # expressions of one select, so polars runs them in parallel
        cuts = frame.select(pid.ne(pid.shift(1)).arg_true().implode().alias("p"),
                            met.ne(met.shift(1)).arg_true().implode().alias("m"))
        starts = np.union1d(cuts["p"][0].to_numpy(), cuts["m"][0].to_numpy())
        starts = np.concatenate([[0], starts]).astype(np.int64)
    else:
        starts = np.zeros(0, np.int64)
    offsets = np.append(starts, n).astype(np.int64)
    keys = frame.select(pl.col("patient_id", "metric").gather(starts))
    if keys.n_unique() != keys.height:
        p, m = keys.filter(keys.is_duplicated()).row(0)
        raise InputError("telemetry must be sorted by (patient_id, metric, ts): the rows of "
                         f"patient {p!r}, metric {m!r} are not contiguous.")
    patients = keys["patient_id"].to_numpy()
    changes = int(np.count_nonzero(patients[1:] != patients[:-1])) + (1 if len(patients) else 0)
    if changes != keys["patient_id"].n_unique():
        raise InputError("telemetry must be sorted by (patient_id, metric, ts): the rows of "
                         "some patient are not contiguous.")
    ts = frozen(frame["ts"].to_physical().to_numpy(), np.int64)
    metric_of = keys["metric"].to_numpy()
    keep = None if metrics is None else \
        np.isin(metric_of, np.asarray(sorted(metrics), dtype=object))
    if check_sorted or (keep is not None and not keep.all()):
        raise_unsorted(frame, kw.first_unsorted(ts, frozen(offsets, np.int64)))
    if keep is not None and not keep.all():
        lengths = np.diff(offsets)
        frame = frame.filter(pl.Series(np.repeat(keep, lengths)))
        offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
        patients, metric_of = patients[keep], metric_of[keep]
        ts = frozen(frame["ts"].to_physical().to_numpy(), np.int64)
    x = frozen(frame["value"].to_numpy(), np.float64)
    return SeriesView(frame, ts, x, frozen(offsets, np.int64), patients, metric_of)


def raise_unsorted(frame: pl.DataFrame, bad: int) -> None:
    """Raise the InputError for row ``bad`` of ``frame`` going back in time; nothing if -1."""
    if bad >= 0:
        p, m, t = (frame[c][int(bad)] for c in ("patient_id", "metric", "ts"))
        raise InputError("telemetry must be sorted by (patient_id, metric, ts): patient "
                         f"{p!r}, metric {m!r} goes back in time at {t} (row {bad}).", row=int(bad))


def _subset(view: SeriesView, metric: str | None):
    """(ts, x, offsets, rowmask) of the series of ``metric``; rowmask None means every row."""
    if metric is None or bool(np.all(view.metrics == metric)):
        return view.ts, view.x, view.offsets, None
    lengths = np.diff(view.offsets)
    sel = view.metrics == metric
    rows = np.repeat(sel, lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths[sel])])
    return (frozen(view.ts[rows], np.int64), frozen(view.x[rows], np.float64),
            frozen(offsets, np.int64), rows)


def _run_alone(ts, x, offsets, specs: list[ResolvedSpec]) -> dict[str, np.ndarray]:
    """Run specs the fused pass does not know, one kernel call per spec."""
    return {s.name: s.detector.kernel(ts, x, offsets, *s.kernel_args) for s in specs}


def _evaluate(telemetry: pl.DataFrame, resolved: dict[str, ResolvedSpec]) -> pl.DataFrame:
    for name in resolved:
        if name in COLUMNS:
            raise SpecError(f"Spec name {name!r} clashes with the telemetry column of that name; "
                            "rename the spec.")
    every = any(s.metric is None for s in resolved.values())
    alone: dict[str | None, list[ResolvedSpec]] = defaultdict(list)
    for s in resolved.values():
        if not fused.fusable(s):
            alone[s.metric].append(s)
    # the fused pass checks that times never go back as it reads each series; a kernel run on
    # its own needs the check first
    view = series_view(telemetry, None if every else {s.metric for s in resolved.values()},
                       check_sorted=bool(alone))
    n = view.frame.height
    columns, bad = fused.run(view, [s for s in resolved.values() if fused.fusable(s)])
    raise_unsorted(view.frame, bad)
    for metric, specs in alone.items():
        ts, x, offsets, rows = _subset(view, metric)
        for name, out in _run_alone(ts, x, offsets, specs).items():
            if rows is not None:
                full = np.full(n, np.nan)
                full[rows] = out
                out = full
            columns[name] = pl.Series(name, np.asarray(out, dtype=np.float64), nan_to_null=True)
    return view.frame.with_columns([columns[name] for name in resolved])


def evaluate(telemetry: pl.DataFrame, specs: dict) -> pl.DataFrame:
    """Evaluate detector specs over clean telemetry.

    Parameters
    ----------
    telemetry : pl.DataFrame
        Clean telemetry: ``patient_id`` (String), ``metric`` (String), ``ts`` (Datetime),
        ``value`` (numeric; null or NaN is a null reading), sorted by ``(patient_id, metric, ts)``.
        Other columns are ignored. Any number of metrics.
    specs : dict
        ``{name: {metric: ..., fn: ..., <params>}}`` in rule-file form, or resolved specs.

    Returns
    -------
    pl.DataFrame
        The rows of the metrics the specs use, in input order, with columns ``patient_id, metric,
        ts, value`` and one Float64 column per spec (in the specs' order): the detector's output
        on rows of its metric, null on rows of other metrics and where the output is undefined.

    Raises
    ------
    SpecError
        An invalid spec (see :func:`engine.detectors.resolve_specs`).
    InputError
        A missing column, wrong type, null key, or unsorted rows.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timezone
    >>> tel = pl.DataFrame({"patient_id": ["p1"] * 3, "metric": ["weight"] * 3,
    ...     "ts": [datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 4)],
    ...     "value": [80.0, 80.8, 82.5]})
    >>> out = evaluate(tel, {"gain_3d": {"metric": "weight", "fn": "delta", "window": "3d"}})
    >>> out["gain_3d"].round(2).to_list()
    [0.0, 0.8, 2.5]
    """
    return _evaluate(telemetry, resolve_specs(specs))


def evaluate_all_metrics(telemetry: pl.DataFrame, specs: dict) -> pl.DataFrame:
    """Evaluate specs without a ``metric`` on every ``(patient_id, metric)`` series.

    The same as :func:`evaluate`, but each spec (``{fn: mean, window: 1h}``, no ``metric`` key)
    runs on all series of all metrics, so every row gets a value: for feature extraction and the
    benchmark, where one statistic is wanted for every metric.
    """
    return _evaluate(telemetry, resolve_specs(specs, metric_required=False))


def silence_at(telemetry: pl.DataFrame, eval_times: pl.DataFrame, limit_us, metrics=None,
               patients: pl.DataFrame | None = None) -> pl.DataFrame:
    """How long each patient's devices have been silent at given evaluation times.

    Parameters
    ----------
    telemetry : pl.DataFrame
        Clean telemetry (see :func:`evaluate`).
    eval_times : pl.DataFrame
        ``patient_id`` and ``ts`` (Datetime): when to check, in any order; times need no
        telemetry row of their own (a missed transmission is itself the alert).
    limit_us : int or str
        Longest gap that is not a silence, µs (or a duration such as ``"36h"``).
    metrics : iterable of str, optional
        Only readings of these metrics count; default: a reading of any metric.
    patients : pl.DataFrame, optional
        With ``patient_id`` and ``enrolled_at``: a patient with no reading at or before an
        evaluation time has been silent since enrolment. Without it (or before enrolment) the
        result is null for such a time.

    Returns
    -------
    pl.DataFrame
        ``eval_times`` with ``minutes_since_last`` (Float64: minutes from the latest non-null
        reading at or before ``ts``, a reading at ``ts`` itself counting, to ``ts``) and
        ``silent`` (Boolean: that gap exceeds ``limit_us``, strictly; null when unknown).
    """
    if isinstance(limit_us, str):
        limit_us = parse_duration(limit_us, what="silence limit")
    if isinstance(limit_us, bool) or not isinstance(limit_us, (int, np.integer)) or limit_us < 0:
        raise SpecError(f"The silence limit must be a duration like '36h' or a non-negative "
                        f"number of µs. Got {limit_us!r} instead.")
    if metrics is not None:
        metrics = {metrics} if isinstance(metrics, str) else set(metrics)
        unknown = sorted(m for m in metrics if m not in METRICS)
        if unknown:
            raise SpecError(f"Unknown metric(s) {', '.join(map(repr, unknown))} for silence_at. "
                            f"Canonical metrics are: {', '.join(sorted(METRICS))}.")
    ev = _check_columns(eval_times, "eval_times", ("patient_id", "ts"))
    view = series_view(telemetry, metrics)
    s = len(view.patients)
    first = np.flatnonzero(np.r_[True, view.patients[1:] != view.patients[:-1]]) if s else \
        np.zeros(0, np.int64)
    group_offsets = np.append(first, s).astype(np.int64)
    index = pl.DataFrame({"patient_id": pl.Series(view.patients[first], dtype=pl.String),
                          "_group": np.arange(len(first), dtype=np.int64)})
    group = ev.join(index, on="patient_id", how="left", maintain_order="left")["_group"]
    e_ts = frozen(ev["ts"].to_physical().to_numpy(), np.int64)
    last = kw.last_seen(view.ts, view.x, view.offsets, frozen(group_offsets, np.int64), e_ts,
                        frozen(group.fill_null(-1).to_numpy(), np.int64))
    last_t = last.astype(np.float64)          # exact: µs since 1970 stay below 2**53
    last_t[last == kw.NO_ROW] = np.nan
    if patients is not None:
        enrol = _check_columns(patients, "patients", ("patient_id", "enrolled_at"))
        enrolled = ev.join(enrol.unique("patient_id", keep="first"), on="patient_id",
                           how="left", maintain_order="left")["enrolled_at"]
        e0 = enrolled.to_physical().to_numpy().astype(np.float64)   # null -> NaN
        use = np.isnan(last_t) & (e0 <= e_ts)                        # NaN compares False
        last_t[use] = e0[use]
    gap_us = e_ts - last_t                                          # NaN when unknown
    silent = pl.Series("silent", gap_us > limit_us).set(pl.Series(np.isnan(gap_us)), None)
    minutes = pl.Series("minutes_since_last", gap_us / _US_PER_MINUTE, nan_to_null=True)
    return eval_times.with_columns(minutes, silent)
