"""The complete backtest on hand-counted cohorts: per rule, per pack and for all packs; compare
and sweep on a pack change whose effect is known in advance."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from engine.backtest import backtest_table, to_markdown
from engine.compare import compare
from engine.labelled import LabelledCohort
from engine.pipeline import Engine, evaluate_packs
from engine.sweep import RuleSources, parse_spec, sweep

D = dt.timedelta(days=1)
H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
UTC = pl.Datetime("us", "UTC")
runner = CliRunner()


def frame(rows, schema):
    return pl.DataFrame(rows, schema=schema, orient="row")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# -- the metrics, counted by hand -----------------------------------------------------------

def hand_cohort():
    """Five heart-failure patients followed 10 days (50 patient-days, 10 calendar days).

    A: event day 8 (onset day 5); hf.a opens day 6 (48 h early) and day 20 (no event).
    B: event day 8; hf.b opens day 7 (24 h early), hf.a day 8 12:00 (12 h late).
    C: event day 8; hf.a opens day 1 (before the onset): missed.
    D: event day 8; hf.b opens day 7 18:00 (6 h early).
    E: no event, no alert.
    """
    events = frame([(p, "hf_decompensation", T0 + 5 * D, T0 + 8 * D) for p in "ABCD"],
                   {"patient_id": pl.String, "event_type": pl.String, "onset": UTC,
                    "event_time": UTC})
    episodes = frame([("A", "heart_failure", "hf.a", T0 + 6 * D),
                      ("A", "heart_failure", "hf.a", T0 + 20 * D),
                      ("B", "heart_failure", "hf.b", T0 + 7 * D),
                      ("B", "heart_failure", "hf.a", T0 + 8 * D + 12 * H),
                      ("C", "heart_failure", "hf.a", T0 + 1 * D),
                      ("D", "heart_failure", "hf.b", T0 + 7 * D + 18 * H)],
                     {"patient_id": pl.String, "pack": pl.String, "rule_id": pl.String,
                      "opened_at": UTC})
    patients = frame([(p, "heart_failure", 70) for p in "ABCDE"],
                     {"patient_id": pl.String, "programme": pl.String, "age": pl.Int64})
    telemetry = frame([(p, T0) for p in "ABCDE"] + [(p, T0 + 10 * D) for p in "ABCDE"],
                      {"patient_id": pl.String, "ts": UTC})
    pack = SimpleNamespace(name="heart_failure", cohorts=("heart_failure",), min_age=None,
                           max_age=None, rules=[SimpleNamespace(id="hf.a", enabled=True),
                                                SimpleNamespace(id="hf.b", enabled=True),
                                                SimpleNamespace(id="hf.c", enabled=True)])
    return episodes, events, telemetry, patients, [pack]


def test_complete_table_matches_hand_count():
    t = backtest_table(*hand_cohort(), nurses=2)
    rows = {(r["level"], r["rule_id"]): r for r in t.iter_rows(named=True)}
    assert list(t["level"]) == ["all", "pack", "rule", "rule", "rule"]
    pack = rows[("pack", None)]
    # 6 alerts over 5 patients × 10 days; 4 patients of 5 alerted
    assert (pack["episodes"], pack["patients"], pack["patients_alerted"]) == (6, 5, 4)
    assert pack["patient_share"] == pytest.approx(4 / 5)
    assert pack["patient_days"] == pytest.approx(50.0)
    assert pack["alerts_per_100_pd"] == pytest.approx(12.0)
    # A (48 h), B (24 h, hf.b), D (6 h) detected early; B also late by hf.a; C missed
    assert (pack["events"], pack["detected"], pack["detected_24h"]) == (4, 3, 3)
    assert pack["sensitivity"] == pytest.approx(3 / 4)
    assert (pack["lead_q1_h"], pack["median_lead_h"], pack["lead_q3_h"]) == \
        pytest.approx((15.0, 24.0, 36.0))
    # A day 6, B day 7, B day 8 12:00 (late, not false), D: 4 of 6 in a window (+24 h)
    assert pack["ppv"] == pytest.approx(4 / 6)
    assert pack["unmatched_share"] == pytest.approx(2 / 6)
    # 6 alerts, 2 nurses, 10 calendar days
    assert pack["alerts_per_nurse_day"] == pytest.approx(6 / 20)
    a, b, c = rows[("rule", "hf.a")], rows[("rule", "hf.b")], rows[("rule", "hf.c")]
    assert (a["episodes"], a["patients_alerted"], a["detected"], a["detected_24h"]) == \
        (4, 3, 1, 2)
    assert a["median_lead_h"] == pytest.approx(48.0)
    assert a["ppv"] == pytest.approx(2 / 4)
    assert (b["episodes"], b["detected"], b["ppv"]) == (2, 2, 1.0)
    assert (b["lead_q1_h"], b["median_lead_h"], b["lead_q3_h"]) == pytest.approx((10.5, 15, 19.5))
    # a rule that never fired: its events counted, ratios of alerts unknown, never 0 or NaN
    assert (c["events"], c["detected"], c["episodes"], c["sensitivity"]) == (4, 0, 0, 0.0)
    assert c["ppv"] is None and c["median_lead_h"] is None
    assert rows[("all", None)]["detected"] == 3
    md = to_markdown(t)
    assert "| **all packs** | 4 | 3 | 75 % | 24.0 h (15.0–36.0) | 3 | 6 | 12.00 | 4 of 5 " \
           "| 67 % | 0.30 |" in md
    assert "| hf.b | 4 | 2 | 50 % | 15.0 h (10.5–19.5) |" in md


def test_window_option_replaces_the_labelled_onset():
    # a 36 h look-back: A's alert 48 h early no longer counts (nor as late), B's (24 h) does
    t = backtest_table(*hand_cohort(), window=36 * H)
    pack = t.filter(pl.col("level") == "pack").row(0, named=True)
    assert (pack["detected"], pack["median_lead_h"]) == (2, pytest.approx(15.0))
    assert pack["ppv"] == pytest.approx(3 / 6)


# -- a cohort scored for real: compare and sweep with a known effect ------------------------

PACK = """
pack: heart_failure
version: "1"
scope: {cohort: heart_failure}
detectors:
  weight_gain_3d: {metric: weight, fn: delta, window: 3d}
params:
  gain_3d: {value: 2 kg, min: 1 kg, max: 4 kg}
rules:
  - id: hf.gain
    title: Weight gain
    when: weight_gain_3d > gain_3d
    severity: high
"""
LOWER = """
site: lower
packs:
  heart_failure:
    params: {gain_3d: 1.5 kg}
"""
#: gains per patient: P1 2.5 kg (an event), P2 1.8 kg (an event), P3 1.2 kg (no event)
GAINS = {"P1": 2.5, "P2": 1.8, "P3": 1.2}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    rows = []
    for p, gain in GAINS.items():
        # half the gain on day 5, the other half on day 7: the 3-day change reaches the whole
        # gain on day 7 08:00, a 1-day change never more than half of it
        for day in range(10):
            w = 80.0 + gain * (0 if day < 5 else 0.5 if day < 7 else 1)
            rows.append((p, T0 + day * D + 8 * H, "weight", round(w, 3)))
    pl.DataFrame(rows, schema={"patient_id": pl.String, "ts": UTC, "metric": pl.String,
                               "value": pl.Float64}, orient="row") \
        .write_parquet(d / "telemetry.parquet")
    pl.DataFrame({"patient_id": list(GAINS), "programme": ["heart_failure"] * 3,
                  "age": [70] * 3}).write_parquet(d / "patients.parquet")
    frame([(p, "hf_decompensation", T0 + 4 * D, T0 + 8 * D + 12 * H) for p in ("P1", "P2")],
          {"patient_id": pl.String, "event_type": pl.String, "onset": UTC,
           "event_time": UTC}).write_parquet(d / "events.parquet")
    (d / "rules").mkdir()
    (d / "rules" / "heart_failure.yaml").write_text(PACK)
    (d / "lower.yaml").write_text(LOWER)
    return d


def test_compare_lists_exactly_the_planted_alert(cohort_dir):
    data = LabelledCohort.load(cohort_dir)
    a = Engine.from_paths(cohort_dir / "rules")
    b = Engine.from_paths(cohort_dir / "rules", sites=[cohort_dir / "lower.yaml"])
    c = compare(data, a, b)
    # P1's 2.5 kg fires at both thresholds on day 7 08:00 (its half-gain, 1.25 kg, at
    # neither); P2's 1.8 kg only below 1.8 kg: exactly one alert gained, nothing lost
    assert c.alerts.select("change", "patient_id", "rule_id", "opened_at",
                           "event_type").rows() == \
        [("gained", "P2", "hf.gain", T0 + 7 * D + 8 * H, "hf_decompensation")]
    assert c.events.select("change", "patient_id").rows() == [("detected", "P2")]
    pack = c.table.filter(pl.col("level") == "pack").row(0, named=True)
    assert (pack["episodes_a"], pack["episodes_b"]) == (1, 2)
    assert (pack["sensitivity_a"], pack["sensitivity_b"]) == (0.5, 1.0)
    assert pack["median_lead_h_b"] == pytest.approx(28.0)
    r = invoke("backtest", cohort_dir, "--rules", cohort_dir / "rules", "--compare",
               cohort_dir / "lower.yaml", "--markdown")
    assert r.exit_code == 0, r.output
    assert "| heart_failure | 1 → 2 | 1 → 2 | 50% → 100% |" in r.output
    assert "| gained | P2 | hf.gain | 2026-01-08T08:00+00:00 | hf_decompensation" in r.output
    # a pack file as the other version replaces the pack of the same name
    other = cohort_dir / "other"
    other.mkdir()
    (other / "heart_failure.yaml").write_text(PACK.replace("value: 2 kg", "value: 1.5 kg"))
    r = invoke("backtest", cohort_dir, "--rules", cohort_dir / "rules", "--compare", other,
               "--markdown")
    assert r.exit_code == 0, r.output
    assert "| gained | P2 | hf.gain |" in r.output and "| lost |" not in r.output


def test_sweep_curve_and_exactness(cohort_dir):
    data = LabelledCohort.load(cohort_dir)
    res = sweep(data, ["heart_failure.gain_3d=1.0:2.5:0.5"], rules=[cohort_dir / "rules"])
    got = res.points.select("heart_failure.gain_3d", "episodes", "detected", "current",
                            "pareto").rows()
    # 1.0: all three (P3's 1.2 kg a false alert; P1 from its half-gain on day 5, a longer
    # lead); 1.5: P1, P2; 2.0: P1; 2.5: none (not > 2.5)
    assert got == [(1.0, 3, 2, False, True), (1.5, 2, 2, False, True),
                   (2.0, 1, 1, True, True), (2.5, 0, 0, False, True)]
    # each point is exactly a run of the pack with that value
    sources = RuleSources([cohort_dir / "rules"])
    ing = data.inputs.ingest
    for value, n in ((1.5, 2), (2.0, 1)):
        pack = sources.load(["heart_failure"], {("heart_failure", "gain_3d"): value}) \
            .pack("heart_failure")
        eps = evaluate_packs([pack], ing.clean, data.inputs.patients,
                             until=ing.clean["ts"].max(), index=ing.index)
        assert eps.height == n
    r = invoke("backtest", cohort_dir, "--rules", cohort_dir / "rules", "--sweep",
               "heart_failure.gain_3d=1.0:2.5:0.5", "--markdown")
    assert r.exit_code == 0, r.output
    assert "| 2 | ★◆ | 1 |" in r.output and "4 points in" in r.output


def test_sweep_of_a_grid_and_of_a_detector_window(cohort_dir):
    pack = PACK.replace("window: 3d}", "window: win}").replace(
        "params:\n", "params:\n  win: {value: 3 d, min: 1 d, max: 5 d}\n")
    (cohort_dir / "win").mkdir(exist_ok=True)
    (cohort_dir / "win" / "heart_failure.yaml").write_text(pack)
    data = LabelledCohort.load(cohort_dir)
    res = sweep(data, ["heart_failure.gain_3d=1.5:2:0.5", "heart_failure.win=1:3:2"],
                rules=[cohort_dir / "win"])
    got = {(r["heart_failure.gain_3d"], r["heart_failure.win"]): r["episodes"]
           for r in res.points.iter_rows(named=True)}
    # over 1 day the changes are half the gains: nothing exceeds 1.5 kg
    assert got == {(1.5, 1.0): 0, (1.5, 3.0): 2, (2.0, 1.0): 0, (2.0, 3.0): 1}
    # two windows: two distinct detectors, computed once each for the four points
    assert res.timings["detect"] >= 0


@pytest.mark.parametrize("spec, message", [
    ("heart_failure.gain3d=1:2:0.5", "has no param 'gain3d'. Did you mean 'gain_3d'"),
    ("heartfailure.gain_3d=1:2:0.5", "unknown pack 'heartfailure'"),
    ("heart_failure.gain_3d=2:1:0.5", "STOP (1) is below START (2)"),
    ("heart_failure.gain_3d=1:2:0", "the step must be a positive number"),
    ("heart_failure.gain_3d=0.5:2:0.5", "0.5 kg is below"),
    ("gain_3d=1:2", "is not PACK.PARAM=START:STOP:STEP"),
])
def test_sweep_errors_name_the_param(cohort_dir, spec, message):
    r = invoke("backtest", cohort_dir, "--rules", cohort_dir / "rules", "--sweep", spec)
    assert r.exit_code == 2, r.output
    assert message in r.output.replace("\n", " ")
    assert "Traceback" not in r.output


def test_parse_spec_includes_stop():
    assert parse_spec("heart_failure.gain_3d=1.1:3.0:0.1")[2][-1] == 3.0
    assert len(parse_spec("heart_failure.gain_3d=1.1:3.0:0.1")[2]) == 20


def test_backtest_writes_the_table_for_notebooks(cohort_dir, tmp_path):
    for ext in ("parquet", "csv"):
        out = tmp_path / f"t.{ext}"
        r = invoke("backtest", cohort_dir, "--rules", cohort_dir / "rules", "--out", out,
                   "--nurses", "2")
        assert r.exit_code == 0, r.output
        t = pl.read_parquet(out) if ext == "parquet" else pl.read_csv(out)
        assert t["level"].to_list() == ["all", "pack", "rule"]
        assert t.filter(pl.col("level") == "rule")["rule_id"].to_list() == ["hf.gain"]
    r = invoke("backtest", cohort_dir, "--rules", cohort_dir / "rules", "--nurses", "0")
    assert r.exit_code == 2 and "--nurses must be a positive number" in r.output
