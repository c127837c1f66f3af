"""The detect stage: detectors deduplicated across packs, run once per metric block, give every
use exactly what evaluating its spec alone gives (engine.detectors.evaluate), on random
multi-metric telemetry; blocks are sized rows-of-the-metric x detectors-of-the-metric."""
from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import detectors
from engine.detect import DetectorPlan, detect
from engine.ingest import ingest_frame

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
SPECS = {
    "hf.gain": {"metric": "weight", "fn": "delta", "window": "3d"},
    "mal.gain": {"metric": "weight", "fn": "delta", "window": "72h"},      # the same detector
    "w_mean": {"metric": "weight", "fn": "mean", "window": "1d"},
    "w_sd": {"metric": "weight", "fn": "std", "window": "1d"},
    "hr_min": {"metric": "heart_rate", "fn": "min", "window": "6h"},
    "hr_max": {"metric": "heart_rate", "fn": "max", "window": "6h"},
    "hr_sd": {"metric": "heart_rate", "fn": "std", "window": "12h"},     # one sweep with both
    "hr_z": {"metric": "heart_rate", "fn": "zscore", "window": "1d", "lag": "2h"},
    "low": {"metric": "glucose", "fn": "time_below", "threshold": 70.0},
    "ev": {"metric": "glucose", "fn": "events_below", "threshold": 54.0, "window": "1d"},
}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]),
                          st.sampled_from(["weight", "heart_rate", "glucose", "spo2"]),
                          st.integers(0, 5 * 24 * 60), st.integers(60, 100)),
                min_size=1, max_size=120))
def test_each_use_equals_its_spec_alone(rows):
    raw = pl.DataFrame([(p, T0 + dt.timedelta(minutes=t), m, float(v)) for p, m, t, v in rows],
                       schema={"patient_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                               "metric": pl.String, "value": pl.Float64}, orient="row")
    ing = ingest_frame(raw, now=NOW)
    plan = DetectorPlan.from_specs(SPECS)
    det = detect(ing.clean, plan, ing.index)
    alone = detectors.evaluate(ing.clean, SPECS)
    full = ing.clean.join(alone.select("patient_id", "metric", "ts", *SPECS),
                          on=["patient_id", "metric", "ts"], how="left", maintain_order="left")
    for name in SPECS:
        got, want = det.column(name), full[name]
        assert got.equals(want, check_names=False), name
    for metric, block in det.blocks.items():
        n_rows = int((ing.clean["metric"] == metric).sum())
        assert block.values.shape == (len(plan.by_metric[metric]), n_rows)


def test_plan_deduplicates_what_packs_share():
    plan = DetectorPlan.from_specs(SPECS)
    assert plan.uses["hf.gain"] == plan.uses["mal.gain"] == ("weight", "delta(window=3d)")
    assert plan.n_detectors == len(SPECS) - 1
    assert set(plan.by_metric) == {"weight", "heart_rate", "glucose"}


def test_frame_shows_a_block():
    raw = pl.DataFrame({"patient_id": ["A"] * 3, "ts": [T0 + dt.timedelta(days=d) for d in
                                                         range(3)],
                        "metric": ["weight"] * 3, "value": [80.0, 81.0, 83.5]})
    ing = ingest_frame(raw, now=NOW)
    det = detect(ing.clean, DetectorPlan.from_specs(SPECS), ing.index)
    frame = det.frame("weight")
    assert frame.columns[:3] == ["patient_id", "ts", "value"]
    assert frame["delta(window=3d)"].to_list() == [0.0, 1.0, 3.5]
    assert det.frame("spo2").height == 0
