"""NEWS2 (RCP 2017, Chart 1) on both sides of every cut-point, its risk bands, rounding, nulls, the
pitfalls seen in public implementations, and a property test against a plain-Python reading of the chart.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError, SpecError
from engine.scores import news2
from engine.scores.news2 import OUTPUTS, SUBSCORES

#: every parameter in its 0-point band
NORMAL = {"resp_rate": 16.0, "spo2": 97.0, "spo2_scale": 1, "on_oxygen": 0, "sbp": 120.0,
          "heart_rate": 70.0, "consciousness": "A", "temp": 37.0}


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{**NORMAL, **r} for r in rows],
                        schema_overrides={k: pl.Float64 for k in
                                          ("resp_rate", "spo2", "sbp", "heart_rate", "temp")})


def scored(column: str, values: list, **overrides) -> list:
    """Sub-score news2_<column> for each value, every other parameter normal."""
    rows = [{column: v, **overrides} for v in values]
    return news2(frame(rows))[f"news2_{column}"].to_list()


# Expected points read off RCP Chart 1, on both sides of each printed cut-point.
CUTS = {
    "resp_rate": [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (3, 3),
                  (40, 3)],
    "sbp": [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (60, 3)],
    "heart_rate": [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
                   (130, 2), (131, 3)],
    "temp": [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
             (39.1, 2), (34.0, 3), (41.0, 2)],
}


@pytest.mark.parametrize("column", list(CUTS))
def test_cut_points(column):
    values, expected = zip(*CUTS[column])
    assert scored(column, list(values)) == list(expected)


def test_spo2_scale1_cut_points_on_air_and_oxygen():
    values = [91, 92, 93, 94, 95, 96, 100]
    expected = [3, 2, 2, 1, 1, 0, 0]
    assert scored("spo2", values) == expected
    # scale 1 has no high-SpO2 points: oxygen changes only the oxygen sub-score
    assert scored("spo2", values, on_oxygen=1) == expected


def test_spo2_scale2_on_air():
    values = [80, 83, 84, 85, 86, 87, 88, 92, 93, 97, 100]
    assert scored("spo2", values, spo2_scale=2) == [3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 0]


def test_spo2_scale2_on_oxygen():
    values = [83, 84, 86, 88, 92, 93, 94, 95, 96, 97, 100]
    assert scored("spo2", values, spo2_scale=2, on_oxygen=1) == [3, 2, 1, 0, 0, 1, 1, 2, 2, 3, 3]


def test_oxygen_adds_two_on_either_scale():
    out = news2(frame([{"on_oxygen": 1}, {"on_oxygen": 0}, {"on_oxygen": 1, "spo2_scale": 2,
                                                            "spo2": 90.0}]))
    assert out["news2_on_oxygen"].to_list() == [2, 0, 2]
    assert out["news2"].to_list() == [2, 0, 2]
    flags = frame([{}, {}]).with_columns(on_oxygen=pl.Series([True, False]))
    assert news2(flags)["news2_on_oxygen"].to_list() == [2, 0]


@pytest.mark.parametrize("level, points", [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3),
                                           (" c ", 3), ("a", 0)])
def test_consciousness_letters(level, points):
    assert scored("consciousness", [level]) == [points]


def test_consciousness_telemetry_codes():
    out = news2(frame([{"consciousness": None}] * 5).with_columns(
        consciousness=pl.Series([0.0, 1.0, 2.0, 3.0, 4.0])))
    assert out["news2_consciousness"].to_list() == [0, 3, 3, 3, 3]


def test_rounding_half_up_to_chart_resolution():
    assert scored("temp", [38.05, 38.04, 35.05, 35.04, 36.05, 39.05]) == [1, 0, 1, 3, 0, 2]
    assert scored("sbp", [90.5, 90.4, 100.5, 110.49]) == [2, 3, 1, 1]
    assert scored("heart_rate", [90.5, 90.4, 40.5, 130.5]) == [1, 0, 1, 3]
    assert scored("resp_rate", [8.5, 8.4, 11.5, 20.5, 24.49]) == [1, 3, 0, 2, 2]
    assert scored("spo2", [95.5, 95.4, 91.5]) == [0, 1, 2]


def test_rounding_is_not_bankers_rounding():
    # Python's round(90.5) == 90 and round(92.5) == 92; the chart reading is 91 and 93
    assert round(90.5) == 90
    assert scored("sbp", [90.5, 92.5]) == [2, 2]
    out = news2(frame([{"sbp": 90.5}, {"sbp": 91.5}]), rounding="half_even")
    assert out["news2_sbp"].to_list() == [3, 2]


def test_rounding_none_reads_contiguous_bands():
    out = news2(frame([{"temp": 38.04}, {"resp_rate": 20.5}, {"sbp": 90.4}]), rounding="none")
    assert out["news2_temp"].to_list() == [1, 0, 0]
    assert out["news2_resp_rate"].to_list() == [0, 2, 0]
    assert out["news2_sbp"].to_list() == [0, 0, 2]


@pytest.mark.parametrize("rows, total, risk", [
    ([{}], 0, "low"),
    ([{"consciousness": "C"}], 3, "low-medium"),
    ([{"consciousness": "C", "heart_rate": 95.0}], 4, "low-medium"),
    ([{"resp_rate": 22.0, "heart_rate": 95.0, "temp": 38.5}], 4, "low"),
    ([{"heart_rate": 95.0}], 1, "low"),
    ([{"resp_rate": 22.0, "heart_rate": 115.0, "temp": 38.5}], 5, "medium"),
    ([{"resp_rate": 25.0, "heart_rate": 95.0, "temp": 38.5}], 5, "medium"),
    ([{"resp_rate": 22.0, "heart_rate": 115.0, "sbp": 105.0, "temp": 38.5}], 6, "medium"),
    ([{"resp_rate": 22.0, "heart_rate": 115.0, "sbp": 95.0, "temp": 38.5}], 7, "high"),
    ([{"resp_rate": 30.0, "spo2": 85.0, "on_oxygen": 1, "sbp": 85.0, "heart_rate": 140.0,
       "consciousness": "U", "temp": 34.0}], 20, "high"),
])
def test_risk_bands(rows, total, risk):
    out = news2(frame(rows))
    assert out["news2"].to_list() == [total]
    assert out["news2_risk"].to_list() == [risk]
    assert out["news2_complete"].to_list() == [True]
    assert out["news2_partial"].to_list() == [total]


def test_risk_thresholds_are_parameters():
    out = news2(frame([{"resp_rate": 22.0, "heart_rate": 115.0}]), medium_at=4, high_at=6)
    assert out["news2_risk"].to_list() == ["medium"]


@pytest.mark.parametrize("column", [c for c in NORMAL if c != "spo2_scale"])
def test_a_missing_reading_is_never_scored_as_normal(column):
    out = news2(frame([{"resp_rate": 22.0, column: None}]))
    sub = f"news2_{column}"
    assert out[sub].to_list() == [None]
    assert out["news2"].to_list() == [None]
    assert out["news2_complete"].to_list() == [False]
    assert out["news2_partial"].to_list() == [0 if column == "resp_rate" else 2]
    assert out["news2_risk"].to_list() == [None]
    others = [s for s in SUBSCORES if s != sub]
    assert out.select(others).null_count().sum_horizontal().to_list() == [0]


def test_nan_is_missing_and_partial_reaching_high_is_high():
    out = news2(frame([{"temp": float("nan"), "resp_rate": 30.0, "sbp": 85.0, "heart_rate": 140.0},
                       {"temp": None, "resp_rate": 30.0, "sbp": 95.0}]))
    assert out["news2_temp"].to_list() == [None, None]
    assert out["news2"].to_list() == [None, None]
    assert out["news2_partial"].to_list() == [9, 5]
    # missing parameters can only add points: 9 known points are "high" whatever they are
    assert out["news2_risk"].to_list() == ["high", None]


def test_all_missing():
    empty = pl.DataFrame({c: [None] for c in NORMAL})
    out = news2(empty)
    assert out.select("news2", "news2_partial", "news2_complete", "news2_risk").rows() == [
        (None, 0, False, None)]


def test_scale2_above_target_with_unknown_oxygen_is_unknown():
    out = news2(frame([{"spo2_scale": 2, "spo2": 95.0, "on_oxygen": None},
                       {"spo2_scale": 2, "spo2": 85.0, "on_oxygen": None}]))
    assert out["news2_spo2"].to_list() == [None, 2]


def test_spo2_scale_absent_or_null_is_scale_1():
    base = frame([{"spo2": 97.0, "on_oxygen": 1}, {"spo2": 97.0, "on_oxygen": 1}])
    assert news2(base.drop("spo2_scale"))["news2_spo2"].to_list() == [0, 0]
    with_null = base.with_columns(spo2_scale=pl.Series([None, 2], dtype=pl.Int64))
    assert news2(with_null)["news2_spo2"].to_list() == [0, 3]


# ---- pitfalls seen in public implementations -------------------------------------------

def test_pitfall_scale2_high_spo2_points_not_applied_on_air():
    assert scored("spo2", [93, 95, 97, 99], spo2_scale=2, on_oxygen=0) == [0, 0, 0, 0]
    assert scored("spo2", [93, 95, 97, 99], spo2_scale=2, on_oxygen=1) == [1, 2, 3, 3]


def test_pitfall_new_confusion_scores_3():
    out = news2(frame([{"consciousness": "C"}]))
    assert out.select("news2_consciousness", "news2", "news2_risk").rows() == [(3, 3, "low-medium")]


def test_pitfall_single_parameter_3_rule():
    out = news2(frame([{"resp_rate": 7.0}, {"sbp": 88.0}, {"temp": 34.9}, {"heart_rate": 38.0},
                       {"spo2": 90.0}]))
    assert out["news2_risk"].to_list() == ["low-medium"] * 5


def test_pitfall_non_integer_readings_always_score():
    values = [x / 10 for x in range(20, 3000)]
    for column in ("resp_rate", "sbp", "heart_rate", "spo2"):
        out = news2(frame([{column: v} for v in values]), rounding="half_up")
        assert out[f"news2_{column}"].null_count() == 0
    temps = [x / 100 for x in range(3000, 4300)]
    for rounding in ("half_up", "none"):
        out = news2(frame([{"temp": t} for t in temps]), rounding=rounding)
        assert out["news2_temp"].null_count() == 0


def test_pitfall_38_1_to_39_0_scores_1_not_11():
    assert scored("temp", [38.1, 38.5, 39.0]) == [1, 1, 1]
    out = news2(frame([{"temp": 38.5}]))
    assert out["news2"].to_list() == [1]


def test_output_columns_and_types_and_inputs_kept():
    obs = frame([{}]).with_columns(pl.lit("p1").alias("patient_id"))
    out = news2(obs)
    assert out.columns == obs.columns + list(OUTPUTS)
    assert out["patient_id"].to_list() == ["p1"]
    assert out["consciousness"].to_list() == ["A"]
    assert {out.schema[s] for s in SUBSCORES} | {out.schema["news2"]} == {pl.Int32}
    assert out.schema["news2_complete"] == pl.Boolean
    assert out.schema["news2_risk"] == pl.String


def test_cut_points_are_parameters():
    out = news2(frame([{"resp_rate": 21.0}]), resp_rate_cuts=(8, 11, 21, 24))
    assert out["news2_resp_rate"].to_list() == [0]
    out = news2(frame([{"temp": 38.1}]), temp_cuts=(35.0, 36.0, 38.1, 39.0))
    assert out["news2_temp"].to_list() == [0]


def test_user_errors():
    with pytest.raises(InputError, match="temp"):
        news2(frame([{}]).drop("temp"))
    with pytest.raises(InputError, match="consciousness.*'X'"):
        news2(frame([{"consciousness": "X"}]))
    with pytest.raises(InputError, match="consciousness"):
        news2(frame([{}]).with_columns(consciousness=pl.lit(5.0)))
    with pytest.raises(InputError, match="spo2_scale"):
        news2(frame([{"spo2_scale": 3}]))
    with pytest.raises(InputError, match="on_oxygen"):
        news2(frame([{"on_oxygen": 2}]))
    with pytest.raises(InputError, match="sbp"):
        news2(frame([{}]).with_columns(sbp=pl.lit("high")))
    with pytest.raises(SpecError, match="'rounding' parameter of news2"):
        news2(frame([{}]), rounding="bankers")
    with pytest.raises(SpecError, match="'sbp_cuts' parameter of news2"):
        news2(frame([{}]), sbp_cuts=(90, 100, 110))
    with pytest.raises(SpecError, match="increasing"):
        news2(frame([{}]), heart_rate_cuts=(40, 50, 90, 130, 110))
    with pytest.raises(InputError, match="DataFrame"):
        news2({"resp_rate": [16]})


# ---- property test against an independent reading of the chart ------------------------------

def _half_up(x: float, places: str) -> Decimal:
    # the decimal the reading was typed as, rounded half up
    return Decimal(repr(x)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def reference_news2(row: dict) -> dict:
    """Chart 1 read band by band, as a nurse would, with plain if/elif."""
    subs = {}
    rr = None if row["resp_rate"] is None else _half_up(row["resp_rate"], "1")
    if rr is None:
        subs["rr"] = None
    elif rr <= 8:
        subs["rr"] = 3
    elif 9 <= rr <= 11:
        subs["rr"] = 1
    elif 12 <= rr <= 20:
        subs["rr"] = 0
    elif 21 <= rr <= 24:
        subs["rr"] = 2
    else:
        subs["rr"] = 3

    s = None if row["spo2"] is None else _half_up(row["spo2"], "1")
    o2 = row["on_oxygen"]
    scale = row["spo2_scale"] if row["spo2_scale"] is not None else 1
    if s is None:
        subs["spo2"] = None
    elif scale == 1:
        if s <= 91:
            subs["spo2"] = 3
        elif 92 <= s <= 93:
            subs["spo2"] = 2
        elif 94 <= s <= 95:
            subs["spo2"] = 1
        else:
            subs["spo2"] = 0
    else:
        if s <= 83:
            subs["spo2"] = 3
        elif 84 <= s <= 85:
            subs["spo2"] = 2
        elif 86 <= s <= 87:
            subs["spo2"] = 1
        elif 88 <= s <= 92:
            subs["spo2"] = 0
        elif o2 is None:
            subs["spo2"] = None
        elif o2 == 0:
            subs["spo2"] = 0
        elif 93 <= s <= 94:
            subs["spo2"] = 1
        elif 95 <= s <= 96:
            subs["spo2"] = 2
        else:
            subs["spo2"] = 3

    subs["o2"] = None if o2 is None else (2 if o2 == 1 else 0)

    bp = None if row["sbp"] is None else _half_up(row["sbp"], "1")
    if bp is None:
        subs["sbp"] = None
    elif bp <= 90:
        subs["sbp"] = 3
    elif 91 <= bp <= 100:
        subs["sbp"] = 2
    elif 101 <= bp <= 110:
        subs["sbp"] = 1
    elif 111 <= bp <= 219:
        subs["sbp"] = 0
    else:
        subs["sbp"] = 3

    hr = None if row["heart_rate"] is None else _half_up(row["heart_rate"], "1")
    if hr is None:
        subs["hr"] = None
    elif hr <= 40:
        subs["hr"] = 3
    elif 41 <= hr <= 50:
        subs["hr"] = 1
    elif 51 <= hr <= 90:
        subs["hr"] = 0
    elif 91 <= hr <= 110:
        subs["hr"] = 1
    elif 111 <= hr <= 130:
        subs["hr"] = 2
    else:
        subs["hr"] = 3

    c = row["consciousness"]
    subs["acvpu"] = None if c is None else (0 if c in ("A", 0) else 3)

    t = None if row["temp"] is None else _half_up(row["temp"], "0.1")
    if t is None:
        subs["temp"] = None
    elif t <= Decimal("35.0"):
        subs["temp"] = 3
    elif Decimal("35.1") <= t <= Decimal("36.0"):
        subs["temp"] = 1
    elif Decimal("36.1") <= t <= Decimal("38.0"):
        subs["temp"] = 0
    elif Decimal("38.1") <= t <= Decimal("39.0"):
        subs["temp"] = 1
    else:
        subs["temp"] = 2

    known = [v for v in subs.values() if v is not None]
    complete = len(known) == len(subs)
    partial = sum(known)
    if partial >= 7:
        risk = "high"
    elif not complete:
        risk = None
    elif partial >= 5:
        risk = "medium"
    elif 3 in known:
        risk = "low-medium"
    else:
        risk = "low"
    return {"subs": list(subs.values()), "total": partial if complete else None,
            "partial": partial, "complete": complete, "risk": risk}


def _reading(lo: int, hi: int, decimals: int):
    whole = st.integers(lo, hi).map(float)
    fine = st.integers(lo * 10 ** decimals, hi * 10 ** decimals).map(lambda i: i / 10 ** decimals)
    return st.one_of(st.none(), whole, fine)


ROW = st.fixed_dictionaries({
    "resp_rate": _reading(2, 45, 1),
    "spo2": _reading(70, 100, 1),
    "spo2_scale": st.sampled_from([1, 2, None]),
    "on_oxygen": st.sampled_from([0, 1, None]),
    "sbp": _reading(60, 260, 1),
    "heart_rate": _reading(25, 180, 1),
    "consciousness": st.sampled_from([0, 1, 2, 3, 4, None]),
    "temp": _reading(33, 42, 2),
})


@settings(max_examples=150, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=30), st.booleans())
def test_matches_plain_python_chart(rows, letters):
    df = pl.DataFrame(rows, schema={"resp_rate": pl.Float64, "spo2": pl.Float64,
                                    "spo2_scale": pl.Int64, "on_oxygen": pl.Int64,
                                    "sbp": pl.Float64, "heart_rate": pl.Float64,
                                    "consciousness": pl.Float64, "temp": pl.Float64})
    if letters:  # the same levels as ACVPU letters
        df = df.with_columns(pl.col("consciousness").replace_strict(
            {0.0: "A", 1.0: "C", 2.0: "V", 3.0: "P", 4.0: "U"}, default=None,
            return_dtype=pl.String))
    out = news2(df)
    for got, row in zip(out.iter_rows(named=True), rows):
        want = reference_news2(row)
        assert [got[s] for s in SUBSCORES] == want["subs"], row
        assert got["news2"] == want["total"], row
        assert got["news2_partial"] == want["partial"], row
        assert got["news2_complete"] == want["complete"], row
        assert got["news2_risk"] == want["risk"], row
