"""Episodes, the fifth stage: conditions on the timeline → episodes per (patient, rule).

This is the one home of a rule's timing: ``for:``, ``confirm_readings``, ``cooldown``,
``resolve_after``, ``on_missing``, and of the patient's follow-up window (no alert after a
discharge). Semantics (rules/README.md, "When a rule fires"), per patient and rule, on the
pack's timeline:

* a *run* is a stretch of consecutive timeline times where the condition holds; the rule fires at
  the first time t of a run with ``t - t0 >= for`` (t0 the run's first time), at least
  ``confirm_readings`` *fresh* times in [t0, t] when that is 2 or more (times of the run at which
  a metric the condition reads has a reading — not a value carried forward), and, when an
  earlier episode opened at t', ``t - t' >= cooldown``; that opens an episode (``opened_at`` = t,
  ``condition_since`` = t0) unless one is open already;
* an open episode's ``last_seen_at`` is the last time the condition held; it resolves at the
  first known-false time t with ``t - f0 >= resolve_after``, f0 the first known-false time since
  the condition last held: unknown times in between are skipped (they neither resolve nor
  restart the count) and a time where it holds starts the count again; a null never resolves;
* ``on_missing`` decides what a null condition does to a run: ``false`` (default) — it does not
  hold, so it ends a run; ``true`` — it holds; ``hold`` — the time is skipped, as if it were not
  on the timeline (the run continues across it but never fires at it).

A patient is only watched between enrolment and discharge (``enrolled_at``, ``discharged_at`` in
the patients table): :func:`within_follow_up` drops an episode opened after discharge (nobody is
watching that patient any more, and the silence of a returned device is expected) and closes at
the discharge an episode still open then.
"""
from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit, prange

from .config import JIT_PARALLEL
from .memory import POOL
from .ruleset.evidence import evidence_column, parse_template, reason_column
from .schema import TS_DTYPE
from .timeline import Timeline, fresh_column

HOLDS, FALSE, UNKNOWN, SKIP = 1, 0, -1, 2
EPISODE_COLUMNS = {
    "patient_id": pl.String, "rule_id": pl.String, "pack": pl.String, "severity": pl.String,
    "title": pl.String, "opened_at": TS_DTYPE, "condition_since": TS_DTYPE,
    "last_seen_at": TS_DTYPE, "resolved_at": TS_DTYPE, "evidence": pl.String,
    "reason": pl.String,
}


def episode_kernel(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm,
                   out=None):
    """Episodes of every series (one patient's timeline for one rule) in one call.

    ``state`` is int8: 1 holds, 0 known false, -1 unknown (ends a run; skipped by the
    resolution count), 2 skip. ``fresh`` is bool: a metric the condition reads has a reading at
    that time; a run fires only once it holds at ``confirm`` fresh times (``confirm <= 1``: no
    count). Returns row indices ``opened, since, last, resolved`` (-1: not resolved), written per
    series from the series' first row, and ``count[k]`` episodes for series ``k``: series ``k``'s
    episodes are slots ``offsets[k] .. offsets[k] + count[k]`` (the other slots are not written).

    ``out``, when given, is an int64[4, n] array the four results are written into (reused
    across the rules of a pack: only the slots counted are ever read).
    """
    if out is None:
        out = np.empty((4, ts.size), np.int64)
    count = np.zeros(offsets.size - 1, np.int64)
    _episodes(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm, out[0],
              out[1], out[2], out[3], count)
    return out[0], out[1], out[2], out[3], count


@njit(**JIT_PARALLEL)
def _episodes(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm, opened,
              since, last, resolved, count):
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        w = a                       # next episode slot of this series
        cur = -1                    # slot of the open episode, -1 when none
        run = -1                    # first row of the current run
        run_fresh = 0               # fresh rows of the current run so far
        false_from = -1             # first known-false row since the condition last held
        prev_open = np.int64(0)
        have_prev = False
        for i in range(a, b):
            s = state[i]
            if s == SKIP:
                continue
            if s == HOLDS:
                false_from = -1
                if run < 0:
                    run = i
                    run_fresh = 0
                if confirm > 1 and fresh[i]:
                    run_fresh += 1
                if cur >= 0:
                    last[cur] = i
                elif (ts[i] - ts[run] >= for_us and (confirm <= 1 or run_fresh >= confirm)
                      and (not have_prev or ts[i] - prev_open >= cooldown_us)):
                    opened[w], since[w], last[w], resolved[w] = i, run, i, -1
                    cur, w = w, w + 1
                    prev_open, have_prev = ts[i], True
            else:
                run = -1
                if s == FALSE:
                    if false_from < 0:
                        false_from = i
                    if cur >= 0 and ts[i] - ts[false_from] >= resolve_us:
                        resolved[cur] = i
                        cur = -1
                # UNKNOWN: the resolution count pauses (false_from is kept)
        count[k] = w - a


def slots(offsets: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The written slots of :func:`episode_kernel`'s outputs, in order."""
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    has = np.flatnonzero(count)
    starts = np.repeat(offsets[has] - np.cumsum(np.r_[0, count[has][:-1]]), count[has])
    return starts + np.arange(total)


_MISSING = {"false": UNKNOWN, "true": HOLDS, "hold": SKIP}


def open_episodes(timeline: Timeline, conditions: pl.DataFrame | pl.LazyFrame,
                  pack) -> pl.DataFrame:
    """Episodes of every enabled rule of ``pack`` from its condition columns (one per rule id,
    from :func:`engine.ruleset.evaluate.conditions`, computed or lazy) on ``timeline``."""
    rules = [r for r in pack.rules if r.enabled]
    if timeline.height == 0 or not rules:
        return pl.DataFrame(schema=EPISODE_COLUMNS)
    pid = timeline.patient
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
    offsets = np.append(starts, timeline.height).astype(np.int64)
    no_count = np.ones(1, np.bool_)       # read only when a rule counts readings
    # a null condition becomes the state its rule's on_missing says, in one pass for all rules
    coded = conditions.select(pl.col(r.id).cast(pl.Int8).fill_null(_MISSING[r.on_missing])
                              for r in rules)
    if isinstance(coded, pl.LazyFrame):
        coded = coded.collect()
    rows = []
    slots_out = POOL.empty((4, timeline.height), np.int64)     # reused rule after rule
    for r in rules:
        state = coded.get_column(r.id).to_numpy()
        fresh = (timeline.values.get_column(fresh_column(r.confirm_metrics)).to_numpy()
                 if r.confirm_readings > 1 else no_count)
        o, s, l, z, count = episode_kernel(timeline.ts, state, offsets, r.for_us,
                                           r.cooldown_us, r.resolve_after_us, fresh,
                                           r.confirm_readings, out=slots_out)
        keep = slots(offsets, count)
        if keep.size:
            rows.append((r, o[keep], s[keep], l[keep], z[keep]))
    if not rows:
        return pl.DataFrame(schema=EPISODE_COLUMNS)
    return _frame(pack, timeline, rows)


def _frame(pack, tl: Timeline, found) -> pl.DataFrame:
    """The episodes of a pack's rules (``found``: a rule and its episodes' rows), with the
    evidence at their opening and the reason sentence, built as one frame."""
    ts = tl.ts
    opened = np.concatenate([f[1] for f in found])
    resolved = np.concatenate([f[4] for f in found])
    ids, sev, title, evidence, reasons = [], [], [], [], []
    at_rows = tl.values[opened] if tl.values.width else None
    start = 0
    for rule, o, *_ in found:
        k = o.size
        columns = {}
        for n in rule.evidence_names:
            sym = pack.symbols[n]
            values = ([sym.value] * k if sym.column is None
                      else at_rows.get_column(sym.column).slice(start, k).to_list())
            columns[n] = (values, _unit(sym))
        parts = parse_template(rule.reason)[0] if rule.reason else None
        evidence += evidence_column(columns)
        reasons += reason_column(parts, rule.title, columns, set(rule.params))
        ids += [rule.id] * k
        sev += [rule.severity] * k
        title += [rule.title] * k
        start += k
    us = pl.DataFrame({
        "opened_at": ts[opened], "condition_since": ts[np.concatenate([f[2] for f in found])],
        "last_seen_at": ts[np.concatenate([f[3] for f in found])],
        "resolved_at": np.where(resolved >= 0, ts[np.maximum(resolved, 0)], -1)})
    return pl.DataFrame({
        "patient_id": tl.patient_ids(opened), "rule_id": ids, "pack": [pack.name] * len(ids),
        "severity": sev, "title": title, "evidence": evidence, "reason": reasons,
    }).hstack(us).select(
        "patient_id", "rule_id", "pack", "severity", "title",
        *[pl.col(c).cast(pl.Datetime("us", "UTC")) for c in
          ("opened_at", "condition_since", "last_seen_at")],
        pl.when(pl.col("resolved_at") >= 0).then(pl.col("resolved_at"))
        .cast(pl.Datetime("us", "UTC")).alias("resolved_at"),
        "evidence", "reason").cast(EPISODE_COLUMNS)


def _unit(sym) -> str:
    t = sym.type
    if t.kind != "number" or t.unit is None:
        return ""
    return t.unit.label


def within_follow_up(episodes: pl.DataFrame, patients: pl.DataFrame | None) -> pl.DataFrame:
    """Drop episodes opened after the patient's discharge; close those open at discharge."""
    if patients is None or "discharged_at" not in patients.columns or episodes.height == 0:
        return episodes
    cols = episodes.columns
    df = episodes.join(patients.select("patient_id", "discharged_at"), on="patient_id",
                       how="left")
    gone = pl.col("discharged_at")
    df = df.filter(gone.is_null() | (pl.col("opened_at") <= gone))
    df = df.with_columns(resolved_at=pl.when(
        gone.is_not_null() & (pl.col("resolved_at").is_null() | (pl.col("resolved_at") > gone)))
        .then(gone).otherwise(pl.col("resolved_at")))
    return df.select(cols)


def sort_episodes(episodes: pl.DataFrame) -> pl.DataFrame:
    """Episodes in their canonical order: patient, opening time, rule."""
    return episodes.select(list(EPISODE_COLUMNS)).sort("patient_id", "opened_at", "rule_id")


def combine(frames, patients: pl.DataFrame | None) -> pl.DataFrame:
    """The episodes of every pack (and chunk) as one frame: within each patient's follow-up
    (:func:`within_follow_up`), in canonical order (:func:`sort_episodes`)."""
    frames = [f for f in frames if f.height]
    episodes = pl.concat(frames) if frames else pl.DataFrame(schema=EPISODE_COLUMNS)
    return sort_episodes(within_follow_up(episodes, patients))
