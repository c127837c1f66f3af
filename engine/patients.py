"""Patient context (DESIGN.md §1): programme, age, height, usual weight, SpO2 scale.

The patient file is configuration written by the care team, so a bad row is an error that names
the file, row and column rather than a quarantine: scoring a patient under the wrong programme
would silently apply the wrong rules.
"""
from __future__ import annotations

import polars as pl

from .errors import InputError
from .schema import PATIENT_SCHEMA, PROGRAMMES
from .sources import read_table


def load_patients(source, *, name: str | None = None) -> pl.DataFrame:
    """Read and check a patients table; returns a frame with every PATIENT_SCHEMA column."""
    label = name or (source if isinstance(source, str) else str(getattr(source, "name", "")) or
                     "<patients>")
    raw = read_table(source, what="patients")
    return check_patients(raw, name=str(label))


def check_patients(raw: pl.DataFrame, *, name: str = "<patients>") -> pl.DataFrame:
    required = [c for c, (_, req, _) in PATIENT_SCHEMA.items() if req]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(f"the patients table is missing column(s) {', '.join(missing)}; found: "
                         f"{', '.join(raw.columns) or 'none'}.", path=name, column=missing[0])
    out = {}
    for col, (dtype, _, desc) in PATIENT_SCHEMA.items():
        if col not in raw.columns:
            out[col] = pl.Series(col, [None] * raw.height, dtype=dtype)
            continue
        s = raw[col]
        if s.dtype == pl.String and dtype != pl.String:
            s = s.str.strip_chars().replace("", None)
        if dtype == pl.Datetime("us", "UTC") and s.dtype == pl.String:
            conv = s.str.to_datetime(strict=False, time_unit="us", time_zone="UTC")
        elif isinstance(dtype, pl.Datetime) and isinstance(s.dtype, pl.Datetime):
            conv = (s.dt.replace_time_zone("UTC") if s.dtype.time_zone is None
                    else s.dt.convert_time_zone("UTC")).cast(dtype)
        else:
            conv = s.cast(dtype, strict=False)
        bad = conv.is_null() & s.is_not_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise InputError(f"value {s[i]!r} is not valid: expected {desc} ({dtype}).",
                             path=name, row=i + 1, column=col)
        out[col] = conv.alias(col)
    df = pl.DataFrame(out)
    pid_missing = df["patient_id"].is_null() | (df["patient_id"].str.strip_chars() == "")
    if pid_missing.any():
        raise InputError("patient_id is empty.", path=name, row=int(pid_missing.arg_true()[0]) + 1,
                         column="patient_id")
    dup = df["patient_id"].is_duplicated()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise InputError(f"patient_id {df['patient_id'][i]!r} appears more than once.",
                         path=name, row=i + 1, column="patient_id")
    unknown = ~df["programme"].is_in(list(PROGRAMMES)) | df["programme"].is_null()
    if unknown.any():
        i = int(unknown.arg_true()[0])
        raise InputError(f"unknown programme {df['programme'][i]!r}; expected one of "
                         f"{', '.join(PROGRAMMES)}.", path=name, row=i + 1, column="programme")
    scale = df["spo2_scale"].fill_null(1)
    if (~scale.is_in([1, 2])).any():
        i = int((~scale.is_in([1, 2])).arg_true()[0])
        raise InputError("spo2_scale must be 1 or 2 (scale 2 only for a prescribed 88-92 % "
                         "target).", path=name, row=i + 1, column="spo2_scale")
    ages = df["age"]
    if ((ages < 0) | (ages > 130)).any():
        i = int(((ages < 0) | (ages > 130)).arg_true()[0])
        raise InputError(f"age {ages[i]} is outside 0..130.", path=name, row=i + 1, column="age")
    return df.with_columns(spo2_scale=scale)
