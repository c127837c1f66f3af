"""``veille queue test FILE``: queue-level tests written as data, like ``veille rules test``.

A test gives alerts (as the episodes stage would), silences, snoozes and patients, runs
:func:`engine.queue.build_queue` then :func:`engine.hygiene.apply` as of a time, and checks
what the team would see::

    rules: bundled                     # optional: the packs whose inhibit: rules apply, and
                                       # whose rules give an alert's pack, severity and labels:
                                       # `bundled` (shipped with veille), or files or folders
                                       # inside this file's folder (a path leading outside it
                                       # is refused); `--rules PATH` replaces it
    config: {working_hours: "08:00-18:00", working_days: mon-fri, time_zone: Europe/Paris,
             flap: 3/72h}              # optional: veille score's defaults
    tests:
      - name: NEWS2 high hides the COPD SpO2 drop
        as_of: 2026-01-07T10:00:00Z
        patients: [{patient_id: P1, tz: Europe/Paris}]          # optional
        alerts:
          - {id: a, patient: P1, rule: news2.high, opened: 2026-01-07T09:00:00Z}
          - {id: b, patient: P1, rule: copd.spo2_drop, opened: 2026-01-07T08:30:00Z,
             resolved: 2026-01-07T09:30:00Z}                   # or severity/pack/labels
        silences: [...]                # as in a --silences file (engine.silences)
        snoozes: [{alert: b, until: 2026-01-08T08:00:00Z}]
        expect:                        # per alert, the columns given
          - {alert: b, suppressed_by: inhibited:news2.high}
        queue: [a]                     # the open queue, most urgent first (exact)

A failure prints ``file:line: test 'name': …`` with the expected and actual values (a text ending in ``*``
matches any text starting with the rest: ``flapping:*``); the
command exits 1 when a test fails, 2 when a file has an error.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import hygiene as H
from .episodes import EPISODE_COLUMNS
from .errors import InputError, RuleError
from .queue import build_queue
from .ruleset.format.diagnostics import Diagnostics, did_you_mean
from .ruleset.format.source import Source, read_source
from .silences import Silence, parse_silences, when

TEST_KEYS = ("name", "as_of", "patients", "alerts", "silences", "snoozes", "expect", "queue")
ALERT_KEYS = ("id", "patient", "rule", "pack", "severity", "labels", "opened", "resolved")
EXPECT_KEYS = ("alert", "suppressed_by", "status", "flapping", "flap_count", "group_key",
               "group_size",
               "group_rules", "priority", "patient_rank", "shown")


@dataclass
class QueueTestReport:
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def lines(self) -> list[str]:
        return [*self.failures, f"{self.passed} passed, {self.failed} failed "
                                f"({self.passed + self.failed} queue tests)"]


def _config(raw, src: Source, diags: Diagnostics) -> H.HygieneConfig:
    from .commands.score import hygiene_config

    raw = raw or {}
    known = ("working_hours", "working_days", "time_zone", "flap")
    for key in raw:
        if key not in known:
            line, col = src.key_pos(("config", key))
            diags.add(src.label, line, col, f"unknown config key '{key}'.",
                      did_you_mean(str(key), known, noun="keys"))
    try:
        return hygiene_config(str(raw.get("working_hours", "08:00-18:00")),
                              str(raw.get("working_days", "mon-fri")),
                              str(raw.get("time_zone", "Europe/Paris")),
                              str(raw.get("flap", "3/72h")), "none")
    except InputError as exc:
        line, col = src.pos(("config",))
        diags.add(src.label, line, col, str(exc))
        return H.HygieneConfig()


def _unknown_keys(item, keys, src, at, what, diags) -> None:
    for key in item:
        if key not in keys:
            line, col = src.key_pos(at + (key,))
            diags.add(src.label, line, col, f"unknown key '{key}' in {what}.",
                      did_you_mean(str(key), keys, noun="keys"))


def _alerts(items, src, at, diags, rules) -> pl.DataFrame | None:
    rows, before = [], len(diags)
    for i, a in enumerate(items or []):
        here = at + (i,)
        if not isinstance(a, dict):
            line, col = src.pos(here)
            diags.add(src.label, line, col, "an alert must be a mapping.")
            continue
        _unknown_keys(a, ALERT_KEYS, src, here, "an alert", diags)
        rule = rules.get(a.get("rule"))
        pack = a.get("pack", rule.pack if rule else None)
        severity = a.get("severity", rule.severity if rule else None)
        labels = a.get("labels", rule.labels if rule else {})
        if not all(isinstance(a.get(k), str) for k in ("id", "patient", "rule")) or not pack \
                or severity not in ("high", "medium", "low"):
            line, col = src.pos(here)
            diags.add(src.label, line, col, "an alert needs id, patient, rule, and pack and "
                      "severity (high, medium, low) unless its rule is a loaded rule.")
            continue
        opened = when(a.get("opened"), src, here + ("opened",), diags, "opened")
        resolved = (when(a["resolved"], src, here + ("resolved",), diags, "resolved")
                    if a.get("resolved") is not None else None)
        rows.append({"patient_id": a["patient"], "rule_id": a["rule"], "pack": pack,
                     "severity": severity, "title": a["rule"], "opened_at": opened,
                     "condition_since": opened, "last_seen_at": resolved or opened,
                     "resolved_at": resolved, "evidence": "{}", "reason": a["id"],
                     "labels": json.dumps(dict(sorted(labels.items())),
                                          separators=(",", ":"))})
    if len(diags) > before:
        return None
    return pl.DataFrame(rows, schema=EPISODE_COLUMNS)


def _run_one(t: dict, src: Source, at: tuple, diags: Diagnostics, rules, ruleset, config,
             report: QueueTestReport) -> None:
    before = len(diags)
    _unknown_keys(t, TEST_KEYS, src, at, "a test", diags)
    name = t.get("name", f"test {at[-1] + 1}")
    as_of = when(t.get("as_of"), src, at + ("as_of",), diags, "as_of")
    episodes = _alerts(t.get("alerts"), src, at + ("alerts",), diags, rules)
    silences = parse_silences(t.get("silences") or [], src, at + ("silences",), diags)
    patients = None
    if t.get("patients"):
        from .patients import check_patients

        raw = pl.DataFrame([{**p, "programme": p.get("programme", "copd")}
                            for p in t["patients"]])
        try:
            patients = check_patients(raw, name=f"{src.label} test '{name}' patients")
        except InputError as exc:
            line, col = src.pos(at + ("patients",))
            diags.add(src.label, line, col, str(exc))
    if len(diags) > before or episodes is None:
        return
    ids = {r["reason"]: i for i, r in enumerate(episodes.iter_rows(named=True))}
    for j, s in enumerate(t.get("snoozes") or []):
        here = at + ("snoozes", j)
        if not isinstance(s, dict) or s.get("alert") not in ids:
            line, col = src.pos(here)
            diags.add(src.label, line, col, "a snooze is {alert: <an alert id of the test>, "
                      "until: <time>}.")
            continue
        row = episodes.row(ids[s["alert"]], named=True)
        until = when(s.get("until"), src, here + ("until",), diags, "until")
        if until is not None:
            silences.append(Silence(f"snooze:{s['alert']}", _matcher(row["rule_id"]),
                                    dt.datetime.min.replace(tzinfo=dt.timezone.utc), until,
                                    patients=frozenset([row["patient_id"]])))
    if len(diags) > before:
        return
    queue, _ = H.apply(build_queue(episodes), as_of=as_of,
                       inhibitions=ruleset.inhibitions if ruleset else (), silences=silences,
                       patients=patients, config=config,
                       silence_rules=H.silence_rule_ids(ruleset) if ruleset else frozenset())
    got = {r["reason"]: r for r in queue.iter_rows(named=True)}
    problems = []
    for j, e in enumerate(t.get("expect") or []):
        here = at + ("expect", j)
        line, _ = src.pos(here)
        if not isinstance(e, dict) or e.get("alert") not in got:
            problems.append(f"{src.label}:{line}: test '{name}': expect names no alert of the "
                            f"test (known: {', '.join(got)}).")
            continue
        _unknown_keys(e, EXPECT_KEYS, src, here, "an expectation", diags)
        row = got[e["alert"]]
        row["shown"] = row["status"] == "open" and row["suppressed_by"] is None
        for key, want in e.items():
            if key != "alert" and key in EXPECT_KEYS and not _same(row[key], want):
                problems.append(f"{src.label}:{line}: test '{name}': alert '{e['alert']}': "
                                f"{key} expected {want!r}, got {row[key]!r}.")
    if "queue" in t:
        line, _ = src.pos(at + ("queue",))
        shown = [r["reason"] for r in queue.filter(
            (pl.col("status") == "open") & pl.col("suppressed_by").is_null())
            .sort("priority").iter_rows(named=True)]
        if shown != list(t["queue"] or []):
            problems.append(f"{src.label}:{line}: test '{name}': open queue expected "
                            f"{t['queue']}, got {shown}.")
    if problems:
        report.failures.append("FAIL " + "\n     ".join(problems))
    else:
        report.passed += 1


def _same(got, want) -> bool:
    """Equal, or for a text ending in ``*`` (``flapping:*``), starting with the rest."""
    if isinstance(want, str) and want.endswith("*") and isinstance(got, str):
        return got.startswith(want[:-1])
    return got == want


def _matcher(rule_id: str):
    from .ruleset.packs import AlertMatcher

    return AlertMatcher(rules=frozenset([rule_id]))


def _rule_paths(raw, src: Source, path: Path, diags: Diagnostics) -> list[Path]:
    """The packs a test file's ``rules:`` names: files or folders inside the file's own folder
    (relative to it; links followed, and they must stay inside too), or ``bundled`` (the packs
    shipped with veille). A path leading outside the folder is refused, not read."""
    from .paths import bundled
    from .ruleset.ruleset import inside

    out = []
    for i, item in enumerate(raw if isinstance(raw, list) else [raw]):
        line, col = src.pos(("rules", i) if isinstance(raw, list) else ("rules",))
        if not isinstance(item, str) or not item.strip():
            diags.add(src.label, line, col, "'rules' must name a pack file or folder, or list "
                      "them.", "E.g. 'rules: bundled' (the packs shipped with veille).")
        elif item == "bundled":
            out.append(bundled("rules"))
        elif inside(path.parent / item, path.parent) is None:
            diags.add(src.label, line, col, f"rules {item!r} leads outside the folder of the "
                      f"test file ({path.parent}); nothing was read from it.",
                      "Name packs inside that folder, 'bundled' for the packs shipped with "
                      "veille, or give them on the command line (veille queue test FILE "
                      "--rules PATH).")
        else:
            out.append(path.parent / item)
    return out


def run_file(path: Path, report: QueueTestReport, ruleset=None) -> None:
    """Run the tests of one file into ``report``; InputError (every mistake, located) when
    the file itself is wrong. ``ruleset`` (packs given on the command line) replaces the
    file's own ``rules:``."""
    diags = Diagnostics()
    src = read_source(path, diags)
    if src is not None:
        data = src.data if isinstance(src.data, dict) else {}
        _unknown_keys(data, ("rules", "config", "tests"), src, (), "a queue test file", diags)
        if ruleset is None and data.get("rules") is not None:
            from .ruleset import load_rules

            paths = _rule_paths(data["rules"], src, path, diags)
            if diags:       # a refused reference: nothing is run without the packs it names
                _raise(diags)
            ruleset = load_rules(paths)
        rules = {r.id: r for p in (ruleset.packs if ruleset else ()) for r in p.rules}
        config = _config(data.get("config"), src, diags)
        tests = data.get("tests")
        if not isinstance(tests, list) or not tests:
            line, col = src.pos(("tests",))
            diags.add(src.label, line, col, "a queue test file needs 'tests:', a non-empty "
                      "list.")
            tests = []
        for i, t in enumerate(tests):
            if isinstance(t, dict):
                _run_one(t, src, ("tests", i), diags, rules, ruleset, config, report)
    _raise(diags)


def _raise(diags: Diagnostics) -> None:
    try:
        diags.raise_if_any("the queue test file")
    except RuleError as exc:
        raise InputError(str(exc)) from None


def run_files(paths, rules=None) -> QueueTestReport:
    """Run the tests of each file; ``rules`` (pack files or folders) replace the files' own
    ``rules:``."""
    ruleset = None
    if rules:
        from .ruleset import load_rules

        ruleset = load_rules(list(rules))
    report = QueueTestReport()
    for p in paths:
        run_file(Path(p), report, ruleset)
    return report
