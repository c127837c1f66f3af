"""The detectors of a pack: registered detector specs (params substituted, staleness resolved)
and the rule engine's own ``fn: silence_at``, checked with their YAML positions.

Functions of a :class:`~engine.ruleset.compiler.PackCompiler` (its params, names and
diagnostics); they return :class:`~engine.ruleset.compiled.DetectorUse` records.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import detectors as _detectors
from ..timeline import default_staleness
from ..durations import format_duration
from ..errors import SpecError
from ..schema import METRICS
from . import model as M
from .check import NUMBER
from .compiled import DetectorUse
from .diagnostics import did_you_mean
from .symbols import detector_type
from .units import metric_unit

if TYPE_CHECKING:
    from .compiler import PackCompiler

SILENCE_FN = "silence_at"


def compile_detectors(c: "PackCompiler") -> dict[str, DetectorUse]:
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


def _registered(c: "PackCompiler", name: str, spec: dict, path) -> DetectorUse | None:
    fn = spec.get("fn")
    det = _detectors.REGISTRY.get(fn) if isinstance(fn, str) else None
    spec = dict(spec)
    if det is not None:
        # a param name in place of a value: substitute its effective value
        kinds = {q.name: q.kind for q in det.params}
        for key, value in list(spec.items()):
            if isinstance(value, str) and value in c.pack.params \
                    and value not in c.params:
                return None             # an invalid param, already reported
            if key in kinds and isinstance(value, str) and value in c.params:
                spec[key] = _param_value(c, value, kinds[key], path + (key,),
                                         spec.get("metric"))
    staleness = None
    if "staleness" in spec:
        staleness = c.duration(spec["staleness"], path + ("staleness",), positive=True)
        if staleness is None:
            return None
        spec["staleness"] = format_duration(staleness)
    try:
        resolved = _detectors.resolve_spec(name, spec)
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
    if any(v is None for v in spec.values()):
        return None
    metric = resolved.metric
    if staleness is None:
        staleness = c.default_staleness or default_staleness(metric)
    return DetectorUse(name=name, column=f"{c.pack.pack}.{name}", kind="detector",
                       metrics=(metric,), spec=spec, staleness_us=staleness,
                       lookback_us=resolved.lookback_us,
                       type=detector_type(resolved.detector.output, metric),
                       origin=c.where(path), resolved=resolved)


def _param_value(c: "PackCompiler", pname: str, kind: str, path, metric):
    """A param's effective value as a detector parameter of ``kind`` (in the metric's unit)."""
    p = c.params[pname]
    if kind == "duration":
        us = c.duration(pname, path)
        return format_duration(us) if us is not None else None
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


def _silence(c: "PackCompiler", name: str, spec: dict, path) -> DetectorUse | None:
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
              f"list of metrics, or 'any'. Got {metric!r} instead.")
        return None
    if metrics == ["any"]:
        metrics = None
    else:
        for m in metrics:
            if m not in METRICS:
                c.err(path + ("metric",), f"unknown metric {m!r} in detector '{name}'.",
                      did_you_mean(str(m), METRICS, noun="metrics"))
                ok = False
    if not ok:
        return None
    return DetectorUse(name=name, column=f"{c.pack.pack}.{name}", kind="silence",
                       metrics=tuple(metrics) if metrics else None, spec=dict(spec),
                       staleness_us=None, lookback_us=_detectors.ALL_HISTORY,
                       type=detector_type("minutes", None), origin=c.where(path))
