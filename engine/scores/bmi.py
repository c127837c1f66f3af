"""Body mass index on a timeline: the latest weight over the square of the patient's height.

BMI (kg/m²) = weight (kg) / (height (m))² — WHO, Obesity: preventing and managing the global
epidemic, Technical Report Series 894, 2000. Malnutrition criteria built on it: adults under 70,
BMI ≤ 18.5 (HAS, Diagnostic de la dénutrition de l'enfant et de l'adulte, November 2019); from 70,
BMI < 22, severe < 20 (HAS / FFN, Diagnostic de la dénutrition chez la personne de 70 ans et
plus, November 2021). The rule packs compare it with those thresholds as params.

The index is rounded to 9 decimals, as detector outputs are (:mod:`engine.timeline`): 41.16 kg
for 1.40 m is BMI 21 exactly and must compare equal to the threshold 21, not the
20.999999999999996 that binary floating point gives.
Null when the weight or the height is unknown, or the height is not positive.

>>> import polars as pl
>>> frame = pl.DataFrame({"weight": [41.16, 70.0, None], "height_cm": [140.0, None, 170.0]})
>>> bmi(frame)["bmi"].to_list()
[21.0, None, None]
"""
from __future__ import annotations

import polars as pl

INPUTS = ("weight", "height_cm")
OUTPUTS = ("bmi", "bmi_complete")
REFERENCE = ("WHO. Obesity: preventing and managing the global epidemic. Technical Report "
             "Series 894, 2000 (BMI = weight / height²).")


def bmi(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``bmi`` (kg/m²) from ``weight`` (kg) and ``height_cm``, and
    ``bmi_complete`` (both inputs known, as every score's ``*_complete``)."""
    h = pl.col("height_cm").cast(pl.Float64)
    w = pl.col("weight").cast(pl.Float64)
    value = pl.when(h > 0).then((w * 10000 / (h * h)).round(9))
    complete = w.is_not_null() & (h > 0).fill_null(False)
    return frame.with_columns(value.cast(pl.Float64).alias("bmi"), complete.alias("bmi_complete"))
