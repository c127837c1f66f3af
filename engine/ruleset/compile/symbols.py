"""The names every pack can use besides its own detectors and params.

* metrics — each canonical metric (:data:`engine.schema.METRICS`) as its as-of value, in its
  canonical unit (``weight`` in kg, ``spo2`` in %);
* scores — every output of every score in :data:`engine.scores.SCORES` (``news2``,
  ``news2_risk``, ``qsofa_positive``…), computed on the pack's timeline from as-of metric values;
* patient context — ``programme`` (text), ``age`` (years), ``height_cm``,
  ``baseline_weight_kg`` (kg), ``spo2_scale`` and the care plan's personal targets
  (:data:`engine.schema.CARE_PLAN`: ``dry_weight_kg``, ``spo2_target_low``…) in their units;
* time — ``hour_of_day`` and ``day_of_week`` in the patient's time zone, ``since_enrolment``
  and ``since_surgery`` (days) at each evaluation time.
"""
from __future__ import annotations

import polars as pl

from ...schema import CARE_PLAN, METRICS
from ..lang.types import T_BOOL, T_STRING, T_UNTYPED, Symbol, Type, number
from ...units import DIMENSIONLESS, UNITS, metric_unit

#: patient context columns a rule may read: name -> (type, doc)
PATIENT_FIELDS: dict[str, tuple[Type, str]] = {
    "programme": (T_STRING, "the patient's programme, e.g. \"heart_failure\" (patients table)"),
    "age": (number(DIMENSIONLESS), "age in years (patients table)"),
    "height_cm": (number(DIMENSIONLESS), "height in cm (patients table)"),
    "baseline_weight_kg": (number(UNITS["kg"]), "usual / dry weight (patients table)"),
    "spo2_scale": (number(DIMENSIONLESS), "NEWS2 SpO2 scale, 1 or 2 (patients table)"),
    **{f.name: (number(UNITS[f.unit]), f"{f.description} (patients table, care plan)")
       for f in CARE_PLAN.values()},
}

#: names computed at each evaluation time: name -> (type, doc)
TIME_FIELDS: dict[str, tuple[Type, str]] = {
    "hour_of_day": (number(DIMENSIONLESS), "local clock time in hours, 0 to 24 (7.5 is 07:30), "
                    "in the patient's time zone (patients table tz, else the site's, else "
                    "UTC)"),
    "day_of_week": (number(DIMENSIONLESS), "local day of the week, 1 (Monday) to 7 (Sunday), "
                    "ISO 8601, in the patient's time zone"),
    "since_enrolment": (number(UNITS["d"]), "time since enrolment (patients table "
                        "enrolled_at), in days; unknown without it"),
    "since_surgery": (number(UNITS["d"]), "time since the surgery (patients table surgery_at), "
                      "in days; negative before it, unknown without it"),
}

#: the risk model's output a rule may read: name -> (type, doc)
MODEL_FIELDS: dict[str, tuple[Type, str]] = {
    "risk": (number(UNITS["%"]), "the deterioration-risk model's calibrated probability of a "
             "labelled deterioration within its horizon (48 h for the bundled model), in % "
             "(0 to 100), at the patient's latest 4-hour grid time; unknown without a model "
             "(--model none) or more than 8 h after the latest grid time"),
}

#: detector output kind (engine.detectors.registry.OUTPUTS) -> how to type it
def detector_type(output: str, metric: str | None) -> Type:
    """The expression type of a detector's output (a flag is a condition)."""
    base = metric_unit(METRICS[metric].unit) if metric in METRICS else DIMENSIONLESS
    if output == "value":
        return number(base)
    if output == "value_per_hour":
        return number(base.times(UNITS["h"], -1))
    if output == "percent":
        return number(UNITS["%"])
    if output == "minutes":
        return number(UNITS["min"])
    if output == "flag":
        return T_BOOL
    return number(DIMENSIONLESS)


_SCORE_TYPES: dict[int, dict[str, Type]] = {}


def score_output_types(score) -> dict[str, Type]:
    """Each output's type, read from ``compute`` on an empty frame (Boolean → condition,
    String → text, numbers → plain numbers: points carry no unit)."""
    key = id(score)
    if key not in _SCORE_TYPES:
        cols = {c: pl.Series(c, [], dtype=pl.Int64 if c == "spo2_scale" else pl.Float64)
                for c in score.inputs}
        try:
            schema = score.compute(pl.DataFrame(cols)).schema
        except Exception:   # a score that cannot run on an empty frame: assume numbers
            schema = {}
        types = {}
        for out in score.outputs:
            dtype = schema.get(out)
            if dtype == pl.Boolean:
                types[out] = T_BOOL
            elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
                types[out] = T_STRING
            else:
                types[out] = number(DIMENSIONLESS) if dtype is not None else T_UNTYPED
        _SCORE_TYPES[key] = types
    return _SCORE_TYPES[key]


def base_symbols(scores: dict) -> tuple[dict[str, Symbol], dict[str, str]]:
    """(symbols, score output -> score name) for metrics, scores and patient context."""
    out: dict[str, Symbol] = {}
    for name, m in METRICS.items():
        out[name] = Symbol(name, "metric", number(metric_unit(m.unit)), name,
                           doc=f"latest {m.description} ({m.unit})")
    for name, (t, doc) in PATIENT_FIELDS.items():
        out[name] = Symbol(name, "patient", t, name, doc=doc)
    for name, (t, doc) in TIME_FIELDS.items():
        out[name] = Symbol(name, "time", t, name, doc=doc)
    for name, (t, doc) in MODEL_FIELDS.items():
        out[name] = Symbol(name, "model", t, name, doc=doc)
    owner: dict[str, str] = {}
    for sname, score in scores.items():
        for o, t in score_output_types(score).items():
            if o in out:
                continue
            out[o] = Symbol(o, "score", t, o, doc=f"output of {sname} ({score.reference})")
            owner[o] = sname
    return out, owner
