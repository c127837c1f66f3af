"""Tests inside packs, run like ``promtool test rules``.

A test gives a patient context and short series at offsets from a start, and the exact firings
expected (rule, time, optionally severity and resolution). The runner evaluates the pack on that
data and compares, per test, the firings of the checked rules (default: all rules of the pack)
with the expectation — both ways, so an unexpected firing fails as surely as a missing one, and
``expect: []`` asserts silence. An expected firing may also give its exact ``reason`` sentence,
``evidence`` values and ``labels``; ``pending:`` lists the rules whose condition holds at the end
without having fired; ``values:`` asserts what a detector, score, metric or named condition is
at a time of the pack's timeline (like promtool's ``promql_expr_test``). A pack's own tests run
against the pack as written; a site's tests run against the pack with that site's overrides.
The tests are compiled by :mod:`engine.ruleset.compile.tests`.
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from ..durations import format_duration
from ..errors import InputError
from ..schema import METRICS, TS_DTYPE
from .compile.tests import TEST_PATIENT
from .evidence import NBSP, format_value
from .i18n import SOURCE_LANG
from .packs import CompiledPack, TestCase


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
@dataclass
class TestResult:
    """The outcome of one test: ``missing`` expected firings that did not happen, ``unexpected``
    firings that were not expected, ``wrong`` (expected, actual) pairs that matched on rule and
    time but differ in severity or resolution, ``problems`` every other difference (a reason,
    an evidence value, a label, a pending rule, a value at a time), one line each.
    ``pending`` is what was pending at the end: (rule, since, waiting for, fires at)."""

    case: TestCase
    expected: list = field(default_factory=list)
    actual: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    wrong: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    pending: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong or self.problems)


def _fmt(f) -> str:
    rule, at, sev, res = f[:4]
    text = f"{rule} at {format_duration(at)}"
    if sev:
        text += f" severity {sev}"
    if res == "open":
        text += " (still open)"
    elif res is not None:
        text += f" (resolved at {format_duration(res)})"
    return text


def _fmt_pending(p) -> str:
    rule, since, waiting, fires = p
    text = f"{rule} since {format_duration(since)}, waiting for its {waiting}"
    if fires is not None:
        text += f" (would fire at {format_duration(fires)})"
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
            who = f"{c.pack}" + (f" (site {c.site})" if c.site else "") + (
                f" [{c.lang}]" if c.lang != SOURCE_LANG else "")
            if r.passed:
                if verbose:
                    lines.append(f"  PASS  {who}: {c.name}")
                continue
            lines.append(f"  FAIL  {who}: {c.name}  [{c.origin}]")
            lines.append("        expected: " + ("(no firing)" if not r.expected else ""))
            lines.extend(f"          {_fmt(f)}" for f in r.expected)
            lines.append("        actual:   " + ("(no firing)" if not r.actual else ""))
            lines.extend(f"          {_fmt(f)}" for f in r.actual)
            if r.pending:
                lines.append("        pending at the end:")
                lines.extend(f"          {_fmt_pending(p)}" for p in r.pending)
            lines.append("        diff:")
            lines.extend(f"          - {_fmt(f)}   (expected, did not fire)" for f in r.missing)
            lines.extend(f"          + {_fmt(f)}   (fired, not expected)" for f in r.unexpected)
            for e, a in r.wrong:
                lines.append(f"          - {_fmt(e)}")
                lines.append(f"          + {_fmt(a)}   (fired, but differs)")
            lines.extend(f"          ! {p}" for p in r.problems)
        n, bad = len(self.results), len(self.failures)
        lines.append(f"{n - bad} passed, {bad} failed ({n} tests)")
        return "\n".join(lines)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(t: datetime) -> int:
    """Exact µs since the epoch (``timestamp()`` is a float and can be 1 µs off)."""
    return (t - _EPOCH) // timedelta(microseconds=1)


def _frames(case: TestCase):
    from ..patients import check_patients

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
    for key in ("enrolled_at", "surgery_at"):     # offsets from the start
        if key in pat:
            pat[key] = [start + timedelta(microseconds=pat[key][0])]
    if "enrolled_at" not in pat:
        pat["enrolled_at"] = [start]
    return tel, check_patients(pl.DataFrame(pat), name=f"test '{case.name}' patient")


def _close(got, want) -> bool:
    if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None:
        return got == want
    if isinstance(want, str) or isinstance(got, str):
        return str(got) == str(want)
    return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)


def _compare(what: str, got, got_unit: str, want: tuple) -> str | None:
    """None when ``got`` (in ``got_unit``) is the expected ``(value, unit)``, else a line."""
    from ..units import UNITS, lookup

    value, unit = want
    shown_want = format_value(value, unit or got_unit) if value is not None else "unknown"
    if unit is not None and not isinstance(value, (bool, str)) and value is not None:
        have = UNITS.get(got_unit) if got_unit else None
        u = lookup(unit)
        if have is None or not have.compatible(u):
            return (f"{what}: expected {shown_want} but it is "
                    f"{'a plain number' if not got_unit else 'in ' + got_unit}")
        value = value * have.ratio(u)
    if isinstance(got, float) and math.isnan(got):
        got = None
    if _close(got, value):
        return None
    return f"{what}: expected {shown_want}, got {format_value(got, got_unit)}"


def _evaluate(pack: CompiledPack, tel: pl.DataFrame, pats: pl.DataFrame, until,
              lang: str = SOURCE_LANG):
    """Run the stages on a test's data, alerts written in ``lang``: (timeline, episodes,
    pending)."""
    from ..detect import DetectorPlan, detect
    from ..episodes import combine, combine_pending, open_episodes
    from ..ingest.index import SeriesIndex
    from ..pipeline import check_care_plan
    from ..timeline import timelines
    from .evaluate import conditions

    check_care_plan(pats, [pack], "the test patient")
    det = detect(tel, DetectorPlan.of([pack]), SeriesIndex.of(tel))
    tl = timelines(det, pats, [pack], until=until)[pack.name]
    waiting: list = []
    found = open_episodes(tl, conditions(tl, pack), pack, pending=waiting, lang=lang)
    return tl, combine([found], pats), combine_pending(waiting, pats)


def run_test(pack: CompiledPack, case: TestCase) -> TestResult:
    """Evaluate ``pack`` on the test's data and compare firings with the expectation."""
    result = TestResult(case, expected=list(case.expect))
    until = case.start + timedelta(microseconds=case.until_us) if case.until_us is not None \
        else None
    try:
        tel, pats = _frames(case)
        tl, eps, pending = _evaluate(pack, tel, pats, until, case.lang)
    except InputError as exc:
        result.problems.append(f"the test cannot run: {exc}")
        return result
    start_us = _us(case.start)
    rows = []
    for row in eps.filter(pl.col("rule_id").is_in(sorted(case.checked))).iter_rows(named=True):
        opened = _us(row["opened_at"]) - start_us
        res = row["resolved_at"]
        res = "open" if res is None else _us(res) - start_us
        rows.append(((row["rule_id"], opened, row["severity"], res), row))
    result.actual = [f for f, _ in rows]
    pool = list(rows)
    for j, e in enumerate(case.expect):
        match = next((a for a in pool if a[0][0] == e[0] and a[0][1] == e[1]), None)
        if match is None:
            result.missing.append(e)
            continue
        pool.remove(match)
        (f, row) = match
        if (e[2] is not None and e[2] != f[2]) or (e[3] is not None and e[3] != f[3]):
            result.wrong.append((e, f))
        _check_details(result, e, case.details.get(j), row)
    result.unexpected = [f for f, _ in pool]
    result.pending = [
        (r["rule_id"], _us(r["condition_since"]) - start_us, r["waiting_for"],
         None if r["fires_at"] is None else _us(r["fires_at"]) - start_us)
        for r in pending.iter_rows(named=True)]
    if case.pending is not None:
        got = {(p[0], p[1]) for p in result.pending if p[0] in case.checked}
        want = set(case.pending)
        for rule, since in sorted(want - got):
            result.problems.append(f"- {rule} pending since {format_duration(since)}   "
                                   "(expected, not pending at the end)")
        for rule, since in sorted(got - want):
            result.problems.append(f"+ {rule} pending since {format_duration(since)}   "
                                   "(pending at the end, not expected)")
    for at, name, value, unit, origin in case.values:
        problem = _value_at(pack, tl, start_us, at, name, (value, unit))
        if problem is not None:
            result.problems.append(f"{name} at {format_duration(at)}: {problem}   [{origin}]")
    return result


def _check_details(result: TestResult, e, details, row) -> None:
    if not details:
        return
    head = _fmt(e)
    if "reason" in details and _spaces(row["reason"]) != _spaces(details["reason"].strip()):
        result.problems.append(f"reason of {head}: expected {details['reason'].strip()!r}, "
                               f"got {row['reason']!r}")
    if "labels" in details:
        got = json.loads(row["labels"])
        if got != details["labels"]:
            result.problems.append(f"labels of {head}: expected {details['labels']}, got {got}")
    evidence = json.loads(row["evidence"])
    for name, want in details.get("evidence", {}).items():
        have = evidence.get(name, {"value": None, "unit": ""})
        line = _compare(f"evidence {name} of {head}", have["value"], have["unit"], want)
        if line is not None:
            result.problems.append(line)


def _spaces(text: str) -> str:
    """``text`` with its non-breaking spaces as plain ones: French reasons put one between a
    number and its unit ('2,5\u00a0kg'), which a test writes as a plain space ('2,5 kg')."""
    return text.replace(NBSP, " ").replace("\u202f", " ")


def _value_at(pack: CompiledPack, tl, start_us: int, at: int, name: str,
              want: tuple) -> str | None:
    """None when ``name`` on the pack's timeline at ``start + at`` is ``want``, else why not."""
    sym = pack.symbols.get(name)
    if sym is None:
        return f"'{name}' is not a name of pack {pack.name}"
    row = np.flatnonzero(tl.ts == start_us + at)
    if row.size == 0:
        if tl.height == 0:
            return "the timeline is empty (no reading of a metric the pack reads)"
        near = sorted({int(t) - start_us for t in tl.ts}, key=lambda t: abs(t - at))[:3]
        return ("the pack is not evaluated at that time; the nearest evaluation times are "
                + ", ".join(format_duration(t) if t >= 0 else "-" + format_duration(-t)
                            for t in sorted(near)))
    unit = sym.type.unit.label if sym.type.kind == "number" and sym.type.unit else ""
    if sym.column is None:
        got = sym.value
    elif sym.column in tl.values.columns:
        got = tl.values.get_column(sym.column)[int(row[0])]
    else:
        return f"'{name}' is not read by any rule of pack {pack.name}, so it is not computed"
    return _compare("value", got, unit, want)


def run_tests(rs, *, pack: str | None = None, name: str | None = None) -> TestReport:
    """Run every test of every pack of a RuleSet (one pack with ``pack``; with ``name``, the
    tests whose name matches it: a glob like '*hypo*', or else a case-insensitive part)."""
    results = []
    for p in rs.packs:
        if pack is not None and p.name != pack:
            continue
        for case in p.tests:
            if name is not None and not _matches(case.name, name):
                continue
            target = p.base if (case.site is None and p.base is not None) else p
            results.append(run_test(target, case))
    return TestReport(results)


def _matches(test_name: str, pattern: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(test_name.lower(), pattern.lower())
    return pattern.lower() in test_name.lower()
