"""Units of rule expressions: a small declared table and the algebra the type checker needs.

A unit is a set of base dimensions with integer powers and a scale factor to the base unit of
those dimensions (``lb`` is mass¹ × 0.45359237 kg). Two quantities can be added, compared or
passed to ``min``/``max`` when their dimensions are equal; the checker then converts one side with
the ratio of the factors, so ``weight_gain_3d > 2000 g`` means ``> 2 kg``. Multiplying or dividing
adds or subtracts the powers (``kg / d`` is a mass per time).

Units are declared once here, not borrowed from a general units library: the set a rule needs is
small, and a wrong conversion in a clinical threshold must be visible in one screen of code.
Temperatures are °C only (no °F: its offset makes differences and absolute values convert
differently, a trap a rule author should not meet).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

#: base dimensions and the base unit each is measured in
BASE = {"mass": "kg", "time": "s", "percent": "%", "temperature": "°C", "pressure": "mmHg",
        "glucose": "mg/dL", "volume": "L"}


@dataclass(frozen=True)
class Unit:
    """A unit: ``dims`` is a sorted tuple of (base dimension, power), ``factor`` the value of one
    of this unit in the base units; ``label`` is how it is printed (``kg``, ``/min``)."""

    dims: tuple[tuple[str, int], ...]
    factor: float
    label: str

    @property
    def dimensionless(self) -> bool:
        return not self.dims

    def compatible(self, other: "Unit") -> bool:
        return self.dims == other.dims

    def ratio(self, other: "Unit") -> float:
        """How many ``self`` one ``other`` is: multiply a value in ``other`` by this to get
        ``self``."""
        return other.factor / self.factor

    def times(self, other: "Unit", sign: int = 1) -> "Unit":
        powers: dict[str, int] = dict(self.dims)
        for d, p in other.dims:
            powers[d] = powers.get(d, 0) + sign * p
        dims = tuple(sorted((d, p) for d, p in powers.items() if p))
        factor = self.factor * other.factor if sign > 0 else self.factor / other.factor
        if other.dimensionless:
            label = self.label
        elif self.dimensionless:
            label = other.label if sign > 0 else f"/{other.label}"
        else:
            label = f"{self.label}{'·' if sign > 0 else '/'}{other.label}"
        return Unit(dims, factor, label)

    def describe(self) -> str:
        """A phrase for messages: 'a mass (kg)', 'a duration (s)', 'a plain number'."""
        if self.dimensionless:
            return "a plain number"
        kind = {(("mass", 1),): "a mass", (("time", 1),): "a duration",
                (("percent", 1),): "a percentage", (("temperature", 1),): "a temperature",
                (("pressure", 1),): "a pressure", (("glucose", 1),): "a glucose level",
                (("time", -1),): "a rate per time"}.get(self.dims, "a quantity")
        examples = [s for s, u in UNITS.items() if u.dims == self.dims][:4]
        return f"{kind} (like {', '.join(examples)})" if examples else f"{kind} in {self.label}"


def _u(dims: dict[str, int], factor: float, label: str) -> Unit:
    return Unit(tuple(sorted(dims.items())), factor, label)


DIMENSIONLESS = Unit((), 1.0, "")
_MIN, _H, _D = 60.0, 3600.0, 86400.0

#: every unit spelling accepted in expressions and params
UNITS: dict[str, Unit] = {
    "kg": _u({"mass": 1}, 1.0, "kg"),
    "g": _u({"mass": 1}, 1e-3, "g"),
    "lb": _u({"mass": 1}, 0.45359237, "lb"),
    "%": _u({"percent": 1}, 1.0, "%"),
    "s": _u({"time": 1}, 1.0, "s"),
    "min": _u({"time": 1}, _MIN, "min"),
    # `m` is a minute, as in the duration grammar (30m); there is no length in these rules
    "m": _u({"time": 1}, _MIN, "m"),
    "h": _u({"time": 1}, _H, "h"),
    "d": _u({"time": 1}, _D, "d"),
    "w": _u({"time": 1}, 7 * _D, "w"),
    "°C": _u({"temperature": 1}, 1.0, "°C"),
    "degC": _u({"temperature": 1}, 1.0, "degC"),
    "mmHg": _u({"pressure": 1}, 1.0, "mmHg"),
    "kPa": _u({"pressure": 1}, 7.500617, "kPa"),
    "mg/dL": _u({"glucose": 1}, 1.0, "mg/dL"),
    "mmol/L": _u({"glucose": 1}, 18.016, "mmol/L"),
    "g/L": _u({"mass": 1, "volume": -1}, 1e-3, "g/L"),
    "g/dL": _u({"mass": 1, "volume": -1}, 1e-2, "g/dL"),
    "L/min": _u({"volume": 1, "time": -1}, 1 / _MIN, "L/min"),
    "/s": _u({"time": -1}, 1.0, "/s"),
    "/min": _u({"time": -1}, 1 / _MIN, "/min"),
    "bpm": _u({"time": -1}, 1 / _MIN, "bpm"),
    "/h": _u({"time": -1}, 1 / _H, "/h"),
    "/d": _u({"time": -1}, 1 / _D, "/d"),
}

#: canonical telemetry units (engine.schema METRICS[...].unit) in expression terms
METRIC_UNITS: dict[str, Unit] = {
    "kg": UNITS["kg"], "%": UNITS["%"], "/min": UNITS["/min"], "Cel": UNITS["°C"],
    "mm[Hg]": UNITS["mmHg"], "mg/dL": UNITS["mg/dL"], "/d": UNITS["/d"], "h": UNITS["h"],
    "/h": UNITS["/h"], "L/min": UNITS["L/min"], "g/L": UNITS["g/L"], "s": UNITS["s"],
}


def metric_unit(ucum: str) -> Unit:
    """The expression unit of a canonical telemetry unit; codes like ``{score}`` are plain."""
    return METRIC_UNITS.get(ucum, DIMENSIONLESS)


def lookup(spelling: str) -> Unit | None:
    return UNITS.get(spelling)


def closest(spelling: str, n: int = 3) -> list[str]:
    """Known unit spellings closest to ``spelling`` (for 'did you mean')."""
    folded = {k.lower(): k for k in UNITS}
    hits = difflib.get_close_matches(spelling.lower(), list(folded), n=n, cutoff=0.5)
    return [folded[h] for h in hits]
