"""The telemetry contract: canonical metrics, units, LOINC codes, plausibility limits.

Everything here is declared once as data; :mod:`engine.ingest` applies it and the README table is
generated from it. Limits are *plausibility* limits (what a device or a living person can report),
not clinical thresholds: a value outside them is quarantined, never clipped.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from .units import conversion

TS_DTYPE = pl.Datetime("us", "UTC")

#: Columns of clean telemetry, in order, with their types.
TELEMETRY_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.String(),
    "ts": TS_DTYPE,
    "metric": pl.String(),
    "value": pl.Float64(),
    "unit": pl.String(),
    "source": pl.String(),
}
REQUIRED_COLUMNS = ("patient_id", "ts", "metric", "value")
#: the earliest plausible reading (or enrolment): home telemonitoring devices of this kind did not
#: exist before, and a device whose clock was reset sends 1970-01-01 (Unix) or 2000-01-01 (many
#: real-time clock chips) dates — readings before this are quarantined (``timestamp_too_early``)
EARLIEST = dt.datetime(2000, 1, 2, tzinfo=dt.timezone.utc)
OPTIONAL_COLUMNS = ("unit", "source")


@dataclass(frozen=True)
class Metric:
    """One canonical metric: its unit, the unit spellings it accepts, LOINC codes and limits.

    ``accepts`` lists the telemetry spellings (:data:`engine.units.TELEMETRY_UNITS`) a reading
    of this metric may carry; ``aliases`` reads a spelling as another for this metric (an SpO2
    in unit ``1`` is a fraction). The conversions come from the one unit table
    (:func:`engine.units.conversion`).
    """

    name: str
    unit: str
    low: float
    high: float
    description: str
    loinc: tuple[str, ...] = ()
    accepts: tuple[str, ...] = ()
    #: values must be whole numbers (ordinal scales, flags, counts of events)
    integer: bool = False
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def units(self) -> dict[str, tuple[float, float]]:
        """unit spelling -> (scale, offset) so that canonical = value * scale + offset."""
        out = {}
        for s in (self.unit, *self.accepts):
            conv = conversion(self.aliases.get(s, s), self.unit)
            if conv is None:   # a declaration error in this file, not user input
                raise ValueError(f"metric {self.name}: unit {s!r} does not convert to "
                                 f"{self.unit!r}")
            out[s] = conv
        return out


_RATE = ("/min", "1/min", "min-1", "bpm")
_FLAG = ("1", "{flag}", "{event}", "")
_SCORE = ("1", "{score}", "")

METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("heart_rate", "/min", 20, 300, "pulse rate", ("8867-4",), (*_RATE, "{beats}/min")),
    Metric("spo2", "%", 50, 100, "peripheral oxygen saturation", ("59408-5", "2708-6"),
           ("1", "fraction"), aliases={"1": "fraction"}),
    Metric("resp_rate", "/min", 2, 80, "respiratory rate", ("9279-1",),
           (*_RATE, "{breaths}/min")),
    Metric("temp", "Cel", 25, 45, "body temperature", ("8310-5", "8331-1"),
           ("°C", "C", "degC", "[degF]", "°F", "F", "degF")),
    Metric("sbp", "mm[Hg]", 40, 300, "systolic blood pressure", ("8480-6",), ("mmHg", "kPa")),
    Metric("dbp", "mm[Hg]", 20, 200, "diastolic blood pressure", ("8462-4",), ("mmHg", "kPa")),
    Metric("weight", "kg", 20, 400, "body weight", ("29463-7", "3141-9"),
           ("[lb_av]", "lb", "lbs", "g")),
    Metric("glucose", "mg/dL", 10, 1000, "blood or interstitial glucose",
           ("2339-0", "2345-7", "41653-7"), ("mmol/L",)),
    Metric("consciousness", "{ACVPU}", 0, 4, "ACVPU level: 0 alert, 1 new confusion, 2 voice, "
           "3 pain, 4 unresponsive", (), ("1", ""), integer=True),
    Metric("on_oxygen", "1", 0, 1, "on supplemental oxygen (1) or air (0)", (), _FLAG,
           integer=True),
    Metric("steps", "/d", 0, 100_000, "daily step count", ("41950-7", "55423-8"),
           ("1/d", "{steps}/d", "{steps}"), integer=True),
    Metric("cpap_hours", "h", 0, 24, "CPAP use over the night", (), ("min",)),
    Metric("ahi", "/h", 0, 150, "residual apnoea-hypopnoea index", (), ("1/h", "{events}/h")),
    Metric("mask_leak", "L/min", 0, 200, "CPAP mask leak", ()),
    Metric("albumin", "g/L", 5, 60, "serum albumin", ("1751-7",), ("g/dL",)),
    Metric("dyspnoea", "{score}", 0, 4, "breathlessness self-report, mMRC-like 0 (none) to 4",
           (), _SCORE, integer=True),
    Metric("fall", "{event}", 1, 1, "a reported or detected fall (one row per fall)", (), _FLAG,
           integer=True),
    Metric("icope_cognition", "{flag}", 0, 1, "ICOPE step 1 cognition screen positive "
           "(3-word recall or orientation failed)", (), _FLAG, integer=True),
    Metric("icope_locomotion", "s", 0, 300, "ICOPE step 1 chair-rise test: seconds for 5 rises "
           "without arms", ()),
    Metric("icope_vitality", "{flag}", 0, 1, "ICOPE step 1 vitality screen positive (weight "
           "loss or appetite loss)", (), _FLAG, integer=True),
    Metric("icope_vision", "{flag}", 0, 1, "ICOPE step 1 vision screen positive", (), _FLAG,
           integer=True),
    Metric("icope_hearing", "{flag}", 0, 1, "ICOPE step 1 hearing (whisper test) failed", (),
           _FLAG, integer=True),
    Metric("icope_psychological", "{flag}", 0, 1, "ICOPE step 1 low mood or loss of interest "
           "in the last 2 weeks", (), _FLAG, integer=True),
]}

#: canonical metric names in sorted order: a metric's *code* in veille's arrays is its index here
#: (clean telemetry is sorted by patient, then metric name, then time)
METRIC_NAMES: tuple[str, ...] = tuple(sorted(METRICS))

#: LOINC code -> canonical metric name
LOINC: dict[str, str] = {code: m.name for m in METRICS.values() for code in m.loinc}

#: Patient context columns: name -> (dtype, required, description)
PATIENT_SCHEMA: dict[str, tuple[pl.DataType, bool, str]] = {
    "patient_id": (pl.String(), True, "pseudonymous id, the same as in telemetry"),
    "programme": (pl.String(), True, "heart_failure, copd, diabetes, covid_home, sleep_apnoea, "
                  "post_bariatric, older_home (the rule packs' `scope.cohort`)"),
    "age": (pl.Int64(), False, "age in years at the start of follow-up"),
    "sex": (pl.String(), False, "F or M"),
    "height_cm": (pl.Float64(), False, "height in cm (for BMI)"),
    "baseline_weight_kg": (pl.Float64(), False, "usual / dry weight in kg"),
    "spo2_scale": (pl.Int64(), False, "NEWS2 SpO2 scale: 2 only for a prescribed 88-92 % target"),
    "enrolled_at": (TS_DTYPE, False, "start of telemonitoring"),
    "discharged_at": (TS_DTYPE, False, "end of telemonitoring (discharge from the programme); "
                      "empty while the patient is followed"),
    "device_ended_at": (TS_DTYPE, False, "end of the devices' loan (returned) while the "
                        "patient is still followed: no device-silence alert after it"),
    "tz": (pl.String(), False, "the patient's IANA time zone, e.g. Europe/Paris (for rules on "
           "the local time of day); empty: the site's"),
    "surgery_at": (TS_DTYPE, False, "date of the surgery the follow-up is for (post-bariatric)"),
}


@dataclass(frozen=True)
class CarePlanField:
    """A personal target of the care plan, a column of the patients table.

    ``unit`` is the unit its values are written in; values outside ``low``..``high`` are not
    plausible and refused with the row named. A pack param declared with ``patient: <name>``
    takes the patient's value instead of its own, within the param's bounds.
    """

    name: str
    unit: str
    low: float
    high: float
    description: str


CARE_PLAN: dict[str, CarePlanField] = {f.name: f for f in [
    CarePlanField("dry_weight_kg", "kg", 20.0, 350.0, "dry (euvolaemic) weight set by the heart "
                  "failure team, in kg"),
    CarePlanField("weight_gain_3d_kg", "kg", 0.5, 10.0, "personal alert threshold for a weight "
                  "gain over 3 days, in kg"),
    CarePlanField("spo2_target_low", "%", 70.0, 100.0, "lower bound of the prescribed SpO2 "
                  "target, in %"),
    CarePlanField("spo2_target_high", "%", 70.0, 100.0, "upper bound of the prescribed SpO2 "
                  "target, in %"),
]}
for _f in CARE_PLAN.values():
    PATIENT_SCHEMA[_f.name] = (pl.Float64(), False, _f.description)

PROGRAMMES = ("heart_failure", "copd", "diabetes", "covid_home", "sleep_apnoea",
              "post_bariatric", "older_home")
