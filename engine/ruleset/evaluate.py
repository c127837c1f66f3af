"""Evaluate compiled packs on telemetry: timeline → as-of values → conditions → episodes.

Per pack: the patients in scope, their evaluation timeline (:mod:`engine.align`), the as-of value
of every detector, metric and patient field the rules read, the scores they use, each rule's
condition as a polars expression, then one numba pass over every (patient, rule) series that
turns conditions into episodes (``for:``, ``cooldown``, ``resolve_after``, ``on_missing``).

Episode semantics (rules/README.md, "When a rule fires"), per patient and rule, on the timeline:

* a *run* is a stretch of consecutive timeline times where the condition holds; the rule fires at
  the first time t of a run with ``t - t0 >= for`` (t0 the run's first time), at least
  ``confirm_readings`` *fresh* times in [t0, t] when that is 2 or more (times of the run at which
  a metric the condition reads has a reading — not a value carried forward), and, when an
  earlier episode opened at t', ``t - t' >= cooldown``; that opens an episode (``opened_at`` = t,
  ``condition_since`` = t0) unless one is open already;
* an open episode's ``last_seen_at`` is the last time the condition held; it resolves at the
  first known-false time t with ``t - f0 >= resolve_after``, f0 the first known-false time since
  the condition last held: unknown times in between are skipped (they neither resolve nor
  restart the count) and a time where it holds starts the count again; a null never resolves;
* ``on_missing`` decides what a null condition does to a run: ``false`` (default) — it does not
  hold, so it ends a run; ``true`` — it holds; ``hold`` — the time is skipped, as if it were not
  on the timeline (the run continues across it but never fires at it).
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
from numba import njit, prange

from .. import align
from .. import detectors as _detectors
from ..config import JIT_PARALLEL
from ..errors import InputError
from ..schema import TS_DTYPE
from .compiled import CompiledPack
from .evidence import default_reason, evidence_json, parse_template, render_reason
from .symbols import PATIENT_FIELDS

#: decimals detector outputs are rounded to before rules compare them (float noise)
DETECTOR_DECIMALS = 9

HOLDS, FALSE, UNKNOWN, SKIP = 1, 0, -1, 2
EPISODE_COLUMNS = {
    "patient_id": pl.String, "rule_id": pl.String, "pack": pl.String, "severity": pl.String,
    "title": pl.String, "opened_at": TS_DTYPE, "condition_since": TS_DTYPE,
    "last_seen_at": TS_DTYPE, "resolved_at": TS_DTYPE, "evidence": pl.String,
    "reason": pl.String,
}


@njit(**JIT_PARALLEL)
def episode_kernel(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm):
    """Episodes of every series (one patient's timeline for one rule) in one call.

    ``state`` is int8: 1 holds, 0 known false, -1 unknown (ends a run; skipped by the
    resolution count), 2 skip. ``fresh`` is bool: a metric the condition reads has a reading at
    that time; a run fires only once it holds at ``confirm`` fresh times (``confirm <= 1``: no
    count). Returns row indices ``opened, since, last, resolved`` (-1: not resolved), written per
    series from the series' first row, and ``count[k]`` episodes for series ``k``.
    """
    n = ts.size
    opened = np.full(n, -1, np.int64)
    since = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    resolved = np.full(n, -1, np.int64)
    count = np.zeros(offsets.size - 1, np.int64)
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        w = a                       # next episode slot of this series
        cur = -1                    # slot of the open episode, -1 when none
        run = -1                    # first row of the current run
        run_fresh = 0               # fresh rows of the current run so far
        false_from = -1             # first known-false row since the condition last held
        prev_open = np.int64(0)
        have_prev = False
        for i in range(a, b):
            s = state[i]
            if s == SKIP:
                continue
            if s == HOLDS:
                false_from = -1
                if run < 0:
                    run = i
                    run_fresh = 0
                if fresh[i]:
                    run_fresh += 1
                if cur >= 0:
                    last[cur] = i
                elif (ts[i] - ts[run] >= for_us and (confirm <= 1 or run_fresh >= confirm)
                      and (not have_prev or ts[i] - prev_open >= cooldown_us)):
                    opened[w], since[w], last[w] = i, run, i
                    cur, w = w, w + 1
                    prev_open, have_prev = ts[i], True
            else:
                run = -1
                if s == FALSE:
                    if false_from < 0:
                        false_from = i
                    if cur >= 0 and ts[i] - ts[false_from] >= resolve_us:
                        resolved[cur] = i
                        cur = -1
                # UNKNOWN: the resolution count pauses (false_from is kept)
        count[k] = w - a
    return opened, since, last, resolved, count


def _patients_frame(patients: pl.DataFrame | None) -> pl.DataFrame:
    cols = {"patient_id": pl.String, "programme": pl.String, "age": pl.Int64,
            "height_cm": pl.Float64, "baseline_weight_kg": pl.Float64, "spo2_scale": pl.Int64,
            "enrolled_at": TS_DTYPE}
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


def in_scope(pack: CompiledPack, ids: pl.DataFrame, pats: pl.DataFrame) -> pl.DataFrame:
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


def pack_timeline(pack: CompiledPack, tel: pl.DataFrame, det: pl.DataFrame | None,
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
    tl = align.timeline(obs.select("patient_id", "ts"), every_us=pack.evaluate_every_us,
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
        tl = align.as_of(tl, src, d.column, staleness_us=d.staleness_us)
        if d.type.kind == "bool":
            tl = tl.with_columns((pl.col(d.column) != 0).alias(d.column))
    for m in pack.metrics:
        src = rows.filter(pl.col("metric") == m).select("patient_id", "ts", "value")
        tl = align.as_of(tl, src, m, staleness_us=pack.staleness_us[m])
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


def _states(cond: pl.Series, on_missing: str) -> np.ndarray:
    s = cond.cast(pl.Int8)
    missing = {"false": UNKNOWN, "true": HOLDS, "hold": SKIP}[on_missing]
    return s.fill_null(missing).to_numpy().astype(np.int8)


def evaluate_packs(packs, telemetry: pl.DataFrame, patients: pl.DataFrame | None = None, *,
                   until=None, specs: dict | None = None) -> pl.DataFrame:
    """Episodes of every enabled rule of ``packs`` (see :meth:`RuleSet.evaluate`)."""
    if until is not None and (not isinstance(until, datetime) or until.tzinfo is None):
        raise InputError(f"until must be a timezone-aware datetime (e.g. datetime.now(timezone."
                         f"utc)). Got {until!r} instead.")
    tel = _telemetry(telemetry, until)
    pats = _patients_frame(patients)
    if specs is None:
        specs = {d.column: d.spec for p in packs for d in p.detectors.values()
                 if d.kind == "detector"}
    det = None
    if specs and tel.height:
        metrics = {s["metric"] for s in specs.values()}
        det = _detectors.evaluate(tel.filter(pl.col("metric").is_in(sorted(metrics))), specs)
        # Differences of readings carry binary float noise (82.1 - 80.1 = 2.000000000000014):
        # without rounding, "gain > 2 kg" would fire on a gain of exactly 2 kg. Nine decimals
        # are far below any device's resolution and far above the noise.
        det = det.with_columns(pl.col(c).round(DETECTOR_DECIMALS) for c in specs)
    out = []
    for pack in packs:
        rules = [r for r in pack.rules if r.enabled]
        if not rules:
            continue
        if det is None and any(d.kind == "detector" for d in pack.detectors.values()):
            det = pl.DataFrame(schema={"patient_id": pl.String, "metric": pl.String,
                                       "ts": TS_DTYPE, "value": pl.Float64,
                                       **{c: pl.Float64 for c in specs}})
        tl = pack_timeline(pack, tel, det, pats, until)
        if tl.height == 0:
            continue
        conds = tl.select([r.expr.alias(f"__c{i}") for i, r in enumerate(rules)])
        pid = tl["patient_id"]
        starts = np.flatnonzero(np.r_[True, (pid[1:] != pid[:-1]).to_numpy()])
        offsets = np.append(starts, tl.height).astype(np.int64)
        ts = tl["ts"].dt.epoch("us").to_numpy().astype(np.int64)
        every_time = np.ones(tl.height, np.bool_)
        for i, r in enumerate(rules):
            state = _states(conds[f"__c{i}"], r.on_missing)
            fresh = (tl[fresh_column(r.confirm_metrics)].to_numpy().astype(np.bool_)
                     if r.confirm_readings > 1 else every_time)
            o, s, l, z, count = episode_kernel(ts, state, offsets, r.for_us, r.cooldown_us,
                                               r.resolve_after_us, fresh, r.confirm_readings)
            keep = o >= 0
            if keep.any():
                out.append(_episodes(pack, r, tl, o[keep], s[keep], l[keep], z[keep]))
    if not out:
        return pl.DataFrame(schema=EPISODE_COLUMNS)
    return (pl.concat(out).select(list(EPISODE_COLUMNS))
            .sort("patient_id", "opened_at", "rule_id"))


def _episodes(pack, rule, tl, opened, since, last, resolved) -> pl.DataFrame:
    ts = tl["ts"]
    res = ts.gather(np.where(resolved >= 0, resolved, 0))
    res = pl.select(pl.when(pl.Series(resolved >= 0)).then(res).otherwise(None)).to_series()
    at = tl[opened]
    units = {n: _unit(pack.symbols[n]) for n in rule.evidence_names}
    parts = parse_template(rule.reason)[0] if rule.reason else None
    k = len(opened)
    syms = {n: pack.symbols[n] for n in rule.evidence_names}
    columns = list(dict.fromkeys(s.column for s in syms.values() if s.column))
    rows = at.select(columns).to_dicts() if columns else [{} for _ in range(k)]
    evidence, reasons = [], []
    for row in rows:
        values = {n: (s.value if s.column is None else row[s.column], units[n])
                  for n, s in syms.items()}
        evidence.append(evidence_json(values))
        reasons.append(render_reason(parts, values) if parts else
                       default_reason(rule.title, values, set(rule.params)))
    return pl.DataFrame({
        "patient_id": tl["patient_id"].gather(opened), "rule_id": [rule.id] * k,
        "pack": [pack.name] * k, "severity": [rule.severity] * k, "title": [rule.title] * k,
        "opened_at": ts.gather(opened), "condition_since": ts.gather(since),
        "last_seen_at": ts.gather(last), "resolved_at": res.alias("resolved_at"),
        "evidence": evidence, "reason": reasons,
    }, schema_overrides=EPISODE_COLUMNS)


def _unit(sym) -> str:
    t = sym.type
    if t.kind != "number" or t.unit is None:
        return ""
    return t.unit.label

