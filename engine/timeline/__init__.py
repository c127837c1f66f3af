"""Timeline and scores, the third stage: per pack, each patient's evaluation times and every value
its rules read there.

A pack's rules are evaluated per patient at the times of a *timeline*: the union of the
observation times of the metrics the pack uses, optionally plus a fixed cadence
(``evaluate_every: 1h``) from the patient's first observation (or enrolment) to the last
observation or to ``until``. Cadence times are multiples of the cadence since the Unix epoch (so
``1h`` falls on the hour and an incremental run sees the same times as a batch run).

At each timeline time every value a rule reads is its latest value *at or before* that time —
an as-of (backward) join per patient — provided it is not older than its maximum *staleness*: a
week-old SpO2 must not satisfy "SpO2 < 92 now", so past the staleness the value is null
(unknown). The latest *reading* is taken even when the detector's output there is undefined: an
undefined output now is not replaced by an older, defined one. The staleness boundary is
inclusive.

Staleness of a value: its detector spec's ``staleness``, else the pack's
``defaults: {staleness: ...}``, else the built-in default of its metric
(:data:`DEFAULT_STALENESS`: how often the metric is measured at home, with margin).

Besides detector outputs and readings, a timeline carries the minutes since the last reading of
a set of metrics (``fn: silence_at``), whether a reading arrived at exactly that time (for
``confirm_readings``), the patient context the rules read (``programme``, ``age``…) and the
scores they use (NEWS2…), computed on the timeline's values.

All patients of a pack are computed in one numba call (:mod:`.kernels`); there is no Python loop
per patient.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from .. import arrow_buffers
from ..detect import Detections
from ..detectors.fused import as_series
from ..ingest.index import SeriesIndex
from ..memory import POOL
from ..patients import Cohort
from ..schema import METRIC_NAMES
from . import kernels as K

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
#: decimals detector outputs are rounded to before rules compare them (:func:`kernels.round9`):
#: differences of readings carry binary float noise (82.1 - 80.1 = 2.000000000000014) and,
#: without rounding, "gain > 2 kg" would fire on a gain of exactly 2 kg. Nine decimals are far
#: below any device's resolution and far above the noise.
DETECTOR_DECIMALS = 9

#: built-in maximum staleness per metric, µs — the expected measurement interval at home plus a
#: margin for a late measurement; vitals spot checks a few times a day, daily weights and
#: questionnaires, nightly CPAP reports, continuous glucose every 5-15 minutes, labs monthly,
#: ICOPE step 1 every 4 months (Toulouse ICOPE MONITOR)
DEFAULT_STALENESS: dict[str, int] = {
    "heart_rate": 6 * HOUR_US, "spo2": 6 * HOUR_US, "resp_rate": 6 * HOUR_US,
    "temp": 6 * HOUR_US, "sbp": 6 * HOUR_US, "dbp": 6 * HOUR_US,
    "consciousness": 6 * HOUR_US, "on_oxygen": 6 * HOUR_US,
    "weight": 36 * HOUR_US, "steps": 36 * HOUR_US, "dyspnoea": 36 * HOUR_US,
    "cpap_hours": 36 * HOUR_US, "ahi": 36 * HOUR_US, "mask_leak": 36 * HOUR_US,
    "glucose": 30 * 60_000_000,
    "fall": DAY_US,
    "albumin": 30 * DAY_US,
    "icope_cognition": 130 * DAY_US, "icope_locomotion": 130 * DAY_US,
    "icope_vitality": 130 * DAY_US, "icope_vision": 130 * DAY_US,
    "icope_hearing": 130 * DAY_US, "icope_psychological": 130 * DAY_US,
}
#: for a metric missing from the table
FALLBACK_STALENESS = DAY_US
_METRIC = {m: i for i, m in enumerate(METRIC_NAMES)}
_NEVER_STALE = np.iinfo(np.int64).max


def default_staleness(metric: str | None) -> int:
    """The built-in staleness of ``metric`` in µs (:data:`DEFAULT_STALENESS`)."""
    return DEFAULT_STALENESS.get(metric or "", FALLBACK_STALENESS)


def fresh_column(metrics: tuple[str, ...] | None) -> str:
    """The timeline column saying whether one of ``metrics`` (None: any) has a reading then."""
    return "__fresh:" + ("*" if metrics is None else ",".join(metrics))


@dataclass(frozen=True)
class Telemetry:
    """Clean telemetry as the kernels read it: ``ts`` (int64 µs), ``x`` (float64) and the series
    index, whose patient codes are those of the run's :class:`~engine.patients.Cohort`."""

    ts: np.ndarray
    x: np.ndarray
    index: SeriesIndex

    def patient_series(self, n_patients: int) -> np.ndarray:
        return np.searchsorted(self.index.patient, np.arange(n_patients + 1)).astype(np.int64)


@dataclass(frozen=True)
class Timeline:
    """One pack's evaluation timeline.

    Attributes
    ----------
    pack : str
    ids : pl.Series
        The cohort's patient ids (``patient`` indexes it).
    patient : np.ndarray
        int32 patient code of each timeline row; rows are sorted by (patient, ts).
    ts : np.ndarray
        int64 µs of each row.
    values : pl.DataFrame
        One column per name the pack's rules read, aligned to the rows.
    """

    pack: str
    ids: pl.Series
    patient: np.ndarray
    ts: np.ndarray
    values: pl.DataFrame

    @property
    def height(self) -> int:
        return int(self.ts.size)

    def times(self) -> pl.Series:
        return ts_series(self.ts)

    def patient_ids(self, rows: np.ndarray | None = None) -> pl.Series:
        codes = self.patient if rows is None else self.patient[rows]
        return self.ids.gather(codes).alias("patient_id")

    def frame(self) -> pl.DataFrame:
        """``patient_id``, ``ts`` and the values, as one polars frame (for a notebook)."""
        return self.values.with_columns(self.patient_ids(), self.times()) \
            .select("patient_id", "ts", *self.values.columns)


def in_scope(pack, context: pl.DataFrame) -> np.ndarray:
    """Bool per patient of ``context``: does the pack apply (unknown programme: only packs for
    any cohort; unknown age: in scope — an unknown age must not silence alerts)."""
    context = context.with_columns(pl.lit(None, dtype).alias(c) for c, dtype in
                                   (("programme", pl.String), ("age", pl.Int64))
                                   if c not in context.columns)
    cond = pl.lit(True)
    if pack.cohorts is not None:
        cond = cond & pl.col("programme").is_in(list(pack.cohorts)).fill_null(False)
    if pack.min_age is not None:
        cond = cond & (pl.col("age").is_null() | (pl.col("age") >= pack.min_age))
    if pack.max_age is not None:
        cond = cond & (pl.col("age").is_null() | (pl.col("age") <= pack.max_age))
    return context.with_columns(cond.alias("__s"))["__s"].to_numpy().astype(np.bool_)


def _metric_mask(metrics) -> np.ndarray:
    mask = np.zeros(len(METRIC_NAMES), np.bool_)
    for m in metrics:
        mask[_METRIC[m]] = True
    return mask


class _Columns:
    """A pack's needs encoded for :func:`kernels.columns`."""

    def __init__(self):
        self.names, self.kind, self.metric, self.any, self.sets = [], [], [], [], []
        self.base, self.stale = [], []

    def add(self, name, kind, *, metric=None, metrics=(), any_metric=False, base=0,
            stale=_NEVER_STALE):
        self.names.append(name)
        self.kind.append(kind)
        self.metric.append(_METRIC[metric] if metric is not None else -1)
        self.any.append(any_metric)
        self.sets.append(_metric_mask(metrics if not any_metric else ()))
        self.base.append(base)
        self.stale.append(_NEVER_STALE if stale is None else stale)

    def arrays(self):
        c = len(self.names)
        sets = (np.stack(self.sets) if c else np.zeros((0, len(METRIC_NAMES)), np.bool_))
        return (np.asarray(self.kind, np.int8), np.asarray(self.metric, np.int64),
                np.asarray(self.any, np.bool_), sets.astype(np.bool_),
                np.asarray(self.base, np.int64), np.asarray(self.stale, np.int64))

    def sources(self):
        """(order, source) of :func:`kernels.columns`: the columns grouped by what they read
        (a RAW or DET column its metric; a SILENCE or FRESH one its metric set)."""
        ids: dict = {}
        source = []
        for kind, metric, any_metric, mask in zip(self.kind, self.metric, self.any, self.sets):
            key = (0, metric) if kind in (K.RAW, K.DET) else (1, any_metric, mask.tobytes())
            source.append(ids.setdefault(key, len(ids)))
        source = np.asarray(source, np.int64)
        return np.argsort(source, kind="stable").astype(np.int64), source


def patient_fields(pack) -> list[str]:
    """The patient context columns a pack reads (its rules' names and its scores' inputs)."""
    from ..ruleset.compile.symbols import PATIENT_FIELDS

    used = set(pack.reads) | {i for s in pack.scores.values() for i in s.inputs}
    return [f for f in PATIENT_FIELDS if f in used]


SECOND_US = 1_000_000


def _offsets_at(us: np.ndarray, zone: str) -> np.ndarray:
    utc = pl.Series(us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    local = utc.dt.convert_time_zone(zone).dt.replace_time_zone(None).cast(pl.Int64)
    return (local - pl.Series(us)).to_numpy()


def _local_clock(ts: np.ndarray, patient: np.ndarray, zones: list[str],
                 need: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(hour of day as a decimal, to the second; ISO day of week, 1 = Monday) of each µs time
    in its patient's zone (``zones[code]``; ``patient`` the row's patient code); NaN at the
    times of the patients ``need`` (bool per patient code, None: all) leaves out.

    Each zone's offset is read once per hour over ``ts``'s span (8,760 conversions for a year)
    rather than per row — a zone-aware conversion of every reading costs a hundred times more —
    and one parallel pass (:func:`kernels.local_clock`) applies it; the rows within an hour where
    their zone's offset changes (a clock change; some happened at odd minutes, such as
    Newfoundland's at 00:01 until 2011) are then converted exactly."""
    # in Arrow memory: they become columns (read in place), and Arrow keeps freed memory for
    # the next chunk, where numpy's would be fresh pages each time
    hour = arrow_buffers.empty(ts.size, np.float64)
    dow = arrow_buffers.empty(ts.size, np.float64)
    if ts.size == 0:
        return hour, dow
    names = sorted(set(zones))
    code = np.searchsorted(names, np.asarray(zones, dtype=object)).astype(np.int32)
    first = int(ts.min()) // HOUR_US
    grid_us = np.arange(first, int(ts.max()) // HOUR_US + 2, dtype=np.int64) * HOUR_US
    grid = np.stack([_offsets_at(grid_us, zone) for zone in names]).astype(np.int64)
    exact = POOL.empty(ts.size, np.bool_)
    need = np.ones(len(zones), np.bool_) if need is None else need
    K.local_clock(ts, patient, code, need, first, grid, hour, dow, exact)
    rows = np.flatnonzero(exact)
    row_zone = code[patient[rows]]
    for z, zone in enumerate(names):
        mine = rows[row_zone == z]
        if mine.size:
            local = ts[mine] + _offsets_at(ts[mine], zone)
            hour[mine] = ((local % DAY_US) // SECOND_US) / 3600.0
            dow[mine] = ((local // DAY_US + 3) % 7 + 1).astype(np.float64)
    return hour, dow


def context_columns(pack, ts: np.ndarray, patient: np.ndarray, cohort: Cohort,
                    clock_need: np.ndarray | None = None) -> dict:
    """The columns of the patient context a pack reads, one value per timeline row: patient
    fields, params set per patient (the care plan's value where given, else the param's),
    local time of day and day of week, time since enrolment and since surgery. The local
    clock is null at the times of the patients ``clock_need`` (bool per patient code, None:
    all) leaves out."""
    from ..ruleset.compile.pack import patient_param_column
    from ..schema import CARE_PLAN
    from ..units import UNITS

    reads = pack.reads
    ctx = cohort.context
    codes = pl.Series(patient)
    out = {f: ctx.get_column(f).gather(codes) for f in patient_fields(pack)}
    for name, prm in pack.params.items():
        if prm.patient is None or name not in reads:
            continue
        ratio = prm.type.unit.ratio(UNITS[CARE_PLAN[prm.patient].unit])
        own = ctx.get_column(prm.patient).gather(codes) * ratio
        out[patient_param_column(pack.name, name)] = own.fill_null(float(prm.value))
    if "hour_of_day" in reads or "day_of_week" in reads:
        zones = ctx.get_column("tz").fill_null(pack.time_zone or "UTC").to_list()
        hour, dow = _local_clock(ts, patient, zones, clock_need)
        valid = [None, None]
        if clock_need is not None and not clock_need.all():
            valid = arrow_buffers.empty((2, (ts.size + 7) // 8), np.uint8)
            K.validity(hour.reshape(1, -1), valid[0:1])
            K.validity(dow.reshape(1, -1), valid[1:2])
        out["hour_of_day"] = arrow_buffers.series("hour_of_day", pa.float64(), hour, valid[0])
        out["day_of_week"] = arrow_buffers.series("day_of_week", pa.float64(), dow, valid[1])
    for name, field_ in (("since_enrolment", "enrolled_at"), ("since_surgery", "surgery_at")):
        if name in reads:
            at = ctx.get_column(field_).dt.epoch("us").gather(codes)
            out[name] = (pl.Series(ts) - at) / DAY_US
    return {k: v.alias(k) for k, v in out.items()}


#: how long a grid time's risk may be read as the current risk (two 4-hour grid steps)
RISK_STALENESS_US = 8 * HOUR_US


def risk_column(patient: np.ndarray, ts: np.ndarray, cohort: Cohort,
                risk: pl.DataFrame | None) -> pl.Series:
    """``risk`` (in %) at each timeline row: the model's risk at the patient's latest grid time
    at or before it, at most :data:`RISK_STALENESS_US` old; null without a model."""
    n = ts.size
    if risk is None or risk.height == 0 or n == 0:
        return pl.Series("risk", [None] * n, pl.Float64)
    rows = pl.DataFrame({"patient_id": cohort.ids.gather(pl.Series(patient)),
                         "_t": pl.Series(ts, dtype=pl.Int64),
                         "_i": pl.int_range(n, eager=True)})
    src = (risk.select("patient_id", pl.col("ts").dt.epoch("us").alias("_rt"),
                       (pl.col("risk") * 100.0).alias("risk"))
           .sort("patient_id", "_rt"))
    got = rows.sort("patient_id", "_t").join_asof(
        src, left_on="_t", right_on="_rt", by="patient_id", strategy="backward",
        tolerance=RISK_STALENESS_US, check_sortedness=False)
    return got.sort("_i")["risk"].cast(pl.Float64).alias("risk")


def guard_active(rule, cohort: Cohort) -> np.ndarray:
    """Bool per patient code: may ``rule`` hold for the patient, i.e. is its patient guard
    (:attr:`~engine.ruleset.packs.CompiledRule.guard`) not false (true, unknown, or none)."""
    excluded = rule.guard_false(cohort.context)
    return np.ones(cohort.size, np.bool_) if excluded is None else ~excluded


def column_needs(pack, cohort: Cohort, names: list[str]):
    """``(need, clock)``: ``need[c, p]`` says whether timeline column ``names[c]`` must be
    computed at patient ``p``'s times, ``clock[p]`` whether the local clock must (None: at
    every patient's).

    A column is needed at a patient's times when an enabled rule that reads it — through its
    ``when``, ``resolve_when``, evidence, confirmation count or the named conditions they
    read — may hold for the patient (:func:`guard_active`). Where every rule reading a column
    has a patient guard false for the patient, the episodes stage does not read the patient's
    times for those rules (:func:`engine.episodes.open_episodes`), so the column is left null
    there: device silence's weight silence is computed for heart failure patients only. A
    column no rule reads, and every column of a pack with scores (whose inputs are not
    tracked here), is computed everywhere."""
    n_pat = cohort.size
    everyone = np.ones((len(names), n_pat), np.bool_)
    rules = [r for r in pack.rules if r.enabled]
    if pack.scores or not any(r.guard is not None for r in rules):
        return everyone, None
    cond_reads = {c.column: set(c.expr.meta.root_names()) for c in pack.conditions}
    column_of = {n: sym.column for n, sym in pack.symbols.items() if sym.column is not None}
    pos = {n: i for i, n in enumerate(names)}
    need = np.zeros_like(everyone)
    read_by_a_rule = np.zeros(len(names), np.bool_)
    clock = np.zeros(n_pat, np.bool_)
    for r in rules:
        read = set(r.expr.meta.root_names())
        if r.resolve_expr is not None:
            read |= set(r.resolve_expr.meta.root_names())
        read |= {column_of[n] for n in r.evidence_names if n in column_of}
        if r.confirm_readings > 1:
            read.add(fresh_column(r.confirm_metrics))
        todo = list(read)
        while todo:
            for c in cond_reads.get(todo.pop(), ()):
                if c not in read:
                    read.add(c)
                    todo.append(c)
        active = guard_active(r, cohort)
        for c in read:
            if c in pos:
                need[pos[c]] |= active
                read_by_a_rule[pos[c]] = True
        if "hour_of_day" in read or "day_of_week" in read:
            clock |= active
    need[~read_by_a_rule] = True
    return need, clock


def build(pack, tel: Telemetry, det: Detections | None, cohort: Cohort,
          until_us: int | None, *, readings: bool = True,
          risk: pl.DataFrame | None = None, only_needed: bool = False) -> Timeline:
    """The evaluation timeline of ``pack`` over the cohort's patients.

    ``tel`` must hold no reading after ``until_us`` (the pipeline cuts it there); without
    ``until_us`` a cadence runs to each patient's last reading. With ``readings=False`` the
    timeline is the pack's cadence alone (its readings only say when each patient's cadence
    starts and, without ``until_us``, ends): the risk model's fixed grid of times. ``risk``
    (``patient_id``, ``ts``, ``risk``: the risk stage's output) is read by packs whose rules
    use ``risk`` (:func:`risk_column`). With ``only_needed``, a column is left null at the
    times of the patients for whom every rule reading it has a false patient guard
    (:func:`column_needs`): what the pipeline's episodes stage reads, when it does not resume
    an earlier run's states.
    """
    cols = _Columns()
    obs: set[str] = set(pack.metrics)
    obs_all = False
    flags = []
    for d in pack.detectors.values():
        if d.kind == "silence":
            if d.metrics is None:
                obs_all = True
            else:
                obs.update(d.metrics)
            cols.add(d.column, K.SILENCE, metrics=d.metrics or (), any_metric=d.metrics is None)
            continue
        metric = d.metrics[0]
        obs.add(metric)
        base = 0
        if det is not None:
            metric_key = det.plan.uses[d.column]
            base = det.base.get(metric_key, 0)
        cols.add(d.column, K.DET, metric=metric, base=base, stale=d.staleness_us)
        if d.type.kind == "bool":
            flags.append(d.column)
    for m in pack.metrics:
        cols.add(m, K.RAW, metric=m, stale=pack.staleness_us[m])
    fresh_sets = sorted({r.confirm_metrics for r in pack.rules
                         if r.enabled and r.confirm_readings > 1}, key=fresh_column)
    for metrics in fresh_sets:
        cols.add(fresh_column(metrics), K.FRESH, metrics=metrics or (),
                 any_metric=metrics is None)

    n_pat = cohort.size
    index = tel.index
    pser = tel.patient_series(n_pat)
    scope = cohort.in_scope(pack)
    has_until = until_us is not None
    until = int(until_us) if has_until else 0
    every = int(pack.evaluate_every_us or 0)
    obs_mask = _metric_mask(obs)
    cap, tick0, nticks = K.sizes(tel.ts, index.offsets, pser, index.metric, scope, cohort.start,
                                 obs_all, obs_mask, every, has_until, until, readings)
    cap_off = np.concatenate([[0], np.cumsum(cap)]).astype(np.int64)
    buf = POOL.empty(int(cap_off[-1]), np.int64)
    count = K.times(tel.ts, index.offsets, pser, index.metric, scope, obs_all, obs_mask, every,
                    has_until, until, cap_off, tick0, nticks, buf, readings)
    tl_off = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    n = int(tl_off[-1])
    tl_ts = arrow_buffers.empty(n, np.int64)       # read in place by Timeline.ts
    tl_pat = POOL.empty(n, np.int32)
    K.compact(buf, cap_off, count, tl_off, tl_ts, tl_pat)
    del buf

    kind, metric, any_metric, sets, base, stale = cols.arrays()
    order, source = cols.sources()
    out = arrow_buffers.empty((len(cols.names), n), np.float64)    # the columns, in place
    flat = det.flat if det is not None else np.zeros(1)
    position = det.position if det is not None else np.zeros(index.n_series, np.int64)
    need, clock = (column_needs(pack, cohort, cols.names) if only_needed
                   else (np.ones((len(cols.names), n_pat), np.bool_), None))
    K.columns(tel.ts, tel.x, index.offsets, pser, index.metric, position, cohort.start, tl_off,
              tl_ts, kind, metric, any_metric, sets, base, stale, flat, out, order, source,
              need)

    values = _frame(cols.names, kind, out, flags, n)
    context = context_columns(pack, tl_ts, tl_pat, cohort, clock)
    if context:
        values = values.with_columns(context.values())
    if "risk" in pack.reads:
        values = values.with_columns(risk_column(tl_pat, tl_ts, cohort, risk))
    for score in pack.scores.values():
        missing = [i for i in score.inputs if i not in values.columns]
        if missing:
            values = values.with_columns(pl.lit(None, pl.Float64).alias(i) for i in missing)
        values = score.compute(values)
    for cond in pack.conditions:          # in dependency order: each reads the columns before
        values = values.with_columns(cond.expr)
    return Timeline(pack.name, cohort.ids, tl_pat, tl_ts, values)


def timelines(det: Detections, patients: pl.DataFrame | None, packs, *,
              until=None) -> dict[str, Timeline]:
    """Every pack's timeline over the telemetry ``det`` was computed on (``detect``'s result),
    as a library caller chains the stages; ``until`` is the run's as-of time (aware datetime).

    The telemetry must hold no reading after ``until`` (the pipeline cuts it there).
    """
    if det.clean is None:
        raise ValueError("these detections were computed on arrays; give detect() the frame")
    cohort = Cohort.of(det.index.patient_ids, patients)
    index = det.index.recode(cohort.ids)
    tel = Telemetry(*_arrays(det.clean), index)
    until_us = None if until is None else _epoch_us(until)
    return {p.name: build(p, tel, det, cohort, until_us) for p in packs}


def _epoch_us(t) -> int:
    import datetime as dt
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _arrays(clean: pl.DataFrame):
    from ..detect import arrays
    return arrays(clean)


def _frame(names, kind, out: np.ndarray, flags, n: int) -> pl.DataFrame:
    """The kernel's output rows as typed polars columns without copying them: NaN is null (an
    Arrow validity bitmap), flags and fresh readings become Booleans."""
    if not names:
        return pl.DataFrame(height=n)
    valid = arrow_buffers.empty((len(names), (n + 7) // 8), np.uint8)
    K.validity(out, valid)
    series = []
    for c, name in enumerate(names):
        s = as_series(name, out[c], valid[c])
        if kind[c] == K.FRESH:
            s = s.cast(pl.Boolean)
        elif name in flags:
            s = s != 0
        series.append(s.alias(name))
    return pl.DataFrame(series, height=n)


def ts_series(us: np.ndarray, name: str = "ts", missing: np.ndarray | None = None) -> pl.Series:
    """µs since the epoch as a UTC timestamp Series (:data:`engine.schema.TS_DTYPE`), null
    where ``missing``; over the int64 buffer as it is (:mod:`engine.arrow_buffers`), since the
    episodes stage makes these for every pack of every chunk."""
    us = np.ascontiguousarray(us, np.int64)
    validity = None
    if missing is not None and missing.any():
        validity = np.packbits(~np.asarray(missing, np.bool_), bitorder="little")
    return arrow_buffers.series(name, pa.timestamp("us", "UTC"), us, validity)
