"""The detectors of a pack: registered detector specs (params substituted, staleness resolved)
and the rule engine's own ``fn: silence_at``, checked with their YAML positions.

Functions of the pack being compiled (:class:`~engine.ruleset.compile.pack.PackCompiler`, seen
here through the :class:`Compiling` protocol: its params, names and diagnostics); they return
:class:`~engine.ruleset.packs.DetectorUse` records. A param's value reaches the detector already
in kernel units (a duration in µs): it is never written back as text and parsed again.
"""
from __future__ import annotations

from typing import Any, Protocol

from ... import detectors as _detectors
from ...timeline import default_staleness
from ...durations import format_duration
from ...errors import SpecError
from ...schema import METRICS
from ..format import schema as M
from ..lang.types import NUMBER
from ..packs import DetectorUse
from ..format.diagnostics import did_you_mean, shown
from .symbols import detector_type
from ...units import metric_unit

SILENCE_FN = "silence_at"


class Compiling(Protocol):
    """What the detectors of a pack need from the compiler of that pack."""

    pack: Any                      # the validated pack (format.schema.Pack)
    base: dict                     # metrics, scores and patient fields by name
    params: dict                   # effective params by name
    default_staleness: int | None

    def err(self, path, message: str, hint: str = "", *, key: bool = False) -> None: ...

    def duration(self, value, path, *, positive: bool = False) -> int | None: ...

    def where(self, path) -> str: ...


def compile_detectors(c: Compiling) -> dict[str, DetectorUse]:
    """Every valid detector of the pack by name (the invalid ones are reported in ``c``)."""
    out = {}
    for name, spec in c.pack.detectors.items():
        path = ("detectors", name)
        if not M.re_name(name):
            c.err(path, f"detector name '{name}' must be a lower-case identifier like "
                  "'weight_gain_3d'.", key=True)
            continue
        if name in c.base:
            c.err(path, f"detector '{name}' has the name of a {c.base[name].kind}.",
                  "Choose another name: a detector must not hide it.", key=True)
            continue
        if name in c.params:
            c.err(path, f"detector '{name}' has the name of a param.", key=True)
            continue
        use = (_silence(c, name, spec, path) if spec.get("fn") == SILENCE_FN
               else _registered(c, name, spec, path))
        if use is not None:
            out[name] = use
    return out


def _registered(c: Compiling, name: str, spec: dict, path) -> DetectorUse | None:
    fn = spec.get("fn")
    det = _detectors.REGISTRY.get(fn) if isinstance(fn, str) else None
    spec = dict(spec)
    parsed: dict[str, Any] = {}          # values already in kernel units
    if det is not None:
        # a param name in place of a value: substitute its effective value
        kinds = {q.name: q.kind for q in det.params}
        for key, value in list(spec.items()):
            if isinstance(value, str) and value in c.pack.params \
                    and value not in c.params:
                return None             # an invalid param, already reported
            if key in kinds and isinstance(value, str) and value in c.params:
                parsed[key] = _param_value(c, value, kinds[key], path + (key,),
                                           spec.get("metric"))
                if parsed[key] is None:
                    return None
                spec[key] = (format_duration(parsed[key]) if kinds[key] == "duration"
                             else parsed[key])          # shown by `rules explain`
    staleness = None
    if "staleness" in spec:
        staleness = c.duration(spec["staleness"], path + ("staleness",), positive=True)
        if staleness is None:
            return None
        parsed["staleness"] = staleness
        spec["staleness"] = format_duration(staleness)
    try:
        resolved = _detectors.resolve_spec(name, spec, parsed=parsed)
    except SpecError as err:
        where = path
        for key in spec:
            if f"'{key}'" in str(err) and key not in ("fn",):
                where = path + (key,)
                break
        else:
            if "fn" in spec and "unknown fn" in str(err):
                where = path + ("fn",)
        hint = ""
        if fn == "silence":
            hint = (f"To alert while a device is silent, use fn {SILENCE_FN} (minutes since "
                    "the last reading at each evaluation time).")
        c.err(where, str(err).replace("Valid fns are:", f"Valid fns are: {SILENCE_FN},"),
              hint)
        return None
    metric = resolved.metric
    if staleness is None:
        staleness = c.default_staleness or default_staleness(metric)
    return DetectorUse(name=name, column=f"{c.pack.pack}.{name}", kind="detector",
                       metrics=(metric,), spec=spec, staleness_us=staleness,
                       lookback_us=resolved.lookback_us,
                       type=detector_type(resolved.detector.output, metric),
                       origin=c.where(path), resolved=resolved)


def _param_value(c: Compiling, pname: str, kind: str, path, metric):
    """A param's effective value as a detector parameter of ``kind`` (in the metric's unit)."""
    p = c.params[pname]
    if p.patient is not None:
        c.err(path, f"detector parameter '{path[-1]}' uses param '{pname}', which is set per "
              f"patient (patient: {p.patient}): a detector runs with one value for every "
              "patient.", "Compare the detector's output with the param in the rule instead.")
        return None
    if kind == "duration":
        return c.duration(pname, path)
    value = p.value
    if p.type.kind == NUMBER and p.type.unit is not None and metric in METRICS:
        mu = metric_unit(METRICS[metric].unit)
        if mu.compatible(p.type.unit) and not mu.dimensionless:
            value = value * mu.ratio(p.type.unit)
    if kind == "int":
        if float(value) != int(value):
            c.err(path, f"param '{pname}' = {p.display()} must be a whole number here.")
            return None
        return int(value)
    return float(value)


def _silence(c: Compiling, name: str, spec: dict, path) -> DetectorUse | None:
    allowed = ("fn", "metric")
    ok = True
    for key in spec:
        if key not in allowed:
            c.err(path + (key,), f"unknown key '{key}' in detector '{name}' "
                  f"(fn {SILENCE_FN}).", f"{SILENCE_FN} takes: metric (a metric, a list "
                  "of metrics, or 'any'); it is evaluated at each timeline time, so it "
                  "has no staleness.", key=True)
            ok = False
    metric = spec.get("metric", "any")
    metrics = [metric] if isinstance(metric, str) else metric
    if not isinstance(metrics, list) or not metrics:
        c.err(path + ("metric",), f"the metric of detector '{name}' must be a metric, a "
              f"list of metrics, or 'any'. Got {shown(metric)} instead.")
        return None
    if metrics == ["any"]:
        metrics = None
    else:
        for m in metrics:
            if m not in METRICS:
                c.err(path + ("metric",), f"unknown metric {shown(m)} in detector '{name}'.",
                      did_you_mean(str(m), METRICS, noun="metrics"))
                ok = False
    if not ok:
        return None
    return DetectorUse(name=name, column=f"{c.pack.pack}.{name}", kind="silence",
                       metrics=tuple(metrics) if metrics else None, spec=dict(spec),
                       staleness_us=None, lookback_us=_detectors.ALL_HISTORY,
                       type=detector_type("minutes", None), origin=c.where(path))
