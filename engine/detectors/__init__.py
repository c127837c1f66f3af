"""Detectors: Numba kernels over every (patient, metric) series at once, addressed by name.

A detector is named in a spec, as a rule file writes it::

    weight_gain_3d: {metric: weight, fn: delta, window: 3d}

and :func:`evaluate` runs a set of specs over clean telemetry in one fused kernel pass over all
series of all patients (:mod:`.fused`), returning one column per spec aligned to the telemetry
rows. :data:`REGISTRY` lists the detectors (window statistics in :mod:`.window`, stateful and
threshold detectors in :mod:`.stateful`), each with its parameters and documentation.

>>> from engine.detectors import REGISTRY
>>> REGISTRY["delta"].output
'value'
"""
from __future__ import annotations

from .registry import ALL_HISTORY, DURATION, FLOAT, INT, REGISTRY, DetectorDef, Param, register
from . import window  # noqa: F401  (registers the window detectors)
from . import stateful  # noqa: F401  (registers the stateful detectors)
from .evaluate import evaluate, evaluate_all_metrics, series_view, silence_at
from .spec import ResolvedSpec, lookback, resolve_spec, resolve_specs
from .warmup import is_cached, warmup

__all__ = [
    "ALL_HISTORY", "DURATION", "FLOAT", "INT", "REGISTRY", "DetectorDef", "Param", "register",
    "evaluate", "evaluate_all_metrics", "series_view", "silence_at",
    "ResolvedSpec", "lookback", "resolve_spec", "resolve_specs",
    "is_cached", "warmup",
]
