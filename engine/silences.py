"""Silences written as data: the ``--silences FILE`` of a run without a store, and the
``silences:`` of a queue test.

A file is a YAML mapping whose ``silences:`` is a list of::

    - id: hosp-p12                       # optional: default silence-<n>
      patients: [P000012]                # every key below is optional, but one is needed
      rules: [hf.weight_gain_2kg_3d]
      packs: [heart_failure]
      severity: [medium, low]
      labels: {device: scale}
      author: MD                         # required
      reason: hospital stay               # required
      starts: 2026-02-10T00:00:00Z       # optional: from the beginning
      ends: 2026-02-17T00:00:00Z         # required: a silence always expires

Every mistake names the file, line and column, and all of them are reported at once.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from .errors import InputError, RuleError
from .hygiene import Silence
from .queue import SEVERITY_TIER
from .ruleset.format.diagnostics import Diagnostics, did_you_mean
from .ruleset.format.source import Source, read_source
from .ruleset.packs import AlertMatcher

KEYS = ("id", "patients", "rules", "packs", "severity", "labels", "author", "reason",
        "starts", "ends")
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


def when(value, src: Source, path: tuple, diags: Diagnostics, what: str):
    """An aware datetime from a YAML value (ISO text or a YAML timestamp), else a diagnostic."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        line, col = src.pos(path)
        diags.add(src.label, line, col, f"'{what}' must be a time with its zone, like "
                  "2026-02-10T08:00:00+01:00 or ...Z.")
        return None
    return value.astimezone(dt.timezone.utc)


def parse_silences(items, src: Source, base: tuple, diags: Diagnostics) -> list[Silence]:
    """The silences of the YAML list ``items`` found at ``base`` in ``src``."""
    out = []
    if not isinstance(items, list):
        line, col = src.pos(base)
        diags.add(src.label, line, col, "silences must be a list of {patients, rules, packs, "
                  "severity, labels, author, reason, starts, ends}.")
        return out
    for i, item in enumerate(items):
        at = base + (i,)
        if not isinstance(item, dict):
            line, col = src.pos(at)
            diags.add(src.label, line, col, "a silence must be a mapping.")
            continue
        before = len(diags)
        for key in item:
            if key not in KEYS:
                line, col = src.key_pos(at + (key,))
                diags.add(src.label, line, col, f"unknown key '{key}' in a silence.",
                          did_you_mean(str(key), KEYS, noun="keys"))
        lists = {}
        for key in ("patients", "rules", "packs", "severity"):
            v = item.get(key)
            if isinstance(v, str):
                v = [v]
            if v is not None and not (isinstance(v, list) and all(isinstance(x, (str, int))
                                                                  for x in v)):
                line, col = src.pos(at + (key,))
                diags.add(src.label, line, col, f"'{key}' must be a list of texts.")
                continue
            lists[key] = None if v is None else frozenset(str(x).strip() for x in v)
        for s in lists.get("severity") or ():
            if s not in SEVERITY_TIER:
                line, col = src.pos(at + ("severity",))
                diags.add(src.label, line, col, f"severity must be high, medium or low; got "
                          f"{s!r}.")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            line, col = src.pos(at + ("labels",))
            diags.add(src.label, line, col, "'labels' must be a mapping like {device: "
                      "oximeter}.")
            labels = {}
        for key in ("author", "reason"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                line, col = src.pos(at)
                diags.add(src.label, line, col, f"a silence needs '{key}' (who silenced, and "
                          "why: the team must know why alerts are hidden).")
        if not (any(lists.get(k) for k in lists) or labels):
            line, col = src.pos(at)
            diags.add(src.label, line, col, "a silence must match something: give patients, "
                      "rules, packs, severity or labels.")
        starts = (when(item["starts"], src, at + ("starts",), diags, "starts")
                  if "starts" in item else _EPOCH)
        if "ends" not in item:
            line, col = src.pos(at)
            diags.add(src.label, line, col, "a silence needs 'ends': a silence always expires.")
            continue
        ends = when(item["ends"], src, at + ("ends",), diags, "ends")
        if starts and ends and ends <= starts:
            line, col = src.pos(at + ("ends",))
            diags.add(src.label, line, col, "'ends' must be after 'starts'.")
        if len(diags) > before:
            continue
        out.append(Silence(str(item.get("id", f"silence-{i + 1}")), AlertMatcher(
            rules=lists.get("rules"), packs=lists.get("packs"),
            severity=lists.get("severity"),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items()))),
            starts, ends, item["author"].strip(), item["reason"].strip(),
            patients=lists.get("patients")))
    return out


def load_silences(path: str | Path) -> list[Silence]:
    """Read a silences file; an InputError lists every mistake with ``file:line:col``."""
    diags = Diagnostics()
    src = read_source(Path(path), diags)
    out = []
    if src is not None:
        for key in src.data:
            if key != "silences":
                line, col = src.key_pos((key,))
                diags.add(src.label, line, col, f"unknown key '{key}': a silences file has "
                          "'silences:' only.")
        out = parse_silences(src.data.get("silences"), src, ("silences",), diags)
    try:
        diags.raise_if_any("the silences file")
    except RuleError as exc:
        raise InputError(str(exc)) from None
    return out
