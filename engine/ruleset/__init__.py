"""Rule packs: clinician-editable YAML rules, compiled to polars expressions and evaluated on
each patient's evaluation timeline (rules/README.md).

``load_rules(paths, sites)`` reads packs (and site overrides), reporting every mistake with
``file:line:col`` in one :class:`~engine.errors.RuleError`; the :class:`RuleSet` it returns
evaluates telemetry into episodes, runs the packs' own tests and explains a rule.

>>> import polars as pl
>>> from datetime import datetime, timezone
>>> from engine.ruleset import load_rules_text
>>> rs = load_rules_text({"hf.yaml": '''
... pack: hf
... version: "1"
... scope: {cohort: heart_failure}
... detectors: {gain: {metric: weight, fn: delta, window: 3d}}
... params: {limit: 2 kg}
... rules:
...   - {id: hf.gain, title: Weight gain, when: gain > limit, severity: high}
... '''})
>>> day = lambda d: datetime(2026, 1, d, 8, tzinfo=timezone.utc)
>>> tel = pl.DataFrame({"patient_id": ["p1"] * 3, "ts": [day(1), day(2), day(4)],
...                     "metric": ["weight"] * 3, "value": [80.0, 80.8, 82.5]})
>>> pats = pl.DataFrame({"patient_id": ["p1"], "programme": ["heart_failure"]})
>>> rs.evaluate(tel, pats).select("rule_id", "opened_at", "reason").rows()
[('hf.gain', datetime.datetime(2026, 1, 4, 8, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), \
'Weight gain: gain 2.5 kg (limit 2 kg).')]
"""
from __future__ import annotations

from .packs import CompiledPack, CompiledRule, DetectorUse, EffectiveParam, TestCase
from .format.diagnostics import Diagnostic
from .lang.parser import parse_expression, to_text
from .ruleset import RuleSet, load_rules, load_rules_text
from .compile.scope import EffectiveScope
from .unittest import TestReport, TestResult

__all__ = [
    "load_rules", "load_rules_text", "RuleSet", "CompiledPack", "CompiledRule", "DetectorUse",
    "EffectiveParam", "TestCase", "Diagnostic", "parse_expression",
    "to_text", "TestReport", "TestResult", "validate", "EffectiveScope",
]


def validate(paths, sites=()) -> RuleSet:
    """Load and check packs without running their tests (raises RuleError on any mistake)."""
    return load_rules(paths, sites)
