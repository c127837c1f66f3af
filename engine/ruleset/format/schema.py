"""The declared schema of a rule pack and of a site override file (pydantic v2, strict).

Every model forbids unknown keys and does not coerce types (``version: 2026.11`` is a number, not
the text "2026.11", and is reported). Each field's ``description`` is its constraint phrase — the
one table every message is built from, as in scikit-learn: "The 'severity' field of rule
'hf.weight_gain_2kg_3d' must be one of 'high', 'medium', 'low'. Got 'urgent' instead."

The schema checks shapes only (:mod:`engine.ruleset.format.parse`); :mod:`engine.ruleset.compile.pack`
checks meanings (durations, names, expressions, units, scope) with the YAML positions at hand.
rules/README.md documents every key.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...schema import PROGRAMMES

Severity = Literal["high", "medium", "low"]
OnMissing = Literal["false", "true", "hold"]
SEVERITIES = ("high", "medium", "low")
ON_MISSING = ("false", "true", "hold")
ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

def re_name(text: str) -> bool:
    """Is ``text`` a valid detector or param name (lower-case identifier)?"""
    return bool(re.match(NAME_PATTERN, text))


#: a label: a lower-case name and a short text (routing keys of the coordination platform)
Labels = dict[str, str]
_LABELS = "a mapping of label name -> text, like {domain: respiratory, device: oximeter}"
_DURATION = "a duration like '30m', '6h', '3d' or '2w', or the name of a duration param"
_COUNT = "a whole number of readings (1 or more), or the name of a whole-number param"
#: a param value: a number, true/false, or an expression text ("2 kg", "gain_3d / 2")
ParamValue = Union[bool, int, float, str]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


def _on_missing(value: Any) -> Any:
    # YAML reads `on_missing: false` as a boolean; the field's values are the words
    return str(value).lower() if isinstance(value, bool) else value


class Scope(Strict):
    cohort: Union[str, list[str]] = Field(
        description=f"a programme ({', '.join(PROGRAMMES)}), a list of programmes, or 'any'")
    min_age: int | None = Field(None, description="a whole number of years (inclusive)")
    max_age: int | None = Field(None, description="a whole number of years (inclusive)")


class ScopeOverride(Strict):
    """A site's narrowing of a pack's scope: only the keys given change."""

    cohort: Union[str, list[str], None] = Field(
        None, description="a programme or a list of programmes within the pack's scope")
    min_age: int | None = Field(None, description="a whole number of years (inclusive)")
    max_age: int | None = Field(None, description="a whole number of years (inclusive)")


class Defaults(Strict):
    staleness: str | None = Field(None, description=_DURATION)
    cooldown: str | None = Field(None, description=_DURATION)
    resolve_after: str | None = Field(None, description=_DURATION)
    on_missing: OnMissing | None = Field(None, description="one of 'false', 'true', 'hold'")
    confirm_readings: Union[int, str, None] = Field(None, description=_COUNT)

    _om = field_validator("on_missing", mode="before")(_on_missing)


class ParamDecl(Strict):
    value: ParamValue = Field(description="a number, a quantity like '2 kg', true/false, or an "
                                          "expression of other params")
    doc: str = Field("", description="text")
    min: ParamValue | None = Field(None, description="the lowest value a site may set")
    max: ParamValue | None = Field(None, description="the highest value a site may set")
    patient: str | None = Field(None, description="a care-plan column of the patients table "
                                                  "that sets this param per patient, like "
                                                  "'spo2_target_low'")


class Texts(Strict):
    """A title or reason in each language it is written in (rules/README.md, "Languages")."""

    fr: str | None = Field(None, description="the text in French")
    en: str | None = Field(None, description="the text in English")


#: a text for people: a plain text (English) or a mapping {fr: ..., en: ...}
Text = Union[str, Texts]


class Rule(Strict):
    id: str = Field(pattern=ID_PATTERN, description="a lower-case id like 'hf.weight_gain_2kg_3d'"
                                                    " (letters, digits, '_' and '.')")
    title: Text = Field(description="text, or a mapping of languages like {fr: 'Prise de "
                                    "poids', en: 'Weight gain'}")
    when: str = Field(description="an expression text like 'weight_gain_3d > gain_3d'")
    resolve_when: str | None = Field(None, description="an expression text like 'spo2 > 94 %'"
                                                       " (what resolves an open episode)")
    severity: Severity = Field(description="one of 'high', 'medium', 'low'")
    for_: str | None = Field(None, alias="for", description=_DURATION)
    cooldown: str | None = Field(None, description=_DURATION)
    resolve_after: str | None = Field(None, description=_DURATION)
    on_missing: OnMissing | None = Field(None, description="one of 'false', 'true', 'hold'")
    confirm_readings: Union[int, str, None] = Field(None, description=_COUNT)
    reason: Text | None = Field(None, description="a sentence with {name} placeholders, or a "
                                                  "mapping of languages like {fr: '…', en: '…'}")
    rationale: str = Field("", description="text")
    references: list[str] = Field(default_factory=list, description="a list of texts")
    labels: Labels = Field(default_factory=dict, description=_LABELS)
    enabled: bool = Field(True, description="true or false")

    _om = field_validator("on_missing", mode="before")(_on_missing)


class PatientContext(Strict):
    programme: str | None = Field(None, description=f"a programme ({', '.join(PROGRAMMES)})")
    age: int | None = Field(None, description="a whole number of years")
    sex: Literal["F", "M"] | None = Field(None, description="'F' or 'M'")
    height_cm: float | None = Field(None, description="a number (cm)")
    baseline_weight_kg: float | None = Field(None, description="a number (kg)")
    spo2_scale: Literal[1, 2] | None = Field(None, description="1 or 2")
    tz: str | None = Field(None, description="an IANA time zone like 'Europe/Paris'")
    enrolled_at: str | None = Field(None, description="an offset from the test start like "
                                                      "'-30d' (default: the start)")
    surgery_at: str | None = Field(None, description="an offset from the test start like "
                                                     "'-30d'")
    dry_weight_kg: float | None = Field(None, description="a number (kg)")
    spo2_target_low: float | None = Field(None, description="a number (%)")
    spo2_target_high: float | None = Field(None, description="a number (%)")
    weight_gain_3d_kg: float | None = Field(None, description="a number (kg)")


class Expected(Strict):
    rule: str = Field(description="a rule id of the pack")
    at: str = Field(description="an offset from the test start, like '3d' or '36h'")
    severity: Severity | None = Field(None, description="one of 'high', 'medium', 'low'")
    resolved: str | None = Field(None, description="an offset like '5d', or 'open' when the "
                                                   "episode is still open at the end")
    reason: str | None = Field(None, description="the exact reason sentence")
    evidence: dict[str, Union[float, int, bool, str, None]] | None = Field(
        None, description="a mapping of name -> value at the opening, like "
                          "{weight_gain_3d: 2.5 kg}")
    labels: Labels | None = Field(None, description=_LABELS)


class ExpectedPending(Strict):
    rule: str = Field(description="a rule id of the pack")
    since: str = Field(description="an offset from the test start: when the condition began "
                                   "to hold")


class ExpectedValue(Strict):
    at: str = Field(description="an offset from the test start, like '3d' or '36h'")
    name: str = Field(description="a detector, score, metric, named condition, param or "
                                  "patient field of the pack")
    value: Union[float, int, bool, str, None] = Field(
        description="a number with its unit like '2.5 kg', true/false, a text, or null "
                    "(unknown)")


class CompactSeries(Strict):
    every: str = Field(description="a duration like '1h' or '1d'")
    values: str = Field(description="values separated by spaces, '_' for a missing reading, "
                                    "'axn' or 'a+bxn' to repeat")
    start: str = Field("0m", description="an offset like '0m' or '2d'")


class Test(Strict):
    name: str = Field(description="text")
    lang: Literal["fr", "en"] = Field("en", description="'fr' or 'en': the language of the "
                                                        "alerts the test reads (reason)")
    cohort: str | None = Field(None, description=f"a programme ({', '.join(PROGRAMMES)})")
    patient: PatientContext | None = Field(None, description="a mapping of patient context")
    start: Union[datetime, str, None] = Field(None, description="a UTC time like "
                                                                "2026-01-05T08:00:00Z")
    until: str | None = Field(None, description="an offset like '5d' (evaluation end)")
    series: dict[str, Union[list[Any], CompactSeries]] = Field(
        description="a mapping of metric -> [[offset, value], ...] or {every, values}")
    expect: list[Expected] = Field(default_factory=list, description="a list of expected firings")
    absent: list[str] = Field(default_factory=list, description="a list of rule ids")
    rules: list[str] | None = Field(None, description="a list of rule ids to check")
    pending: list[ExpectedPending] | None = Field(
        None, description="a list of {rule, since}: the rules whose condition holds at the end "
                          "without having fired yet")
    values: list[ExpectedValue] = Field(default_factory=list,
                                        description="a list of {at, name, value}")


class Matcher(Strict):
    """Which alerts an inhibition's side matches: every key given must match (rules/README.md,
    "Inhibition")."""

    rules: list[str] | None = Field(None, description="a list of rule ids like "
                                                      "[news2.high]")
    packs: list[str] | None = Field(None, description="a list of pack names like [copd]")
    severity: list[Severity] | None = Field(None, description="a list of severities like "
                                                              "[medium, low]")
    labels: Labels | None = Field(None, description=_LABELS)


class Inhibit(Strict):
    """An inhibition rule, after Alertmanager's ``inhibit_rules``: while an alert matching
    ``source`` is open, the alerts matching ``target`` that share its ``equal`` values are
    hidden from the open queue (kept in the output, marked ``inhibited:<rule>``)."""

    source: Matcher = Field(description="a matcher {rules, packs, severity, labels}: the "
                                        "alerts that hide others")
    target: Matcher = Field(description="a matcher {rules, packs, severity, labels}: the "
                                        "alerts hidden")
    equal: list[str] = Field(default_factory=lambda: ["patient_id"],
                             description="a list of patient_id and label names both alerts "
                                         "must share, like [patient_id, device]")
    reason: str = Field("", description="text: why, with its source")


class Pack(Strict):
    pack: str = Field(pattern=NAME_PATTERN, description="a lower-case name like 'heart_failure'")
    version: str = Field(description="text like \"2026.11\" (quote it: unquoted it is a number)")
    title: str = Field("", description="text")
    description: str = Field("", description="text")
    scope: Scope = Field(description="a mapping with cohort, and optional min_age / max_age")
    evaluate_every: str | None = Field(None, description=_DURATION)
    labels: Labels = Field(default_factory=dict, description=_LABELS)
    defaults: Defaults = Field(default_factory=Defaults, description="a mapping of defaults")
    detectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="a mapping of name -> {metric, fn, params...}")
    params: dict[str, Union[ParamValue, ParamDecl]] = Field(
        default_factory=dict, description="a mapping of name -> value or {value, doc, min, max}")
    conditions: dict[str, str] = Field(
        default_factory=dict, description="a mapping of name -> expression text, like "
                                          "{hypoxic: 'spo2 < spo2_low'}")
    rules: list[Rule] = Field(min_length=1, description="a non-empty list of rules")
    tests: list[Test] = Field(default_factory=list, description="a list of tests")
    inhibit: list[Inhibit] = Field(default_factory=list,
                                   description="a list of {source, target, equal, reason}")


class RuleOverride(Strict):
    severity: Severity | None = Field(None, description="one of 'high', 'medium', 'low'")
    enabled: bool | None = Field(None, description="true or false")
    labels: Labels | None = Field(None, description=_LABELS)


class PackOverride(Strict):
    scope: ScopeOverride | None = Field(None, description="a mapping with cohort, min_age, "
                                                          "max_age (narrowing the pack's)")
    params: dict[str, ParamValue] = Field(default_factory=dict,
                                          description="a mapping of param name -> value")
    rules: dict[str, RuleOverride] = Field(default_factory=dict,
                                           description="a mapping of rule id -> {severity, "
                                                       "enabled}")
    tests: list[Test] = Field(default_factory=list, description="a list of tests")


class Site(Strict):
    site: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="a site name (letters, digits, '_', '.', '-')")
    description: str = Field("", description="text")
    time_zone: str | None = Field(None, description="an IANA time zone like 'Europe/Paris' "
                                                    "(patients without a tz column)")
    packs: dict[str, PackOverride] = Field(description="a mapping of pack name -> overrides")
