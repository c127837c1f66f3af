"""The quality benchmark's arithmetic (benchmarks/quality.py) on hand-made data: the patient
bootstrap, the event-level counter (sensitivity, burden, lead time, threshold equality, window
edges), the queue held by risk, the training-seed guard. The whole benchmark is one slow test."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks import quality as Q

H = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
UTC = pl.Datetime("us", "UTC")
ROOT = Path(__file__).resolve().parents[1]


def grid_of(scores: dict[str, list]) -> pl.DataFrame:
    """A 4-hour grid from T0 per patient with the score ``model``."""
    rows = [(pid, T0 + 4 * k * H, v) for pid, vs in scores.items() for k, v in enumerate(vs)]
    return pl.DataFrame(rows, schema={"patient_id": pl.String, "ts": UTC, "model": pl.Float64},
                        orient="row")


def events_of(rows) -> pl.DataFrame:
    return pl.DataFrame([(p, T0 + h * H) for p, h in rows],
                        schema={"patient_id": pl.String, "event_time": UTC}, orient="row")


# -- bootstrap ------------------------------------------------------------------------------

def test_ranked_score_matches_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(3)
    n, patients = 600, 40
    y = rng.random(n) < 0.2
    score = np.round(rng.random(n) + 0.6 * y, 1)        # rounded: many ties
    groups = rng.integers(0, patients, n)
    r = Q.RankedScore(score, y, groups)
    auc, ap = r.evaluate(np.ones((1, patients)))
    assert auc[0] == pytest.approx(roc_auc_score(y, score))
    assert ap[0] == pytest.approx(average_precision_score(y, score))
    W = Q.resample_weights(patients, 5, seed=1)
    assert (W.sum(axis=1) == patients).all()
    auc, ap = r.evaluate(W, chunk=2)
    for b in range(5):
        w = W[b, groups]
        assert auc[b] == pytest.approx(roc_auc_score(y, score, sample_weight=w))
        assert ap[b] == pytest.approx(average_precision_score(y, score, sample_weight=w))


def cohort(patients: int, seed: int):
    """Per patient 30 grid times, 10 % positive, a score that separates them moderately."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(patients), 30)
    y = rng.random(groups.size) < 0.1
    score = rng.normal(size=groups.size) + 1.0 * y
    return score, y, groups


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_patients():
    widths = []
    for patients in (40, 640):
        s, y, g = cohort(patients, seed=patients)
        out = Q.bootstrap({"a": (s, y, g), "b": (np.zeros_like(s), y, g)}, patients,
                          resamples=200, seed=0, pairs=(("a", "b"),))
        a = out["scores"]["a"]
        assert a["auroc"] == pytest.approx(roc_auc_score(y, s))
        assert a["auroc_ci"][0] <= a["auroc"] <= a["auroc_ci"][1]
        assert a["auprc_ci"][0] <= a["auprc"] <= a["auprc_ci"][1]
        d = out["differences"]["a-b"]                    # b is a constant: AUROC 0.5
        assert d["auroc_difference"] == pytest.approx(a["auroc"] - 0.5)
        assert d["ci"][0] <= d["auroc_difference"] <= d["ci"][1]
        widths.append(a["auroc_ci"][1] - a["auroc_ci"][0])
    assert widths[1] < widths[0] / 2                      # 16 x the patients: about a quarter


def test_bootstrap_is_seeded():
    s, y, g = cohort(50, seed=1)
    one = Q.bootstrap({"a": (s, y, g)}, 50, resamples=200, seed=7)
    two = Q.bootstrap({"a": (s, y, g)}, 50, resamples=200, seed=7)
    other = Q.bootstrap({"a": (s, y, g)}, 50, resamples=200, seed=8)
    assert one == two
    assert one["scores"]["a"]["auroc_ci"] != other["scores"]["a"]["auroc_ci"]


# -- event level ----------------------------------------------------------------------------

GRID = {
    # opens at 4 h (equal to the threshold), closes at 12 h, opens at 20 h (equal again after
    # 0.049), closes at 28 h
    "A": [0.01, 0.05, 0.07, 0.02, 0.049, 0.05, 0.2, 0.01, 0.01, 0.01, 0.01, 0.01],
    # at or above from its first grid time on: one alert, open for good
    "B": [0.06] * 30,
    # opens at 44 h only
    "C": [0.01] * 11 + [0.05, 0.01],
    # a null score is below: opens at 4 h and at 12 h
    "D": [None, 0.5, None, 0.5],
}


def test_risk_openings_at_threshold_equality():
    al = Q.risk_openings(grid_of(GRID), "model", 0.05)
    got = sorted((p, (o - T0) / H, None if c is None else (c - T0) / H)
                 for p, o, c in al.iter_rows())
    assert got == [("A", 4, 12), ("A", 20, 28), ("B", 0, None), ("C", 44, 48),
                   ("D", 4, 8), ("D", 12, None)]


def test_event_level_sensitivity_burden_lead_time():
    grid = grid_of(GRID)
    alerts = Q.risk_openings(grid, "model", 0.05)
    events = events_of([("A", 30),    # openings at 4 h and 20 h in [-18 h, 30 h): first 4 h
                        ("B", 100),   # opened at 0 h, before the window: missed, but open
                        ("C", 44),    # opened at the event time: not before it, missed
                        ("C", 92),    # opened exactly 48 h before: caught, lead 48 h
                        ("E", 10)])   # no alert at all
    per = Q.event_level(events, alerts)
    assert per["caught"].to_list() == [True, False, False, True, False]
    assert per["lead_h"].to_list() == [26.0, None, None, 48.0, None]
    assert per["open_in_window"].to_list() == [True, True, False, True, False]
    s = Q.summarise(events, alerts, patient_days=3.0)
    assert (s["events"], s["caught"], s["alerts"]) == (5, 2, 6)
    assert s["sensitivity"] == pytest.approx(0.4)
    assert s["median_lead_h"] == pytest.approx(37.0)
    assert s["alerts_per_100_pd"] == pytest.approx(200.0)
    assert s["open_in_window"] == 3
    # just above the threshold the equal values no longer open alerts
    s = Q.summarise(events, Q.risk_openings(grid, "model", 0.0500001), patient_days=3.0)
    # A opens at 8 h (0.07) and 24 h (0.2), B at 0 h, D twice; C's 0.05 no longer opens, so
    # the event 48 h after it is missed
    assert (s["caught"], s["alerts"]) == (1, 5)


def test_event_level_alert_closed_before_the_window_does_not_count_as_open():
    alerts = pl.DataFrame([("A", T0, T0 + 10 * H)],
                          schema={"patient_id": pl.String, "opened_at": UTC,
                                  "closed_at": UTC}, orient="row")
    per = Q.event_level(events_of([("A", 58), ("A", 57)]), alerts)
    # window of the 58 h event starts at 10 h, when the alert closed; of the 57 h one at 9 h
    assert per["open_in_window"].to_list() == [False, True]
    assert per["caught"].to_list() == [False, False]


def test_rules_ordinal():
    f = pl.DataFrame({"open_high": [0, 1, 0, 0, 2], "open_medium": [0, 3, 1, 0, 0],
                      "open_low": [0, 1, 1, 1, 0]}, schema={c: pl.Float64 for c in
                                                             ("open_high", "open_medium",
                                                              "open_low")})
    assert f.select(Q.rules_ordinal().alias("r"))["r"].to_list() == [0, 3, 2, 1, 3]


# -- the queue with risk --------------------------------------------------------------------

def episodes_of(rows) -> pl.DataFrame:
    return pl.DataFrame([(p, sev, T0 + h * H, None) for p, sev, h in rows],
                        schema={"patient_id": pl.String, "severity": pl.String,
                                "opened_at": UTC, "closed_at": UTC}, orient="row")


def test_risk_at_opening_reads_the_latest_grid_time_at_or_before():
    grid = grid_of({"A": [0.01, 0.10, 0.30], "B": [0.5]})
    ep = episodes_of([("A", "low", 3.9),     # grid 0 h
                      ("A", "low", 4),       # grid 4 h exactly
                      ("A", "low", 100),     # after the last grid time: 8 h
                      ("B", "low", -1),      # before B's first grid time: unknown
                      ("C", "low", 5)])      # no grid at all: unknown
    got = Q.risk_at_opening(ep, grid)
    assert got["risk"].to_list() == [0.01, 0.10, 0.30, None, None]
    assert got["opened_at"].to_list() == ep["opened_at"].to_list()


def test_held_queue_policy_on_a_tiny_example():
    # risk: A 0.01 until 8 h, then 0.10 at 8 h and after; B 0.02 throughout
    grid = grid_of({"A": [0.01, 0.01, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10,
                          0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10],
                    "B": [0.02] * 19})
    episodes = episodes_of([("A", "medium", 2),     # risk 0.01, 70 h before A's event
                            ("A", "low", 40),       # risk 0.10, 32 h before
                            ("B", "high", 50),      # always queued; 22 h before B's event
                            ("B", "medium", 60)])   # risk 0.02, 12 h before
    events = events_of([("A", 72), ("B", 72)])
    q = Q.queue_tradeoff(episodes, events, grid, patient_days=2.0, taus=(0.0, 0.02, 0.1, 0.2),
                         thetas=(0.1,))
    r = q["rules"]
    assert (r["alerts"], r["caught"], r["median_lead_h"]) == (4, 2, 27.0)
    held = {h["tau"]: h for h in q["held"]}
    assert [held[t]["alerts"] for t in (0.0, 0.02, 0.1, 0.2)] == [4, 3, 2, 1]
    assert [held[t]["caught"] for t in (0.0, 0.02, 0.1, 0.2)] == [2, 2, 2, 1]
    assert held[0.02]["median_lead_h"] == pytest.approx(27.0)   # A 32 h, B 22 h (high)
    assert held[0.2]["alerts_per_100_pd"] == pytest.approx(50.0)
    assert held[0.2]["share_of_rule_alerts"] == pytest.approx(0.25)
    # risk-only alerts at theta 0.1: A's risk rises to 0.10 at 8 h (64 h before: outside)
    wr = {w["tau"]: w for w in q["with_risk"]}
    assert wr[0.2]["risk_alerts"] == 1 and wr[0.2]["alerts"] == 2
    assert wr[0.2]["caught"] == 1
    acc = q["acceptance"]
    # burden target 10 / 100 patient-days is not reached by any policy of this tiny cohort
    assert acc["rules_caught"] == 2 and acc["held"] is None and acc["with_risk"] is None
    assert not acc["met"] and acc["closest_held"] is None


def test_acceptance_picks_the_lowest_burden_that_keeps_the_rules_sensitivity(monkeypatch):
    grid = grid_of({"A": [0.01] * 19, "B": [0.5] * 19})
    episodes = episodes_of([("A", "low", 1), ("A", "low", 2), ("B", "medium", 60)])
    events = events_of([("B", 72)])
    monkeypatch.setattr(Q, "BURDEN_TARGET", 150.0)
    q = Q.queue_tradeoff(episodes, events, grid, patient_days=2.0, taus=(0.0, 0.1, 0.9),
                         thetas=(0.4,))
    acc = q["acceptance"]
    assert acc["met"] and acc["rules_within_target"]       # 3 alerts: 150 / 100 patient-days
    held = acc["held"]                                       # tau 0 (all queued) is not a policy
    assert held["tau"] == 0.1 and held["alerts"] == 1 and held["caught"] == 1
    # with B's risk-only alert (opened at 0 h, outside the window): 2 alerts at tau 0.1
    wr = acc["with_risk"]
    assert (wr["tau"], wr["theta"], wr["alerts"], wr["caught"]) == (0.1, 0.4, 2, 1)


def test_transfer_applies_the_default_choice_to_the_shifted_group():
    def row(tau, theta, burden, caught):
        return {"tau": tau, "theta": theta, "alerts_per_100_pd": burden, "caught": caught}

    default = {"queue": {"acceptance": {"held": {**row(0.01, None, 6.0, 50), "theta": None},
                                        "with_risk": row(0.02, 0.1, 4.0, 50)}}}
    shifted = {"queue": {"rules": {"caught": 30, "events": 40, "alerts_per_100_pd": 15.0},
                         "held": [row(0.01, None, 5.0, 31)],
                         "with_risk": [row(0.02, 0.1, 6.0, 29), row(0.02, 0.2, 3.0, 35)]}}
    for r in shifted["queue"]["held"]:
        del r["theta"]
    default["queue"]["acceptance"]["held"].pop("theta")
    t = Q.transfer({"default": default, "shifted": shifted})
    # the lowest burden on the default group is (0.02, 0.1); on the shifted one it misses 1 event
    assert t["policy"] == {"tau": 0.02, "theta": 0.1}
    assert t["on_shifted"]["caught"] == 29 and not t["met"]
    default["queue"]["acceptance"]["with_risk"] = None     # then the held queue at 1 %
    t = Q.transfer({"default": default, "shifted": shifted})
    assert t["policy"] == {"tau": 0.01, "theta": None} and t["met"]
    default["queue"]["acceptance"]["held"] = None
    assert Q.transfer({"default": default, "shifted": shifted}) is None


# -- held-out seeds -------------------------------------------------------------------------

def test_training_seeds_are_refused(tmp_path):
    from engine.synth import VARIANTS
    from engine.synth.write import generator_record, write_generator_record

    write_generator_record(generator_record(patients=3, days=7, seed=11, start=None,
                                            programmes=None, variant=VARIANTS["default"]),
                           tmp_path)
    card = {"training": {"seed": 0, "cohort": str(tmp_path),
                         "command": "veille train x --seed 5 --out m"}}
    assert Q.training_seeds(card) == {0: "card training.seed", 5: "card training.command",
                                      11: f"{tmp_path}/generator.json"}
    assert Q.check_seeds({"default": [1001, 1002], "shifted": [1101]}, card)
    for clash in (0, 5, 11):
        with pytest.raises(SystemExit, match=f"\\[{clash}\\]"):
            Q.check_seeds({"default": [1001], "shifted": [clash]}, card)
    # a training cohort that is not on this machine: the card's seeds still count
    card["training"]["cohort"] = str(tmp_path / "gone")
    assert set(Q.training_seeds(card)) == {0, 5}


# -- the whole benchmark --------------------------------------------------------------------

def _a_model() -> str | None:
    for candidate in (os.environ.get("VEILLE_QUALITY_MODEL"), str(ROOT / "models" / "default")):
        if candidate and (Path(candidate) / "baseline" / "card.json").is_file():
            return candidate
    return None


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    model = _a_model()
    if model is None:
        pytest.skip("no trained model with a baseline (set VEILLE_QUALITY_MODEL)")
    Q.main(["--model", model, "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "quality.json").read_text())
    for group in ("default", "shifted"):
        g = report["groups"][group]
        assert 0.5 < g["row_level"]["scores"]["model"]["auroc"] <= 1.0
        assert {"held", "with_risk", "acceptance", "rules"} <= set(g["queue"])
        for kind in ("roc", "calibration", "tradeoff"):
            assert (tmp_path / f"{kind}_{group}.svg").read_text().lstrip().startswith("<?xml")
    assert "## shifted variant" in (tmp_path / "quality.md").read_text()
