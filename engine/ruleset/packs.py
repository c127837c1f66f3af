"""What a loaded pack is made of: effective params with their origin, compiled rules, detectors,
tests. These are plain frozen records; building them is :mod:`engine.ruleset.compile.pack`'s job and
running them is :mod:`engine.ruleset.evaluate`'s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

from .lang.types import Symbol, Type
from .lang.parser import Node
from .compile.scope import EffectiveScope
from .i18n import SOURCE_LANG, pick


@dataclass(frozen=True)
class EffectiveParam:
    """A param as the rules use it, and where its value came from.

    Attributes
    ----------
    name : str
    value : float, bool or str
        In ``unit`` (a float for numbers).
    unit : str
        The unit label ('kg', 'h', '%'), '' for a plain number.
    type : Type
    text : str
        The value as written ('2 kg', 'gain_3d / 2').
    origin : str
        ``file:line:col`` of the text that set it.
    source : str
        'pack heart_failure' or "site 'lyon' (rules/sites/lyon.yaml)".
    doc : str
    depends : tuple of str
        The params its text uses (``gain_3d / 2`` depends on ``gain_3d``).
    patient : str or None
        The care-plan column of the patients table that sets it per patient (``patient:``);
        ``value`` is then the value of a patient without one.
    low, high : float or None
        Its bounds (``min``/``max``) in ``unit``: a per-patient value must lie within them.
    """

    name: str
    value: object
    unit: str
    type: Type
    text: str
    origin: str
    source: str
    doc: str = ""
    depends: tuple[str, ...] = ()
    patient: str | None = None
    low: float | None = None
    high: float | None = None

    def display(self) -> str:
        from .evidence import format_value
        return format_value(self.value, self.unit)


@dataclass(frozen=True)
class DetectorUse:
    """A detector of a pack: its spec (params resolved), where its value is carried forward
    from, and for how long.

    ``column`` is its timeline column (``pack.name``, unique across packs); ``kind`` is
    ``detector`` (a registered fn run by :func:`engine.detectors.evaluate`) or ``silence``
    (minutes since the last reading at each timeline time, :func:`engine.detectors.silence_at`).
    """

    name: str
    column: str
    kind: str
    metrics: tuple[str, ...] | None      # None: any metric (silence over every metric)
    spec: dict                           # rule-file form, params substituted
    staleness_us: int | None
    lookback_us: int
    type: Type
    origin: str
    #: the registered detector's validated spec (durations in µs); None for silence
    resolved: object = None


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to evaluate.

    Attributes
    ----------
    id, pack, severity : str
    title : str
        The title in English, or in the one language it is written in.
    when : str
        The condition as written.
    node : Node
        Its syntax tree.
    expr : pl.Expr
        Its polars expression over the pack's timeline columns (Boolean, null when unknown).
    for_us, cooldown_us, resolve_after_us : int
        Durations in µs.
    on_missing : str
        'false', 'true' or 'hold' (rules/README.md, "Missing data").
    reason : str or None
        The reason template, ``{name}`` placeholders (in English, or in the one language it is
        written in).
    evidence_names : tuple of str
        Names whose values are recorded as evidence (those of ``when``, then of ``reason``).
    params : dict of str -> EffectiveParam
        The params the rule uses, directly or through other params and its durations.
    detectors : tuple of str
        The detectors the rule's expression uses.
    enabled : bool
    origin : str
        ``file:line:col`` of the rule.
    severity_origin, enabled_origin : str
        Where the effective severity and enabled flag were set.
    confirm_readings : int
        How many fresh readings a ``for:`` run needs before the rule fires (1: no count).
    confirm_metrics : tuple of str or None
        The metrics whose readings count (those the condition reads); None for every metric;
        empty when ``confirm_readings`` is 1.
    resolve_when : str or None
        The resolution condition as written (``resolve_when:``); None: an episode resolves when
        ``when`` has been false for ``resolve_after``.
    resolve_expr : pl.Expr or None
        Its polars expression.
    guard : pl.Expr or None
        The conjuncts of ``when`` that read only the patient's own fields and constants, over
        the patient's fields: where false, the rule cannot hold for the patient (None: no such
        conjunct).
    labels : dict of str -> str
        The rule's labels (the pack's, then the rule's own, then the sites'), carried to its
        alerts.
    reads : tuple of str
        Every name the rule reads (``when``, ``resolve_when``, ``reason``, and through them
        the named conditions').
    titles, reasons : dict of str -> str
        The title and the reason template in each language they are written in (``fr``,
        ``en``; English first); :meth:`title_in` and :meth:`reason_in` pick one.
    """

    id: str
    pack: str
    title: str
    severity: str
    when: str
    node: Node
    expr: pl.Expr
    for_us: int
    cooldown_us: int
    resolve_after_us: int
    on_missing: str
    reason: str | None
    rationale: str
    references: tuple[str, ...]
    evidence_names: tuple[str, ...]
    params: dict
    detectors: tuple[str, ...]
    enabled: bool
    origin: str
    severity_origin: str
    enabled_origin: str
    confirm_readings: int = 1
    confirm_metrics: tuple[str, ...] | None = ()
    resolve_when: str | None = None
    resolve_expr: pl.Expr | None = None
    guard: pl.Expr | None = None
    labels: dict = field(default_factory=dict)
    reads: tuple[str, ...] = ()
    titles: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)

    def title_in(self, lang: str) -> tuple[str, str]:
        """The title in ``lang`` (else in the other language) and the language it is in."""
        return pick(self.titles or {SOURCE_LANG: self.title}, lang)

    def reason_in(self, lang: str) -> tuple[str | None, str]:
        """The reason template in ``lang`` (else in the other language) and its language;
        ``(None, lang)`` for a rule without ``reason:``."""
        texts = self.reasons or ({SOURCE_LANG: self.reason} if self.reason is not None else {})
        return pick(texts, lang) if texts else (None, lang)

    def guard_false(self, patients: pl.DataFrame) -> np.ndarray | None:
        """Bool per row of ``patients`` (one row per patient, with the fields the guard reads):
        where the :attr:`guard` is false, so that the rule cannot hold for the patient. An
        unknown guard is not false. None for a rule without a guard."""
        if self.guard is None:
            return None
        # with_columns, not select: a guard of constants alone still gives one value per row
        g = patients.with_columns(self.guard.alias("\0guard")).get_column("\0guard")
        return (~g.cast(pl.Boolean)).fill_null(False).to_numpy()


@dataclass(frozen=True)
class NamedCondition:
    """A pack's named condition (``conditions:``): a timeline column its rules read by name."""

    name: str
    column: str
    text: str
    type: Type
    expr: pl.Expr
    origin: str


@dataclass(frozen=True)
class TestCase:
    """One test of a pack (or of a site's overrides of it), times as µs offsets from ``start``.

    ``series`` maps a metric to ``[(offset_us, value), ...]`` (missing readings already dropped);
    ``expect`` is a list of ``(rule_id, at_us, severity or None, resolved_us or None or 'open')``.
    ``checked`` is the set of rule ids whose firings must match ``expect`` exactly.
    ``details`` maps an index of ``expect`` to what else that firing must show: ``reason``
    (text), ``evidence`` ({name: (value, unit)}) and ``labels``. ``pending`` is None (not
    checked) or ``(rule_id, since_us)`` pairs; ``values`` is ``(at_us, name, value, unit,
    origin)`` tuples. ``lang`` is the language the alerts are written in ('en' unless the test
    says ``lang: fr``).
    """

    name: str
    pack: str
    site: str | None
    origin: str
    patient: dict
    start: datetime
    until_us: int | None
    series: dict
    expect: tuple
    checked: frozenset
    details: dict = field(default_factory=dict)
    pending: tuple | None = None
    values: tuple = ()
    lang: str = SOURCE_LANG


@dataclass
class CompiledPack:
    """A loaded pack: everything its rules need, with effective params and their origins."""

    name: str
    version: str
    path: str
    title: str
    description: str
    cohorts: tuple[str, ...] | None          # None: any cohort
    min_age: int | None
    max_age: int | None
    evaluate_every_us: int | None
    params: dict[str, EffectiveParam]
    detectors: dict[str, DetectorUse]
    symbols: dict[str, Symbol]
    rules: list[CompiledRule]
    tests: list[TestCase] = field(default_factory=list)
    sites: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()            # metric columns the rules read as-of
    scores: dict = field(default_factory=dict)   # score name -> ScoreDef, those the rules use
    staleness_us: dict[str, int] = field(default_factory=dict)   # per metric column

    base: "CompiledPack | None" = None       # the pack without site overrides (for its tests)
    #: the effective scope with the origin of each key (cohorts/min_age/max_age above are it)
    scope: "EffectiveScope | None" = None
    #: named conditions, in the order they are computed (each after those it reads)
    conditions: list[NamedCondition] = field(default_factory=list)
    #: every name the enabled and disabled rules read, directly or through named conditions
    reads: frozenset = frozenset()
    #: the time zone of patients without a ``tz`` (a site's ``time_zone``), None: UTC
    time_zone: str | None = None
    #: the pack's inhibition rules (:class:`InhibitRule`), checked against the loaded packs
    inhibit: tuple = ()

    def rule(self, rule_id: str) -> CompiledRule:
        return next(r for r in self.rules if r.id == rule_id)


@dataclass(frozen=True)
class AlertMatcher:
    """One side of an inhibition (or a silence): every field given must match an alert; None
    matches anything. ``labels`` must all be carried with these values."""

    rules: frozenset | None = None
    packs: frozenset | None = None
    severity: frozenset | None = None
    labels: tuple = ()                      # ((name, value), ...)

    def matches(self, rule_id: str, pack: str, severity: str, labels: dict) -> bool:
        return ((self.rules is None or rule_id in self.rules)
                and (self.packs is None or pack in self.packs)
                and (self.severity is None or severity in self.severity)
                and all(labels.get(k) == v for k, v in self.labels))


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching ``source`` is open, alerts matching ``target`` (and not
    ``source``) that share the ``equal`` values (``patient_id`` and label names) and are no
    more severe are hidden from the open queue. ``origin`` is ``file:line:col``."""

    source: AlertMatcher
    target: AlertMatcher
    equal: tuple
    reason: str
    origin: str
    pack: str
