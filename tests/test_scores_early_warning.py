"""qSOFA (Sepsis-3 2016), MEWS (Subbe 2001) and SIRS vitals (ACCP/SCCM 1992) on both sides of each
cut-point, their null rule, and the checks every registered score (SCORES) must pass."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine.errors import InputError, SpecError
from engine.schema import METRICS, PATIENT_SCHEMA
from engine.scores import SCORES, ScoreDef, mews, qsofa, sirs

QSOFA_NORMAL = {"resp_rate": 16.0, "sbp": 120.0, "consciousness": 0.0}
MEWS_NORMAL = {"sbp": 120.0, "heart_rate": 70.0, "resp_rate": 12.0, "temp": 37.0,
               "consciousness": 0.0}
SIRS_NORMAL = {"temp": 37.0, "heart_rate": 70.0, "resp_rate": 12.0}


def rows(normal: dict, changes: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{**normal, **c} for c in changes],
                        schema={k: pl.Float64 for k in normal})


def one(fn, normal, column, values, **kwargs) -> list:
    return fn(rows(normal, [{column: v} for v in values]), **kwargs)[
        f"{fn.__name__}_{column}"].to_list()


# ---- qSOFA ---------------------------------------------------------------------------------

def test_qsofa_cut_points():
    assert one(qsofa, QSOFA_NORMAL, "resp_rate", [21, 22, 30]) == [0, 1, 1]
    assert one(qsofa, QSOFA_NORMAL, "sbp", [80, 100, 101]) == [1, 1, 0]
    out = qsofa(rows(QSOFA_NORMAL, [{"consciousness": float(c)} for c in range(5)]))
    assert out["qsofa_mentation"].to_list() == [0, 1, 1, 1, 1]


def test_qsofa_mentation_from_letters_and_parameter():
    letters = pl.DataFrame({"resp_rate": [16.0] * 3, "sbp": [120.0] * 3,
                            "consciousness": ["A", "C", "V"]})
    assert qsofa(letters)["qsofa_mentation"].to_list() == [0, 1, 1]
    # a team that wants GCS <= 13-like strictness counts only V, P, U
    assert qsofa(letters, altered_from=2)["qsofa_mentation"].to_list() == [0, 0, 1]


def test_qsofa_rounding():
    assert one(qsofa, QSOFA_NORMAL, "sbp", [100.4, 100.5]) == [1, 0]
    assert one(qsofa, QSOFA_NORMAL, "resp_rate", [21.4, 21.5]) == [0, 1]
    assert one(qsofa, QSOFA_NORMAL, "sbp", [100.4], rounding="none") == [0]


def test_qsofa_positive_and_nulls():
    out = qsofa(rows(QSOFA_NORMAL, [
        {"resp_rate": 22.0},                                   # 1
        {"resp_rate": 22.0, "sbp": 100.0},                     # 2
        {"resp_rate": 22.0, "sbp": 100.0, "consciousness": 1.0},
        {"resp_rate": 22.0, "consciousness": None},            # partial 1, unknown
        {"resp_rate": 22.0, "sbp": 95.0, "consciousness": None},  # partial 2: positive anyway
        {"resp_rate": None},                                   # partial 0, unknown
    ]))
    assert out["qsofa"].to_list() == [1, 2, 3, None, None, None]
    assert out["qsofa_partial"].to_list() == [1, 2, 3, 1, 2, 0]
    assert out["qsofa_complete"].to_list() == [True, True, True, False, False, False]
    assert out["qsofa_positive"].to_list() == [False, True, True, None, True, None]
    assert out["qsofa_resp_rate"].to_list()[-1] is None


def test_qsofa_thresholds_are_parameters():
    assert one(qsofa, QSOFA_NORMAL, "resp_rate", [21, 22], rr_high=21) == [1, 1]
    assert one(qsofa, QSOFA_NORMAL, "sbp", [90, 91], sbp_low=90) == [1, 0]


# ---- MEWS ----------------------------------------------------------------------------------

@pytest.mark.parametrize("column, cases", [
    ("sbp", [(60, 3), (70, 3), (71, 2), (80, 2), (81, 1), (100, 1), (101, 0), (199, 0),
             (200, 2), (250, 2)]),
    ("heart_rate", [(30, 2), (40, 2), (41, 1), (50, 1), (51, 0), (100, 0), (101, 1), (110, 1),
                    (111, 2), (129, 2), (130, 3)]),
    ("resp_rate", [(5, 2), (8, 2), (9, 0), (14, 0), (15, 1), (20, 1), (21, 2), (29, 2), (30, 3)]),
    ("temp", [(34.9, 2), (35.0, 0), (38.4, 0), (38.5, 2), (40.0, 2), (34.95, 0), (34.94, 2),
              (38.45, 2), (38.44, 0)]),
])
def test_mews_cut_points(column, cases):
    values, expected = zip(*cases)
    assert one(mews, MEWS_NORMAL, column, list(values)) == list(expected)


def test_mews_consciousness():
    out = mews(rows(MEWS_NORMAL, [{"consciousness": float(c)} for c in range(5)]))
    assert out["mews_consciousness"].to_list() == [0, 1, 1, 2, 3]  # A, C, V, P, U
    letters = pl.DataFrame({**{k: [v] * 5 for k, v in MEWS_NORMAL.items() if k != "consciousness"},
                            "consciousness": ["A", "C", "V", "P", "U"]})
    assert mews(letters, confusion_points=0)["mews_consciousness"].to_list() == [0, 0, 1, 2, 3]


def test_mews_total_high_and_nulls():
    out = mews(rows(MEWS_NORMAL, [
        {"heart_rate": 115.0, "resp_rate": 21.0},              # 4
        {"heart_rate": 115.0, "resp_rate": 21.0, "sbp": 90.0},  # 5
        {"heart_rate": 130.0, "resp_rate": 30.0, "temp": None},  # partial 6: high anyway
        {"heart_rate": 101.0, "temp": None},                  # partial 1: unknown
    ]))
    assert out["mews"].to_list() == [4, 5, None, None]
    assert out["mews_partial"].to_list() == [4, 5, 6, 1]
    assert out["mews_high"].to_list() == [False, True, True, None]
    assert out["mews_temp"].to_list() == [0, 0, None, None]
    assert mews(rows(MEWS_NORMAL, [{"heart_rate": 115.0, "resp_rate": 21.0}]),
                high_at=4)["mews_high"].to_list() == [True]


# ---- SIRS ----------------------------------------------------------------------------------

def test_sirs_strict_inequalities():
    assert one(sirs, SIRS_NORMAL, "temp", [38.0, 38.01, 38.1, 36.0, 35.99, 35.9]) == [
        0, 1, 1, 0, 1, 1]
    assert one(sirs, SIRS_NORMAL, "heart_rate", [90, 90.5, 91]) == [0, 1, 1]
    assert one(sirs, SIRS_NORMAL, "resp_rate", [20, 20.2, 21]) == [0, 1, 1]
    # read at chart resolution if asked: 38.04 -> 38.0, not above 38
    assert one(sirs, SIRS_NORMAL, "temp", [38.04, 38.05], rounding="half_up") == [0, 1]


def test_sirs_count_positive_and_nulls():
    out = sirs(rows(SIRS_NORMAL, [
        {"temp": 38.5},
        {"temp": 38.5, "heart_rate": 95.0},
        {"temp": 35.0, "heart_rate": 95.0, "resp_rate": 22.0},
        {"temp": 38.5, "heart_rate": None},
        {"temp": 38.5, "heart_rate": 95.0, "resp_rate": None},
    ]))
    assert out["sirs"].to_list() == [1, 2, 3, None, None]
    assert out["sirs_partial"].to_list() == [1, 2, 3, 1, 2]
    assert out["sirs_positive"].to_list() == [False, True, True, None, True]


def test_sirs_thresholds_are_parameters():
    assert one(sirs, SIRS_NORMAL, "heart_rate", [95, 96], hr_high=95) == [0, 1]
    assert one(sirs, SIRS_NORMAL, "resp_rate", [24, 25], rr_high=24) == [0, 1]
    assert one(sirs, SIRS_NORMAL, "temp", [38.5, 38.6, 35.5], temp_high=38.5,
               temp_low=35.0) == [0, 1, 0]


def test_user_errors():
    with pytest.raises(InputError, match="consciousness"):
        qsofa(rows(QSOFA_NORMAL, [{}]).drop("consciousness"))
    with pytest.raises(SpecError, match="'rounding' parameter of mews"):
        mews(rows(MEWS_NORMAL, [{}]), rounding="up")
    with pytest.raises(SpecError, match="'hr_high' parameter of sirs"):
        sirs(rows(SIRS_NORMAL, [{}]), hr_high="90")
    with pytest.raises(SpecError, match="temp_low/temp_high"):
        sirs(rows(SIRS_NORMAL, [{}]), temp_low=39.0)


# ---- the registry, and checks every registered score passes --------------------------------

#: ranges wide enough to reach every band of every score
VITAL_RANGES = {"resp_rate": (4, 40), "spo2": (75, 100), "sbp": (60, 240),
                "heart_rate": (30, 160), "temp": (33, 41), "weight": (30, 180),
                "height_cm": (0, 210)}


def timeline(score: ScoreDef, n: int, seed: int) -> pl.DataFrame:
    """A random evaluation timeline for ``score``: as-of values with ~20 % nulls."""
    rng = np.random.default_rng(seed)
    cols = {}
    for name in score.inputs:
        if name == "spo2_scale":
            values = rng.choice([1, 2], n).astype(float)
        elif name in ("consciousness", "on_oxygen"):
            m = METRICS[name]
            values = rng.integers(int(m.low), int(m.high) + 1, n).astype(float)
        else:
            lo, hi = VITAL_RANGES[name]
            values = np.round(rng.uniform(lo, hi, n), 1)
        values[rng.random(n) < 0.2] = np.nan
        cols[name] = pl.Series(name, values).fill_nan(None)
    return pl.DataFrame(cols)


def test_registry_declares_the_timeline_scores():
    assert set(SCORES) == {"news2", "qsofa", "mews", "sirs", "bmi"}
    for name, score in SCORES.items():
        assert score.name == name and score.reference
        assert all(i in METRICS or i in PATIENT_SCHEMA for i in score.inputs), name
        assert name in score.outputs and f"{name}_complete" in score.outputs
    with pytest.raises(AttributeError):
        SCORES["news2"].name = "other"  # frozen


POINTS = sorted(set(SCORES) - {"bmi"})


@pytest.mark.parametrize("name", POINTS)
def test_score_contract(name):
    score = SCORES[name]
    frame = timeline(score, 400, seed=len(name))
    out = score.compute(frame)
    # adds exactly its outputs, keeps the inputs and the row order
    assert out.columns == frame.columns + list(score.outputs)
    assert_frame_equal(out.select(frame.columns), frame)
    # batch equals chunked: every row is scored on its own
    chunks = pl.concat([score.compute(frame.slice(i, 37)) for i in range(0, frame.height, 37)])
    assert_frame_equal(out, chunks)
    # determinism
    assert_frame_equal(out, score.compute(frame))
    # the null rule: total known exactly when complete, partial never above a known total
    complete = out[f"{name}_complete"]
    assert (out[name].is_not_null() == complete).all()
    assert complete.sum() > 0 and (~complete).sum() > 0
    known = out.filter(complete)
    assert (known[name] == known[f"{name}_partial"]).all()
    # a row with every input null has no total
    empty = score.compute(pl.DataFrame({c: [None] for c in score.inputs},
                                       schema={c: pl.Float64 for c in score.inputs}))
    assert empty[name].to_list() == [None] and empty[f"{name}_complete"].to_list() == [False]


def test_bmi_contract_and_its_boundaries():
    score = SCORES["bmi"]
    frame = timeline(score, 400, seed=3)
    out = score.compute(frame)
    assert out.columns == frame.columns + list(score.outputs)
    chunks = pl.concat([score.compute(frame.slice(i, 37)) for i in range(0, frame.height, 37)])
    assert_frame_equal(out, chunks)
    assert (out["bmi"].is_not_null() == out["bmi_complete"]).all()
    # decimal readings on a threshold compare equal to it (binary floating point would not)
    exact = score.compute(pl.DataFrame({"weight": [41.16, 43.52, 68.04, 53.465],
                                        "height_cm": [140.0, 160.0, 180.0, 170.0]}))
    assert exact["bmi"].to_list() == [21.0, 17.0, 21.0, 18.5]
    none = score.compute(pl.DataFrame({"weight": [70.0, None], "height_cm": [0.0, 170.0]}))
    assert none["bmi"].to_list() == [None, None]
    assert none["bmi_complete"].to_list() == [False, False]


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("", ".news2", ".early_warning", ".cgm", ".icope", ".bmi"):
        module = importlib.import_module(f"engine.scores{name}")
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
