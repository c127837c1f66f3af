"""Load rule packs, stage two: a validated pack (and the site overrides of it) → its meaning →
a :class:`~engine.ruleset.packs.CompiledPack`.

:class:`PackCompiler` checks what the schema cannot — durations, names, units, expressions,
params and their bounds, the scope and a site's narrowing of it — with the YAML positions at
hand, and reports every mistake in the shared :class:`~engine.ruleset.format.diagnostics.Diagnostics`.
Detectors are compiled by :mod:`engine.ruleset.compile.detectors`, the scope by
:mod:`engine.ruleset.compile.scope`, params by :mod:`engine.ruleset.compile.params`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from ...timeline import default_staleness
from ...durations import MAX_US, is_duration, parse_duration
from ...errors import SpecError
from ...schema import CARE_PLAN, METRICS
from ..format import schema as M
from ..lang.types import BOOL, ERROR, NUMBER, T_ERROR, Symbol, check_expression
from ..lang.to_polars import compile_expr
from ..packs import CompiledPack, CompiledRule, EffectiveParam, NamedCondition
from .detectors import compile_detectors
from ..format.diagnostics import Diagnostics, did_you_mean, shown
from ..evidence import parse_template
from ..i18n import LANGS, NAMES, SOURCE_LANG
from ..lang.parser import Binary, names, parse_problems
from .params import ParamText, _cycles, check_bounds, resolve_params
from .scope import pack_scope, site_scope
from ..format.source import Source, dotted
from .symbols import base_symbols
from ...units import UNITS

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: columns every alert has already: a label must not be mistaken for one of them
RESERVED_LABELS = ("alert_id", "patient_id", "rule_id", "pack", "severity", "status",
                   "priority", "title", "reason")
MAX_LABEL_LENGTH = 100


def patient_param_column(pack: str, name: str) -> str:
    """The timeline column of a param set per patient (``patient:``)."""
    return f"{pack}:param:{name}"


def in_field(message: str, field: str) -> str:
    """'unknown name 'x'.' -> 'unknown name 'x' in `when`.' (the clause before any ';')."""
    head, sep, tail = message.partition(";")
    if sep:
        return f"{head} in `{field}`;{tail}"
    return f"{message.rstrip('.')} in `{field}`."


class PackCompiler:
    """Turns one validated pack (and the site overrides of it) into a :class:`CompiledPack`.

    :meth:`compile` without overrides gives the pack as written; called again with the site
    overrides of that pack it is a second pass over the params: the pack's own params, scope
    and expressions (parsed and type-checked once) are reused, only the sites' values are
    resolved and what depends on them is rebuilt.
    """

    def __init__(self, src: Source, pack: M.Pack, scores: dict, diags: Diagnostics, *,
                 broken: set[str] = frozenset(), failed: bool = False,
                 rule_index: list[int] | None = None):
        self.src, self.pack, self.diags = src, pack, diags
        # names declared but invalid: uses of them are not reported again
        self.broken = set(broken)
        self.failed = failed
        self.rule_index = rule_index
        self.scores = scores
        self.overrides: list = []
        self.base, self.score_owner = base_symbols(scores)
        self.errors_before = len(diags)
        self._expressions: dict = {}        # (text, path) -> (node, checker), checked once
        self._own_params = None             # the pack's own params, bounds and texts
        self._own_scope = None
        self._patient_cols: dict | None = None   # param -> care-plan column, checked once
        self._labels: dict | None = None         # the pack's labels, checked once
        self.condition_reads: dict[str, list[str]] = {}

    # -- helpers -------------------------------------------------------------------------------
    def err(self, path, message: str, hint: str = "", *, rule_id=None, src: Source | None = None,
            key: bool = False) -> None:
        src = src or self.src
        line, col = src.key_pos(path) if key else src.pos(path)
        self.diags.add(src.label, line, col, message, hint, rule_id=rule_id)

    def where(self, path, src: Source | None = None) -> str:
        src = src or self.src
        line, col = src.pos(path)
        return f"{src.label}:{line}:{col}"

    def duration(self, value, path, *, rule_id=None, positive=False, src=None) -> int | None:
        """µs of a duration field: a duration literal, or the name of a duration param."""
        if isinstance(value, str) and value.strip() in self.broken:
            return None
        if isinstance(value, str) and is_duration(value):
            try:
                us = parse_duration(value)
            except SpecError:
                us = MAX_US + 1           # reported below, with its place
        elif isinstance(value, str) and _IDENT.match(value.strip()):
            p = self.params.get(value.strip())
            if p is None:
                self.err(path, f"'{dotted(path)}' names an unknown param '{value}'.",
                         "Write a duration like '30m', '6h', '3d' or '2w', or name a duration "
                         "param. " + did_you_mean(value, self.params, noun="params"),
                         rule_id=rule_id, src=src)
                return None
            if p.patient is not None:
                self.err(path, self._per_patient_here(p, dotted(path)), rule_id=rule_id,
                         src=src)
                return None
            unit = p.type.unit if p.type.kind == NUMBER else None
            if unit is None or not unit.compatible(UNITS["h"]):
                self.err(path, f"'{dotted(path)}' needs a duration but param '{p.name}' is "
                         f"{p.type.describe()}.", f"Give '{p.name}' a time unit, e.g. '36 h'.",
                         rule_id=rule_id, src=src)
                return None
            us = int(round(p.value * unit.factor * 1_000_000))
        else:
            self.err(path, f"'{dotted(path)}' must be a duration like '30m', '6h', '3d' or '2w',"
                     f" or the name of a duration param. Got {shown(value)} instead.",
                     "Durations are a number and a unit (s, m, h, d, w) with no space; "
                     "combine them like '1h30m'.", rule_id=rule_id, src=src)
            return None
        if us < 0 or (positive and us == 0):
            need = "longer than 0" if positive else "zero or more"
            self.err(path, f"'{dotted(path)}' must be {need}. Got {shown(value)} instead.",
                     rule_id=rule_id, src=src)
            return None
        if us > MAX_US:
            self.err(path, f"'{dotted(path)}' must be at most 100 years. Got {shown(value)} "
                     "instead.", rule_id=rule_id, src=src)
            return None
        return us

    def count(self, value, path, *, rule_id=None) -> int | None:
        """A number of readings (``confirm_readings``): a whole number >= 1, or the name of a
        plain whole-number param (so that a site can tune it within the param's bounds)."""
        shown = value
        if isinstance(value, str) and value.strip() in self.broken:
            return None
        if isinstance(value, str) and _IDENT.match(value.strip()):
            p = self.params.get(value.strip())
            if p is None:
                self.err(path, f"'{dotted(path)}' names an unknown param '{value}'.",
                         "Write a whole number like 2, or name a whole-number param. "
                         + did_you_mean(value, self.params, noun="params"), rule_id=rule_id)
                return None
            if p.patient is not None:
                self.err(path, self._per_patient_here(p, dotted(path)), rule_id=rule_id)
                return None
            if p.type.kind != NUMBER or p.type.unit is not None or p.value != int(p.value):
                self.err(path, f"'{dotted(path)}' needs a whole number of readings but param "
                         f"'{p.name}' is {p.display()}.", f"Give '{p.name}' a whole number "
                         "without a unit, e.g. 2.", rule_id=rule_id)
                return None
            value, shown = int(p.value), f"{value} = {p.display()}"
        if not isinstance(value, int):
            self.err(path, f"'{dotted(path)}' must be a whole number of readings (1 or more), or "
                     f"the name of a whole-number param. Got {shown(value)} instead.",
                     rule_id=rule_id)
            return None
        if value < 1:
            self.err(path, f"'{dotted(path)}' must be 1 or more. Got {shown} instead.",
                     "1 (the default) fires on the condition alone; 2 asks for a second "
                     "reading that confirms it.", rule_id=rule_id)
            return None
        return value

    @staticmethod
    def _per_patient_here(p: EffectiveParam, where: str) -> str:
        return (f"'{where}' uses param '{p.name}', which is set per patient (patient: "
                f"{p.patient}): {where} takes one value for every patient. Use the param in "
                "an expression (when, resolve_when, a named condition) instead.")

    # -- the pack ------------------------------------------------------------------------------
    def compile(self, overrides: Sequence[tuple[Source, M.Site]] = ()) -> CompiledPack | None:
        """The compiled pack, with ``overrides`` (site sources and models) applied; None when it
        has a mistake (reported in the diagnostics)."""
        p = self.pack
        self.overrides = list(overrides)
        self.errors_before = len(self.diags)
        if self._own_scope is None:
            self._own_scope = pack_scope(self.src, p.scope, p.pack, self.diags)
        scope = self._own_scope
        if self.overrides:
            scope = site_scope(scope, p.pack, self.overrides, self.diags)
        detector_names = set(p.detectors)
        self.params = self.resolve_params(detector_names)
        every = (self.duration(p.evaluate_every, ("evaluate_every",), positive=True)
                 if p.evaluate_every is not None else None)
        d = p.defaults
        self.default_staleness = (self.duration(d.staleness, ("defaults", "staleness"),
                                                positive=True) if d.staleness else None)
        self.defaults = {
            "cooldown": self.duration(d.cooldown, ("defaults", "cooldown")) if d.cooldown else 0,
            "resolve_after": (self.duration(d.resolve_after, ("defaults", "resolve_after"))
                              if d.resolve_after else 0),
            "on_missing": d.on_missing or "false",
            "confirm_readings": (self.count(d.confirm_readings, ("defaults", "confirm_readings"))
                                 if d.confirm_readings is not None else 1),
        }
        dets = self.detectors = compile_detectors(self)
        self.broken |= (set(p.params) - set(self.params)) | (set(p.detectors) - set(dets))
        symbols = dict(self.base)
        for name in self.broken:
            symbols.setdefault(name, Symbol(name, "broken", T_ERROR))
        for name, prm in self.params.items():
            column = patient_param_column(p.pack, name) if prm.patient else None
            symbols[name] = Symbol(name, "param", prm.type, column, prm.value, prm.doc)
        for name, det in dets.items():
            symbols[name] = Symbol(name, "detector", det.type, det.column,
                                   doc=f"{det.spec.get('fn')} of {det.spec.get('metric', 'any')}")
        self.symbols = symbols
        if self._labels is None:
            self._labels = self.labels(p.labels, ("labels",)) or {}
        conditions = self.compile_conditions()
        overrides = self.rule_overrides()
        rules = []
        seen: dict[str, tuple] = {}
        for k, r in enumerate(p.rules):
            i = self.rule_index[k] if self.rule_index is not None else k
            if r.id in seen:
                self.err(("rules", i, "id"), f"duplicate rule id '{r.id}'; it is already used at "
                         f"line {seen[r.id][0]}.", "Each rule id must be unique.", rule_id=r.id)
                continue
            seen[r.id] = self.src.pos(("rules", i))
            rule = self.compile_rule(i, r, overrides.get(r.id, {}))
            if rule is not None:
                rules.append(rule)
        for rid, (src, path, site) in overrides.get("__paths__", {}).items():
            if rid not in seen:
                self.err(path, f"site '{site}' overrides unknown rule '{rid}' of pack "
                         f"'{p.pack}'.",
                         did_you_mean(rid, seen, noun="rules"), src=src, key=True)
        if len(self.diags) > self.errors_before or self.failed:
            return None
        used_metrics, used_scores = self.used(rules)
        staleness = {m: self.default_staleness or default_staleness(m) for m in used_metrics}
        reads = frozenset(n for r in rules for n in r.reads)
        return CompiledPack(
            name=p.pack, version=p.version, path=self.src.label, title=p.title,
            description=p.description, cohorts=scope.cohorts, min_age=scope.min_age,
            max_age=scope.max_age, evaluate_every_us=every, params=self.params,
            detectors=dets, symbols=symbols, rules=rules,
            sites=tuple(site.site for _, site in self.overrides),
            metrics=tuple(used_metrics), scores={s: self.scores[s] for s in used_scores},
            staleness_us=staleness, scope=scope,
            conditions=[c for c in conditions if c.name in reads], reads=reads)

    # -- labels and named conditions -----------------------------------------------------------
    def labels(self, raw: dict, path, *, rule_id=None, src: Source | None = None) -> dict | None:
        """Checked labels (None when one is invalid, reported)."""
        out, ok = {}, True
        for k, v in raw.items():
            where = path + (k,)
            if not M.re_name(k):
                self.err(where, f"label name {shown(k)} must be a lower-case identifier like "
                         "'domain'.", rule_id=rule_id, src=src, key=True)
                ok = False
            elif k in RESERVED_LABELS:
                self.err(where, f"label '{k}' is a column of every alert already.",
                         "Choose another name, e.g. 'team' or 'domain'.", rule_id=rule_id,
                         src=src, key=True)
                ok = False
            elif not v.strip() or len(v) > MAX_LABEL_LENGTH or any(
                    ord(ch) < 32 for ch in v):
                self.err(where, f"label '{k}' must be a short text on one line (1 to "
                         f"{MAX_LABEL_LENGTH} characters). Got {shown(v)} instead.",
                         rule_id=rule_id, src=src)
                ok = False
            else:
                out[k] = v
        return out if ok else None

    def expand(self, start) -> list[str]:
        """``start`` and, after them, every name read through the named conditions among them
        (what a rule's evidence and timeline columns must cover)."""
        out, todo = [], list(start)
        while todo:
            n = todo.pop(0)
            if n in out:
                continue
            out.append(n)
            todo.extend(self.condition_reads.get(n, ()))
        return out

    def compile_conditions(self) -> list[NamedCondition]:
        """The pack's named conditions, each after those it reads; their symbols are added."""
        p = self.pack
        if not p.conditions:
            return []
        nodes = {}
        for name, text in p.conditions.items():
            path = ("conditions", name)
            if not M.re_name(name):
                self.err(path, f"condition name '{name}' must be a lower-case identifier like "
                         "'hypoxic'.", key=True)
                continue
            if name in self.symbols and self.symbols[name].kind != "broken":
                self.err(path, f"condition '{name}' has the name of a "
                         f"{self.symbols[name].kind}.", "Choose another name: a named "
                         "condition must not hide it.", key=True)
                continue
            node = self.expression(text, path, None, want=None, parse_only=True)
            if node is not None:
                nodes[name] = node
            self.symbols[name] = Symbol(name, "broken", T_ERROR)   # until checked below
        deps = {n: [x.name for x in names(node) if x.name in nodes]
                for n, node in nodes.items()}
        order, cycles = _cycles(deps)
        failed = set()
        for cycle in cycles:
            self.err(("conditions", cycle[0]), "named conditions form a cycle: "
                     + " -> ".join(cycle) + ".", "A named condition may use others, but not "
                     "itself through them.")
            failed.update(cycle)
        out = []
        for name in order:
            if name in failed or any(d in failed for d in deps[name]):
                failed.add(name)
                continue
            path = ("conditions", name)
            node, checker = self.expression(p.conditions[name], path, None, want=None)
            if node is None:
                failed.add(name)
                continue
            column = f"{p.pack}:{name}"
            t = checker.type_of(node)
            self.symbols[name] = Symbol(name, "condition", t, column, doc=p.conditions[name])
            self.condition_reads[name] = list(dict.fromkeys(n.name for n in names(node)))
            out.append(NamedCondition(name, column, p.conditions[name], t,
                                      compile_expr(node, checker, self.symbols).alias(column),
                                      self.where(path)))
        self.broken |= failed
        return out

    # -- params --------------------------------------------------------------------------------
    def resolve_params(self, detector_names) -> dict[str, EffectiveParam]:
        p = self.pack
        texts: dict[str, ParamText] = {}
        bounds_texts: dict[str, dict] = {}
        others = dict(self.base)
        for name in detector_names:
            others[name] = Symbol(name, "detector", None)      # type unknown yet; name only
        for name in self.broken:
            others.setdefault(name, Symbol(name, "broken", T_ERROR))
        label = f"pack {p.pack}"
        for name, v in p.params.items():
            path = ("params", name)
            if not M.re_name(name):
                self.err(path, f"param name '{name}' must be a lower-case identifier like "
                         "'gain_3d'.", key=True)
                continue
            if name in others:
                self.err(path, f"param '{name}' has the name of a {others[name].kind}.",
                         "Choose another name: a param must not hide it.", key=True)
                continue
            if isinstance(v, M.ParamDecl):
                texts[name] = ParamText(name, v.value, self.src, path + ("value",), label, v.doc)
                bounds_texts[name] = {f"{k} of {name}": ParamText(f"{k} of {name}",
                                                                  getattr(v, k), self.src,
                                                                  path + (k,), label)
                                      for k in ("min", "max") if getattr(v, k) is not None}
            else:
                texts[name] = ParamText(name, v, self.src, path, label)
        if self._own_params is None:
            pack_values, ok = resolve_params(dict(texts), others, self.diags)
            bounds = {}
            for name, bt in bounds_texts.items():
                if not bt or name not in pack_values:
                    continue
                resolved, _ = resolve_params(bt, others, self.diags,
                                             expected={k: pack_values[name].type for k in bt})
                bounds[name] = (resolved.get(f"min of {name}"), resolved.get(f"max of {name}"))
            check_bounds(pack_values, bounds, texts, self.diags)
            self._own_params = (pack_values, ok, bounds)
        pack_values, ok, bounds = self._own_params
        effective_texts = dict(texts)
        overridden = False
        for site_src, site in self.overrides:
            po = site.packs[p.pack]
            for name, v in po.params.items():
                path = ("packs", p.pack, "params", name)
                if name not in texts:
                    self.err(path, f"site '{site.site}' overrides unknown param '{name}' of "
                             f"pack '{p.pack}'.", did_you_mean(name, texts, noun="params"),
                             src=site_src, key=True)
                    continue
                effective_texts[name] = ParamText(name, v, site_src, path,
                                                  f"site '{site.site}' ({site_src.label})")
                overridden = True
        if not overridden or not ok:
            return self.per_patient(pack_values, bounds)
        eff, _ = resolve_params(effective_texts, others, self.diags,
                                expected={n: pv.type for n, pv in pack_values.items()})
        check_bounds(eff, bounds, effective_texts, self.diags)
        return self.per_patient(eff, bounds)

    def per_patient(self, params: dict[str, EffectiveParam], bounds) -> dict:
        """``params`` with the care-plan column (``patient:``) and bounds of those set per
        patient; the declarations are checked once (on the pack's own values)."""
        p = self.pack
        if self._patient_cols is None:
            self._patient_cols = {}
            for name, decl in p.params.items():
                if not isinstance(decl, M.ParamDecl) or decl.patient is None:
                    continue
                path = ("params", name, "patient")
                f = CARE_PLAN.get(decl.patient)
                prm = params.get(name)
                if f is None:
                    self.err(path, f"'params.{name}.patient' names {shown(decl.patient)}, which "
                             "is not a care-plan column.", "Care-plan columns: "
                             + ", ".join(CARE_PLAN) + ". "
                             + did_you_mean(decl.patient, CARE_PLAN, noun="columns"))
                    continue
                if prm is None:
                    continue
                unit = UNITS[f.unit]
                if prm.type.kind != NUMBER or prm.type.unit is None \
                        or not prm.type.unit.compatible(unit):
                    self.err(path, f"param '{name}' is {prm.type.describe()} but care-plan "
                             f"column '{f.name}' is in {f.unit}.",
                             f"Give '{name}' a value in {f.unit}, e.g. '{f.low:g} {f.unit}'.")
                    continue
                self._patient_cols[name] = f.name
            for name, prm in params.items():
                used = [d for d in prm.depends if d in self._patient_cols]
                if used:
                    self.err(("params", name), f"param '{name}' uses param '{used[0]}', which "
                             "is set per patient: a param's value is the same for every "
                             "patient.", f"Write the arithmetic in the rule's expression "
                             f"instead (e.g. `{used[0]} / 2`).", key=True)
        out = dict(params)
        for name, column in self._patient_cols.items():
            prm = params.get(name)
            if prm is None:
                continue
            lo, hi = bounds.get(name, (None, None))
            conv = [None if b is None else (b.value * prm.type.unit.ratio(b.type.unit)
                                            if b.type.unit is not None else b.value)
                    for b in (lo, hi)]
            out[name] = replace(prm, patient=column, low=conv[0], high=conv[1])
        return out

    # -- rules ---------------------------------------------------------------------------------
    def rule_overrides(self) -> dict:
        out: dict = {"__paths__": {}}
        for site_src, site in self.overrides:
            for rid, ro in site.packs[self.pack.pack].rules.items():
                path = ("packs", self.pack.pack, "rules", rid)
                out["__paths__"][rid] = (site_src, path, site.site)
                entry = out.setdefault(rid, {})
                label = f"site '{site.site}' ({site_src.label})"
                for key in ("severity", "enabled"):
                    v = getattr(ro, key)
                    if v is not None:
                        line, col = site_src.pos(path + (key,))
                        entry[key] = (v, f"{site_src.label}:{line}:{col} ({label})")
                if ro.labels is not None:
                    checked = self.labels(ro.labels, path + ("labels",), rule_id=rid,
                                          src=site_src)
                    if checked is not None:
                        line, col = site_src.pos(path + ("labels",))
                        before = entry.get("labels", ({}, None))[0]
                        entry["labels"] = ({**before, **checked},
                                           f"{site_src.label}:{line}:{col} ({label})")
        return out

    def expression(self, text, path, rule_id, *, want=BOOL, parse_only=False):
        """The checked tree of an expression (parsed and checked once per compiler) and its
        checker; with ``parse_only``, the tree alone (None when unreadable, reported)."""
        if parse_only:
            key = ("parse", text, path)
            if key not in self._expressions:
                node, problems = parse_problems(text)
                self._report(problems, path, rule_id)
                self._expressions[key] = node
            return self._expressions[key]
        key = (text, path)
        if key in self._expressions:
            return self._expressions[key]
        self._expressions[key] = found = self._check(text, path, rule_id, want)
        return found

    def _report(self, problems, path, rule_id) -> None:
        for pr in problems:
            line, col = self.src.text_pos(path, pr.offset)
            self.diags.add(self.src.label, line, col, in_field(pr.message, path[-1]), pr.hint,
                           rule_id=rule_id)

    def _check(self, text, path, rule_id, want=BOOL):
        parsed = self._expressions.get(("parse", text, path))
        if parsed is not None:
            node, problems = parsed, []
        else:
            node, problems = parse_problems(text)
        if node is not None:
            checker, problems = check_expression(node, self.symbols, source=text, want=want)
            if checker.type_of(node).kind == ERROR and not problems:
                node = None                 # it uses a broken name, already reported
        for pr in problems:
            line, col = self.src.text_pos(path, pr.offset)
            self.diags.add(self.src.label, line, col, in_field(pr.message, path[-1]), pr.hint,
                           rule_id=rule_id)
        return (node, checker) if node is not None and not problems else (None, None)

    def compile_rule(self, i: int, r: M.Rule, override: dict) -> CompiledRule | None:
        path = ("rules", i)
        before = len(self.diags)
        node, checker = self.expression(r.when, path + ("when",), r.id)
        rnode = rchecker = None
        if r.resolve_when is not None:
            rnode, rchecker = self.expression(r.resolve_when, path + ("resolve_when",), r.id)
        labels = self.labels(r.labels, path + ("labels",), rule_id=r.id)
        dur = {}
        for key, attr in (("for", "for_"), ("cooldown", "cooldown"),
                          ("resolve_after", "resolve_after")):
            v = getattr(r, attr)
            if v is None:
                dur[key] = 0 if key == "for" else self.defaults[key]
            else:
                dur[key] = self.duration(v, path + (key,), rule_id=r.id)
        confirm = (self.count(r.confirm_readings, path + ("confirm_readings",), rule_id=r.id)
                   if r.confirm_readings is not None else self.defaults["confirm_readings"])
        titles = self.texts(r.title, path + ("title",), r.id)
        reasons = (self.texts(r.reason, path + ("reason",), r.id)
                   if r.reason is not None else {})
        reason_names = self.reason_names(reasons, isinstance(r.reason, str), path + ("reason",),
                                         r.id)
        if len(self.diags) > before or node is None or confirm is None or labels is None \
                or (r.resolve_when is not None and rnode is None):
            return None
        when_names = self.expand(dict.fromkeys(n.name for n in names(node)))
        resolve_names = (self.expand(dict.fromkeys(n.name for n in names(rnode)))
                         if rnode is not None else [])
        evidence = tuple(dict.fromkeys(when_names + reason_names))
        read = self.metrics_read(when_names)
        if confirm > 1 and read == ():
            where = (path + ("confirm_readings",) if r.confirm_readings is not None
                     else ("defaults", "confirm_readings"))
            self.err(where, f"confirm_readings {confirm} can never be met: `when` reads no "
                     "metric (only params and patient context), so no reading can confirm "
                     "it.", "Leave confirm_readings at 1 for this rule.", rule_id=r.id)
            return None
        # params of the expression, of the durations and counts, and of the detectors' specs
        d = self.pack.defaults
        spec_params = [v for n in (*when_names, *resolve_names) if n in self.pack.detectors
                       for v in self.pack.detectors[n].values() if isinstance(v, str)]
        timing = (r.for_, r.cooldown if r.cooldown is not None else d.cooldown,
                  r.resolve_after if r.resolve_after is not None else d.resolve_after,
                  r.confirm_readings if r.confirm_readings is not None else d.confirm_readings)
        used_params = self.params_closure(
            [n for n in (*evidence, *resolve_names) if n in self.params]
            + [v for v in (*timing, *spec_params) if isinstance(v, str) and v in self.params])
        sev, sev_origin = override.get("severity", (r.severity, self.where(path + ("severity",))))
        enabled, en_origin = override.get("enabled", (r.enabled, self.where(path)))
        labels = {**self._labels, **labels, **override.get("labels", ({}, None))[0]}
        title, reason = next(iter(titles.values())), next(iter(reasons.values()), None)
        return CompiledRule(
            id=r.id, pack=self.pack.pack, title=title, severity=sev, when=r.when, node=node,
            expr=compile_expr(node, checker, self.symbols),
            guard=self.patient_guard(node, checker),
            for_us=dur["for"], cooldown_us=dur["cooldown"], resolve_after_us=dur["resolve_after"],
            on_missing=r.on_missing or self.defaults["on_missing"], reason=reason,
            rationale=r.rationale, references=tuple(r.references), evidence_names=evidence,
            params={n: self.params[n] for n in used_params},
            detectors=tuple(n for n in dict.fromkeys((*when_names, *resolve_names))
                            if self.symbols[n].kind == "detector"),
            enabled=enabled, origin=self.where(path), severity_origin=sev_origin,
            enabled_origin=en_origin, confirm_readings=confirm,
            confirm_metrics=read if confirm > 1 else (),
            resolve_when=r.resolve_when,
            resolve_expr=(compile_expr(rnode, rchecker, self.symbols)
                          if rnode is not None else None),
            labels=dict(sorted(labels.items())),
            reads=tuple(dict.fromkeys((*evidence, *resolve_names))),
            titles=titles, reasons=reasons)

    def patient_guard(self, node, checker):
        """The conjuncts of a rule's ``when`` that read only the patient's own fields and
        constants (``programme == "copd"``, ``age >= min_age``), as one polars expression over
        those fields; None when there is none. Where it is false for a patient, ``when`` is
        false at each of the patient's times (false and anything is false): the episodes stage
        skips that patient's timeline for the rule (:func:`engine.episodes.open_episodes`).
        A param set per patient (a care plan value) is not a constant: it is left out."""
        parts, todo = [], [node]
        while todo:
            n = todo.pop()
            if isinstance(n, Binary) and n.op == "and":
                todo += [n.right, n.left]
            else:
                parts.append(n)

        def constant_per_patient(name: str) -> bool:
            sym = self.symbols[name]
            return sym.kind == "patient" or (sym.kind == "param" and sym.column is None)

        guard = [compile_expr(p, checker, self.symbols) for p in parts
                 if all(constant_per_patient(x.name) for x in names(p))]
        if not guard:
            return None
        out = guard[0]
        for g in guard[1:]:
            out = out & g
        return out

    def texts(self, value, path, rule_id) -> dict[str, str]:
        """A title's or reason's text per language (``{lang: text}``, English first): a plain
        text is English; a mapping gives ``fr``, ``en`` or both (an empty one is reported)."""
        if isinstance(value, str):
            return {SOURCE_LANG: value}
        given = {lang: getattr(value, lang) for lang in dict.fromkeys((SOURCE_LANG, *LANGS))
                 if getattr(value, lang) is not None}
        if not given:
            self.err(path, f"'{dotted(path)}' gives no text: write it in "
                     + " or ".join(f"'{x}'" for x in LANGS) + ", or both.",
                     "E.g. {fr: 'Prise de poids', en: 'Weight gain'}.", rule_id=rule_id)
            return {SOURCE_LANG: ""}
        return given

    def reason_names(self, reasons: dict[str, str], plain: bool, path, rule_id) -> list[str]:
        """The placeholders of a rule's reason (those of the English text first, in order),
        checked: each a known name, the same ones in every language (reported otherwise).
        ``plain``: the reason is a plain text at ``path``, not a mapping of languages."""
        out: list[str] = []
        used: dict[str, list[str]] = {}
        before = len(self.diags)
        for lang, text in reasons.items():
            where = path if plain else path + (lang,)
            field = "reason" if plain else f"reason.{lang}"
            parts, problems = parse_template(text)
            for pr in problems:
                line, col = self.src.text_pos(where, pr.offset)
                self.diags.add(self.src.label, line, col, in_field(pr.message, field),
                               pr.hint, rule_id=rule_id)
            names = used[lang] = []
            for literal, name in parts:
                if name is None:
                    continue
                if name not in self.symbols:
                    offset = text.find("{" + name)
                    line, col = self.src.text_pos(where, max(offset, 0))
                    self.diags.add(self.src.label, line, col, f"unknown name '{name}' in "
                                   f"`{field}`.", did_you_mean(name, self.symbols),
                                   rule_id=rule_id)
                    continue
                names.append(name)
                if name not in out:
                    out.append(name)
        if len(used) > 1 and len(self.diags) == before:
            for lang, names in used.items():
                for other, theirs in used.items():
                    lacking = list(dict.fromkeys(n for n in theirs if n not in names))
                    if other == lang or not lacking:
                        continue
                    shown_names = ", ".join("{" + n + "}" for n in lacking)
                    self.err(path + (lang,), f"`reason.{lang}` does not use {shown_names}, "
                             f"which `reason.{other}` uses: the {NAMES[lang]} and "
                             f"{NAMES[other]} reasons must use the same placeholders.",
                             f"A translation shows the same values: add {shown_names} to "
                             f"reason.{lang}, or remove it from reason.{other}.",
                             rule_id=rule_id)
        return out

    def metrics_read(self, when_names) -> tuple[str, ...] | None:
        """The metrics a condition reads: those it names, each named detector's metric(s) and
        each named score's metric inputs; None when it reads every metric (a silence detector
        over 'any'). A fresh reading of one of them is what ``confirm_readings`` counts."""
        out: list[str] = []
        for n in when_names:
            sym = self.symbols[n]
            if sym.kind == "metric":
                found = [n]
            elif sym.kind == "detector":
                det = self.detectors[n]
                if det.metrics is None:
                    return None
                found = list(det.metrics)
            elif sym.kind == "score":
                found = [m for m in self.scores[self.score_owner[n]].inputs if m in METRICS]
            else:
                found = []
            out += [m for m in found if m not in out]
        return tuple(out)

    def params_closure(self, start) -> list[str]:
        out, todo = [], list(start)
        while todo:
            n = todo.pop(0)
            if n in out or n not in self.params:
                continue
            out.append(n)
            todo.extend(self.params[n].depends)
        return out

    def used(self, rules) -> tuple[list[str], list[str]]:
        metrics, scores = [], []
        for r in rules:
            for n in r.reads:
                sym = self.symbols[n]
                if sym.kind == "metric" and n not in metrics:
                    metrics.append(n)
                elif sym.kind == "score":
                    s = self.score_owner[n]
                    if s not in scores:
                        scores.append(s)
        for s in scores:
            for inp in self.scores[s].inputs:
                if inp in METRICS and inp not in metrics:
                    metrics.append(inp)
        return metrics, scores

