"""CGM metrics (International Consensus on Time in Range, Battelino et al., Diabetes Care 2019):
hand-computed values on small synthetic series, GMI, data sufficiency, hypoglycaemia events, and a
smoke test on real traces."""
from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from engine.errors import InputError, SpecError
from engine.scores import cgm_metrics

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
CGM_DIR = Path("/work/shared/data/cgm")


def series(values, *, minutes=None, patient="p1", step=5) -> pl.DataFrame:
    minutes = minutes if minutes is not None else [step * i for i in range(len(values))]
    return pl.DataFrame({"patient_id": [patient] * len(values),
                         "ts": [T0 + timedelta(minutes=m) for m in minutes],
                         "value": values},
                        schema={"patient_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                "value": pl.Float64})


def metric(frame, column, **kwargs):
    return cgm_metrics(frame, **kwargs)[column].to_list()[0]


def test_ranges_mean_sd_cv_gmi_by_hand():
    values = [50, 60, 100, 150, 180, 190, 260, 70]
    row = cgm_metrics(series(values)).row(0, named=True)
    assert row["n_readings"] == 8
    assert row["tir"] == pytest.approx(50.0)          # 100, 150, 180, 70 (edges inclusive)
    assert row["tbr_low"] == pytest.approx(25.0)      # 50, 60
    assert row["tbr_very_low"] == pytest.approx(12.5)  # 50
    assert row["tar_high"] == pytest.approx(25.0)     # 190, 260 (180 is in range)
    assert row["tar_very_high"] == pytest.approx(12.5)  # 260
    assert row["mean"] == pytest.approx(132.5)
    sd = statistics.stdev(values)
    assert row["sd"] == pytest.approx(sd)
    assert row["cv"] == pytest.approx(sd / 132.5 * 100)
    assert row["gmi"] == pytest.approx(3.31 + 0.02392 * 132.5)
    # regular readings: time-weighted equals percent of readings
    for r in ("tir", "tbr_low", "tbr_very_low", "tar_high", "tar_very_high"):
        assert row[f"{r}_time"] == pytest.approx(row[r])


def test_range_edges():
    row = cgm_metrics(series([54, 53.9, 69.9, 70, 180, 180.1, 250, 250.1])).row(0, named=True)
    assert row["tbr_very_low"] == pytest.approx(100 / 8)   # 53.9
    assert row["tbr_low"] == pytest.approx(300 / 8)        # 54, 53.9, 69.9
    assert row["tir"] == pytest.approx(200 / 8)            # 70, 180
    assert row["tar_high"] == pytest.approx(300 / 8)       # 180.1, 250, 250.1
    assert row["tar_very_high"] == pytest.approx(100 / 8)  # 250.1


def test_time_weighted_percentages():
    # t=0 100 for 10 min, t=10 60 for 5 min, t=15 200 (last: one interval)
    row = cgm_metrics(series([100, 60, 200], minutes=[0, 10, 15])).row(0, named=True)
    assert row["tir"] == pytest.approx(100 / 3)
    assert row["tir_time"] == pytest.approx(50.0)
    assert row["tbr_low_time"] == pytest.approx(25.0)
    assert row["tar_high_time"] == pytest.approx(25.0)
    # across a gap longer than max_gap (default 3 x 5 min) a reading counts one interval
    row = cgm_metrics(series([100, 60], minutes=[0, 60])).row(0, named=True)
    assert row["tir_time"] == pytest.approx(50.0)
    row = cgm_metrics(series([100, 60], minutes=[0, 60]), max_gap="1h").row(0, named=True)
    assert row["tir_time"] == pytest.approx(60 / 65 * 100)


@pytest.mark.parametrize("mean, gmi", [(100, 5.7), (150, 6.9), (200, 8.1)])
def test_gmi_published_values(mean, gmi):
    assert round(metric(series([mean] * 12), "gmi"), 1) == gmi
    assert metric(series([mean - 20, mean + 20] * 6), "gmi") == pytest.approx(
        3.31 + 0.02392 * mean)


def test_data_sufficiency():
    per_day = 288  # 5-minute readings
    full = series([120.0] * (14 * per_day))
    row = cgm_metrics(full).row(0, named=True)
    assert row["expected_readings"] == 14 * per_day
    assert row["days_covered"] == pytest.approx(14.0)
    assert row["percent_active"] == pytest.approx(100.0)
    assert row["sufficient"] is True

    def keep(k):  # first and last kept, so the window stays 14 days
        idx = sorted({0, 14 * per_day - 1} | set(range(1, k - 1)))
        return full[idx]
    threshold = 0.7 * 14 * per_day  # 2822.4 readings
    row = cgm_metrics(keep(2823)).row(0, named=True)
    assert row["n_readings"] == 2823 and row["percent_active"] >= 70 and row["sufficient"]
    row = cgm_metrics(keep(2822)).row(0, named=True)
    assert row["n_readings"] == 2822 < threshold and row["sufficient"] is False

    short = series([120.0] * (13 * per_day))
    assert metric(short, "days_covered") == pytest.approx(13.0)
    assert metric(short, "sufficient") is False
    assert metric(short, "sufficient", min_days=13) is True


def test_explicit_window():
    frame = series([120.0] * (2 * 288))  # two days of data
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=3)
    row = cgm_metrics(frame, start=start, end=end).row(0, named=True)
    assert row["window_start"] == start and row["window_end"] == end
    assert row["expected_readings"] == 4 * 288
    assert row["percent_active"] == pytest.approx(50.0)
    assert row["days_covered"] == pytest.approx(2.0)
    # readings outside [start, end) are not counted; an empty window still gives the patient
    row = cgm_metrics(frame, start=T0 + timedelta(days=1)).row(0, named=True)
    assert row["n_readings"] == 288
    empty = cgm_metrics(frame, start=T0 + timedelta(days=10), end=T0 + timedelta(days=11))
    assert empty.select("patient_id", "n_readings", "mean", "sufficient").rows() == [
        ("p1", 0, None, False)]


def test_missing_readings_are_not_readings():
    frame = series([100.0, None, float("nan"), 60.0], minutes=[0, 5, 10, 15])
    row = cgm_metrics(frame).row(0, named=True)
    assert row["n_readings"] == 2
    assert row["tir"] == pytest.approx(50.0)
    assert row["expected_readings"] == 4 and row["percent_active"] == pytest.approx(50.0)


# ---- hypoglycaemia events ------------------------------------------------------------------

def events(values, level=1, **kwargs):
    minutes = kwargs.pop("minutes", None)
    return metric(series(values, minutes=minutes), f"hypo_level{level}_events", **kwargs)


def test_hypo_event_needs_15_minutes():
    assert events([100, 65, 65, 65, 100, 100, 100]) == 1   # 3 readings = 15 min
    assert events([100, 65, 65, 100, 100, 100]) == 0       # 10 min
    assert events([65, 65, 65]) == 1                       # at the very start and end
    assert events([100, 70, 70, 70, 100]) == 0             # 70 is not below 70


def test_hypo_event_ends_after_15_minutes_at_or_above_70():
    # dips separated by 10 min >= 70: one event; by 15 min: two
    assert events([65, 65, 65, 80, 80, 65, 65, 65]) == 1
    assert events([65, 65, 65, 80, 80, 80, 65, 65, 65]) == 2
    # exactly 70 counts as recovered
    assert events([65, 65, 65, 70, 70, 70, 65, 65, 65]) == 2


def test_hypo_level2():
    assert events([100, 50, 50, 50, 100, 100, 100], level=2) == 1
    assert events([100, 50, 50, 50, 100, 100, 100], level=1) == 1
    assert events([100, 60, 60, 60, 100], level=2) == 0
    assert events([100, 54, 54, 54, 100], level=2) == 0     # 54 is not below 54
    assert events([100, 50, 50, 100], level=2) == 0          # 10 min
    # 54-69 between two dips is not a recovery (which needs >= 70)
    assert events([50, 50, 50, 60, 60, 60, 60, 50, 50, 50], level=2) == 1
    assert events([50, 50, 50, 60, 60, 60, 60, 50, 50, 50], level=2, hypo_end=54) == 2


def test_hypo_events_irregular_sampling_and_gaps():
    # a 15-minute gap inside max_gap: 65 at t=0 stands for 15 min, then 65 at t=15 for 5
    assert events([65, 65, 100], minutes=[0, 15, 20]) == 1
    assert events([65, 100], minutes=[0, 10]) == 0
    # a sensor gap ends the run and the event: two events without an observed recovery
    assert events([65, 65, 65, 65, 65, 65], minutes=[0, 5, 10, 130, 135, 140]) == 2
    # a run broken by a gap is not 15 consecutive minutes
    assert events([65, 65, 65, 65], minutes=[0, 5, 125, 130]) == 0


def test_hypo_duration_is_a_parameter():
    assert events([100, 65, 65, 100, 100, 100], hypo_duration="10m") == 1


def test_patients_are_independent():
    a = series([100, 65, 65], patient="a")
    b = series([65, 100, 100], patient="b")
    out = cgm_metrics(pl.concat([b, a]))
    assert out["patient_id"].to_list() == ["a", "b"]
    assert out["hypo_level1_events"].to_list() == [0, 0]
    assert out["n_readings"].to_list() == [3, 3]


# ---- input handling ------------------------------------------------------------------------

def test_naive_local_time_with_a_zone():
    naive = pl.DataFrame({"patient_id": ["p"] * 3, "value": [100.0, 110.0, 120.0],
                          "ts": [datetime(2024, 3, 31, 1, 55), datetime(2024, 3, 31, 2, 30),
                                 datetime(2024, 3, 31, 3, 5)]})
    with pytest.raises(InputError, match="time_zone"):
        cgm_metrics(naive)
    row = cgm_metrics(naive, time_zone="Europe/Paris").row(0, named=True)
    # 02:30 does not exist in Paris that night (clocks jump 02:00 -> 03:00): dropped
    assert row["n_readings"] == 2
    assert row["window_start"] == datetime(2024, 3, 31, 0, 55, tzinfo=timezone.utc)


def test_long_telemetry_keeps_glucose_only():
    frame = series([100.0, 200.0]).with_columns(metric=pl.lit("glucose"))
    other = series([50.0, 50.0]).with_columns(metric=pl.lit("heart_rate"))
    assert metric(pl.concat([frame, other]), "mean") == pytest.approx(150.0)


def test_user_errors():
    with pytest.raises(InputError, match="value"):
        cgm_metrics(series([100.0]).drop("value"))
    with pytest.raises(SpecError, match="interval"):
        cgm_metrics(series([100.0]), interval="5 minutes")
    with pytest.raises(SpecError, match="timezone-aware"):
        cgm_metrics(series([100.0]), start=datetime(2024, 1, 1))
    with pytest.raises(SpecError, match="start < end"):
        cgm_metrics(series([100.0]), start=T0, end=T0)
    with pytest.raises(SpecError, match="very_low <= low"):
        cgm_metrics(series([100.0]), low=50.0)


def test_empty_input():
    out = cgm_metrics(series([]))
    assert out.height == 0 and "tir" in out.columns


# ---- real traces ---------------------------------------------------------------------------

STUDIES = [  # file, local zone of the study sites, subjects
    ("hall2018", "America/Los_Angeles", 57),
    ("dubosson2018", "Europe/Zurich", 9),
    ("tsalikian2005", "America/Chicago", 50),
]


def read_iglu_csv(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(patient_id, naive ts, value) and the raw file, whose ``NA`` are null readings."""
    raw = pl.read_csv(path, null_values="NA",
                      schema={"id": pl.String, "time": pl.String, "gl": pl.Float64})
    return raw.select(patient_id="id", value="gl",
                      ts=pl.col("time").str.to_datetime("%Y-%m-%d %H:%M:%S")), raw


@pytest.mark.skipif(not CGM_DIR.exists(), reason="real CGM files not available")
@pytest.mark.parametrize("study, zone, subjects", STUDIES)
def test_real_cgm_files(study, zone, subjects):
    """Real traces (iglu test data): Hall et al., "Glucotypes reveal new patterns of glucose
    dysregulation", PLoS Biol 2018; Dubosson et al., "The open D1NAMO dataset", Inform Med
    Unlocked 2018; Tsalikian et al. (DirecNet), J Pediatr 2005. Naive local clock times are read
    in the zone of the study sites; prints a per-study summary (run with -s)."""
    glucose, raw = read_iglu_csv(CGM_DIR / f"{study}.csv")
    out = cgm_metrics(glucose, time_zone=zone)
    assert out.height == subjects
    # every non-missing reading counted, bar the few spring-forward clock times that never existed
    present = raw["gl"].is_not_null().sum()
    assert present - 12 * subjects <= out["n_readings"].sum() <= present
    for column in ("tir", "tbr_low", "tbr_very_low", "tar_high", "tar_very_high", "tir_time",
                   "percent_active"):
        assert out[column].is_between(0, 100).all(), column
    assert ((out["tir"] + out["tbr_low"] + out["tar_high"] - 100).abs() < 1e-9).all()
    assert (out["tbr_very_low"] <= out["tbr_low"]).all()
    assert (out["tar_very_high"] <= out["tar_high"]).all()
    assert out["mean"].is_between(40, 400).all() and (out["cv"] > 0).all()
    assert ((out["gmi"] - (3.31 + 0.02392 * out["mean"])).abs() < 1e-9).all()
    # every level-2 event lies inside a level-1 event, and recoveries end both
    assert (out["hypo_level2_events"] <= out["hypo_level1_events"]).all()
    summary = out.select(
        pl.lit(study).alias("study"), pl.len().alias("subjects"),
        pl.col("n_readings").sum().alias("readings"),
        pl.col("days_covered").median().round(1).alias("median_days"),
        pl.col("percent_active").median().round(1).alias("median_active_pct"),
        pl.col("sufficient").sum().alias("sufficient"),
        pl.col("mean").median().round(1).alias("median_mean_mg_dl"),
        pl.col("tir").median().round(1).alias("median_tir_pct"),
        pl.col("tbr_low").median().round(1).alias("median_tbr70_pct"),
        pl.col("gmi").median().round(2).alias("median_gmi_pct"),
        pl.col("hypo_level1_events").sum().alias("hypo_l1_events"),
        pl.col("hypo_level2_events").sum().alias("hypo_l2_events"),
    )
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print(f"\n{summary}")
