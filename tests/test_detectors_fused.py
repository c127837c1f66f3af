"""The fused pass against the one-kernel-per-spec path: same numbers, same nulls, bit for bit.

Every registered detector has a one-spec kernel (the registry's contract, itself checked against
the plain references of ``tests/naive*.py``) and an opcode of the fused kernel that evaluation
runs. These tests draw random spec sets over random irregular multi-series input (ties, gaps,
nulls, single points, empty series, magnitudes 1e-3..1e6) and check that the fused outputs, and
the Arrow validity bitmaps the fused kernel writes, equal the one-spec kernels' outputs exactly.
"""
from __future__ import annotations


import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from numba import njit

from engine.config import JIT
from engine.detectors import (REGISTRY, evaluate, evaluate_all_metrics, fused, register,
                              resolve_specs)
from engine.detectors import kernels_fused as kf
from engine.detectors import kernels_window as kw
from engine.detectors.registry import DURATION, FLOAT, INT, frozen
from engine.detectors.intrinsics import stream_copy, stream_fill
from engine.errors import InputError
from tests.strategies import MINUTE_US, T0_US, multi_series

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FNS = sorted(REGISTRY)
#: durations in whole minutes (0 included), floats around and inside the data's range
_MINUTES = st.one_of(st.sampled_from([0, 1, 5, 15, 60, 360, 1440]), st.integers(0, 4 * 1440))
_FLOATS = st.one_of(st.sampled_from([0.0, 1.0, 70.0, 98.5, -3.0]),
                    st.floats(-1e3, 1e3, allow_nan=False))


@st.composite
def rule_specs(draw, metrics=(None,), max_specs=8):
    """``{name: spec}`` in rule-file form: random detectors with random parameters."""
    specs = {}
    for k in range(draw(st.integers(1, max_specs))):
        fn = draw(st.sampled_from(FNS))
        spec = {"fn": fn}
        metric = draw(st.sampled_from(metrics))
        if metric is not None:
            spec["metric"] = metric
        for p in REGISTRY[fn].params:
            if not p.required and draw(st.booleans()):
                continue                       # the default
            if p.kind == DURATION:
                spec[p.name] = f"{draw(_MINUTES)}m"
            elif p.kind == FLOAT:
                spec[p.name] = draw(_FLOATS)
            else:
                assert p.kind == INT
                spec[p.name] = draw(st.integers(1, 5))
        specs[f"s{k}"] = spec
    return specs


def one_spec_outputs(ts, x, offsets, resolved):
    """The reference path: each spec's own kernel, one call over all series."""
    return {name: s.detector.kernel(ts, x, offsets, *s.kernel_args)
            for name, s in resolved.items()}


def check_bits(out_row, valid_row):
    bits = np.unpackbits(valid_row, bitorder="little")[:out_row.size].astype(bool)
    np.testing.assert_array_equal(bits, ~np.isnan(out_row))


# --------------------------------------------------------------------------------------------
# the fused kernel == one kernel per spec, on random spec sets and inputs
# --------------------------------------------------------------------------------------------
@PROPERTY
@given(data=multi_series(max_series=8, max_len=50), specs=rule_specs())
def test_fused_equals_one_kernel_per_spec(data, specs):
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    resolved = resolve_specs(specs, metric_required=False)
    plan = fused.plan(resolved.values())
    out, valid, bad = fused.run_arrays(ts, x, offsets, np.full(offsets.size - 1, -1), plan)
    assert bad == -1
    want = one_spec_outputs(ts, x, offsets, resolved)
    for r, name in enumerate(plan.names):
        np.testing.assert_array_equal(out[r], want[name], err_msg=f"{name}: {specs[name]}")
        check_bits(out[r], valid[r])


@PROPERTY
@given(data=multi_series(max_series=8, max_len=30), specs=rule_specs(metrics=("a", "b", None)),
       groups=st.lists(st.sampled_from([0, 1]), min_size=8, max_size=8))
def test_fused_ops_apply_to_the_series_of_their_metric_only(data, specs, groups):
    """A spec with a metric gives null on the series of other metrics, its own output on its."""
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    # resolve with a stand-in metric: rule specs name canonical metrics, the plan only needs
    # distinct ones
    named = {k: {**v, "metric": {"a": "weight", "b": "heart_rate"}[v["metric"]]}
             if "metric" in v else v for k, v in specs.items()}
    resolved = {**resolve_specs({k: v for k, v in named.items() if "metric" in v}),
                **resolve_specs({k: v for k, v in named.items() if "metric" not in v},
                                metric_required=False)}
    plan = fused.plan(resolved.values())
    s = offsets.size - 1
    metric_of_series = np.asarray(["weight", "heart_rate"], dtype=object)[groups[:s]]
    series_group = np.asarray([plan.metrics.index(m) if m in plan.metrics else -1
                               for m in metric_of_series], dtype=np.int64)
    out, valid, _ = fused.run_arrays(ts, x, offsets, series_group, plan)
    want = one_spec_outputs(ts, x, offsets, resolved)
    rows_metric = np.repeat(metric_of_series, np.diff(offsets))
    for r, name in enumerate(plan.names):
        metric = resolved[name].metric
        mine = np.ones(x.size, bool) if metric is None else rows_metric == metric
        np.testing.assert_array_equal(out[r][mine], want[name][mine], err_msg=name)
        assert np.isnan(out[r][~mine]).all(), name
        check_bits(out[r], valid[r])


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=multi_series(max_series=6, max_len=40),
       specs=rule_specs(metrics=("weight", "heart_rate"), max_specs=6),
       metric_of=st.lists(st.sampled_from(["heart_rate", "weight"]), min_size=6, max_size=6))
def test_evaluate_equals_one_kernel_per_spec_on_frames(data, specs, metric_of):
    """Through evaluate(): every column equals its spec's kernel run on its metric's series."""
    ts, x, offsets = data
    s = offsets.size - 1
    # series k belongs to patient k (so any metric order is sorted), metric metric_of[k]
    lengths = np.diff(offsets)
    tel = pl.DataFrame({
        "patient_id": np.repeat([f"p{k:02d}" for k in range(s)], lengths).astype(str),
        "metric": np.repeat(metric_of[:s], lengths).astype(str),
        "ts": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
        "value": x,
    })
    got = evaluate(tel, specs)
    resolved = resolve_specs(specs)
    used = {r.metric for r in resolved.values()}
    keep = np.isin(np.repeat(metric_of[:s], lengths), sorted(used))
    for name, r in resolved.items():
        of_metric = np.asarray(metric_of[:s]) == r.metric
        mine = np.repeat(of_metric, lengths)
        sub = (frozen(ts[mine], np.int64), frozen(x[mine], np.float64),
               frozen(np.concatenate([[0], np.cumsum(lengths[of_metric])]), np.int64))
        want = np.full(x.size, np.nan)
        want[mine] = r.detector.kernel(*sub, *r.kernel_args)
        col = got[name].fill_null(np.nan).to_numpy()
        np.testing.assert_array_equal(col, want[keep], err_msg=name)
        assert got[name].null_count() == int(np.isnan(want[keep]).sum())


def test_long_series_are_computed_in_place_with_the_same_result():
    """A series longer than the scratch buffer is written straight into the output."""
    rng = np.random.default_rng(5)
    m = kf.SCRATCH_ROWS + 1234
    gaps = rng.choice([0, 1, 2, 5, 30, 2000], size=m + 10).astype(np.int64) * MINUTE_US
    ts = T0_US + np.cumsum(gaps)
    ts[m:] = np.sort(ts[m:])
    x = 100 + rng.standard_normal(m + 10) * 20
    x[rng.random(m + 10) < 0.05] = np.nan
    offsets = frozen(np.array([0, 3, m, m, m + 10]), np.int64)
    ts, x = frozen(ts, np.int64), frozen(x, np.float64)
    specs = {f"s_{fn}": {"fn": fn, **{p.name: {DURATION: "2h", FLOAT: 110.0, INT: 3}[p.kind]
                                      for p in REGISTRY[fn].params if p.required}}
             for fn in FNS}
    specs["low"] = {"fn": "time_in_range", "low": 70.0, "high": 120.0, "window": "1d"}
    specs["m2"] = {"fn": "max", "window": "2h"}     # a second max: alone
    for fn in ("mean", "std", "min", "max"):        # the pairs (a lag: no sweep)
        specs[f"lag_{fn}"] = {"fn": fn, "window": "2h", "lag": "30m"}
    resolved = resolve_specs(specs, metric_required=False)
    plan = fused.plan(resolved.values())
    # s_std sweeps with s_count, s_min and s_max
    assert {kf.OP_MIN_MAX, kf.OP_MEAN_STD, kf.OP_SWEEP} <= set(plan.ops.tolist())
    out, valid, _ = fused.run_arrays(ts, x, offsets, np.full(4, -1), plan)
    want = one_spec_outputs(ts, x, offsets, resolved)
    for r, name in enumerate(plan.names):
        np.testing.assert_array_equal(out[r], want[name], err_msg=name)
        check_bits(out[r], valid[r])


def test_unsorted_series_are_reported_with_their_first_bad_row():
    ts = frozen(np.array([1, 2, 3, 5, 4, 4, 9, 8]), np.int64)
    x = frozen(np.ones(8), np.float64)
    offsets = frozen(np.array([0, 3, 6, 8]), np.int64)
    plan = fused.plan(resolve_specs({"m": {"fn": "mean", "window": "1h"}},
                                    metric_required=False).values())
    _, _, bad = fused.run_arrays(ts, x, offsets, np.full(3, -1), plan)
    assert bad == 4                                 # 5 then 4 in the second series


def test_evaluate_all_metrics_columns_are_polars_nulls_not_nans():
    tel = pl.DataFrame({"patient_id": ["a"] * 4, "metric": ["weight"] * 4,
                        "ts": pl.Series([T0_US + k * MINUTE_US for k in range(4)])
                        .cast(pl.Datetime("us", "UTC")),
                        "value": [1.0, None, 3.0, 4.0]})
    out = evaluate_all_metrics(tel, {"d": {"fn": "delta", "window": "1h"},
                                     "s": {"fn": "std", "window": "1h"}})
    assert out["d"].to_list() == [0.0, None, 2.0, 3.0]
    assert out["s"].null_count() == 2 and not out["s"].is_nan().any()


# --------------------------------------------------------------------------------------------
# plan: pairs, parameters
# --------------------------------------------------------------------------------------------
def test_plan_pairs_mean_std_and_min_max_of_one_window_metric_and_lag():
    r = resolve_specs({"m": {"metric": "weight", "fn": "mean", "window": "1d", "lag": "1h"},
                       "s": {"metric": "weight", "fn": "std", "window": "1d", "lag": "1h"},
                       "s2": {"metric": "weight", "fn": "std", "window": "2d", "lag": "1h"},
                       "lo": {"metric": "spo2", "fn": "min", "window": "6h"},
                       "hi": {"metric": "spo2", "fn": "max", "window": "6h"},
                       "hi_hr": {"metric": "heart_rate", "fn": "max", "window": "6h"},
                       "ev": {"metric": "glucose", "fn": "events_below", "threshold": 54,
                              "window": "1d", "end_margin": 16, "interval": "5m"}})
    p = fused.plan(r.values())
    ops = dict(zip(p.ops.tolist(), p.rows.tolist()))
    names = list(p.names)
    assert ops[kf.OP_MEAN_STD] == [names.index("m"), names.index("s"), -1, -1]
    assert ops[kf.OP_MIN_MAX] == [names.index("lo"), names.index("hi"), -1, -1]
    assert ops[kf.OP_STD] == [names.index("s2"), -1, -1, -1]
    assert ops[kf.OP_MAX] == [names.index("hi_hr"), -1, -1, -1]
    j = p.ops.tolist().index(kf.OP_EVENTS_BELOW)
    # durations and ints in the registry's order, then floats
    assert p.ip[j].tolist() == [15 * MINUTE_US, 1440 * MINUTE_US, 15 * MINUTE_US, 0,
                                5 * MINUTE_US, 0]
    assert p.fp[j].tolist() == [54.0, 16.0]


def test_plan_sweeps_two_or_three_kinds_of_statistics_of_a_metric_at_lag_zero():
    """A std, a sum, mean or count and a min and max of one metric at lag 0 run in one sweep,
    whatever their windows, when two of the three kinds are there; lagged specs and other
    metrics' do not join."""
    hour = 60 * MINUTE_US
    table = [("m1", "spo2", "mean", "1h"), ("lo", "spo2", "min", "6h"),
             ("s24", "spo2", "std", "24h"), ("hi", "spo2", "max", "6h"),
             ("c", "weight", "count", "3d"), ("sw", "weight", "std", "2h"),
             ("hw", "weight", "max", "1d"), ("lw", "weight", "min", "2d"),
             ("lag", "heart_rate", "sum", "1h"), ("shr", "heart_rate", "std", "6h"),
             ("st12", "temp", "std", "12h"), ("other", "sbp", "mean", "1h"),
             ("g_hi", "glucose", "max", "3h"), ("g_mean", "glucose", "mean", "1h"),
             ("r1", "resp_rate", "count", "1h"), ("r24", "resp_rate", "count", "24h")]
    specs = {name: {"metric": metric, "fn": fn, "window": window}
             for name, metric, fn, window in table}
    specs["lag"]["lag"] = "1h"
    r = resolve_specs(specs)
    p = fused.plan(r.values())
    names = list(p.names)
    got = {tuple(names[k] if k >= 0 else None for k in rows): (op, ip)
           for op, rows, ip in zip(p.ops.tolist(), p.rows.tolist(), p.ip.tolist())}
    assert got[("s24", "m1", "lo", "hi")] == (kf.OP_SWEEP,
                                              [24 * hour, 0, hour, kw.MEAN, 6 * hour, kw.BOTH])
    # a min and a max of different windows: the min joins the sweep, the max stays alone
    assert got[("sw", "c", "lw", None)] == (kf.OP_SWEEP,
                                           [2 * hour, 0, 72 * hour, kw.COUNT, 48 * hour, kw.MIN])
    assert got[("hw", None, None, None)][0] == kf.OP_MAX
    assert got[("lag", None, None, None)][0] == kf.OP_SUM
    assert got[("shr", None, None, None)][0] == kf.OP_STD
    assert got[("st12", None, None, None)][0] == kf.OP_STD
    assert got[("other", None, None, None)][0] == kf.OP_MEAN
    # no std: a sum and a max
    assert got[(None, "g_mean", None, "g_hi")] == (kf.OP_SWEEP,
                                                   [-1, 0, hour, kw.MEAN, 3 * hour, kw.MAX])
    # two sums, one kind: each its own op
    assert got[("r1", None, None, None)][0] == got[("r24", None, None, None)][0] == kf.OP_COUNT
    assert len(got) == 10


@PROPERTY
@given(data=multi_series(max_series=6, max_len=60),
       windows=st.lists(_MINUTES, min_size=3, max_size=3), std=st.booleans(),
       fn=st.sampled_from(["sum", "mean", "count", None]),
       extremes=st.sampled_from([("min",), ("max",), ("min", "max"), ()]))
def test_a_sweep_equals_each_spec_alone(data, windows, std, fn, extremes):
    """One sweep gives each spec its one-spec kernel's output, bit for bit, whichever window is
    the longer (the inputs mix magnitudes 1e-3..1e6, so the std re-centres)."""
    ts, x, offsets = (frozen(a, a.dtype) for a in data)
    specs = {"s": {"fn": "std", "window": f"{windows[0]}m"}} if std else {}
    if fn:
        specs["a"] = {"fn": fn, "window": f"{windows[1]}m"}
    for e in extremes:
        specs[e] = {"fn": e, "window": f"{windows[2]}m"}
    assume(specs)
    resolved = resolve_specs(specs, metric_required=False)
    plan = fused.plan(resolved.values())
    assert (kf.OP_SWEEP in plan.ops) == (std + bool(fn) + bool(extremes) >= 2)
    out, valid, _ = fused.run_arrays(ts, x, offsets, np.full(offsets.size - 1, -1), plan)
    want = one_spec_outputs(ts, x, offsets, resolved)
    for r, name in enumerate(plan.names):
        np.testing.assert_array_equal(out[r], want[name], err_msg=name)
        check_bits(out[r], valid[r])


def test_every_registered_detector_is_fused():
    assert all(fused.fusable(s) for s in resolve_specs(
        {fn: {"fn": fn, **{p.name: {DURATION: "1h", FLOAT: 1.0, INT: 1}[p.kind]
                           for p in REGISTRY[fn].params}} for fn in FNS},
        metric_required=False).values())


# --------------------------------------------------------------------------------------------
# building blocks: streaming stores, validity bytes
# --------------------------------------------------------------------------------------------
def test_streaming_stores_write_what_plain_stores_write():
    src = np.random.default_rng(1).standard_normal(1001)
    dst = np.zeros(1001)
    stream_copy(src, dst)
    np.testing.assert_array_equal(dst, src)
    stream_fill(dst[3:10], np.nan)
    assert np.isnan(dst[3:10]).all() and not np.isnan(dst[10:]).any()


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 17])
def test_validity_bytes_shared_by_series_are_merged(n):
    """Series boundaries anywhere inside a validity byte, including empty series."""
    rng = np.random.default_rng(n)
    ts = frozen(T0_US + np.arange(n) * MINUTE_US, np.int64)
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.4] = np.nan
    x = frozen(x, np.float64)
    cuts = np.sort(rng.integers(0, n + 1, 5))
    offsets = frozen(np.concatenate([[0], cuts, [n]]), np.int64)
    plan = fused.plan(resolve_specs({"v": {"fn": "delta", "window": "0m"}},
                                    metric_required=False).values())
    out, valid, _ = fused.run_arrays(ts, x, offsets, np.full(offsets.size - 1, -1), plan)
    check_bits(out[0], valid[0])
    assert_frame_equal(pl.DataFrame({"v": fused.as_series("v", out[0], valid[0])}),
                       pl.DataFrame({"v": pl.Series("v", np.where(np.isnan(x), np.nan, 0.0),
                                                    nan_to_null=True)}))


@njit(**JIT)
def _doubled(ts, x, offsets):
    return 2.0 * x


def test_a_detector_the_fused_pass_does_not_know_runs_its_own_kernel():
    register("test_doubled", kernel=_doubled, params=(), lookback=lambda p: 0, output="value",
             doc="Twice the reading (a test detector).")
    try:
        hours = [0, 1, 2, 0, 3]
        tel = pl.DataFrame({"patient_id": ["a", "a", "a", "b", "b"],
                            "metric": ["weight", "weight", "weight", "heart_rate", "heart_rate"],
                            "ts": pl.Series([T0_US + h * 60 * MINUTE_US for h in hours])
                            .cast(pl.Datetime("us", "UTC")),
                            "value": [80.0, None, 81.0, 60.0, 66.0]})
        out = evaluate(tel, {"w2": {"metric": "weight", "fn": "test_doubled"},
                             "d": {"metric": "heart_rate", "fn": "delta", "window": "6h"},
                             "m": {"metric": "weight", "fn": "mean", "window": "1h"}})
        assert out["w2"].to_list() == [160.0, None, 162.0, None, None]
        assert out["d"].to_list() == [None, None, None, 0.0, 6.0]
        assert out["m"].to_list() == [80.0, 80.0, 81.0, None, None]
    finally:
        REGISTRY.pop("test_doubled")


def test_evaluate_raises_on_unsorted_times_found_by_the_fused_pass():
    tel = pl.DataFrame({"patient_id": ["a"] * 3, "metric": ["weight"] * 3,
                        "ts": pl.Series([T0_US, T0_US + 2, T0_US + 1])
                        .cast(pl.Datetime("us", "UTC")), "value": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError, match=r"goes back in time .* \(row 2\)"):
        evaluate(tel, {"m": {"metric": "weight", "fn": "mean", "window": "1h"}})
