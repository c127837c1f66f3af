"""Clinical scores on frames: NEWS2, qSOFA, MEWS, SIRS, BMI (timeline scores), CGM metrics and
ICOPE step 1.

Each score is a plain function on a polars DataFrame, usable on its own. The timeline scores are
also declared in :data:`SCORES`, the registry the rule engine reads: it builds an evaluation
timeline with one column per input (as-of values named exactly as the telemetry metric, e.g.
``resp_rate``, ``consciousness`` as the ACVPU code 0..4, ``on_oxygen`` 0/1, plus patient context
such as ``spo2_scale``; nulls where no value is fresh enough) and calls ``compute``, which returns
the same frame with the score's ``outputs`` added.

>>> import polars as pl
>>> from engine.scores import SCORES
>>> timeline = pl.DataFrame({"resp_rate": [22.0], "sbp": [98.0], "consciousness": [0.0]})
>>> SCORES["qsofa"].compute(timeline).select(SCORES["qsofa"].outputs[-2:]).rows()
[(2, True)]
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from . import bmi as _bmi, early_warning, news2 as _news2
from .bmi import bmi
from .cgm import cgm_metrics, gmi_expr
from .early_warning import mews, qsofa, sirs
from .icope import icope_step1
from .news2 import (news2, news2_expr_consciousness, news2_expr_heart_rate, news2_expr_on_oxygen,
                    news2_expr_resp_rate, news2_expr_risk, news2_expr_sbp, news2_expr_spo2,
                    news2_expr_temp)


@dataclass(frozen=True)
class ScoreDef:
    """A score the rule engine can compute on an evaluation timeline.

    Attributes
    ----------
    name : str
        Score name, also its total column ("news2", "qsofa", "mews", "sirs").
    inputs : tuple of str
        Canonical telemetry metric names (:data:`engine.schema.METRICS`) and patient context
        columns the score reads.
    outputs : tuple of str
        Columns ``compute`` adds.
    compute : callable
        Frame with one column per input (nulls for missing) → the same frame plus ``outputs``.
    reference : str
        Citation of the published definition.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    compute: Callable[[pl.DataFrame], pl.DataFrame]
    reference: str


SCORES: dict[str, ScoreDef] = {s.name: s for s in [
    ScoreDef("news2", _news2.INPUTS, _news2.OUTPUTS, news2, _news2.REFERENCE),
    ScoreDef("qsofa", early_warning.QSOFA_INPUTS, early_warning.QSOFA_OUTPUTS, qsofa,
             early_warning.QSOFA_REFERENCE),
    ScoreDef("mews", early_warning.MEWS_INPUTS, early_warning.MEWS_OUTPUTS, mews,
             early_warning.MEWS_REFERENCE),
    ScoreDef("sirs", early_warning.SIRS_INPUTS, early_warning.SIRS_OUTPUTS, sirs,
             early_warning.SIRS_REFERENCE),
    ScoreDef("bmi", _bmi.INPUTS, _bmi.OUTPUTS, bmi, _bmi.REFERENCE),
]}

__all__ = [
    "SCORES", "ScoreDef", "bmi", "cgm_metrics", "gmi_expr", "icope_step1", "mews", "news2",
    "news2_expr_consciousness", "news2_expr_heart_rate", "news2_expr_on_oxygen",
    "news2_expr_resp_rate", "news2_expr_risk", "news2_expr_sbp", "news2_expr_spo2",
    "news2_expr_temp", "qsofa", "sirs",
]
