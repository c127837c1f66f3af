"""WHO ICOPE step 1 (handbook 2019): each domain's decline flag, the change since the previous
screening, and how answers are grouped into screenings."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine.errors import InputError, SpecError
from engine.scores import icope_step1
from engine.scores.icope import DOMAINS, METRICS

T0 = datetime(2024, 1, 15, 10, 0, tzinfo=timezone.utc)
FLAGS = [d for d in DOMAINS if d != "locomotion"]
NEGATIVE = {"icope_cognition": 0, "icope_locomotion": 10.0, "icope_vitality": 0,
            "icope_vision": 0, "icope_hearing": 0, "icope_psychological": 0}


def wide(screenings: list[dict], patient: str = "p1", every_days: int = 120) -> pl.DataFrame:
    """One wide row per screening, every 4 months, items negative unless overridden."""
    rows = [{"patient_id": patient, "ts": T0 + timedelta(days=every_days * i), **NEGATIVE, **s}
            for i, s in enumerate(screenings)]
    return pl.DataFrame(rows, schema={"patient_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                      **{m: pl.Float64 for m in METRICS}})


def to_long(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.unpivot(list(METRICS), index=["patient_id", "ts"], variable_name="metric",
                         value_name="value").drop_nulls("value")


@pytest.mark.parametrize("domain", FLAGS)
def test_flag_domains_decline(domain):
    out = icope_step1(wide([{f"icope_{domain}": 0}, {f"icope_{domain}": 1}], every_days=120))
    assert out[f"{domain}_decline"].to_list() == [False, True]
    others = [f"{d}_decline" for d in DOMAINS if d != domain]
    assert not out.select(others).to_numpy().any()
    assert out["n_declines"].to_list() == [0, 1]


def test_locomotion_decline_is_strictly_above_14_seconds():
    out = icope_step1(wide([{"icope_locomotion": t} for t in (13.9, 14.0, 14.01, 20.0)]))
    assert out["locomotion_decline"].to_list() == [False, False, True, True]
    out = icope_step1(wide([{"icope_locomotion": t} for t in (12.0, 12.5)]),
                      locomotion_threshold=12.0)
    assert out["locomotion_decline"].to_list() == [False, True]


@pytest.mark.parametrize("domain", FLAGS)
def test_new_positive_domain(domain):
    col = f"icope_{domain}"
    out = icope_step1(wide([{col: 0}, {col: 1}, {col: 1}, {col: 0}, {col: 1}]))
    assert out[f"{domain}_new"].to_list() == [False, True, False, False, True]
    assert out["worsened"].to_list() == [False, True, False, False, True]


def test_first_screening_positive_is_new():
    out = icope_step1(wide([{"icope_vision": 1, "icope_locomotion": 16.0}]))
    assert out.select("vision_new", "locomotion_new", "cognition_new", "worsened").rows() == [
        (True, True, False, True)]
    assert out["locomotion_change_s"].to_list() == [None]
    assert out["locomotion_worsened"].to_list() == [None]


def test_unscreened_item_compares_with_the_last_answer():
    out = icope_step1(wide([{"icope_hearing": 1}, {"icope_hearing": None},
                            {"icope_hearing": 1}]))
    assert out["hearing_decline"].to_list() == [True, None, True]
    assert out["hearing_new"].to_list() == [True, None, False]
    assert out["complete"].to_list() == [True, False, True]
    assert out["worsened"].to_list() == [True, False, False]


def test_locomotion_worsening_on_both_sides_of_the_delta():
    out = icope_step1(wide([{"icope_locomotion": t} for t in (10.0, 11.9, 13.9, 13.0, 14.5)]))
    changes = out["locomotion_change_s"].to_list()
    assert changes[0] is None
    assert changes[1:] == pytest.approx([1.9, 2.0, -0.9, 1.5])
    assert out["locomotion_worsened"].to_list() == [None, False, True, False, False]
    assert out["locomotion_new"].to_list() == [False, False, False, False, True]
    assert out["worsened"].to_list() == [False, False, True, False, True]
    out = icope_step1(wide([{"icope_locomotion": t} for t in (10.0, 12.5, 13.0)]),
                      locomotion_worsening=2.5)
    assert out["locomotion_worsened"].to_list() == [None, True, False]


def test_answers_within_a_day_form_one_screening():
    day = timedelta(days=1)
    long = pl.DataFrame({
        "patient_id": ["p1"] * 5,
        "ts": [T0, T0 + timedelta(hours=1), T0 + day + timedelta(hours=1),  # gaps 1 h, 24 h
               T0 + 2 * day + timedelta(hours=1, seconds=1),               # gap 24 h 1 s
               T0 + 2 * day + timedelta(hours=2)],
        "metric": ["icope_cognition", "icope_vision", "icope_hearing", "icope_cognition",
                   "icope_cognition"],
        "value": [0.0, 1.0, 0.0, 1.0, 0.0],
    })
    out = icope_step1(long)
    assert out["screened_at"].to_list() == [T0, T0 + 2 * day + timedelta(hours=1, seconds=1)]
    assert out["n_answers"].to_list() == [3, 2]
    # two answers to one item in a screening: the latest wins
    assert out["icope_cognition"].to_list() == [0.0, 0.0]
    assert out.select("icope_vision", "icope_hearing").rows() == [(1.0, 0.0), (None, None)]
    out = icope_step1(long, group_window="12h")
    assert out["n_answers"].to_list() == [2, 1, 2]


def test_long_and_wide_inputs_agree_and_other_metrics_are_ignored():
    screenings = wide([{"icope_cognition": 1}, {"icope_locomotion": 16.0, "icope_vision": 1}])
    long = pl.concat([to_long(screenings),
                      pl.DataFrame({"patient_id": ["p1"], "ts": [T0], "metric": ["weight"],
                                    "value": [70.0]},
                                   schema_overrides={"ts": pl.Datetime("us", "UTC")})])
    assert_frame_equal(icope_step1(screenings), icope_step1(long))


def test_patients_are_independent():
    both = pl.concat([wide([{"icope_vision": 1}], patient="a"),
                      wide([{}, {"icope_vision": 1}], patient="b")])
    out = icope_step1(both)
    assert out["patient_id"].to_list() == ["a", "b", "b"]
    assert out["vision_new"].to_list() == [True, False, True]


def test_output_shape():
    out = icope_step1(wide([{}]))
    assert out.height == 1
    for d in DOMAINS:
        assert out.schema[f"{d}_decline"] == pl.Boolean and out.schema[f"{d}_new"] == pl.Boolean
    assert out.select("n_declines", "complete", "worsened").rows() == [(0, True, False)]


def test_user_errors():
    with pytest.raises(InputError, match="icope_vision"):
        icope_step1(wide([{"icope_vision": 2}]))
    with pytest.raises(InputError, match="icope_locomotion"):
        icope_step1(wide([{"icope_locomotion": -1.0}]))
    with pytest.raises(InputError, match="at least one"):
        icope_step1(pl.DataFrame({"patient_id": ["p"], "ts": [T0]}))
    with pytest.raises(InputError, match="ts"):
        icope_step1(wide([{}]).drop("ts"))
    with pytest.raises(SpecError, match="group_window"):
        icope_step1(wide([{}]), group_window="a day")
    with pytest.raises(SpecError, match="locomotion_worsening"):
        icope_step1(wide([{}]), locomotion_worsening=0)
