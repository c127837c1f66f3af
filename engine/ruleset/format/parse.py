"""Load rule packs and site overrides, stage one: YAML → schema (pydantic) → drafts.

Loading is all-or-nothing: every mistake of every file is collected (with ``file:line:col``, the
rule id, what was expected and a suggestion) and raised together as one
:class:`~engine.errors.RuleError`; a pack with any error is never partly loaded. This module
checks shapes (:func:`parse_pack`, :func:`parse_site`); :mod:`engine.ruleset.compile.pack` checks
meanings (names, units, durations, params, scope) and builds the compiled pack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from pydantic import TypeAdapter, ValidationError

from . import schema as M

from .diagnostics import Diagnostics
from .source import Source, schema_diagnostics

__all__ = ["Draft", "parse_pack", "parse_site"]


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
    if "pack" not in src.data and "site" in src.data and "packs" in src.data:
        diags.add(src.label, 1, 1, "this is a site override file (it has 'site:' and 'packs:'), "
                  "not a rule pack.", "Give it with --site, beside the packs it overrides: "
                  f"veille rules validate rules/ --site {src.label}")
        return Draft(None)
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


