"""Patient context: programme, age, height, usual weight, SpO2 scale, follow-up dates.

The patient file is configuration written by the care team, so a bad row is an error that names
the file, row and column rather than a quarantine: scoring a patient under the wrong programme
would silently apply the wrong rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .errors import InputError
from .schema import CARE_PLAN, EARLIEST, PATIENT_SCHEMA, PROGRAMMES
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
            # the row and column locate the cell; its content (a patient's data) is not echoed
            raise InputError(f"the value is not valid: expected {desc} ({dtype}).",
                             path=name, row=i + 1, column=col)
        out[col] = conv.alias(col)
    # ids are compared stripped of surrounding spaces, as ingest strips telemetry's
    df = pl.DataFrame(out).with_columns(pl.col("patient_id").str.strip_chars())
    pid_missing = df["patient_id"].is_null() | (df["patient_id"] == "")
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
    for col in ("enrolled_at", "discharged_at", "surgery_at", "device_ended_at"):
        early = df[col] < EARLIEST
        if early.any():
            i = int(early.arg_true()[0])
            raise InputError(f"the date is before {EARLIEST.date()}: not a "
                             "plausible date of home telemonitoring (a default or reset date?).",
                             path=name, row=i + 1, column=col)
    ages = df["age"]
    if ((ages < 0) | (ages > 130)).any():
        i = int(((ages < 0) | (ages > 130)).arg_true()[0])
        raise InputError("the age is outside 0..130.", path=name, row=i + 1, column="age")
    for f in CARE_PLAN.values():
        v = df[f.name]
        out_of_range = (v < f.low) | (v > f.high) | v.is_nan()
        if out_of_range.any():
            i = int(out_of_range.arg_true()[0])
            raise InputError(f"{f.name} is outside {f.low:g}..{f.high:g} {f.unit}: not "
                             f"a plausible {f.description}.", path=name, row=i + 1,
                             column=f.name)
    check_time_zones(df["tz"], name)
    return df.with_columns(spo2_scale=scale)


def check_time_zones(zones: pl.Series, name: str) -> None:
    """Every non-empty zone of the ``tz`` column must be an IANA zone (Europe/Paris)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    for zone in zones.drop_nulls().unique(maintain_order=True).to_list():
        try:
            ok = "/" in zone or zone == "UTC"
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            ok = False
        if not ok:
            i = int((zones == zone).arg_true()[0])
            raise InputError(f"time zone {zone!r} is not an IANA time zone like "
                             "'Europe/Paris'.", path=name, row=i + 1, column="tz")


#: the programmes as a polars enum (comparisons with a programme's name work as with text)
PROGRAMME_ENUM = pl.Enum(PROGRAMMES)


@dataclass(frozen=True)
class Cohort:
    """The patients a run evaluates, in code order (sorted ids), with their context.

    Attributes
    ----------
    ids : pl.Series
        Sorted distinct patient ids: a patient's *code* in the later stages is its index here.
    context : pl.DataFrame
        One row per id, aligned to ``ids``, with every :data:`~engine.schema.PATIENT_SCHEMA`
        column (nulls for a patient the patients table does not list).
    start : np.ndarray
        int64 µs of ``enrolled_at`` per patient, ``NO_START`` where unknown.
    """

    ids: pl.Series
    context: pl.DataFrame
    start: np.ndarray
    #: the whole cohort a slice was cut from, and where (scopes are computed once, on it)
    parent: "Cohort | None" = None
    offset: int = 0
    _scopes: dict = field(default_factory=dict, compare=False, repr=False)

    NO_START = np.iinfo(np.int64).min

    def in_scope(self, pack) -> np.ndarray:
        """Bool per patient: does ``pack`` apply (:func:`engine.timeline.in_scope`)."""
        if self.parent is not None:
            return self.parent.in_scope(pack)[self.offset:self.offset + self.size]
        key = (pack.name, pack.cohorts, pack.min_age, pack.max_age)
        if key not in self._scopes:
            from .timeline import in_scope
            self._scopes[key] = in_scope(pack, self.context)
        return self._scopes[key]

    @property
    def size(self) -> int:
        return int(self.ids.len())

    @classmethod
    def of(cls, telemetry_ids: pl.Series, patients: pl.DataFrame | None) -> "Cohort":
        """Patients with telemetry, and those of the patients table enrolled without any yet
        (a device that never sent anything is a silence to report)."""
        ids = telemetry_ids.cast(pl.String)
        if patients is not None and "enrolled_at" in patients.columns:
            enrolled = patients.filter(pl.col("enrolled_at").is_not_null())["patient_id"]
            ids = pl.concat([ids, enrolled.cast(pl.String)]).unique().sort()
        ids = ids.alias("patient_id")
        table = patients if patients is not None else pl.DataFrame(
            schema={c: t for c, (t, _, _) in PATIENT_SCHEMA.items()})
        context = ids.to_frame().join(table.with_columns(pl.col("patient_id").cast(pl.String)),
                                      on="patient_id", how="left", maintain_order="left")
        context = context.select([
            (pl.col(c).cast(t) if c in context.columns else pl.lit(None, t)).alias(c)
            for c, (t, _, _) in PATIENT_SCHEMA.items()])
        # the programme as an enum: a timeline carries it on every row, one byte each
        context = context.with_columns(pl.col("programme").cast(PROGRAMME_ENUM))
        start = context["enrolled_at"].dt.epoch("us").fill_null(cls.NO_START).to_numpy()
        return cls(ids, context, start.astype(np.int64))

    def slice(self, a: int, b: int) -> "Cohort":
        """Patients ``a..b`` (their codes start at 0)."""
        root = self.parent or self
        return Cohort(self.ids.slice(a, b - a), self.context.slice(a, b - a),
                      self.start[a:b], parent=root, offset=self.offset + a)
