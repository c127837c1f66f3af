"""Tests inside packs, run like ``promtool test rules``.

A test gives a patient context and short series at offsets from a start, and the exact firings
expected (rule, time, optionally severity and resolution). The runner evaluates the pack on that
data and compares, per test, the firings of the checked rules (default: all rules of the pack)
with the expectation — both ways, so an unexpected firing fails as surely as a missing one, and
``expect: []`` asserts silence. A pack's own tests run against the pack as written; a site's
tests run against the pack with that site's overrides. The tests are compiled by
:mod:`engine.ruleset.compile.tests`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl

from ..durations import format_duration
from ..schema import METRICS, TS_DTYPE
from .compile.tests import TEST_PATIENT
from .packs import CompiledPack, TestCase


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
