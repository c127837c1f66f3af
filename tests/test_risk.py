"""The deterioration-risk model: features from the rules' stages, labels, the patient split,
training, scoring, explanations in words, the queue's ranking and rules that read ``risk``."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from engine.errors import InputError
from engine.pipeline import Engine
from engine.risk import features as F
from engine.risk import model as M
from engine.risk import train as T
from engine.synth import generate_cohort

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
H = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def small():
    """A small generated cohort and a model trained on another seed (about 20 s)."""
    return generate_cohort(120, days=21, seed=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    c = generate_cohort(240, days=28, seed=77)
    for name in ("telemetry", "patients", "events"):
        getattr(c, name).write_parquet(folder / f"{name}.parquet")
    out = tmp_path_factory.mktemp("models") / "m"
    card = T.train(folder, out, seed=3, command="test")
    assert card["features"] == list(F.feature_names())
    return out


# -- features -------------------------------------------------------------------------------

def test_feature_names_are_unique_and_each_has_words():
    names = F.feature_names()
    assert len(names) == len(set(names)) > 50
    for n in names:
        assert M.describe(n, 1.0) and M.describe(n, float("nan")).startswith("no recent") \
            or n.startswith("programme_") or n in F.RULE_STATE_FEATURES


def test_words_a_nurse_reads():
    assert M.describe("weight_change_3d", 2.1) == "weight +2.1 kg over 3 days"
    assert M.describe("spo2_change", -3.0) == "SpO2 3.0 points under usual"
    assert M.describe("hr_change", 12.4) == "pulse +12 /min vs usual"
    assert M.describe("silence_any", 30 * 60) == "no reading from any device for 30 h"
    assert M.describe("weight_change_3d", float("nan")) == "no recent weight"
    assert M.describe("open_high", 1) == "1 high alert(s) open"


def test_the_grid_is_every_4_hours_from_the_first_reading_to_as_of(small):
    frame, _, until = T.cohort_features(small.telemetry, small.patients)
    us = frame["ts"].dt.epoch("us").to_numpy()
    assert (us % (4 * 3600 * 1_000_000) == 0).all()
    assert frame["ts"].max() <= until
    first = small.telemetry.group_by("patient_id").agg(pl.col("ts").min().alias("first"))
    starts = frame.group_by("patient_id").agg(pl.col("ts").min().alias("start")).join(
        first, on="patient_id").join(small.patients.select("patient_id", "enrolled_at"),
                                      on="patient_id")
    # the grid starts at the first multiple of 4 h at or after the enrolment or first reading
    lo = pl.min_horizontal("first", "enrolled_at")
    assert starts.filter((pl.col("start") < lo) | (pl.col("start") - lo >= 4 * H)).height == 0
    assert frame.columns == ["patient_id", "ts", *F.feature_names()]


def test_scoring_sees_exactly_the_features_training_saw(small, model_dir):
    """One computation: the features of Engine.score equal the training path's, bit for bit."""
    trained, _, _ = T.cohort_features(small.telemetry, small.patients)
    result = Engine.from_paths(model=model_dir).score(small.telemetry, small.patients)
    assert result.features.equals(trained)
    assert result.risk.height == trained.height


def test_rule_states_count_open_alerts_at_each_time():
    ep = pl.DataFrame({
        "patient_id": ["a", "a", "a", "b"],
        "severity": ["high", "medium", "high", "low"],
        "opened_at": [T0 + 4 * H, T0 + 4 * H, T0 + 30 * H, T0],
        "resolved_at": [T0 + 8 * H, None, None, T0 + 4 * H],
    })
    grid = pl.DataFrame({"patient_id": ["a"] * 4 + ["b"] * 2,
                         "ts": [T0, T0 + 4 * H, T0 + 8 * H, T0 + 32 * H, T0, T0 + 4 * H]})
    got = F.rule_states(grid, ep)
    # opened at t counts, resolved at t no longer open
    assert got["open_high"].to_list() == [0, 1, 0, 1, 0, 0]
    assert got["open_medium"].to_list() == [0, 1, 1, 1, 0, 0]
    assert got["open_low"].to_list() == [0, 0, 0, 0, 1, 0]
    assert got["opened_24h"].to_list() == [0, 2, 2, 1, 1, 1]
    # the same grid in another order: the same states, row for row
    order = [4, 2, 0, 5, 3, 1]
    shuffled = F.rule_states(grid[order], ep)
    assert not F.is_ordered(grid[order]) and F.is_ordered(grid)
    assert shuffled.equals(got[order])


def _asof_count_reference(grid, times, name):
    """The plain polars reference of the rule-state counts: per grid row, the times of the
    same patient at or before its ts (an as-of join on the times' running count)."""
    if times.height == 0:
        return pl.Series(name, np.zeros(grid.height), pl.Float64)
    cum = (times.sort("patient_id", "t")
           .with_columns(pl.int_range(1, pl.len() + 1).over("patient_id").alias("_n")))
    got = grid.select("patient_id", "ts", pl.int_range(pl.len()).alias("_row")).sort(
        "patient_id", "ts").join_asof(cum, left_on="ts", right_on="t", by="patient_id",
                                      strategy="backward", check_sortedness=False)
    return got.sort("_row")["_n"].fill_null(0).cast(pl.Float64).alias(name)


def _rule_states_reference(grid, episodes):
    cols = []
    ep = episodes.select("patient_id", "severity", "opened_at", "resolved_at")
    for sev in ("high", "medium", "low"):
        e = ep.filter(pl.col("severity") == sev)
        opened = _asof_count_reference(grid, e.select("patient_id",
                                                      pl.col("opened_at").alias("t")), "o")
        closed = _asof_count_reference(grid, e.filter(pl.col("resolved_at").is_not_null())
                                       .select("patient_id", pl.col("resolved_at").alias("t")),
                                       "c")
        cols.append((opened - closed).alias(f"open_{sev}"))
    opens = ep.select("patient_id", pl.col("opened_at").alias("t"))
    now = _asof_count_reference(grid, opens, "n")
    before = _asof_count_reference(grid.with_columns(pl.col("ts") - pl.duration(days=1)),
                                   opens, "b")
    cols.append((now - before).alias("opened_24h"))
    return pl.DataFrame(cols, height=grid.height)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 60)), min_size=1, max_size=30,
                unique=True),
       st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["high", "medium", "low"]),
                          st.integers(0, 60), st.one_of(st.none(), st.integers(0, 30))),
                max_size=14),
       st.randoms(use_true_random=False), st.booleans())
def test_rule_states_equal_their_polars_reference(cells, eps, rnd, shuffle):
    """The compiled count against as-of joins, on a grid in (patient, time) order (as the
    pipeline's) or in any order; episodes with tied times, on patients not on the grid, still
    open."""
    grid = pl.DataFrame({"patient_id": [p for p, _ in cells],
                         "ts": [T0 + h * H for _, h in cells]},
                        schema={"patient_id": pl.String, "ts": pl.Datetime("us", "UTC")})
    grid = grid.sort("patient_id", "ts")
    assert F.is_ordered(grid)
    if shuffle:
        rows = list(range(grid.height))
        rnd.shuffle(rows)
        grid = grid[rows]
        assert F.is_ordered(grid) == (rows == sorted(rows))
    ep = pl.DataFrame({"patient_id": [e[0] for e in eps],
                       "severity": [e[1] for e in eps],
                       "opened_at": [T0 + e[2] * H for e in eps],
                       "resolved_at": [None if e[3] is None else T0 + (e[2] + e[3]) * H
                                       for e in eps]},
                      schema={"patient_id": pl.String, "severity": pl.String,
                              "opened_at": pl.Datetime("us", "UTC"),
                              "resolved_at": pl.Datetime("us", "UTC")})
    assert F.rule_states(grid, ep).equals(_rule_states_reference(grid, ep))


# -- labels and split -----------------------------------------------------------------------

def test_labels_are_events_within_the_horizon_strictly_after_the_time():
    frame = pl.DataFrame({"patient_id": ["a"] * 6,
                          "ts": [T0 + k * 4 * H for k in range(6)]})
    event = T0 + 52 * H
    events = pl.DataFrame({"patient_id": ["a", "a"], "event_type": ["hf_decompensation",
                                                                    "device_silence"],
                           "event_time": [event, T0 + 4 * H]})
    got, dropped = T.label(frame, events)
    # 52 h - 48 h = 4 h: the grid time at 4 h is exactly 48 h before (in), at 0 h 52 h (out)
    assert got["y"].to_list() == [0, 1, 1, 1, 1, 1] and dropped == 0
    at_event = pl.DataFrame({"patient_id": ["a"] * 4, "ts": [event - H, event, event + 72 * H,
                                                              event + 73 * H]})
    got, dropped = T.label(at_event, events)
    # [event, event + 72 h] is left out (the patient is being treated)
    assert got["ts"].to_list() == [event - H, event + 73 * H]
    assert got["y"].to_list() == [1, 0] and dropped == 2


def test_the_split_is_by_patient_and_reproducible():
    ids = pl.Series([f"P{i:05d}" for i in range(3000)])
    a, b = T.split_of(ids, 1), T.split_of(ids, 1)
    assert a.equals(b)
    share = a.value_counts(normalize=True).sort("split")
    got = dict(zip(share["split"], share["proportion"]))
    assert abs(got["train"] - 0.6) < 0.03 and abs(got["test"] - 0.2) < 0.03
    assert not T.split_of(ids, 2).equals(a)


def test_metrics_of_a_calibrated_score():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    m = T.metrics(y, p)
    assert 0.95 < m["calibration_slope"] < 1.05 and abs(m["calibration_intercept"]) < 0.05
    assert 0.8 < m["auroc"] < 0.9


# -- the model in the engine ----------------------------------------------------------------

def test_the_card_records_training_and_the_baseline_is_beside_it(model_dir):
    card = json.loads((model_dir / "card.json").read_text())
    assert card["horizon_hours"] == 48 and card["training"]["command"] == "test"
    assert card["training"]["split"].startswith("by patient")
    assert set(card["metrics_test_split"]) == {"gradient_boosting", "logistic_baseline",
                                               "news2"}
    assert (model_dir / "baseline" / "model.skops").exists()
    assert M.RiskModel.load(model_dir / "baseline").predict(
        pl.DataFrame({n: [0.0] for n in F.feature_names()})).shape == (1,)


def test_every_alert_gets_a_risk_and_open_ones_their_reasons(small, model_dir):
    result = Engine.from_paths(model=model_dir).score(small.telemetry, small.patients)
    q = result.queue
    assert q["risk"].null_count() == 0 and q["risk"].is_between(0, 1).all()
    open_ = q.filter(pl.col("status") == "open")
    assert open_["risk_factors"].null_count() == 0
    assert q.filter(pl.col("status") == "resolved")["risk_factors"].null_count() == \
        q.filter(pl.col("status") == "resolved").height
    # within a severity tier the higher risk comes first
    for _, tier in open_.sort("priority").group_by("severity", maintain_order=True):
        r = tier["risk"].to_numpy()
        assert (np.diff(r) <= 1e-12).all()
    # an open alert's risk is the patient's latest grid time's
    latest = result.risk.group_by("patient_id").agg(pl.col("risk").last())
    got = open_.join(latest, on="patient_id", suffix="_latest")
    assert (got["risk"] == got["risk_latest"]).all()


def test_without_a_model_the_queue_is_as_before(small):
    with_none = Engine.from_paths().score(small.telemetry, small.patients)
    assert with_none.risk is None and with_none.queue["risk"].null_count() == \
        with_none.queue.height


def test_a_missing_model_folder_is_a_clean_error(tmp_path):
    with pytest.raises(InputError, match="no risk model there"):
        Engine.from_paths(model=tmp_path / "nothing")


# -- rules that read risk -------------------------------------------------------------------

PACK = """
pack: held
version: "1"
title: SpO2 held by risk
scope: {cohort: any}
rules:
  - id: held.low_spo2
    title: low SpO2 unless the model says the risk is low
    severity: low
    when: spo2 < 92 % and coalesce(risk >= 20 %, true)
"""


def test_a_rule_reads_the_risk_as_of_its_time(tmp_path):
    from engine.pipeline import evaluate_packs
    from engine.ruleset import load_rules_text

    rs = load_rules_text({"held.yaml": PACK})
    tel = pl.DataFrame({"patient_id": ["a", "a", "a"], "ts": [T0, T0 + 8 * H, T0 + 16 * H],
                        "metric": ["spo2"] * 3, "value": [90.0, 95.0, 90.0]}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")))
    # no model: the risk is unknown, coalesce lets the alert through
    ep = evaluate_packs(rs.packs, tel)
    assert ep["opened_at"].to_list() == [T0, T0 + 16 * H]
    # a risk of 10 % at 0 h holds the first; 30 % at 12 h (4 h old at 16 h) lets the second
    risk = pl.DataFrame({"patient_id": ["a", "a"], "ts": [T0, T0 + 12 * H],
                         "risk": [0.10, 0.30]}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")))
    ep = evaluate_packs(rs.packs, tel, risk=risk)
    assert ep["opened_at"].to_list() == [T0 + 16 * H]
    # more than 8 h old, a risk is unknown again
    old = risk.with_columns(pl.col("ts") - 6 * H)
    ep = evaluate_packs(rs.packs, tel, risk=old)
    assert ep["opened_at"].to_list() == [T0 + 16 * H]
    stale = risk.head(1).with_columns(pl.lit(T0 - 10 * H).alias("ts"), risk=pl.lit(0.05))
    assert evaluate_packs(rs.packs, tel, risk=stale)["opened_at"].to_list() == \
        [T0, T0 + 16 * H]


def test_the_cli_trains_and_scores_with_a_model(tmp_path, model_dir):
    from typer.testing import CliRunner

    from cli import app

    c = generate_cohort(30, days=14, seed=9)
    c.telemetry.write_parquet(tmp_path / "t.parquet")
    c.patients.write_parquet(tmp_path / "p.parquet")
    out = tmp_path / "q.parquet"
    r = CliRunner().invoke(app, ["score", str(tmp_path / "t.parquet"), "--patients",
                                 str(tmp_path / "p.parquet"), "--out", str(out), "--model",
                                 str(model_dir)])
    assert r.exit_code == 0, r.output
    assert "grid times scored" in r.output
    assert pl.read_parquet(out)["risk"].null_count() == 0
    r = CliRunner().invoke(app, ["score", str(tmp_path / "t.parquet"), "--patients",
                                 str(tmp_path / "p.parquet"), "--out", str(out), "--model",
                                 "none"])
    assert r.exit_code == 0 and "grid times scored" not in r.output
    r = CliRunner().invoke(app, ["score", str(tmp_path / "t.parquet"), "--out", str(out),
                                 "--model", str(tmp_path / "absent")])
    assert r.exit_code != 0 and "no risk model there" in r.output


def test_recalibration_keeps_the_trees_and_refits_the_probabilities(tmp_path, model_dir):
    """A site refits only the calibration on its own history: same ranking, new card."""
    from scipy.stats import spearmanr

    folder = tmp_path / "site"
    folder.mkdir()
    c = generate_cohort(200, days=28, seed=41, variant="shifted")
    for name in ("telemetry", "patients", "events"):
        getattr(c, name).write_parquet(folder / f"{name}.parquet")
    card = T.recalibrate(model_dir, folder, tmp_path / "site_model", command="test")
    r = card["recalibrated"]
    assert r["from_model_sha256"] == M.RiskModel.load(model_dir).sha256
    assert set(r["metrics_test_part"]) == {"before", "after"}
    # the trees are unchanged: the recalibrated risk is a monotonic function of the original
    before, after = M.RiskModel.load(model_dir), M.RiskModel.load(tmp_path / "site_model")
    frame, _, _ = T.cohort_features(c.telemetry, c.patients)
    p0, p1 = before.predict(frame), after.predict(frame)
    assert spearmanr(p0, p1).statistic > 0.999 and not np.allclose(p0, p1)
    assert (tmp_path / "site_model" / "baseline" / "model.skops").exists()
    assert r["metrics_test_part"]["before"]["auroc"] == pytest.approx(
        r["metrics_test_part"]["after"]["auroc"], abs=1e-9)


def test_a_site_names_its_own_deterioration_events(tmp_path):
    """Labels named otherwise than the generator's are refused with the types found, and
    accepted when named with event_types."""
    c = generate_cohort(40, days=14, seed=12)
    for name in ("telemetry", "patients"):
        getattr(c, name).write_parquet(tmp_path / f"{name}.parquet")
    c.events.with_columns(event_type=pl.lit("hospitalisation")).write_parquet(
        tmp_path / "events.parquet")
    with pytest.raises(InputError, match="the file has: hospitalisation.*--event-types"):
        T.train(tmp_path, tmp_path / "m")
    got = T._events(tmp_path / "events.parquet", ("hospitalisation",))
    assert got.height == c.events.height


@pytest.mark.parametrize("as_of_day", [None, 12])
def test_scoring_only_the_grid_times_the_queue_reads_gives_the_same_queue(small, as_of_day):
    """risk_at="queue" (the command line's) runs the model on each patient's latest grid time
    and each resolved alert's last one only: the same queue, risks and reasons, and the risk
    rows kept are the full grid's rows at those times."""
    from engine.pipeline import load_inputs

    engine = Engine.from_paths(model="default")
    inputs = load_inputs(small.telemetry, small.patients)
    as_of = None if as_of_day is None else T0 + dt.timedelta(days=as_of_day)
    full = engine.score_inputs(inputs, as_of=as_of)
    part = engine.score_inputs(inputs, as_of=as_of, risk_at="queue")
    assert full.risk_grid is None and part.risk_grid == full.risk.height
    assert part.queue.equals(full.queue)
    assert part.queue.filter(pl.col("status") == "resolved")["risk"].null_count() == 0
    assert 0 < part.risk.height < full.risk.height / 10
    kept = full.risk.join(part.risk.select("patient_id", "ts"), on=["patient_id", "ts"])
    assert kept.sort("patient_id", "ts").equals(part.risk.sort("patient_id", "ts"))
    assert part.features.columns == full.features.columns
    latest = full.risk.group_by("patient_id").agg(pl.col("ts").max())
    assert latest.join(part.risk, on=["patient_id", "ts"], how="anti").height == 0
    with pytest.raises(ValueError, match="risk_at"):
        engine.score_inputs(inputs, risk_at="all")
