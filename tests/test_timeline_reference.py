"""The timeline stage (numba kernels) equals its plain polars reference (tests/naive_timeline.py)
on random irregular telemetry: the same evaluation times and the same value in every column —
detectors with their staleness, readings, silences over a set of metrics or any metric (from
enrolment when nothing was sent yet), fresh readings, patient context and scores — with and
without a cadence and an ``until``, over patients with gaps, single readings, ties across
metrics, and patients enrolled without any reading."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.detect import DetectorPlan, arrays, detect_arrays
from engine.ingest import ingest_frame
from engine.ingest.index import SeriesIndex
from engine.patients import Cohort, check_patients
from engine.ruleset import load_rules_text
from engine.timeline import Telemetry, build
from engine.timeline.kernels import round9
from tests.naive_timeline import reference_timeline

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
MIN = dt.timedelta(minutes=1)

PACKS = {"a.yaml": """
pack: tla
version: "1"
scope: {cohort: any}
evaluate_every: 1h
detectors:
  hr_mean: {metric: heart_rate, fn: mean, window: 2h, staleness: 3h}
  hr_sd: {metric: heart_rate, fn: std, window: 6h}
  w_gain: {metric: weight, fn: delta, window: 1d}
  quiet: {fn: silence_at, metric: [spo2, heart_rate]}
  any_quiet: {fn: silence_at, metric: any}
  quiet_too: {fn: silence_at, metric: [heart_rate, spo2]}
rules:
  - {id: a.hr, title: HR, when: hr_mean > 100 and spo2 < 95 and hr_sd > 1, severity: high,
     confirm_readings: 2}
  - {id: a.q, title: Q, when: quiet > 120 min or any_quiet > 6h, severity: low}
  - {id: a.q2, title: Q2, when: quiet_too > 30 min, severity: low, confirm_readings: 2}
  - {id: a.w, title: W, when: w_gain > 1 kg and not isnull(weight), severity: medium}
""", "b.yaml": """
pack: tlb
version: "1"
scope: {cohort: [copd, heart_failure], min_age: 60}
defaults: {staleness: 90m}
rules:
  - {id: b.news, title: NEWS, when: news2 >= 5 or spo2_scale == 2, severity: high}
  - {id: b.age, title: Age, when: age > 80 and resp_rate > 20, severity: low,
     confirm_readings: 2}
""", "c.yaml": """
pack: tlc
version: "1"
scope: {cohort: diabetes}
evaluate_every: 30m
detectors:
  low: {metric: glucose, fn: time_below, threshold: 70, max_gap: 20m}
  tir: {metric: glucose, fn: time_in_range, low: 70, high: 180, window: 3h}
rules:
  - {id: c.low, title: Low, when: low >= 15 min, severity: high}
  - {id: c.tir, title: TIR, when: tir < 50 %, severity: low}
"""}
RULES = load_rules_text(PACKS)
METRICS = ["heart_rate", "spo2", "weight", "resp_rate", "sbp", "temp", "consciousness",
           "on_oxygen", "glucose"]
VALUES = {"heart_rate": (40, 140), "spo2": (85, 100), "weight": (60, 90), "resp_rate": (8, 30),
          "sbp": (80, 180), "temp": (35, 40), "consciousness": (0, 0), "on_oxygen": (0, 1),
          "glucose": (50, 250)}
PROGRAMMES = ["copd", "heart_failure", "diabetes", "covid_home", None]


@st.composite
def cohorts(draw):
    n_pat = draw(st.integers(1, 5))
    rows, pats = [], []
    for p in range(n_pat):
        pid = f"P{p}"
        enrolled = draw(st.one_of(st.none(), st.integers(-600, 3000)))
        prog = draw(st.sampled_from(PROGRAMMES))
        if prog is not None:
            pats.append((pid, prog, draw(st.one_of(st.none(), st.integers(40, 95))),
                         draw(st.sampled_from([1, 2, None])),
                         None if enrolled is None else T0 + enrolled * MIN))
        if draw(st.integers(0, 5)) == 0:
            continue                                # enrolled, nothing sent
        for m in draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=4, unique=True)):
            lo, hi = VALUES[m]
            k = draw(st.integers(1, 25))
            steps = draw(st.lists(st.sampled_from([0, 1, 5, 30, 60, 90, 240, 1500]),
                                  min_size=k, max_size=k))
            t = draw(st.integers(0, 600))
            for step in steps:
                t += step
                rows.append((pid, T0 + t * MIN, m, float(draw(st.integers(lo, hi)))))
    tel = pl.DataFrame(rows, schema={"patient_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                     "metric": pl.String, "value": pl.Float64}, orient="row")
    table = check_patients(pl.DataFrame(
        pats, schema={"patient_id": pl.String, "programme": pl.String, "age": pl.Int64,
                      "spo2_scale": pl.Int64, "enrolled_at": pl.Datetime("us", "UTC")},
        orient="row")) if pats else None
    until = draw(st.one_of(st.none(), st.integers(0, 6000)))
    return tel, table, None if until is None else T0 + until * MIN


def _us(t):
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cohorts())
def test_timelines_equal_reference(data):
    tel, patients, until = data
    if tel.height == 0:
        return
    clean = ingest_frame(tel, now=NOW).clean
    if until is not None:
        clean = clean.filter(pl.col("ts") <= until)
    index = SeriesIndex.of(clean)
    cohort = Cohort.of(index.patient_ids, patients)
    index = index.recode(cohort.ids)
    ts, x = arrays(clean)
    det = detect_arrays(ts, x, index, DetectorPlan.of(RULES.packs))
    for pack in RULES.packs:
        got = build(pack, Telemetry(ts, x, index), det, cohort,
                    None if until is None else _us(until)).frame()
        want = reference_timeline(pack, clean, patients, until)
        assert got.height == want.height, pack.name
        if want.height == 0:
            continue                                # the reference stops before its columns
        want = want.select(got.columns)
        for c in got.columns:
            a, b = got[c], want[c]
            if a.dtype != b.dtype:          # programme: the cohort context's own type
                a = a.cast(b.dtype)
            assert a.equals(b, check_names=False), (pack.name, c)


@settings(deadline=None)          # the first example loads the compiled kernel from its cache
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_round9_is_polars_round_9(v):
    want = pl.Series([v]).round(9)[0]
    got = round9(v)
    assert (np.isnan(got) and np.isnan(want)) or got == want
