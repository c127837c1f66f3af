"""Tests inside packs, run like ``promtool test rules``.

A test gives a patient context and short series at offsets from a start, and the exact firings
expected (rule, time, optionally severity and resolution). The runner evaluates the pack on that
data and compares, per test, the firings of the checked rules (default: all rules of the pack)
with the expectation — both ways, so an unexpected firing fails as surely as a missing one, and
``expect: []`` asserts silence. A pack's own tests run against the pack as written; a site's
tests run against the pack with that site's overrides.

Series notation (rules/README.md, "Tests"): ``[[0d, 80.0], [1d, 80.8], [2d, _]]`` (``_`` or
null: no reading), or ``{every: 1h, values: "95 94 _ 90x3 88+1x2", start: 0m}`` where ``axn`` is
``a`` repeated n+1 times, ``a+bxn`` is ``a, a+b, ..., a+n·b`` (n+1 values), ``_xn`` is n missing
readings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl

from ..durations import format_duration, is_duration, parse_duration
from ..schema import METRICS, PROGRAMMES, TS_DTYPE
from .format import schema as M
from .packs import CompiledPack, TestCase
from .format.diagnostics import Diagnostics, did_you_mean
from .format.source import Source, dotted

DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)   # a Monday, 00:00 UTC
TEST_PATIENT = "test-patient"
_NUM = r"-?\d+(?:\.\d+)?"
_TOKEN = re.compile(rf"^(?:(_)(?:x(\d+))?|({_NUM})(?:([+-])(\d+(?:\.\d+)?))?(?:x(\d+))?)$")


def _offset(value, src: Source, path, diags, what="offset") -> int | None:
    if isinstance(value, str) and is_duration(value):
        return parse_duration(value)
    if value == 0 and not isinstance(value, bool):
        return 0
    line, col = src.pos(path)
    diags.add(src.label, line, col, f"'{dotted(path)}' must be an {what} like '0m', '36h' or "
              f"'3d'. Got {value!r} instead.")
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
                          f"[offset, value] like [1d, 80.5]. Got {item!r} instead.")
                continue
            off = _offset(item[0], src, ipath + (0,), diags)
            v = item[1]
            if v is None or v == "_":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                line, col = src.pos(ipath + (1,))
                diags.add(src.label, line, col, f"the value of a reading of '{metric}' must be a"
                          f" number, or _ for a missing reading. Got {v!r} instead.")
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


def compile_tests(pack: str, rule_ids: list[str], cohorts: tuple[str, ...] | None,
                  src: Source, tests: list[M.Test], site: str | None,
                  diags: Diagnostics, *, broken_rules=frozenset(),
                  index: list[int] | None = None) -> list[TestCase]:
    """Check and compile the tests of a pack (or of a site's overrides of it).

    ``rule_ids`` are the pack's rules; ``cohorts`` its scope (the default test programme);
    a rule id in ``broken_rules`` (a rule with an error, already reported) is not unknown.
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
                    f"Got {t.start!r} instead.")
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
        expect = []
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
        checked = set(t.rules) if t.rules is not None else set(rule_ids)
        for key in ("absent", "rules"):
            for j, rid in enumerate(getattr(t, key) or ()):
                if rid not in known:
                    err(path + (key, j), f"names unknown rule '{rid}' in '{key}'.",
                        did_you_mean(rid, rule_ids, noun="rules"))
        checked |= set(t.absent) | {e[0] for e in expect}
        for rid, *_ in expect:
            if rid in t.absent:
                err(path + ("absent",), f"rule '{rid}' is both expected and absent.")
        if len(diags) > before:
            continue
        line, col = src.pos(path)
        out.append(TestCase(name=t.name, pack=pack, site=site,
                            origin=f"{src.label}:{line}:{col}", patient=patient, start=start,
                            until_us=until, series=series, expect=tuple(expect),
                            checked=frozenset(checked)))
    return out


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
@dataclass
class TestResult:
    """The outcome of one test: ``missing`` expected firings that did not happen, ``unexpected``
    firings that were not expected, ``wrong`` (expected, actual) pairs that matched on rule and
    time but differ in severity or resolution."""

    case: TestCase
    expected: list = field(default_factory=list)
    actual: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    wrong: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong)


def _fmt(f) -> str:
    rule, at, sev, res = f
    text = f"{rule} at {format_duration(at)}"
    if sev:
        text += f" severity {sev}"
    if res == "open":
        text += " (still open)"
    elif res is not None:
        text += f" (resolved at {format_duration(res)})"
    return text


@dataclass
class TestReport:
    results: list[TestResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]

    def render(self, *, verbose: bool = False) -> str:
        """A promtool-like report: one line per test, a diff under each failure."""
        lines = []
        for r in self.results:
            c = r.case
            who = f"{c.pack}" + (f" (site {c.site})" if c.site else "")
            if r.passed:
                if verbose:
                    lines.append(f"  PASS  {who}: {c.name}")
                continue
            lines.append(f"  FAIL  {who}: {c.name}  [{c.origin}]")
            lines.append("        expected: " + ("(no firing)" if not r.expected else ""))
            lines.extend(f"          {_fmt(f)}" for f in r.expected)
            lines.append("        actual:   " + ("(no firing)" if not r.actual else ""))
            lines.extend(f"          {_fmt(f)}" for f in r.actual)
            lines.append("        diff:")
            lines.extend(f"          - {_fmt(f)}   (expected, did not fire)" for f in r.missing)
            lines.extend(f"          + {_fmt(f)}   (fired, not expected)" for f in r.unexpected)
            for e, a in r.wrong:
                lines.append(f"          - {_fmt(e)}")
                lines.append(f"          + {_fmt(a)}   (fired, but differs)")
        n, bad = len(self.results), len(self.failures)
        lines.append(f"{n - bad} passed, {bad} failed ({n} tests)")
        return "\n".join(lines)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(t: datetime) -> int:
    """Exact µs since the epoch (``timestamp()`` is a float and can be 1 µs off)."""
    return (t - _EPOCH) // timedelta(microseconds=1)


def _frames(case: TestCase):
    start = case.start
    data = {"patient_id": [], "metric": [], "ts": [], "value": [], "unit": []}
    for m, pts in sorted(case.series.items()):
        for off, v in pts:
            data["patient_id"].append(TEST_PATIENT)
            data["metric"].append(m)
            data["ts"].append(_us(start) + off)
            data["value"].append(v)
            data["unit"].append(METRICS[m].unit)
    tel = pl.DataFrame(data, schema={"patient_id": pl.String, "metric": pl.String,
                                     "ts": pl.Int64, "value": pl.Float64, "unit": pl.String})
    tel = tel.with_columns(pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC")
                           .cast(TS_DTYPE)).sort("patient_id", "metric", "ts")
    pat = {"patient_id": [TEST_PATIENT], **{k: [v] for k, v in case.patient.items()}}
    if "enrolled_at" not in pat:
        pat["enrolled_at"] = [start]
    return tel, pl.DataFrame(pat)


def run_test(pack: CompiledPack, case: TestCase) -> TestResult:
    """Evaluate ``pack`` on the test's data and compare firings with the expectation."""
    tel, pats = _frames(case)
    until = case.start + timedelta(microseconds=case.until_us) if case.until_us is not None \
        else None
    from ..pipeline import evaluate_packs

    eps = evaluate_packs([pack], tel, pats, until=until)
    start_us = _us(case.start)
    actual = []
    for row in eps.filter(pl.col("rule_id").is_in(sorted(case.checked))).iter_rows(named=True):
        opened = _us(row["opened_at"]) - start_us
        res = row["resolved_at"]
        res = "open" if res is None else _us(res) - start_us
        actual.append((row["rule_id"], opened, row["severity"], res))
    result = TestResult(case, expected=list(case.expect), actual=list(actual))
    pool = list(actual)
    for e in case.expect:
        match = next((a for a in pool if a[0] == e[0] and a[1] == e[1]), None)
        if match is None:
            result.missing.append(e)
            continue
        pool.remove(match)
        if (e[2] is not None and e[2] != match[2]) or (e[3] is not None and e[3] != match[3]):
            result.wrong.append((e, match))
    result.unexpected = pool
    return result


def run_tests(rs, *, pack: str | None = None) -> TestReport:
    """Run every test of every pack of a RuleSet (one pack with ``pack``)."""
    results = []
    for p in rs.packs:
        if pack is not None and p.name != pack:
            continue
        for case in p.tests:
            target = p.base if (case.site is None and p.base is not None) else p
            results.append(run_test(target, case))
    return TestReport(results)
