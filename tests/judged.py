"""Sample telemetry with the rows ingest judges across the input, for the tests that check a
run cut into slices or chunks of whole patients (Spark, streaming) against one in memory."""
from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from engine.paths import sample_cohort


def assert_same_results(whole, other, frames: tuple[str, ...]) -> None:
    """``other`` (a run in slices or chunks) gave ``whole``'s frames named ``frames`` (both
    None, or equal), its row accounting and its ``as_of``; a difference names the frame."""
    for name in frames:
        if getattr(whole, name) is None:                 # no risk without a model
            assert getattr(other, name) is None, name
            continue
        try:
            assert_frame_equal(getattr(whole, name), getattr(other, name))
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    assert whole.report == other.report
    assert whole.as_of == other.as_of


def sample_patients(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The telemetry of the sample's first ``n`` patients (values as text, as an export may
    give them) and the whole patients table."""
    telemetry, patients = sample_cohort()
    pats = pl.read_parquet(patients)
    keep = pats["patient_id"].head(n)
    tel = (pl.read_parquet(telemetry).filter(pl.col("patient_id").is_in(keep.implode()))
           .with_columns(pl.col("value").cast(pl.String)))
    return tel, pats


def judged_rows(tel: pl.DataFrame, now: dt.datetime) -> pl.DataFrame:
    """Copies of the first weight reading of ``tel`` that ingest judges against other rows: its
    id spelt with spaces (the same patient), an exact duplicate in pounds, two readings an hour
    later that conflict, an unparseable value and a reading after ``now``."""
    first = tel.filter(pl.col("metric") == "weight").row(0, named=True)
    return pl.DataFrame([
        {**first, "patient_id": f" {first['patient_id']} "},
        {**first, "value": str(round(float(first["value"]) / 0.45359237, 4)), "unit": "lb"},
        {**first, "ts": first["ts"] + dt.timedelta(hours=1), "value": "70.0"},
        {**first, "ts": first["ts"] + dt.timedelta(hours=1), "value": "71.0"},
        {**first, "value": "abc"},
        {**first, "ts": now + dt.timedelta(days=3)},
    ], schema=tel.schema)
