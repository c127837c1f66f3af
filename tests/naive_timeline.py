"""Reference implementation of the timeline stage: the obvious polars version.

A pack's timeline is the ``concat + unique + sort`` of its patients' observation times and cadence
ticks; each value it carries is a ``join_asof`` (backward, by patient, with the staleness as
tolerance); silences come from :func:`engine.detectors.silence_at`, fresh readings from a join.
``engine.timeline`` computes the same thing in numba; ``tests/test_timeline_reference.py``
compares the two. This was veille's rule evaluation before the pipeline of stages; it is kept as
the definition.
"""
from __future__ import annotations

import polars as pl

from engine import detectors as _detectors
from engine.errors import InputError
from engine.ruleset.compile.symbols import PATIENT_FIELDS
from engine.schema import PATIENT_SCHEMA, TS_DTYPE


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


def _patients_frame(patients: pl.DataFrame | None) -> pl.DataFrame:
    cols = {c: t for c, (t, _, _) in PATIENT_SCHEMA.items()}    # care plan fields included
    if patients is None:
        return pl.DataFrame(schema=cols)
    if not isinstance(patients, pl.DataFrame) or "patient_id" not in patients.columns:
        raise InputError("patients must be a polars DataFrame with a 'patient_id' column.")
    return patients.select([
        (pl.col(c).cast(t) if c in patients.columns else pl.lit(None, t)).alias(c)
        for c, t in cols.items()]).unique("patient_id", keep="first")


def _telemetry(telemetry: pl.DataFrame, until) -> pl.DataFrame:
    if not isinstance(telemetry, pl.DataFrame):
        raise InputError(f"telemetry must be a polars DataFrame. Got {type(telemetry).__name__}.")
    for c in ("patient_id", "ts", "metric", "value"):
        if c not in telemetry.columns:
            raise InputError(f"telemetry has no column {c!r}; it needs patient_id, ts, metric, "
                             "value.", column=c)
    tel = telemetry.select(pl.col("patient_id").cast(pl.String), pl.col("metric").cast(pl.String),
                           pl.col("ts").cast(TS_DTYPE), pl.col("value").cast(pl.Float64))
    if until is not None:
        tel = tel.filter(pl.col("ts") <= pl.lit(until).cast(TS_DTYPE))
    # clean telemetry is sorted already (a cheap check then); the detectors need it
    return tel.sort("patient_id", "metric", "ts")


def in_scope(pack, ids: pl.DataFrame, pats: pl.DataFrame) -> pl.DataFrame:
    """The patient ids of ``ids`` the pack applies to (unknown patients: cohort 'any' only;
    unknown age: in scope — an unknown age must not silence alerts)."""
    df = ids.join(pats.select("patient_id", "programme", "age"), on="patient_id", how="left")
    cond = pl.lit(True)
    if pack.cohorts is not None:
        cond = cond & pl.col("programme").is_in(list(pack.cohorts)).fill_null(False)
    if pack.min_age is not None:
        cond = cond & (pl.col("age").is_null() | (pl.col("age") >= pack.min_age))
    if pack.max_age is not None:
        cond = cond & (pl.col("age").is_null() | (pl.col("age") <= pack.max_age))
    return df.filter(cond).select("patient_id")


def pack_timeline(pack, tel: pl.DataFrame, det: pl.DataFrame | None,
                  pats: pl.DataFrame, until) -> pl.DataFrame:
    """The pack's evaluation timeline with one column per name its rules read."""
    ids = pl.concat([tel.select("patient_id").unique(),
                     pats.filter(pl.col("enrolled_at").is_not_null()).select("patient_id")]
                    ).unique()
    scope = in_scope(pack, ids, pats)
    metrics: set[str] = set(pack.metrics)
    every_metric = False
    for d in pack.detectors.values():
        if d.metrics is None:
            every_metric = True
        else:
            metrics.update(d.metrics)
    rows = tel.join(scope, on="patient_id", how="semi")
    obs = rows if every_metric else rows.filter(pl.col("metric").is_in(sorted(metrics)))
    starts = (pats.join(scope, on="patient_id", how="semi")
              .select("patient_id", pl.col("enrolled_at").alias("start")))
    tl = timeline(obs.select("patient_id", "ts"), every_us=pack.evaluate_every_us,
                        until=until, starts=starts)
    if tl.height == 0:
        return tl
    for name, d in pack.detectors.items():
        if d.kind == "silence":
            got = _detectors.silence_at(rows, tl, 0, metrics=d.metrics,
                                        patients=pats.select("patient_id", "enrolled_at"))
            tl = tl.with_columns(got["minutes_since_last"].alias(d.column))
            continue
        src = det.filter(pl.col("metric") == d.metrics[0]).select(
            "patient_id", "ts", pl.col(d.column).alias("value"))
        tl = as_of(tl, src, d.column, staleness_us=d.staleness_us)
        if d.type.kind == "bool":
            tl = tl.with_columns((pl.col(d.column) != 0).alias(d.column))
    for m in pack.metrics:
        src = rows.filter(pl.col("metric") == m).select("patient_id", "ts", "value")
        tl = as_of(tl, src, m, staleness_us=pack.staleness_us[m])
    tl = add_fresh_columns(tl, rows, {r.confirm_metrics for r in pack.rules
                                      if r.enabled and r.confirm_readings > 1})
    tl = tl.join(pats.select("patient_id", *PATIENT_FIELDS), on="patient_id", how="left",
                 maintain_order="left")
    for score in pack.scores.values():
        for inp in score.inputs:
            if inp not in tl.columns:
                tl = tl.with_columns(pl.lit(None, pl.Float64).alias(inp))
        tl = score.compute(tl)
    return tl


def fresh_column(metrics: tuple[str, ...] | None) -> str:
    """The timeline column saying whether one of ``metrics`` (None: any) has a reading then."""
    return "__fresh:" + ("*" if metrics is None else ",".join(metrics))


def add_fresh_columns(tl: pl.DataFrame, rows: pl.DataFrame, metric_sets) -> pl.DataFrame:
    """One Boolean column per metric set (:func:`fresh_column`): does the patient have a
    reading of one of those metrics at exactly this timeline time? (``confirm_readings``)"""
    for metrics in sorted(metric_sets, key=lambda m: fresh_column(m)):
        name = fresh_column(metrics)
        obs = rows if metrics is None else rows.filter(pl.col("metric").is_in(list(metrics)))
        times = obs.select("patient_id", "ts").unique().with_columns(pl.lit(True).alias(name))
        tl = (tl.join(times, on=["patient_id", "ts"], how="left", maintain_order="left")
              .with_columns(pl.col(name).fill_null(False)))
    return tl




def reference_timeline(pack, telemetry: pl.DataFrame, patients: pl.DataFrame | None, until):
    """The pack's timeline frame as the polars reference computes it (detectors rounded as the
    rules see them)."""
    tel = _telemetry(telemetry, until)
    pats = _patients_frame(patients)
    specs = {d.column: d.spec for d in pack.detectors.values() if d.kind == "detector"}
    det = None
    if specs and tel.height:
        metrics = {s["metric"] for s in specs.values()}
        det = _detectors.evaluate(tel.filter(pl.col("metric").is_in(sorted(metrics))), specs)
        det = det.with_columns(pl.col(c).round(9) for c in specs)
    elif specs:
        det = pl.DataFrame(schema={"patient_id": pl.String, "metric": pl.String, "ts": TS_DTYPE,
                                   "value": pl.Float64, **{c: pl.Float64 for c in specs}})
    return pack_timeline(pack, tel, det, pats, until)
