"""Backtest arithmetic on a hand-made cohort: windows, lead time, burden, unmatched alerts."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import polars as pl
import pytest

from engine.backtest import backtest, to_markdown

D = dt.timedelta(days=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
UTC = pl.Datetime("us", "UTC")


def frame(rows, schema):
    return pl.DataFrame(rows, schema=schema, orient="row")


def test_backtest_counts():
    events = frame([("A", "hf_decompensation", T0 + 5 * D, T0 + 8 * D),    # caught 2 days early
                    ("B", "hf_decompensation", T0 + 5 * D, T0 + 8 * D),    # caught 12 h late
                    ("C", "hf_decompensation", T0 + 5 * D, T0 + 8 * D),    # missed
                    ("D", "fall", T0 + 3 * D, T0 + 3 * D)],                # no prodrome
                   {"patient_id": pl.String, "event_type": pl.String, "onset": UTC,
                    "event_time": UTC})
    episodes = frame([("A", "heart_failure", "hf.x", T0 + 6 * D),
                      ("A", "heart_failure", "hf.x", T0 + 20 * D),          # unmatched
                      ("B", "heart_failure", "hf.x", T0 + 8 * D + D / 2),
                      ("C", "heart_failure", "hf.x", T0 + 1 * D),           # before onset
                      ("D", "home_autonomy", "home.fall", T0 + 3 * D + D / 24)],
                     {"patient_id": pl.String, "pack": pl.String, "rule_id": pl.String,
                      "opened_at": UTC})
    patients = frame([(p, prog, 80) for p, prog in
                      [("A", "heart_failure"), ("B", "heart_failure"), ("C", "heart_failure"),
                       ("D", "older_home")]],
                     {"patient_id": pl.String, "programme": pl.String, "age": pl.Int64})
    telemetry = frame([(p, T0) for p in "ABCD"] + [(p, T0 + 10 * D) for p in "ABCD"],
                      {"patient_id": pl.String, "ts": UTC})
    packs = [SimpleNamespace(name="heart_failure", cohorts=("heart_failure",), min_age=None,
                             max_age=None),
             SimpleNamespace(name="home_autonomy", cohorts=("older_home",), min_age=70,
                             max_age=None)]
    t = {r["pack"]: r for r in backtest(episodes, events, telemetry, patients,
                                        packs).iter_rows(named=True)}
    hf = t["heart_failure"]
    assert (hf["events"], hf["detected"], hf["detected_24h"]) == (3, 1, 2)
    assert hf["sensitivity"] == pytest.approx(1 / 3)
    assert hf["median_lead_h"] == pytest.approx(48.0)
    assert hf["patient_days"] == pytest.approx(30.0)
    assert hf["alerts_per_100_pd"] == pytest.approx(100 * 4 / 30)
    assert hf["unmatched_share"] == pytest.approx(2 / 4)          # day 20 and day 1
    fall = t["home_autonomy"]
    assert (fall["events"], fall["detected"], fall["median_lead_h"]) == (1, 1, -1.0)
    assert "| heart_failure | 3 | 1 | 33 % | 48.0 h | 2 | 4 |" in to_markdown(
        backtest(episodes, events, telemetry, patients, packs))
