"""The tests inside packs, compiled: series notation, expectations and the test patient.

Series notation (rules/README.md, "Tests"): ``[[0d, 80.0], [1d, 80.8], [2d, _]]`` (``_`` or
null: no reading), or ``{every: 1h, values: "95 94 _ 90x3 88+1x2", start: 0m}`` where ``axn`` is
``a`` repeated n+1 times, ``a+bxn`` is ``a, a+b, ..., a+n·b`` (n+1 values), ``_xn`` is n missing
readings. Every mistake is reported with ``file:line:col``; running the compiled tests is
:mod:`engine.ruleset.unittest`'s job.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from ...durations import format_duration, is_duration, parse_duration
from ...schema import METRICS, PROGRAMMES
from ..format import schema as M
from ..format.diagnostics import Diagnostics, did_you_mean, shown
from ..format.source import Source, dotted
from ..packs import TestCase

DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)   # a Monday, 00:00 UTC
TEST_PATIENT = "test-patient"
_NUM = r"-?\d+(?:\.\d+)?"
_TOKEN = re.compile(rf"^(?:(_)(?:x(\d+))?|({_NUM})(?:([+-])(\d+(?:\.\d+)?))?(?:x(\d+))?)$")


def _offset(value, src: Source, path, diags, what="offset", *, signed=False) -> int | None:
    if isinstance(value, str) and is_duration(value):
        return parse_duration(value)
    if signed and isinstance(value, str) and value.startswith("-") and is_duration(value[1:]):
        return -parse_duration(value[1:])
    if value == 0 and not isinstance(value, bool):
        return 0
    line, col = src.pos(path)
    diags.add(src.label, line, col, f"'{dotted(path)}' must be an {what} like '0m', '36h' or "
              f"'3d'. Got {shown(value)} instead.")
    return None


def expand_compact(values: str) -> tuple[list[float | None], list[tuple[int, str]]]:
    """Expand a compact series; returns the values (None: missing) and (offset, bad token)."""
    out: list[float | None] = []
    bad = []
    for m in re.finditer(r"\S+", values):
        tok = m.group()
        t = _TOKEN.match(tok)
        if not t:
            bad.append((m.start(), tok))
            continue
        if t.group(1):
            out.extend([None] * (int(t.group(2)) if t.group(2) else 1))
            continue
        a = float(t.group(3))
        step = float(t.group(5)) * (1 if t.group(4) == "+" else -1) if t.group(4) else 0.0
        n = int(t.group(6)) if t.group(6) else None
        if n is None:
            if t.group(4):
                bad.append((m.start(), tok))
                continue
            out.append(a)
        else:
            out.extend(a + k * step for k in range(n + 1))
    return out, bad


def _series(metric, spec, src: Source, path, diags) -> list[tuple[int, float]] | None:
    before = len(diags)
    points: list[tuple[int, float]] = []
    if isinstance(spec, M.CompactSeries):
        every = _offset(spec.every, src, path + ("every",), diags, "interval")
        start = _offset(spec.start, src, path + ("start",), diags)
        vals, bad = expand_compact(spec.values)
        for off, tok in bad:
            line, col = src.text_pos(path + ("values",), off)
            diags.add(src.label, line, col, f"'{tok}' is not a value of a compact series.",
                      "Write numbers, '_' for a missing reading, 'axn' (a repeated n+1 times), "
                      "'a+bxn' or 'a-bxn' (n+1 values stepping by b), '_xn' (n missing).")
        if every == 0:
            line, col = src.pos(path + ("every",))
            diags.add(src.label, line, col, f"'{dotted(path + ('every',))}' must be longer "
                      "than 0.")
        if len(diags) > before:
            return None
        points = [(start + k * every, v) for k, v in enumerate(vals) if v is not None]
    else:
        for j, item in enumerate(spec):
            ipath = path + (j,)
            if not (isinstance(item, list) and len(item) == 2):
                line, col = src.pos(ipath)
                diags.add(src.label, line, col, f"each reading of '{metric}' must be "
                          f"[offset, value] like [1d, 80.5]. Got {shown(item)} instead.")
                continue
            off = _offset(item[0], src, ipath + (0,), diags)
            v = item[1]
            if v is None or v == "_":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                line, col = src.pos(ipath + (1,))
                diags.add(src.label, line, col, f"the value of a reading of '{metric}' must be a"
                          f" number, or _ for a missing reading. Got {shown(v)} instead.")
                continue
            if off is not None:
                points.append((off, float(v)))
    if len(diags) > before:
        return None
    offsets = [o for o, _ in points]
    if len(set(offsets)) != len(offsets):
        dup = next(o for o in offsets if offsets.count(o) > 1)
        line, col = src.pos(path)
        diags.add(src.label, line, col, f"series '{metric}' has two readings at "
                  f"{format_duration(dup)}.", "One reading per metric and time.")
        return None
    return sorted(points)


def expected_value(raw, src: Source, path, diags, what: str):
    """An expected value as ``(value, unit label or None)``: a number, a quantity written like
    '2.5 kg' or '92 %', true/false, a text, or None (unknown)."""
    from ...units import lookup
    from ..lang.parser import Num, parse_problems

    if raw is None or isinstance(raw, bool):
        return raw, None
    if isinstance(raw, (int, float)):
        return float(raw), None
    node, problems = parse_problems(raw)
    if isinstance(node, Num) and not problems:
        if node.unit is not None and lookup(node.unit) is None:
            line, col = src.pos(path)
            diags.add(src.label, line, col, f"{what}: unknown unit in {shown(raw)}.")
            return None
        return float(node.value), node.unit
    return raw, None                      # a text value (news2_risk: "medium")


def compile_tests(pack: str, rule_ids: list[str], cohorts: tuple[str, ...] | None,
                  src: Source, tests: list[M.Test], site: str | None,
                  diags: Diagnostics, *, broken_rules=frozenset(),
                  index: list[int] | None = None, compiled=None) -> list[TestCase]:
    """Check and compile the tests of a pack (or of a site's overrides of it).

    ``rule_ids`` are the pack's rules; ``cohorts`` its scope (the default test programme);
    a rule id in ``broken_rules`` (a rule with an error, already reported) is not unknown.
    ``compiled`` (the compiled pack, when it compiled) lets the names of ``values`` and of
    expected evidence be checked.
    """
    base = ("tests",) if site is None else ("packs", pack, "tests")
    known = list(rule_ids) + sorted(set(broken_rules) - set(rule_ids))
    out = []
    names_seen: set[str] = set()
    for k, t in enumerate(tests):
        path = base + (index[k] if index is not None else k,)
        before = len(diags)

        def err(p, message, hint=""):
            line, col = src.pos(p)
            diags.add(src.label, line, col, f"test '{t.name}': {message}", hint)

        if t.name in names_seen:
            err(path + ("name",), "another test of this pack has the same name.",
                "Give each test a unique name.")
        names_seen.add(t.name)
        patient: dict = {}
        if t.patient is not None:
            patient = {k: v for k, v in t.patient.model_dump().items() if v is not None}
            for key in ("enrolled_at", "surgery_at"):
                if key in patient:
                    off = _offset(patient[key], src, path + ("patient", key), diags,
                                  signed=True)
                    patient[key] = off
        if t.cohort is not None:
            if "programme" in patient:
                err(path + ("cohort",), "give either 'cohort' or 'patient.programme', not both.")
            patient["programme"] = t.cohort
        prog = patient.get("programme")
        if prog is not None and prog not in PROGRAMMES:
            err(path + (("cohort",) if t.cohort else ("patient", "programme")),
                f"unknown programme '{prog}'.", did_you_mean(prog, PROGRAMMES,
                                                             noun="programmes"))
        if prog is None:
            patient["programme"] = cohorts[0] if cohorts else PROGRAMMES[0]
        start = DEFAULT_START
        if isinstance(t.start, datetime):
            start = t.start if t.start.tzinfo else t.start.replace(tzinfo=timezone.utc)
        elif isinstance(t.start, str):
            try:
                start = datetime.fromisoformat(t.start.replace("Z", "+00:00"))
                start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
            except ValueError:
                err(path + ("start",), f"'start' must be a time like 2026-01-05T08:00:00Z. "
                    f"Got {shown(t.start)} instead.")
        until = _offset(t.until, src, path + ("until",), diags) if t.until is not None else None
        series = {}
        for metric, spec in t.series.items():
            if metric not in METRICS:
                line, col = src.key_pos(path + ("series", metric))
                diags.add(src.label, line, col, f"test '{t.name}': unknown metric '{metric}' in "
                          "series.", did_you_mean(metric, METRICS, noun="metrics"))
                continue
            pts = _series(metric, spec, src, path + ("series", metric), diags)
            if pts is not None:
                series[metric] = pts
        expect, details = [], {}
        rules_of = {r.id: r for r in compiled.rules} if compiled is not None else {}
        for j, e in enumerate(t.expect):
            epath = path + ("expect", j)
            if e.rule not in known:
                err(epath + ("rule",), f"expects unknown rule '{e.rule}'.",
                    did_you_mean(e.rule, rule_ids, noun="rules"))
            at = _offset(e.at, src, epath + ("at",), diags)
            resolved = None
            if e.resolved == "open":
                resolved = "open"
            elif e.resolved is not None:
                resolved = _offset(e.resolved, src, epath + ("resolved",), diags,
                                   "offset (or 'open')")
            expect.append((e.rule, at, e.severity, resolved))
            more = {}
            if e.reason is not None:
                more["reason"] = e.reason
            if e.labels is not None:
                more["labels"] = dict(e.labels)
            if e.evidence is not None:
                ev = {}
                rule = rules_of.get(e.rule)
                for name, raw in e.evidence.items():
                    if rule is not None and name not in rule.evidence_names:
                        line, col = src.key_pos(epath + ("evidence", name))
                        diags.add(src.label, line, col, f"test '{t.name}': the evidence of "
                                  f"'{e.rule}' has no '{name}'.", "Its evidence: "
                                  + ", ".join(rule.evidence_names) + ".")
                        continue
                    ev[name] = expected_value(raw, src, epath + ("evidence", name), diags,
                                              f"test '{t.name}'")
                more["evidence"] = ev
            if more:
                details[j] = more
        pending = None
        if t.pending is not None:
            pending = []
            for j, pe in enumerate(t.pending):
                ppath = path + ("pending", j)
                if pe.rule not in known:
                    err(ppath + ("rule",), f"expects unknown rule '{pe.rule}' pending.",
                        did_you_mean(pe.rule, rule_ids, noun="rules"))
                pending.append((pe.rule, _offset(pe.since, src, ppath + ("since",), diags)))
        values = []
        for j, v in enumerate(t.values):
            vpath = path + ("values", j)
            if compiled is not None and v.name not in compiled.symbols:
                err(vpath + ("name",), f"unknown name '{v.name}' in values.",
                    did_you_mean(v.name, compiled.symbols, noun="names"))
            at = _offset(v.at, src, vpath + ("at",), diags)
            value = expected_value(v.value, src, vpath + ("value",), diags, f"test '{t.name}'")
            line, col = src.pos(vpath)
            if value is not None or v.value is None:
                values.append((at, v.name, *(value or (None, None)),
                               f"{src.label}:{line}:{col}"))
        checked = set(t.rules) if t.rules is not None else set(rule_ids)
        for key in ("absent", "rules"):
            for j, rid in enumerate(getattr(t, key) or ()):
                if rid not in known:
                    err(path + (key, j), f"names unknown rule '{rid}' in '{key}'.",
                        did_you_mean(rid, rule_ids, noun="rules"))
        checked |= set(t.absent) | {e[0] for e in expect} | {p[0] for p in pending or ()}
        for rid, *_ in expect:
            if rid in t.absent:
                err(path + ("absent",), f"rule '{rid}' is both expected and absent.")
        if len(diags) > before:
            continue
        line, col = src.pos(path)
        out.append(TestCase(name=t.name, pack=pack, site=site,
                            origin=f"{src.label}:{line}:{col}", patient=patient, start=start,
                            until_us=until, series=series, expect=tuple(expect),
                            checked=frozenset(checked), details=details,
                            pending=tuple(pending) if pending is not None else None,
                            values=tuple(values), lang=t.lang))
    return out
