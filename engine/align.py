"""The evaluation timeline and as-of values (DESIGN.md §1, stage ``align``).

Rules are evaluated per patient at the times of a *timeline*: the union of the observation times
of the metrics a rule pack uses, optionally plus a fixed cadence (``evaluate_every: 1h``) from the
patient's first observation (or enrolment) to the last observation or to ``until``. At each
timeline time every value a rule reads is its latest value *at or before* that time — an as-of
(backward) join by patient — provided it is not older than its maximum *staleness*: a week-old
SpO2 must not satisfy "SpO2 < 92 now", so past the staleness the value is null (unknown).

Staleness of a value: its detector spec's ``staleness``, else the pack's
``defaults: {staleness: ...}``, else the built-in default of its metric
(:data:`DEFAULT_STALENESS`: how often the metric is measured at home, with margin). The boundary
is inclusive: a reading exactly ``staleness`` old still counts.

Everything here is vectorised over all patients (polars ``join_asof`` with ``by="patient_id"``);
there is no Python loop per patient.

>>> import polars as pl
>>> from datetime import datetime, timezone
>>> t = lambda h: datetime(2026, 1, 1, h, tzinfo=timezone.utc)
>>> obs = pl.DataFrame({"patient_id": ["p1", "p1"], "ts": [t(0), t(8)], "value": [95.0, 91.0]})
>>> tl = timeline(obs.select("patient_id", "ts"), every_us=4 * 3_600_000_000)
>>> as_of(tl, obs, "spo2", staleness_us=3 * 3_600_000_000)["spo2"].to_list()
[95.0, None, 91.0]
"""
from __future__ import annotations

import polars as pl

from .schema import TS_DTYPE

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

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


def default_staleness(metric: str | None) -> int:
    """The built-in staleness of ``metric`` in µs (:data:`DEFAULT_STALENESS`)."""
    return DEFAULT_STALENESS.get(metric or "", FALLBACK_STALENESS)


def _us(ts: pl.Expr) -> pl.Expr:
    return ts.dt.epoch("us")


def timeline(observations: pl.DataFrame, *, every_us: int | None = None, until=None,
             starts: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per-patient evaluation times.

    Parameters
    ----------
    observations : pl.DataFrame
        ``patient_id``, ``ts``: the observation times of the metrics the rules use.
    every_us : int, optional
        A fixed cadence in µs added to the observation times. Cadence times are multiples of
        ``every_us`` since the Unix epoch (so ``1h`` falls on the hour and an incremental run
        sees the same times as a batch run), from the patient's first observation (or ``starts``
        when earlier) to the last observation, or to ``until`` when given.
    until : datetime, optional
        Last evaluation time; later times are dropped.
    starts : pl.DataFrame, optional
        ``patient_id``, ``start``: when a patient's cadence may begin although they have no
        observation yet (enrolment). Used only with ``every_us`` and ``until``.

    Returns
    -------
    pl.DataFrame
        ``patient_id``, ``ts`` unique and sorted by (patient_id, ts).
    """
    obs = observations.select(pl.col("patient_id").cast(pl.String),
                              pl.col("ts").cast(TS_DTYPE))
    if until is not None:
        obs = obs.filter(pl.col("ts") <= pl.lit(until).cast(TS_DTYPE))
    parts = [obs]
    if every_us:
        span = obs.group_by("patient_id").agg(_us(pl.col("ts")).min().alias("a"),
                                             _us(pl.col("ts")).max().alias("b"))
        if starts is not None and until is not None:
            st = starts.select(pl.col("patient_id").cast(pl.String),
                               _us(pl.col("start").cast(TS_DTYPE)).alias("s")).drop_nulls()
            span = (span.join(st, on="patient_id", how="full", coalesce=True)
                    .with_columns(pl.min_horizontal("a", "s").alias("a")).drop("s"))
        end = (pl.lit(until).cast(TS_DTYPE).dt.epoch("us") if until is not None
               else pl.col("b"))
        ticks = (span.with_columns(end.alias("b"))
                 .with_columns(((pl.col("a") + every_us - 1) // every_us * every_us).alias("a"))
                 .filter(pl.col("a") <= pl.col("b"))
                 .select("patient_id",
                         pl.int_ranges("a", pl.col("b") + 1, every_us, dtype=pl.Int64)
                         .alias("ts"))
                 .explode("ts")
                 .select("patient_id", pl.from_epoch("ts", time_unit="us")
                         .dt.replace_time_zone("UTC").alias("ts")))
        parts.append(ticks)
    return (pl.concat(parts).unique(maintain_order=False).drop_nulls()
            .sort("patient_id", "ts"))


def as_of(tl: pl.DataFrame, values: pl.DataFrame, name: str, *,
          staleness_us: int | None) -> pl.DataFrame:
    """Add column ``name``: each timeline row's latest ``value`` at or before its time, null
    when none is at most ``staleness_us`` old (inclusive) or when that latest value is null.

    ``values`` has ``patient_id``, ``ts``, ``value`` (at most one row per patient and time).
    The latest *row* is taken even when its value is null: an undefined detector output now is
    not replaced by an older, defined one.
    """
    right = (values.select(pl.col("patient_id").cast(pl.String),
                           pl.col("ts").cast(TS_DTYPE).alias("_src_ts"),
                           pl.col("value").alias(name))
             .sort("_src_ts"))
    left = tl.with_row_index("_row").sort("ts")
    tol = None if staleness_us is None else f"{int(staleness_us)}us"
    joined = left.join_asof(right, left_on="ts", right_on="_src_ts", by="patient_id",
                            strategy="backward", tolerance=tol, check_sortedness=False)
    return joined.sort("_row").drop("_row", "_src_ts")
