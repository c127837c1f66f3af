"""Load rule packs and site overrides: YAML → schema → meanings → compiled packs.

Loading is all-or-nothing: every mistake of every file is collected (with ``file:line:col``, the
rule id, what was expected and a suggestion) and raised together as one
:class:`~engine.errors.RuleError`; a pack with any error is never partly loaded.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from pydantic import TypeAdapter, ValidationError

from .. import detectors as _detectors
from ..align import default_staleness
from ..durations import format_duration, is_duration, parse_duration
from ..errors import SpecError
from ..schema import METRICS, PROGRAMMES
from . import model as M
from .check import BOOL, ERROR, NUMBER, T_ERROR, Symbol, check_expression
from .compile import compile_expr
from .compiled import CompiledPack, CompiledRule, DetectorUse, EffectiveParam
from .diagnostics import Diagnostics, did_you_mean
from .evidence import parse_template
from .expr import names, parse_problems
from .params import ParamText, check_bounds, resolve_params
from .source import Source, dotted, schema_diagnostics
from .symbols import base_symbols, detector_type
from .units import UNITS, metric_unit

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SILENCE_FN = "silence_at"


def in_field(message: str, field: str) -> str:
    """'unknown name 'x'.' -> 'unknown name 'x' in `when`.' (the clause before any ';')."""
    head, sep, tail = message.partition(";")
    if sep:
        return f"{head} in `{field}`;{tail}"
    return f"{message.rstrip('.')} in `{field}`."


def _rule_id_of(src: Source):
    def rule_id(path) -> str | None:
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            rules = src.data.get("rules")
            if isinstance(rules, list) and path[1] < len(rules) and isinstance(rules[path[1]],
                                                                                dict):
                rid = rules[path[1]].get("id")
                return rid if isinstance(rid, str) else None
        if len(path) >= 4 and path[0] == "packs" and path[2] == "rules":
            return path[3] if isinstance(path[3], str) else None
        return None
    return rule_id


def _valid(model, value):
    try:
        return (model.model_validate(value) if isinstance(model, type)
                else model.validate_python(value))
    except ValidationError:
        return None


_PARAM_ADAPTER = TypeAdapter(Union[M.ParamValue, M.ParamDecl])


@dataclass
class Draft:
    """A pack file after the schema: the model (when invalid, its valid parts), the names and
    rule ids of its invalid parts, and where each kept rule and test was in the file."""

    model: M.Pack | None
    broken_names: set = field(default_factory=set)
    broken_rules: set = field(default_factory=set)
    rule_index: list | None = None
    test_index: list | None = None


def _salvage(data: dict) -> Draft:
    """The valid parts of a pack that failed the schema, so that the meaning of the rest is
    checked too (all errors of a file at once), and the names of the invalid parts, so that no
    error is reported twice (a broken detector is not also an 'unknown name' in a rule)."""
    name = data.get("pack")
    if not (isinstance(name, str) and M.re_name(name)):
        return Draft(None)
    broken_names: set[str] = set()
    dets, params, rules, tests = {}, {}, [], []
    for key, value in (data.get("detectors") or {}).items() if isinstance(
            data.get("detectors"), dict) else ():
        (dets.__setitem__(key, value) if isinstance(value, dict) else broken_names.add(key))
    for key, value in (data.get("params") or {}).items() if isinstance(
            data.get("params"), dict) else ():
        v = _valid(_PARAM_ADAPTER, value)
        (params.__setitem__(key, v) if v is not None else broken_names.add(key))
    broken_rules: set[str] = set()
    rule_index, test_index = [], []
    for i, item in enumerate(data["rules"] if isinstance(data.get("rules"), list) else []):
        r = _valid(M.Rule, item)
        if r is not None:
            rules.append(r)
            rule_index.append(i)
        elif isinstance(item, dict) and isinstance(item.get("id"), str):
            broken_rules.add(item["id"])
    for i, item in enumerate(data["tests"] if isinstance(data.get("tests"), list) else []):
        t = _valid(M.Test, item)
        if t is not None:
            tests.append(t)
            test_index.append(i)
    every = data.get("evaluate_every")
    scope = _valid(M.Scope, data.get("scope")) or M.Scope.model_construct(
        cohort="any", min_age=None, max_age=None)
    version = data.get("version")
    pack = M.Pack.model_construct(
        pack=name, version=version if isinstance(version, str) else "", title="",
        description="", scope=scope, evaluate_every=every if isinstance(every, str) else None,
        defaults=_valid(M.Defaults, data.get("defaults") or {}) or M.Defaults(),
        detectors=dets, params=params, rules=rules, tests=tests)
    return Draft(pack, broken_names, broken_rules, rule_index, test_index)


def parse_pack(src: Source, diags: Diagnostics) -> Draft:
    """Validate a pack file against the schema (every error reported).

    Returns the pack (when invalid: its valid parts, to check their meaning too), and the names
    and rule ids of its invalid parts.
    """
    try:
        return Draft(M.Pack.model_validate(src.data))
    except ValidationError as err:
        schema_diagnostics(err, src, M.Pack, diags, rule_id_of=_rule_id_of(src))
        return _salvage(src.data)


def parse_site(src: Source, diags: Diagnostics) -> M.Site | None:
    try:
        return M.Site.model_validate(src.data)
    except ValidationError as err:
        schema_diagnostics(err, src, M.Site, diags, rule_id_of=_rule_id_of(src))
        return None


class PackCompiler:
    """Turns one validated pack (and the site overrides of it) into a :class:`CompiledPack`."""

    def __init__(self, src: Source, pack: M.Pack, scores: dict, diags: Diagnostics,
                 overrides: Sequence[tuple[Source, M.Site]] = (), *,
                 broken: set[str] = frozenset(), failed: bool = False,
                 rule_index: list[int] | None = None):
        self.src, self.pack, self.diags = src, pack, diags
        # names declared but invalid: uses of them are not reported again
        self.broken = set(broken)
        self.failed = failed
        self.rule_index = rule_index
        self.scores = scores
        self.overrides = list(overrides)
        self.base, self.score_owner = base_symbols(scores)
        self.errors_before = len(diags)

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
            us = parse_duration(value)
        elif isinstance(value, str) and _IDENT.match(value.strip()):
            p = self.params.get(value.strip())
            if p is None:
                self.err(path, f"'{dotted(path)}' names an unknown param '{value}'.",
                         "Write a duration like '30m', '6h', '3d' or '2w', or name a duration "
                         "param. " + did_you_mean(value, self.params, noun="params"),
                         rule_id=rule_id, src=src)
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
                     f" or the name of a duration param. Got {value!r} instead.",
                     "Durations are a number and a unit (s, m, h, d, w) with no space; "
                     "combine them like '1h30m'.", rule_id=rule_id, src=src)
            return None
        if us < 0 or (positive and us == 0):
            need = "longer than 0" if positive else "zero or more"
            self.err(path, f"'{dotted(path)}' must be {need}. Got {value!r} instead.",
                     rule_id=rule_id, src=src)
            return None
        return us

    # -- the pack ------------------------------------------------------------------------------
    def compile(self) -> CompiledPack | None:
        p = self.pack
        cohorts = self.scope()
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
        }
        dets = self.compile_detectors()
        self.broken |= (set(p.params) - set(self.params)) | (set(p.detectors) - set(dets))
        symbols = dict(self.base)
        for name in self.broken:
            symbols.setdefault(name, Symbol(name, "broken", T_ERROR))
        for name, prm in self.params.items():
            symbols[name] = Symbol(name, "param", prm.type, None, prm.value, prm.doc)
        for name, det in dets.items():
            symbols[name] = Symbol(name, "detector", det.type, det.column,
                                   doc=f"{det.spec.get('fn')} of {det.spec.get('metric', 'any')}")
        self.symbols = symbols
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
        return CompiledPack(
            name=p.pack, version=p.version, path=self.src.label, title=p.title,
            description=p.description, cohorts=cohorts, min_age=p.scope.min_age,
            max_age=p.scope.max_age, evaluate_every_us=every, params=self.params,
            detectors=dets, symbols=symbols, rules=rules,
            sites=tuple(site.site for _, site in self.overrides),
            metrics=tuple(used_metrics), scores={s: self.scores[s] for s in used_scores},
            staleness_us=staleness)

    def scope(self) -> tuple[str, ...] | None:
        s = self.pack.scope
        cohorts = [s.cohort] if isinstance(s.cohort, str) else list(s.cohort)
        path = ("scope", "cohort")
        if cohorts == ["any"]:
            out = None
        else:
            out = []
            for i, c in enumerate(cohorts):
                if c not in PROGRAMMES:
                    where = path if isinstance(s.cohort, str) else path + (i,)
                    hint = ("'any' stands alone, not in a list." if c == "any" else
                            did_you_mean(c, PROGRAMMES, noun="programmes"))
                    self.err(where, f"unknown cohort '{c}'.", hint)
                out.append(c)
            out = tuple(out)
            if not out:
                self.err(path, "the cohort list is empty.", "Name a programme, or 'any'.")
        for key in ("min_age", "max_age"):
            v = getattr(s, key)
            if v is not None and not 0 <= v <= 130:
                self.err(("scope", key), f"'scope.{key}' must be between 0 and 130. Got {v}.")
        if s.min_age is not None and s.max_age is not None and s.min_age > s.max_age:
            self.err(("scope", "max_age"), f"scope.max_age ({s.max_age}) is below scope.min_age "
                     f"({s.min_age}): no patient could match.")
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
        pack_values, ok = resolve_params(dict(texts), others, self.diags)
        bounds = {}
        for name, bt in bounds_texts.items():
            if not bt or name not in pack_values:
                continue
            resolved, _ = resolve_params(bt, others, self.diags,
                                         expected={k: pack_values[name].type for k in bt})
            bounds[name] = (resolved.get(f"min of {name}"), resolved.get(f"max of {name}"))
        check_bounds(pack_values, bounds, texts, self.diags)
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
            return pack_values
        eff, _ = resolve_params(effective_texts, others, self.diags,
                                expected={n: pv.type for n, pv in pack_values.items()})
        check_bounds(eff, bounds, effective_texts, self.diags)
        return eff

    # -- detectors -----------------------------------------------------------------------------
    def compile_detectors(self) -> dict[str, DetectorUse]:
        out = {}
        for name, spec in self.pack.detectors.items():
            path = ("detectors", name)
            if not M.re_name(name):
                self.err(path, f"detector name '{name}' must be a lower-case identifier like "
                         "'weight_gain_3d'.", key=True)
                continue
            if name in self.base:
                self.err(path, f"detector '{name}' has the name of a {self.base[name].kind}.",
                         "Choose another name: a detector must not hide it.", key=True)
                continue
            if name in self.params:
                self.err(path, f"detector '{name}' has the name of a param.", key=True)
                continue
            use = (self.silence_detector(name, spec, path) if spec.get("fn") == SILENCE_FN
                   else self.registered_detector(name, spec, path))
            if use is not None:
                out[name] = use
        return out

    def staleness_of(self, name, spec, path, metric) -> int:
        if "staleness" in spec:
            return self.duration(spec["staleness"], path + ("staleness",), positive=True) or 0
        return self.default_staleness or default_staleness(metric)

    def registered_detector(self, name, spec, path) -> DetectorUse | None:
        fn = spec.get("fn")
        det = _detectors.REGISTRY.get(fn) if isinstance(fn, str) else None
        spec = dict(spec)
        if det is not None:
            # a param name in place of a value: substitute its effective value
            kinds = {q.name: q.kind for q in det.params}
            for key, value in list(spec.items()):
                if isinstance(value, str) and value in self.pack.params \
                        and value not in self.params:
                    return None             # an invalid param, already reported
                if key in kinds and isinstance(value, str) and value in self.params:
                    spec[key] = self.param_for_spec(value, kinds[key], path + (key,),
                                                    spec.get("metric"))
        staleness = None
        if "staleness" in spec:
            staleness = self.duration(spec["staleness"], path + ("staleness",), positive=True)
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
            self.err(where, str(err).replace("Valid fns are:", f"Valid fns are: {SILENCE_FN},"),
                     hint)
            return None
        if any(v is None for v in spec.values()):
            return None
        metric = resolved.metric
        if staleness is None:
            staleness = self.default_staleness or default_staleness(metric)
        return DetectorUse(name=name, column=f"{self.pack.pack}.{name}", kind="detector",
                           metrics=(metric,), spec=spec, staleness_us=staleness,
                           lookback_us=resolved.lookback_us,
                           type=detector_type(resolved.detector.output, metric),
                           origin=self.where(path))

    def param_for_spec(self, pname, kind, path, metric):
        p = self.params[pname]
        if kind == "duration":
            us = self.duration(pname, path)
            return format_duration(us) if us is not None else None
        value = p.value
        if p.type.kind == NUMBER and p.type.unit is not None and metric in METRICS:
            mu = metric_unit(METRICS[metric].unit)
            if mu.compatible(p.type.unit) and not mu.dimensionless:
                value = value * mu.ratio(p.type.unit)
        if kind == "int":
            if float(value) != int(value):
                self.err(path, f"param '{pname}' = {p.display()} must be a whole number here.")
                return None
            return int(value)
        return float(value)

    def silence_detector(self, name, spec, path) -> DetectorUse | None:
        allowed = ("fn", "metric")
        ok = True
        for key in spec:
            if key not in allowed:
                self.err(path + (key,), f"unknown key '{key}' in detector '{name}' "
                         f"(fn {SILENCE_FN}).", f"{SILENCE_FN} takes: metric (a metric, a list "
                         "of metrics, or 'any'); it is evaluated at each timeline time, so it "
                         "has no staleness.", key=True)
                ok = False
        metric = spec.get("metric", "any")
        metrics = [metric] if isinstance(metric, str) else metric
        if not isinstance(metrics, list) or not metrics:
            self.err(path + ("metric",), f"the metric of detector '{name}' must be a metric, a "
                     f"list of metrics, or 'any'. Got {metric!r} instead.")
            return None
        if metrics == ["any"]:
            metrics = None
        else:
            for m in metrics:
                if m not in METRICS:
                    self.err(path + ("metric",), f"unknown metric {m!r} in detector '{name}'.",
                             did_you_mean(str(m), METRICS, noun="metrics"))
                    ok = False
        if not ok:
            return None
        return DetectorUse(name=name, column=f"{self.pack.pack}.{name}", kind="silence",
                           metrics=tuple(metrics) if metrics else None, spec=dict(spec),
                           staleness_us=None, lookback_us=_detectors.ALL_HISTORY,
                           type=detector_type("minutes", None), origin=self.where(path))

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
        return out

    def expression(self, text, path, rule_id):
        node, problems = parse_problems(text)
        if node is not None:
            checker, problems = check_expression(node, self.symbols, source=text, want=BOOL)
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
        dur = {}
        for key, attr in (("for", "for_"), ("cooldown", "cooldown"),
                          ("resolve_after", "resolve_after")):
            v = getattr(r, attr)
            if v is None:
                dur[key] = 0 if key == "for" else self.defaults[key]
            else:
                dur[key] = self.duration(v, path + (key,), rule_id=r.id)
        reason_names: list[str] = []
        if r.reason is not None:
            parts, problems = parse_template(r.reason)
            for pr in problems:
                line, col = self.src.text_pos(path + ("reason",), pr.offset)
                self.diags.add(self.src.label, line, col, in_field(pr.message, "reason"),
                               pr.hint, rule_id=r.id)
            for literal, name in parts:
                if name is None:
                    continue
                if name not in self.symbols:
                    offset = r.reason.find("{" + name)
                    line, col = self.src.text_pos(path + ("reason",), max(offset, 0))
                    self.diags.add(self.src.label, line, col, f"unknown name '{name}' in "
                                   "`reason`.", did_you_mean(name, self.symbols),
                                   rule_id=r.id)
                elif name not in reason_names:
                    reason_names.append(name)
        if len(self.diags) > before or node is None:
            return None
        when_names = list(dict.fromkeys(n.name for n in names(node)))
        evidence = tuple(dict.fromkeys(when_names + reason_names))
        # params of the expression, of the durations, and of the detectors' specs
        spec_params = [v for d in when_names if d in self.pack.detectors
                       for v in self.pack.detectors[d].values() if isinstance(v, str)]
        used_params = self.params_closure(
            [n for n in evidence if n in self.params]
            + [v for v in (r.for_, r.cooldown, r.resolve_after, *spec_params)
               if v in self.params])
        sev, sev_origin = override.get("severity", (r.severity, self.where(path + ("severity",))))
        enabled, en_origin = override.get("enabled", (r.enabled, self.where(path)))
        return CompiledRule(
            id=r.id, pack=self.pack.pack, title=r.title, severity=sev, when=r.when, node=node,
            expr=compile_expr(node, checker, self.symbols),
            for_us=dur["for"], cooldown_us=dur["cooldown"], resolve_after_us=dur["resolve_after"],
            on_missing=r.on_missing or self.defaults["on_missing"], reason=r.reason,
            rationale=r.rationale, references=tuple(r.references), evidence_names=evidence,
            params={n: self.params[n] for n in used_params},
            detectors=tuple(n for n in when_names if self.symbols[n].kind == "detector"),
            enabled=enabled, origin=self.where(path), severity_origin=sev_origin,
            enabled_origin=en_origin)

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
            for n in r.evidence_names:
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
