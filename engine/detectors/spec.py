"""Detector specs: validate the rule-file form and resolve it into kernel arguments.

A spec is the mapping a rule file writes under ``detectors:``::

    weight_gain_3d: {metric: weight, fn: delta, window: 3d}

Keys are ``metric`` (a canonical metric of :data:`engine.schema.METRICS`), ``fn`` (a registered
detector), the detector's own parameters, and an optional ``staleness`` (a duration the rule
engine uses when it carries the detector's latest value forward in time). Every violation raises a
:class:`~engine.errors.SpecError` whose message names the spec and reads like scikit-learn's
parameter checks::

    The 'window' parameter of spec 'weight_gain_3d' (fn delta) must be a duration like '30m',
    '6h', '3d' or '2w'. Got '3 days' instead.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..durations import is_duration, parse_duration
from ..errors import SpecError
from ..schema import METRICS
from .registry import DURATION, FLOAT, INT, REGISTRY, DetectorDef

#: keys every spec may have, besides the detector's own parameters
SPEC_KEYS = ("metric", "fn", "staleness")
_DURATION_LIKE = "a duration like '30m', '6h', '3d' or '2w'"


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec, with parameters in kernel units.

    Attributes
    ----------
    name : str
        The output column name (the key of the spec).
    metric : str or None
        Canonical metric the detector reads; None when applied to every metric
        (:func:`engine.detectors.evaluate_all_metrics`).
    fn : str
        Registered detector name.
    params : dict
        Parameter name -> value, durations as int µs, floats as float, ints as int, in the
        kernel's positional order. A parameter registered with ``elide`` (the ``lag`` of the
        window detectors) is absent when the spec leaves it at its default.
    staleness_us : int or None
        How long the rule engine may carry this output forward, µs; None when not given.
    detector : DetectorDef
        The registry entry, or its plain form (:attr:`DetectorDef.plain`) when the spec leaves
        its elided parameters at their defaults.
    """

    name: str
    metric: str | None
    fn: str
    params: dict = field(hash=False)
    staleness_us: int | None
    detector: DetectorDef = field(repr=False)

    @property
    def kernel_args(self) -> tuple:
        """The parameters as the kernel takes them, after ``(ts, x, offsets)``."""
        return tuple(self.params[p.name] for p in self.detector.params)

    @property
    def lookback_us(self) -> int:
        """µs of history needed before a row for this spec's output to be exact."""
        return int(self.detector.lookback(self.params))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _closest(word: object, choices) -> str:
    if not isinstance(word, str):
        return ""
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {near[0]!r}?" if near else ""


def _parse_param(name: str, fn: str, pname: str, kind: str, value: object):
    where = f"The {pname!r} parameter of spec {name!r} (fn {fn})"
    if kind == DURATION:
        if not is_duration(value):
            raise SpecError(f"{where} must be {_DURATION_LIKE}. Got {_shown(value)} instead.")
        return parse_duration(value, what=f"{pname!r} parameter of spec {name!r}")
    if kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise SpecError(f"{where} must be a finite number. Got {_shown(value)} instead.")
        return float(value)
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be a whole number. Got {_shown(value)} instead.")
        return int(value)
    raise AssertionError(kind)   # registry.register rejects unknown kinds


def resolve_spec(name: str, spec: Mapping, *, metric_required: bool = True,
                 parsed: Mapping | None = None) -> ResolvedSpec:
    """Validate one spec and return it resolved.

    Parameters
    ----------
    name : str
        The spec's name (its output column).
    spec : mapping
        ``{metric: ..., fn: ..., <params>..., staleness: ...}`` as written in a rule file.
    metric_required : bool
        When False, ``metric`` must be absent and the spec applies to every metric.
    parsed : mapping, optional
        Parameters (and ``staleness``) already in kernel units — durations as int µs — used as
        they are (a rule pack substituting a param's value; ``spec`` still names the key).

    Raises
    ------
    SpecError
        Unknown fn (with the valid fns and the closest match), unknown key (with the allowed
        keys), missing or malformed parameter, unknown metric (with the canonical metrics).
    """
    if not isinstance(name, str) or not name:
        raise SpecError(f"A spec name must be a non-empty string. Got {_shown(name)} instead.")
    if not isinstance(spec, Mapping):
        raise SpecError(f"Spec {name!r} must be a mapping like {{metric: weight, fn: delta, "
                        f"window: 3d}}. Got {_shown(spec)} instead.")
    valid_fns = ", ".join(sorted(REGISTRY))
    if "fn" not in spec:
        raise SpecError(f"Spec {name!r} has no 'fn'. Valid fns are: {valid_fns}.")
    fn = spec["fn"]
    if not isinstance(fn, str) or fn not in REGISTRY:
        raise SpecError(f"Spec {name!r} has an unknown fn {_shown(fn)}.{_closest(fn, REGISTRY)} "
                        f"Valid fns are: {valid_fns}.")
    det = REGISTRY[fn]
    allowed = (SPEC_KEYS if metric_required else SPEC_KEYS[1:]) + tuple(p.name for p in det.params)
    for key in spec:
        if key not in allowed:
            raise SpecError(f"Spec {name!r} (fn {fn}) has an unknown key {key!r}."
                            f"{_closest(key, allowed)} Allowed keys are: {', '.join(allowed)}.")

    metric = None
    if metric_required:
        if "metric" not in spec:
            raise SpecError(f"Spec {name!r} (fn {fn}) has no 'metric'. Name the canonical "
                            f"metric it reads, one of: {', '.join(sorted(METRICS))}.")
        metric = spec["metric"]
        if not isinstance(metric, str) or metric not in METRICS:
            raise SpecError(f"The 'metric' of spec {name!r} (fn {fn}) must be a canonical metric."
                            f" Got {metric!r} instead.{_closest(metric, METRICS)} Canonical "
                            f"metrics are: {', '.join(sorted(METRICS))}.")

    parsed = parsed or {}
    params = {}
    for p in det.params:
        if p.name in parsed:
            params[p.name] = parsed[p.name]
            continue
        if p.name in spec:
            raw = spec[p.name]
        elif p.required:
            listed = ", ".join(f"{q.name} ({q.kind}{'' if q.required else ', optional'})"
                               for q in det.params)
            raise SpecError(f"Spec {name!r} (fn {fn}) is missing the {p.name!r} parameter. "
                            f"{fn} takes: {listed}.")
        else:
            raw = p.default
        params[p.name] = _parse_param(name, fn, p.name, p.kind, raw)
    if det.plain is not None and all(
            params[p.name] == _parse_param(name, fn, p.name, p.kind, p.default)
            for p in det.params if p.elide):
        # e.g. a window detector without a lag (or with lag 0m): resolved exactly as before the
        # lag existed, to the kernel, parameters and key of the plain form (registry.Param)
        params = {p.name: params[p.name] for p in det.plain.params}
        det = det.plain

    staleness = parsed.get("staleness")
    if staleness is None and "staleness" in spec:
        staleness = _parse_param(name, fn, "staleness", DURATION, spec["staleness"])
    return ResolvedSpec(name=name, metric=metric, fn=fn, params=params, staleness_us=staleness,
                        detector=det)


def resolve_specs(specs: Mapping, *, metric_required: bool = True) -> dict[str, ResolvedSpec]:
    """Validate every spec of ``{name: spec}``; ResolvedSpec values pass through unchanged.

    Raises :class:`~engine.errors.SpecError` on the first invalid spec (see :func:`resolve_spec`;
    a caller that wants every error, like the rule-file loader, calls it per spec).

    Examples
    --------
    >>> r = resolve_specs({"weight_gain_3d": {"metric": "weight", "fn": "delta", "window": "3d"}})
    >>> r["weight_gain_3d"].params
    {'window': 259200000000}
    """
    if not isinstance(specs, Mapping):
        raise SpecError(f"Specs must be a mapping of name -> spec. Got {type(specs).__name__}.")
    out = {}
    for name, spec in specs.items():
        if isinstance(spec, ResolvedSpec):
            if spec.name != name:
                raise SpecError(f"Resolved spec {spec.name!r} is filed under another name "
                                f"{name!r}.")
            out[name] = spec
        else:
            out[name] = resolve_spec(name, spec, metric_required=metric_required)
    return out


def lookback(specs: Mapping) -> int:
    """Microseconds of history needed before the first row to evaluate ``specs`` exactly.

    An incremental run re-reads this much telemetry before its new rows; 0 for no specs.
    ``specs`` is ``{name: spec}`` in rule-file form or as returned by :func:`resolve_specs`.
    Detectors that look at the previous reading however old it is (``since_last``, ``silence``)
    need :data:`~engine.detectors.registry.ALL_HISTORY`.

    >>> lookback({"w": {"metric": "weight", "fn": "delta", "window": "3d"},
    ...           "h": {"metric": "heart_rate", "fn": "mean", "window": "1h"}}) // 3_600_000_000
    72
    """
    return max((s.lookback_us for s in resolve_specs(specs).values()), default=0)
