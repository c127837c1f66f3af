"""Episodes after the rule stage: what follow-up windows do to them.

A patient is only watched between enrolment and discharge (``enrolled_at``, ``discharged_at`` in
the patients table). An episode opened after discharge is dropped: nobody is watching that
patient any more and the silence of their returned device is expected, not alarming. An episode
still open at discharge is closed at the discharge time, so the queue never asks a nurse to call a
patient who has left the programme.
"""
from __future__ import annotations

import polars as pl


def within_follow_up(episodes: pl.DataFrame, patients: pl.DataFrame | None) -> pl.DataFrame:
    """Drop episodes opened after the patient's discharge; close those open at discharge."""
    if patients is None or "discharged_at" not in patients.columns or episodes.height == 0:
        return episodes
    cols = episodes.columns
    df = episodes.join(patients.select("patient_id", "discharged_at"), on="patient_id",
                       how="left")
    gone = pl.col("discharged_at")
    df = df.filter(gone.is_null() | (pl.col("opened_at") <= gone))
    df = df.with_columns(resolved_at=pl.when(
        gone.is_not_null() & (pl.col("resolved_at").is_null() | (pl.col("resolved_at") > gone)))
        .then(gone).otherwise(pl.col("resolved_at")))
    return df.select(cols)
