"""Units, declared once: the spellings of rule expressions and of telemetry exports (UCUM), with
the algebra the expression checker needs and the conversions ingest applies.

A unit is a set of base dimensions with integer powers and a scale factor to the base unit of
those dimensions (``lb`` is mass¹ × 0.45359237 kg), plus an offset for the one affine unit (°F).
Two quantities can be added, compared or passed to ``min``/``max`` when their dimensions are
equal; the checker then converts one side with the ratio of the factors, so
``weight_gain_3d > 2000 g`` means ``> 2 kg``. Multiplying or dividing adds or subtracts the
powers (``kg / d`` is a mass per time). Ingest converts a reading to its metric's canonical unit
with the same factors (:func:`conversion`).

Units are declared here, not borrowed from a general units library: the set veille needs is
small, and a wrong conversion in a clinical threshold must be visible in one screen of code.
Rule expressions use °C only (:data:`UNITS` has no °F: its offset makes differences and
absolute values convert differently, a trap a rule author should not meet); telemetry in °F is
converted at ingest (:data:`TELEMETRY_UNITS`).
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
    of this unit in the base units; ``label`` is how it is printed (``kg``, ``/min``);
    ``offset`` is added after scaling (only °F: base = value × factor + offset)."""

    dims: tuple[tuple[str, int], ...]
    factor: float
    label: str
    offset: float = 0.0

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

_F = _u({"temperature": 1}, 5 / 9, "°F")

#: every spelling of a unit in telemetry exports (UCUM and the common variants): each is one of
#: :data:`UNITS` or a dimensionless code; ``fraction`` is a share (0.94 for 94 %)
TELEMETRY_UNITS: dict[str, Unit] = {
    **{s: UNITS[s] for s in ("kg", "g", "lb", "%", "s", "min", "h", "mmHg", "kPa", "mg/dL",
                             "mmol/L", "g/L", "g/dL", "L/min", "/min", "bpm", "/h", "/d")},
    "[lb_av]": UNITS["lb"], "lbs": UNITS["lb"],
    "Cel": UNITS["°C"], "°C": UNITS["°C"], "C": UNITS["°C"], "degC": UNITS["°C"],
    **{s: Unit(_F.dims, _F.factor, s, -32 * 5 / 9) for s in ("[degF]", "°F", "F", "degF")},
    "mm[Hg]": UNITS["mmHg"],
    "1/min": UNITS["/min"], "min-1": UNITS["/min"], "{beats}/min": UNITS["/min"],
    "{breaths}/min": UNITS["/min"],
    "1/h": UNITS["/h"], "{events}/h": UNITS["/h"],
    "1/d": UNITS["/d"], "{steps}/d": UNITS["/d"], "{steps}": UNITS["/d"],
    "fraction": _u({"percent": 1}, 100.0, "fraction"),
    **{s: DIMENSIONLESS for s in ("1", "{flag}", "{event}", "{score}", "{ACVPU}", "")},
}


def conversion(spelling: str, canonical: str) -> tuple[float, float] | None:
    """``(scale, offset)`` turning a value in ``spelling`` into ``canonical`` (both telemetry
    spellings): ``canonical = value * scale + offset``; None when their dimensions differ."""
    a, b = TELEMETRY_UNITS.get(spelling), TELEMETRY_UNITS[canonical]
    if a is None or a.dims != b.dims:
        return None
    if a.factor == b.factor and a.offset == b.offset:
        return 1.0, 0.0
    return a.factor / b.factor, (a.offset - b.offset) / b.factor


def metric_unit(ucum: str) -> Unit:
    """The expression unit of a canonical telemetry unit; codes like ``{score}`` are plain."""
    return TELEMETRY_UNITS.get(ucum, DIMENSIONLESS)


def lookup(spelling: str) -> Unit | None:
    return UNITS.get(spelling)


def closest(spelling: str, n: int = 3) -> list[str]:
    """Known unit spellings closest to ``spelling`` (for 'did you mean')."""
    folded = {k.lower(): k for k in UNITS}
    hits = difflib.get_close_matches(spelling.lower(), list(folded), n=n, cutoff=0.5)
    return [folded[h] for h in hits]
