"""The detector framework: spec validation, evaluate() over frames, silence_at, warmup and cache.

The checks in the "every registered detector" section run over the whole registry (window and
stateful detectors alike), scikit-learn style: batch equals chunked, nulls, dtype, determinism.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from engine.detectors import (ALL_HISTORY, DURATION, FLOAT, INT, REGISTRY, Param, evaluate,
                              evaluate_all_metrics, lookback, register, resolve_specs, silence_at)
from engine.detectors import kernels_window as kw
from engine.detectors.evaluate import frozen
from engine.errors import InputError, SpecError

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[1]


def tel(rows) -> pl.DataFrame:
    """Telemetry from ``(patient, metric, hours after T0, value)`` rows, sorted as the contract."""
    df = pl.DataFrame(
        {"patient_id": [r[0] for r in rows], "metric": [r[1] for r in rows],
         "ts": [T0 + timedelta(hours=r[2]) for r in rows], "value": [r[3] for r in rows]},
        schema={"patient_id": pl.String, "metric": pl.String,
                "ts": pl.Datetime("us", "UTC"), "value": pl.Float64})
    return df.sort("patient_id", "metric", "ts", maintain_order=True)


def cohort(seed=3, patients=7, per_series=25) -> pl.DataFrame:
    """Several patients, two metrics, irregular times with a tie and a null per series."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        for metric, base in (("heart_rate", 70.0), ("weight", 80.0)):
            hours = np.cumsum(rng.choice([0.0, 0.5, 1.0, 3.0, 30.0], per_series))
            vals = base + rng.normal(0, 3, per_series)
            vals[rng.integers(per_series)] = np.nan
            rows += [(f"p{p}", metric, float(h), None if np.isnan(v) else float(v))
                     for h, v in zip(hours, vals)]
    return tel(rows)


# --------------------------------------------------------------------------------------------
# spec validation: messages name the spec and the fix
# --------------------------------------------------------------------------------------------
def test_bad_duration_reads_like_scikit_learn():
    with pytest.raises(SpecError) as e:
        resolve_specs({"weight_gain_3d": {"metric": "weight", "fn": "delta", "window": "3 days"}})
    assert str(e.value) == ("The 'window' parameter of spec 'weight_gain_3d' (fn delta) must be a "
                            "duration like '30m', '6h', '3d' or '2w'. Got '3 days' instead.")


def test_unknown_fn_lists_sorted_fns_and_closest_match():
    with pytest.raises(SpecError) as e:
        resolve_specs({"g": {"metric": "weight", "fn": "dleta", "window": "3d"}})
    msg = str(e.value)
    assert "Spec 'g' has an unknown fn 'dleta'. Did you mean 'delta'?" in msg
    assert msg.endswith(f"Valid fns are: {', '.join(sorted(REGISTRY))}.")
    with pytest.raises(SpecError, match="Spec 'g' has no 'fn'. Valid fns are: count, "):
        resolve_specs({"g": {"metric": "weight", "window": "3d"}})


def test_missing_param_names_it_and_lists_the_params():
    with pytest.raises(SpecError) as e:
        resolve_specs({"g": {"metric": "weight", "fn": "delta"}})
    assert str(e.value) == ("Spec 'g' (fn delta) is missing the 'window' parameter. "
                            "delta takes: window (duration), lag (duration, optional).")


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(SpecError) as e:
        resolve_specs({"g": {"metric": "weight", "fn": "delta", "windw": "3d"}})
    assert str(e.value) == ("Spec 'g' (fn delta) has an unknown key 'windw'. Did you mean "
                            "'window'? Allowed keys are: metric, fn, staleness, window, lag.")


def test_unknown_metric_lists_canonical_metrics():
    with pytest.raises(SpecError) as e:
        resolve_specs({"g": {"metric": "wieght", "fn": "delta", "window": "3d"}})
    msg = str(e.value)
    assert msg.startswith("The 'metric' of spec 'g' (fn delta) must be a canonical metric. "
                          "Got 'wieght' instead. Did you mean 'weight'? Canonical metrics are: ")
    assert "heart_rate" in msg and "spo2" in msg
    with pytest.raises(SpecError, match="has no 'metric'"):
        resolve_specs({"g": {"fn": "delta", "window": "3d"}})


def test_staleness_is_parsed_and_stored():
    r = resolve_specs({"g": {"metric": "weight", "fn": "delta", "window": "3d",
                             "staleness": "36h"}})["g"]
    assert r.staleness_us == 36 * 3_600_000_000
    assert r.params == {"window": 3 * 86_400_000_000}
    assert r.kernel_args == (3 * 86_400_000_000,)
    assert resolve_specs({"g": {"metric": "weight", "fn": "delta", "window": "3d"}})["g"] \
        .staleness_us is None
    with pytest.raises(SpecError, match="The 'staleness' parameter of spec 'g'"):
        resolve_specs({"g": {"metric": "weight", "fn": "delta", "window": "3d",
                             "staleness": 5}})


def test_spec_shape_errors():
    with pytest.raises(SpecError, match="Spec 'g' must be a mapping"):
        resolve_specs({"g": "delta"})
    with pytest.raises(SpecError, match="Specs must be a mapping"):
        resolve_specs([("g", {})])
    with pytest.raises(SpecError, match="clashes with the telemetry column"):
        evaluate(cohort(), {"value": {"metric": "weight", "fn": "mean", "window": "1h"}})


@pytest.fixture
def numeric_detector():
    """A detector with FLOAT and INT parameters (none of the window ones has any)."""
    d = register("test_numeric_params", kernel=kw.rolling_sum,
                 params=(Param("window", DURATION), Param("level", FLOAT, required=False,
                                                          default=2.5), Param("n", INT)),
                 lookback=lambda p: p["window"], output="value", doc="test only")
    yield d
    del REGISTRY["test_numeric_params"]


def test_number_params_are_checked(numeric_detector):
    base = {"metric": "weight", "fn": "test_numeric_params", "window": "1h"}
    r = resolve_specs({"g": {**base, "n": 3}})["g"]
    assert r.params == {"window": 3_600_000_000, "level": 2.5, "n": 3}
    with pytest.raises(SpecError, match=r"The 'level' parameter of spec 'g' \(fn "
                                        r"test_numeric_params\) must be a finite number. Got 'x'"):
        resolve_specs({"g": {**base, "n": 3, "level": "x"}})
    with pytest.raises(SpecError, match="must be a whole number. Got 2.5 instead"):
        resolve_specs({"g": {**base, "n": 2.5}})
    with pytest.raises(SpecError, match="must be a whole number. Got True instead"):
        resolve_specs({"g": {**base, "n": True}})


def test_lookback_is_the_longest_history_needed():
    assert lookback({}) == 0
    assert lookback({"a": {"metric": "weight", "fn": "delta", "window": "3d"},
                     "b": {"metric": "heart_rate", "fn": "max", "window": "2w"}}) \
        == 14 * 86_400_000_000
    assert lookback({"s": {"metric": "weight", "fn": "since_last"}}) == ALL_HISTORY


# --------------------------------------------------------------------------------------------
# evaluate on frames
# --------------------------------------------------------------------------------------------
def test_evaluate_two_metrics_several_patients():
    df = tel([("a", "heart_rate", 0, 60.0), ("a", "heart_rate", 1, 80.0),
              ("a", "weight", 0, 80.0), ("a", "weight", 48, 81.0), ("a", "weight", 72, 83.0),
              ("b", "weight", 0, 70.0), ("b", "weight", 24, 69.0),
              ("c", "heart_rate", 5, 100.0)])
    out = evaluate(df, {"gain": {"metric": "weight", "fn": "delta", "window": "3d"},
                        "hr_max": {"metric": "heart_rate", "fn": "max", "window": "1h"}})
    assert out.columns == ["patient_id", "metric", "ts", "value", "gain", "hr_max"]
    assert out.schema["gain"] == pl.Float64 and out.schema["hr_max"] == pl.Float64
    assert out["gain"].to_list() == [None, None, 0.0, 1.0, 3.0, 0.0, -1.0, None]
    assert out["hr_max"].to_list() == [60.0, 80.0, None, None, None, None, None, 100.0]
    assert_frame_equal(out.select("patient_id", "metric", "ts", "value"),
                       df.select("patient_id", "metric", "ts", "value"))


def test_evaluate_keeps_only_the_rows_of_the_metrics_used():
    df = tel([("a", "heart_rate", 0, 60.0), ("a", "spo2", 0, 97.0), ("a", "weight", 0, 80.0),
              ("b", "spo2", 1, 95.0), ("b", "spo2", 2, 93.0)])
    out = evaluate(df, {"low": {"metric": "spo2", "fn": "min", "window": "6h"}})
    assert out["metric"].to_list() == ["spo2"] * 3
    assert out["low"].to_list() == [97.0, 95.0, 93.0]
    assert evaluate(df, {}).height == 0


def test_null_readings_stay_rows_and_never_enter_windows():
    df = tel([("a", "weight", 0, 80.0), ("a", "weight", 1, None), ("a", "weight", 2, 84.0)])
    out = evaluate(df, {"m": {"metric": "weight", "fn": "mean", "window": "1d"},
                        "d": {"metric": "weight", "fn": "delta", "window": "1d"},
                        "s": {"metric": "weight", "fn": "std", "window": "1d"}})
    assert out["value"].to_list() == [80.0, None, 84.0]
    assert out["m"].to_list() == [80.0, 80.0, 82.0]
    assert out["d"].to_list() == [0.0, None, 4.0]            # NaN outputs become null
    assert out["s"].null_count() == 2 and not out["s"].is_nan().any()
    # a NaN reading is a null reading too
    nan_df = df.with_columns(pl.col("value").fill_null(float("nan")))
    assert_frame_equal(evaluate(nan_df, {"m": {"metric": "weight", "fn": "mean", "window": "1d"}})
                       .drop("value"), out.select("patient_id", "metric", "ts", "m"))


def test_input_types_are_converted():
    df = cohort()
    ms = df.with_columns(pl.col("ts").dt.cast_time_unit("ms"),
                         pl.col("patient_id").cast(pl.Categorical))
    spec = {"m": {"metric": "weight", "fn": "mean", "window": "6h"}}
    assert_frame_equal(evaluate(ms, spec).drop("ts"), evaluate(df, spec).drop("ts"))
    ints = tel([("a", "steps", 0, 100.0), ("a", "steps", 24, 300.0)]) \
        .with_columns(pl.col("value").cast(pl.Int64))
    assert evaluate(ints, {"s": {"metric": "steps", "fn": "sum", "window": "7d"}})["s"] \
        .to_list() == [100.0, 400.0]


def test_input_errors_name_the_problem():
    spec = {"m": {"metric": "weight", "fn": "mean", "window": "6h"}}
    df = cohort()
    with pytest.raises(InputError, match="telemetry has no column 'value'"):
        evaluate(df.drop("value"), spec)
    with pytest.raises(InputError, match="must be a Datetime"):
        evaluate(df.with_columns(pl.col("ts").dt.epoch("us")), spec)
    with pytest.raises(InputError, match="'patient_id' has 1 null"):
        evaluate(df.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                                 .otherwise(pl.col("patient_id")).alias("patient_id")), spec)
    with pytest.raises(InputError, match=r"goes back in time .* \(row 1\)"):
        evaluate(df.with_columns(pl.col("ts").reverse()).head(3)
                 .with_columns(pl.lit("p0").alias("patient_id"), pl.lit("weight").alias("metric")),
                 spec)
    with pytest.raises(InputError, match="patient 'p0', metric 'heart_rate' are not contiguous"):
        evaluate(pl.concat([df.head(5), df.tail(5), df.head(5)]), spec)
    with pytest.raises(InputError, match="must be a polars DataFrame"):
        evaluate(df.to_dicts(), spec)


def test_empty_inputs_give_empty_frames_with_the_right_columns():
    empty = cohort().clear()
    out = evaluate(empty, {"m": {"metric": "weight", "fn": "mean", "window": "1h"}})
    assert out.height == 0 and out.schema["m"] == pl.Float64
    got = silence_at(empty, ev([("a", 1)]), "1h")
    assert got["minutes_since_last"].to_list() == [None] and got["silent"].to_list() == [None]
    assert silence_at(cohort(), ev([]), "1h").columns == ["patient_id", "ts",
                                                          "minutes_since_last", "silent"]


def test_register_rejects_programming_errors():
    with pytest.raises(ValueError, match="registered twice"):
        register("mean", kernel=kw.rolling_mean, params=(), lookback=lambda p: 0,
                 output="value", doc="")
    with pytest.raises(ValueError, match="reserved"):
        register("test_reserved", kernel=kw.rolling_mean, params=(Param("metric", FLOAT),),
                 lookback=lambda p: 0, output="value", doc="")
    with pytest.raises(ValueError, match="output"):
        register("test_output", kernel=kw.rolling_mean, params=(), lookback=lambda p: 0,
                 output="furlongs", doc="")
    assert "test_reserved" not in REGISTRY and "test_output" not in REGISTRY


def test_evaluate_all_metrics_fills_every_row():
    df = cohort()
    out = evaluate_all_metrics(df, {"c": {"fn": "count", "window": "1d"}})
    assert out.height == df.height and out["c"].null_count() == 0
    by_metric = pl.concat([evaluate(df, {"c": {"metric": m, "fn": "count", "window": "1d"}})
                           .filter(pl.col("metric") == m) for m in ("heart_rate", "weight")])
    assert_frame_equal(out, by_metric.sort("patient_id", "metric", "ts", maintain_order=True))


def test_mean_and_std_of_one_window_share_a_pass_with_the_same_result():
    df = cohort()
    both = evaluate(df, {"m": {"metric": "weight", "fn": "mean", "window": "1d"},
                         "s": {"metric": "weight", "fn": "std", "window": "1d"}})
    alone = evaluate(df, {"s": {"metric": "weight", "fn": "std", "window": "1d"}})
    assert_frame_equal(both.drop("m"), alone)


# --------------------------------------------------------------------------------------------
# every registered detector: batch equals chunked, nulls, dtype, determinism
# --------------------------------------------------------------------------------------------
SAMPLE = {DURATION: "6h", FLOAT: 72.0, INT: 2}


def sample_spec(fn, metric="heart_rate"):
    d = REGISTRY[fn]
    return {"metric": metric, "fn": fn,
            **{p.name: SAMPLE[p.kind] for p in d.params if p.required}}


@pytest.mark.parametrize("fn", sorted(REGISTRY))
def test_every_detector_batch_equals_chunked_and_is_deterministic(fn):
    df = cohort()
    specs = {"hr": sample_spec(fn), "w": sample_spec(fn, "weight")}
    whole = evaluate(df, specs)
    assert whole.schema["hr"] == pl.Float64 and whole.schema["w"] == pl.Float64
    # chunks of whole patients, in any grouping, give the same rows and values
    chunked = pl.concat([evaluate(part, specs)
                         for part in df.partition_by("patient_id", maintain_order=True)])
    assert_frame_equal(whole, chunked)
    assert_frame_equal(whole, evaluate(df, specs))
    # a column is null on rows of the other metric, and never NaN
    assert whole.filter(pl.col("metric") == "weight")["hr"].null_count() == \
        whole.filter(pl.col("metric") == "weight").height
    assert not whole["hr"].is_nan().any() and not whole["w"].is_nan().any()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**16), patients=st.integers(1, 5))
def test_window_specs_equal_their_kernels_on_random_cohorts(seed, patients):
    df = cohort(seed, patients, per_series=15)
    out = evaluate(df, {"m": {"metric": "weight", "fn": "median", "window": "12h"}})
    w = df.filter(pl.col("metric") == "weight")
    sizes = w.group_by("patient_id", maintain_order=True).len()["len"].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    want = kw.rolling_median(frozen(w["ts"].dt.epoch("us").to_numpy(), np.int64),
                             frozen(w["value"].to_numpy(), np.float64), frozen(offsets, np.int64),
                             12 * 3_600_000_000)
    got = out["m"].fill_null(np.nan).to_numpy()
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------
# silence_at: evaluation where no row exists
# --------------------------------------------------------------------------------------------
def ev(rows):
    return pl.DataFrame({"patient_id": [r[0] for r in rows],
                         "ts": [T0 + timedelta(hours=r[1]) for r in rows]},
                        schema={"patient_id": pl.String, "ts": pl.Datetime("us", "UTC")})


def test_silence_at_times_without_rows():
    df = tel([("a", "heart_rate", 0, 60.0), ("a", "weight", 10, 80.0), ("a", "weight", 20, None),
              ("b", "heart_rate", 5, 70.0)])
    out = silence_at(df, ev([("a", 30), ("a", 46), ("a", 47), ("b", 4), ("c", 9), ("a", 10)]),
                     "36h")
    assert out.columns == ["patient_id", "ts", "minutes_since_last", "silent"]
    # a: last reading at 10 h (the null at 20 h is no reading); 36 h later exactly is not silent
    assert out["minutes_since_last"].to_list() == [1200.0, 2160.0, 2220.0, None, None, 0.0]
    assert out["silent"].to_list() == [False, False, True, None, None, False]
    only_hr = silence_at(df, ev([("a", 30)]), 3_600_000_000, metrics=["heart_rate"])
    assert only_hr["minutes_since_last"].to_list() == [1800.0]
    assert only_hr["silent"].to_list() == [True]


def test_silence_at_counts_from_enrolment_when_nothing_was_sent():
    df = tel([("a", "heart_rate", 0, 60.0)])
    patients = pl.DataFrame({"patient_id": ["b", "c"], "enrolled_at": [T0, T0 + timedelta(days=9)]},
                            schema={"patient_id": pl.String,
                                    "enrolled_at": pl.Datetime("us", "UTC")})
    out = silence_at(df, ev([("b", 48), ("c", 48), ("d", 48)]), "1d", patients=patients)
    assert out["minutes_since_last"].to_list() == [2880.0, None, None]
    assert out["silent"].to_list() == [True, None, None]


def test_silence_at_errors():
    df = tel([("a", "heart_rate", 0, 60.0)])
    with pytest.raises(SpecError, match="Did you mean|Unknown metric"):
        silence_at(df, ev([("a", 1)]), "1d", metrics=["hart_rate"])
    with pytest.raises(SpecError, match="silence limit must be a duration"):
        silence_at(df, ev([("a", 1)]), "one day")
    with pytest.raises(InputError, match="eval_times has no column 'ts'"):
        silence_at(df, ev([("a", 1)]).drop("ts"), "1d")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**16), hours=st.lists(st.floats(-50, 400), max_size=12))
def test_silence_at_matches_a_frame_reference(seed, hours):
    df = cohort(seed, patients=3, per_series=8)
    times = ev([(f"p{i % 4}", h) for i, h in enumerate(hours)])
    out = silence_at(df, times, "12h")
    readings = df.drop_nulls("value")
    for row in out.iter_rows(named=True):
        seen = readings.filter((pl.col("patient_id") == row["patient_id"])
                               & (pl.col("ts") <= row["ts"]))["ts"].max()
        want = None if seen is None else (row["ts"] - seen) / timedelta(minutes=1)
        assert row["minutes_since_last"] == pytest.approx(want, rel=1e-12, abs=1e-9) \
            if want is not None else row["minutes_since_last"] is None
        assert row["silent"] == (None if want is None else want > 12 * 60)


# --------------------------------------------------------------------------------------------
# compile once, then load from the on-disk cache, whatever the package folder allows
# --------------------------------------------------------------------------------------------
def test_kernels_are_cached_outside_the_package(tmp_path):
    pkg = tmp_path / "site"
    shutil.copytree(REPO / "engine", pkg / "engine",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "numba-cache"
    script = textwrap.dedent("""
        import json, engine, engine.detectors as d
        from engine.detectors import kernels_fused
        assert engine.__file__.startswith(%r), engine.__file__
        before = d.is_cached(["mean"])
        d.warmup(["mean"])
        k = kernels_fused.fused               # the one kernel evaluation runs every detector in
        print(json.dumps({"before": before, "after": d.is_cached(["mean"]),
                          "hits": sum(k.stats.cache_hits.values()),
                          "misses": sum(k.stats.cache_misses.values())}))
    """ % str(pkg))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(pkg),
           "PYTHONDONTWRITEBYTECODE": "1"}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == {"before": False, "after": True, "hits": 0, "misses": 1}
    assert second == {"before": True, "after": True, "hits": 1, "misses": 0}
    assert list(cache.rglob("*.nbi")), "no cache index written"
    assert not list((pkg / "engine").rglob("*.nbi")), "cache written into the package folder"
