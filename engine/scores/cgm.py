"""CGM metrics over a window: the International Consensus on Time in Range (Battelino et al.,
Diabetes Care 2019;42:1593-1603) and the glucose management indicator (Bergenstal et al.,
Diabetes Care 2018;41:2275-80).

Two weightings are reported side by side. The consensus expresses each range as a percent of CGM
readings (equivalently of sensor time when the readings are regular), so the unsuffixed columns
(``tir``, ``tbr_low`` …) are **percent of readings — the default to report**. The ``*_time``
columns weight each reading by the time until the next one (capped at ``max_gap``; the last
reading before a gap and the last of the window count one ``interval``), which corrects for
irregular sampling.

Hypoglycaemia events (consensus): level 1 starts with ≥ 15 consecutive minutes below 70 mg/dL,
level 2 with ≥ 15 consecutive minutes below 54 mg/dL; an event ends after ≥ 15 consecutive
minutes at or above 70 mg/dL, so dips separated by a shorter recovery count once. A run of
readings lasts from its first reading to one ``interval`` after its last (the last reading
stands for one sampling interval), so three 5-minute readings below 70 make 15 minutes and two
do not. This is the definition the ``events_below`` detector uses with ``interval`` set to the
sensor's, so a rule and this report count the same events. An event cannot span a sensor gap
longer than ``max_gap``: the state is unknown there, and a low run after the gap is a new event.
"""
from __future__ import annotations

from datetime import datetime

import polars as pl

from ..durations import US, parse_duration
from ..errors import InputError, SpecError
from ._chart import check_number

REFERENCE = ("Battelino T et al. Clinical targets for continuous glucose monitoring data "
             "interpretation: recommendations from the International Consensus on Time in Range. "
             "Diabetes Care 2019;42:1593-1603. GMI: Bergenstal RM et al. Diabetes Care "
             "2018;41:2275-80.")

#: range columns, in percent: in range, below low / very low, above high / very high
RANGES = ("tir", "tbr_low", "tbr_very_low", "tar_high", "tar_very_high")
OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.String(), "window_start": pl.Datetime("us", "UTC"),
    "window_end": pl.Datetime("us", "UTC"), "n_readings": pl.UInt32(),
    "expected_readings": pl.Int64(), "percent_active": pl.Float64(),
    "days_covered": pl.Float64(), "sufficient": pl.Boolean(),
    "mean": pl.Float64(), "sd": pl.Float64(), "cv": pl.Float64(), "gmi": pl.Float64(),
    **{r: pl.Float64() for r in RANGES}, **{f"{r}_time": pl.Float64() for r in RANGES},
    "hypo_level1_events": pl.UInt32(), "hypo_level2_events": pl.UInt32(),
}


def gmi_expr(mean_mg_dl: pl.Expr) -> pl.Expr:
    """Glucose management indicator (%) = 3.31 + 0.02392 × mean glucose (mg/dL)."""
    return 3.31 + 0.02392 * mean_mg_dl


def _as_utc(when: datetime | None, param: str) -> datetime | None:
    if when is None:
        return None
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise SpecError(f"The '{param}' parameter of cgm_metrics must be a timezone-aware "
                        f"datetime. Got {when!r} instead.")
    return when


def _readings(glucose: pl.DataFrame, time_zone: str | None) -> pl.DataFrame:
    """Validate and bring the input to (patient_id, ts UTC, value) sorted, nulls kept."""
    if not isinstance(glucose, pl.DataFrame):
        raise InputError(f"cgm_metrics takes a polars DataFrame. Got {type(glucose).__name__}.")
    missing = [c for c in ("patient_id", "ts", "value") if c not in glucose.columns]
    if missing:
        raise InputError("cgm_metrics needs the columns patient_id, ts and value.",
                         column=missing[0])
    if "metric" in glucose.columns:  # long telemetry: keep the glucose series only
        glucose = glucose.filter(pl.col("metric") == "glucose")
    dtype = glucose.schema["ts"]
    if not isinstance(dtype, pl.Datetime):
        raise InputError(f"cgm_metrics needs a datetime column; found {dtype}.", column="ts")
    if not glucose.schema["value"].is_numeric():
        raise InputError(f"cgm_metrics needs numeric glucose in mg/dL; found "
                         f"{glucose.schema['value']}.", column="value")
    ts = pl.col("ts").dt.cast_time_unit("us")
    if dtype.time_zone is None:
        if time_zone is None:
            raise InputError("naive timestamps: give time_zone (e.g. 'Europe/Paris') to read them "
                             "as local clock time.", column="ts")
        # ambiguous fall-back times: the first occurrence; spring-forward times never existed
        ts = ts.dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
    frame = glucose.select(
        pl.col("patient_id").cast(pl.String),
        ts.dt.convert_time_zone("UTC").alias("ts"),
        pl.col("value").cast(pl.Float64).fill_nan(None),
    )
    return frame.filter(pl.col("ts").is_not_null()).sort("patient_id", "ts")


def _hypo_events(runs: pl.DataFrame, low: float, end_at: float, min_us: int) -> pl.DataFrame:
    """Count events per patient from the runs table (one row per run of readings of one class).

    A run is a *low* marker when its readings are all < ``low`` for ≥ ``min_us``, a *recovery*
    marker when all ≥ ``end_at`` for ≥ ``min_us``; each segment (data between sensor gaps)
    starts as recovered. An event is a low marker whose previous marker in the segment is a
    recovery marker or none.
    """
    marked = runs.with_columns(
        marker=pl.when((pl.col("v_max") < low) & (pl.col("covered") >= min_us)).then(pl.lit("L"))
        .when((pl.col("v_min") >= end_at) & (pl.col("covered") >= min_us)).then(pl.lit("R"))
        .otherwise(None)
    ).filter(pl.col("marker").is_not_null())
    previous = pl.col("marker").shift(1).over("patient_id", "segment")
    return (marked.filter((pl.col("marker") == "L") & (previous.is_null() | (previous == "R")))
            .group_by("patient_id").agg(pl.len().alias("events")))


def cgm_metrics(glucose: pl.DataFrame, *, start: datetime | None = None,
                end: datetime | None = None, interval: str = "5m", max_gap: str | None = None,
                time_zone: str | None = None, low: float = 70.0, very_low: float = 54.0,
                high: float = 180.0, very_high: float = 250.0, hypo_duration: str = "15m",
                hypo_end: float = 70.0, min_days: float = 14.0,
                min_percent: float = 70.0) -> pl.DataFrame:
    """Consensus CGM metrics per patient over a window.

    Parameters
    ----------
    glucose : pl.DataFrame
        ``patient_id``, ``ts`` (datetime; UTC per the telemetry contract, or naive local clock
        time with ``time_zone``), ``value`` (glucose, mg/dL; null or NaN = no reading). A
        ``metric`` column, if present, selects the ``glucose`` rows.
    start, end : datetime, optional
        Timezone-aware window ``[start, end)``. By default each patient's window runs from the
        first reading to one ``interval`` after the last.
    interval : str
        Sensor interval (``5m`` for Dexcom G4-G7, ``15m`` for Libre): readings expected per window.
    max_gap : str, optional
        Longest interval between readings still treated as continuous (default 3 × interval).
    time_zone : str, optional
        Zone of naive ``ts`` (e.g. "Europe/Paris"); ambiguous fall-back times take the first
        occurrence and non-existent spring-forward times are dropped.
    low, very_low, high, very_high : float
        Range edges in mg/dL: TIR is ``low ≤ g ≤ high`` (70–180), TBR ``g < low`` (70) and
        ``g < very_low`` (54), TAR ``g > high`` (180) and ``g > very_high`` (250). Below/above
        percentages are cumulative (TBR < 70 includes the readings < 54).
    hypo_duration : str
        Minimum duration of a hypoglycaemia event and of the recovery ending it (15m).
    hypo_end : float
        Glucose at or above which recovery counts (70 mg/dL for both levels, Battelino 2019)
        [to confirm for level 2: some later statements end a level-2 event at ≥ 54].
    min_days, min_percent : float
        Data sufficiency: ``days_covered ≥ min_days`` (14) and ``percent_active ≥ min_percent``
        (70).

    Returns
    -------
    pl.DataFrame
        One row per patient: ``window_start``, ``window_end``, ``n_readings`` (valid readings in
        the window), ``expected_readings`` (window / interval), ``percent_active`` (readings
        present in % of expected, capped at 100), ``days_covered`` (first to last reading plus
        one interval, in days), ``sufficient``, ``mean``, ``sd`` (sample SD, mg/dL), ``cv``
        (SD / mean, %), ``gmi`` (%), the range percentages ``tir``, ``tbr_low``,
        ``tbr_very_low``, ``tar_high``, ``tar_very_high`` (percent of readings) and their
        ``*_time`` time-weighted twins, ``hypo_level1_events``, ``hypo_level2_events``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> ts = [t0 + timedelta(minutes=5 * i) for i in range(6)]
    >>> g = pl.DataFrame({"patient_id": "p1", "ts": ts,
    ...                   "value": [100.0, 65.0, 60.0, 62.0, 120.0, 200.0]})
    >>> cgm_metrics(g).select("tir", "tbr_low", "tar_high", "hypo_level1_events").rows()
    [(33.33333333333333, 50.0, 16.666666666666664, 1)]
    """
    fn = "cgm_metrics"
    step = parse_duration(interval, what="'interval' parameter of cgm_metrics")
    gap = (3 * step if max_gap is None
           else parse_duration(max_gap, what="'max_gap' parameter of cgm_metrics"))
    min_us = parse_duration(hypo_duration, what="'hypo_duration' parameter of cgm_metrics")
    if step <= 0 or gap < step:
        raise SpecError(f"cgm_metrics needs 0 < interval <= max_gap. Got interval={interval!r}, "
                        f"max_gap={max_gap!r}.")
    low, very_low, high, very_high, hypo_end, min_days, min_percent = (
        check_number(v, p, fn) for v, p in [(low, "low"), (very_low, "very_low"), (high, "high"),
                                            (very_high, "very_high"), (hypo_end, "hypo_end"),
                                            (min_days, "min_days"), (min_percent, "min_percent")])
    if not very_low <= low <= high <= very_high:
        raise SpecError("cgm_metrics needs very_low <= low <= high <= very_high (mg/dL).")
    start, end = _as_utc(start, "start"), _as_utc(end, "end")
    if start is not None and end is not None and end <= start:
        raise SpecError(f"cgm_metrics needs start < end. Got start={start}, end={end}.")

    frame = _readings(glucose, time_zone)
    patients = frame.select("patient_id").unique()
    if start is not None:
        frame = frame.filter(pl.col("ts") >= start)
    if end is not None:
        frame = frame.filter(pl.col("ts") < end)
    frame = frame.filter(pl.col("value").is_not_null())

    # weight: time until the next reading, one interval across a gap or at the end
    nxt = pl.col("ts").shift(-1).over("patient_id")
    dt = (nxt - pl.col("ts")).dt.total_microseconds()
    frame = frame.with_columns(
        weight=pl.when(dt.is_not_null() & (dt <= gap)).then(dt).otherwise(step).cast(pl.Float64),
        gap_before=((pl.col("ts") - pl.col("ts").shift(1).over("patient_id"))
                    .dt.total_microseconds().fill_null(gap + 1) > gap),
    )
    v = pl.col("value")
    in_range = {"tir": (v >= low) & (v <= high), "tbr_low": v < low, "tbr_very_low": v < very_low,
                "tar_high": v > high, "tar_very_high": v > very_high}
    w = pl.col("weight")
    summary = frame.group_by("patient_id").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"),
        pl.len().cast(pl.UInt32).alias("n_readings"),
        v.mean().alias("mean"), v.std(ddof=1).alias("sd"),
        *[(cond.mean() * 100).alias(name) for name, cond in in_range.items()],
        *[((w * cond).sum() / w.sum() * 100).alias(f"{name}_time")
          for name, cond in in_range.items()],
    )

    # runs: consecutive readings of one class (low / neither / recovered) inside one segment
    events = {}
    for level, threshold in (("hypo_level1_events", low), ("hypo_level2_events", very_low)):
        cls = pl.when(v < threshold).then(0).when(v >= hypo_end).then(2).otherwise(1)
        runs = (frame.with_columns(cls=cls, segment=pl.col("gap_before").cum_sum())
                .with_columns(run=((pl.col("cls") != pl.col("cls").shift(1)) |
                                   pl.col("gap_before")).fill_null(True).cum_sum())
                .group_by("patient_id", "segment", "run")
                .agg(covered=(pl.col("ts").max() - pl.col("ts").min())
                     .dt.total_microseconds() + step, v_max=v.max(), v_min=v.min())
                .sort("patient_id", "run"))
        events[level] = _hypo_events(runs, threshold, hypo_end, min_us)

    window_start = (pl.lit(start, pl.Datetime("us", "UTC")) if start is not None
                    else pl.col("first"))
    window_end = (pl.lit(end, pl.Datetime("us", "UTC")) if end is not None
                  else pl.col("last") + pl.duration(microseconds=step))
    out = patients.join(summary, on="patient_id", how="left")
    for level, counts in events.items():
        out = out.join(counts.rename({"events": level}), on="patient_id", how="left")
    span = (window_end - window_start).dt.total_microseconds()
    expected = span // step
    out = out.with_columns(
        window_start=window_start, window_end=window_end,
        n_readings=pl.col("n_readings").fill_null(0),
        expected_readings=expected,
        percent_active=pl.when(expected > 0).then(pl.min_horizontal(
            pl.col("n_readings").fill_null(0) / expected * 100, pl.lit(100.0))),
        days_covered=(((pl.col("last") - pl.col("first")).dt.total_microseconds() + step)
                      / US["d"]).fill_null(0.0),
        cv=pl.col("sd") / pl.col("mean") * 100,
        gmi=gmi_expr(pl.col("mean")),
        **{level: pl.col(level).fill_null(0).cast(pl.UInt32) for level in events},
    ).with_columns(
        sufficient=(pl.col("days_covered") >= min_days)
        & (pl.col("percent_active").fill_null(0.0) >= min_percent),
    )
    return out.select([pl.col(c).cast(t) for c, t in OUTPUT_SCHEMA.items()]).sort("patient_id")
