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
* with ``resolve_when:`` (hysteresis) the open episode resolves on that condition instead: at
  the first time t where ``resolve_when`` holds with ``t - f0 >= resolve_after``, f0 the first
  time it held since ``when`` last held; a time where it is known false (neither ``when`` nor
  ``resolve_when`` holds: between the two thresholds) restarts the count, an unknown one is
  skipped. ``resolve_when`` is only read while ``when`` does not hold;
* a rule is *pending* for a patient when its condition holds at the patient's last timeline
  time without an open episode (``for:``, ``confirm_readings`` or the cooldown still to come):
  :func:`open_episodes` reports it apart, with the time the condition began to hold;
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
from .durations import format_duration
from .memory import POOL
from .ruleset.evaluate import resolve_column
from .ruleset.evidence import evidence_column, labels_json, parse_template, reason_column
from .ruleset.i18n import DEFAULT_LANG, check_lang
from .schema import TS_DTYPE
from .timeline import Timeline, fresh_column, ts_series

HOLDS, FALSE, UNKNOWN, SKIP = 1, 0, -1, 2
#: ``pending[2]`` of a series whose rule never opened an episode
NEVER = np.iinfo(np.int64).min
EPISODE_COLUMNS = {
    "patient_id": pl.String, "rule_id": pl.String, "pack": pl.String, "severity": pl.String,
    "title": pl.String, "opened_at": TS_DTYPE, "condition_since": TS_DTYPE,
    "last_seen_at": TS_DTYPE, "resolved_at": TS_DTYPE, "evidence": pl.String,
    "reason": pl.String, "labels": pl.String,
}
#: a pending rule: its condition holds at the patient's last evaluation time, not fired yet
PENDING_COLUMNS = {
    "patient_id": pl.String, "rule_id": pl.String, "pack": pl.String, "severity": pl.String,
    "title": pl.String, "condition_since": TS_DTYPE, "last_seen_at": TS_DTYPE,
    "waiting_for": pl.String, "fires_at": TS_DTYPE, "evidence": pl.String,
    "reason": pl.String, "labels": pl.String,
}
_NO_RESOLVING = np.zeros(1, np.int8)


#: rows of a series' kernel state (:func:`resume_kernel`), every one a time in µs (:data:`NEVER`:
#: none) but ``FRESH``: the open episode's opening, condition_since and last_seen_at; the first
#: time of the run of times where the condition holds (the run still going); the fresh readings
#: of that run; the first resolving time since the condition last held; the latest opening
OPENED, SINCE, LAST, RUN, FRESH, FALSE_AT, PREV = range(7)
STATE_FIELDS = ("opened", "since", "last", "run", "fresh", "false_at", "prev")


def empty_state(n_series: int) -> np.ndarray:
    """The kernel state of ``n_series`` series that have seen nothing yet."""
    state = np.full((len(STATE_FIELDS), n_series), NEVER, np.int64)
    state[FRESH] = 0
    return state


def episode_kernel(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm,
                   out=None, resolving=None):
    """Episodes of every series (one patient's timeline for one rule) in one call.

    ``state`` is int8: 1 holds, 0 known false, -1 unknown (ends a run; skipped by the
    resolution count), 2 skip. ``fresh`` is bool: a metric the condition reads has a reading at
    that time; a run fires only once it holds at ``confirm`` fresh times (``confirm <= 1``: no
    count). ``resolving``, when given (a rule's ``resolve_when``), is int8 per row: 1 the
    resolution condition holds, 0 it is known false, -1 unknown; without it a row resolves
    where ``state`` is known false. Returns row indices ``opened, since, last, resolved``
    (-1: not resolved), written per series from the series' first row, ``count[k]`` episodes
    for series ``k`` (series ``k``'s episodes are slots ``offsets[k] .. offsets[k] +
    count[k]``; the other slots are not written), and ``pending`` int64[3, s]: per series, the
    first row of the run still holding at its end without an open episode (-1: none), the fresh
    rows of that run (counted when ``confirm > 1``) and the time of the series' latest opening
    (:data:`NEVER`: none).

    ``out``, when given, is an int64[4, n] array the four results are written into (reused
    across the rules of a pack: only the slots counted are ever read).
    """
    return resume_kernel(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm,
                         out=out, resolving=resolving)[:6]


def resume_kernel(ts, state, offsets, for_us, cooldown_us, resolve_us, fresh, confirm,
                  out=None, resolving=None, start=None, init=None):
    """:func:`episode_kernel` resumed where an earlier call left each series (an incremental
    run, :mod:`engine.incremental`).

    Series ``k`` is evaluated from row ``start[k]`` (default: its first row; the rows before
    are not read) with the state ``init[:, k]`` (:data:`STATE_FIELDS`, default
    :func:`empty_state`), the state an earlier call returned at the time of its last row. An
    episode open in ``init`` continues: it is not written in the slots. Besides
    :func:`episode_kernel`'s six results, returns ``final`` int64[7, s], each series' state
    after its last row, and ``carry`` int64[2, s]: the last time the condition held for the
    episode open in ``init`` and the row it resolved at (-1: still open). A new episode whose
    run began before ``start[k]`` has ``since`` -1: its run began at ``init[RUN, k]``.

    Evaluating rows ``0..n`` at once equals evaluating ``0..m`` then, with that call's
    ``final``, ``m..n``: the state holds times, never rows.
    """
    if out is None:
        out = np.empty((4, ts.size), np.int64)
    n_series = offsets.size - 1
    count = np.zeros(n_series, np.int64)
    pending = np.empty((3, n_series), np.int64)
    final = np.empty((len(STATE_FIELDS), n_series), np.int64)
    carry = np.empty((2, n_series), np.int64)
    start = offsets[:-1] if start is None else np.asarray(start, np.int64)
    init = empty_state(n_series) if init is None else np.asarray(init, np.int64)
    has_res = resolving is not None
    _episodes(ts, state, offsets, start, init, for_us, cooldown_us, resolve_us, fresh, confirm,
              resolving if has_res else _NO_RESOLVING, has_res, out[0], out[1], out[2], out[3],
              count, pending, final, carry)
    return out[0], out[1], out[2], out[3], count, pending, final, carry


@njit(**JIT_PARALLEL)
def _episodes(ts, state, offsets, start, init, for_us, cooldown_us, resolve_us, fresh, confirm,
              res, has_res, opened, since, last, resolved, count, pending, final, carry):
    for k in prange(offsets.size - 1):
        a, b = offsets[k], offsets[k + 1]
        w = a                       # next episode slot of this series
        # slot of the open episode: -1 none, -2 the one open in init (not in the slots)
        cur = -2 if init[OPENED, k] != NEVER else -1
        carry_last = init[LAST, k]
        carry_res = -1
        run = -1                    # first row of the current run (-1: none, or before start)
        run_t = init[RUN, k]        # its time (NEVER: no run)
        run_fresh = init[FRESH, k]  # fresh rows of the current run so far
        false_t = init[FALSE_AT, k]  # first resolving time since the condition last held
        prev_open = init[PREV, k]
        for i in range(start[k], b):
            s = state[i]
            if s == SKIP:
                continue
            if s == HOLDS:
                false_t = NEVER
                if run_t == NEVER:
                    run = i
                    run_t = ts[i]
                    run_fresh = 0
                if confirm > 1 and fresh[i]:
                    run_fresh += 1
                if cur >= 0:
                    last[cur] = i
                elif cur == -2:
                    carry_last = ts[i]
                elif (ts[i] - run_t >= for_us and (confirm <= 1 or run_fresh >= confirm)
                      and (prev_open == NEVER or ts[i] - prev_open >= cooldown_us)):
                    opened[w], since[w], last[w], resolved[w] = i, run, i, -1
                    cur, w = w, w + 1
                    prev_open = ts[i]
            else:
                run = -1
                run_t = NEVER
                # does this row resolve: 1 yes, 0 no (restarts the count), -1 unknown (pauses)
                if has_res:
                    r = res[i]
                else:
                    r = 1 if s == FALSE else -1
                if r == 1:
                    if false_t == NEVER:
                        false_t = ts[i]
                    if cur != -1 and ts[i] - false_t >= resolve_us:
                        if cur >= 0:
                            resolved[cur] = i
                        else:
                            carry_res = i
                        cur = -1
                elif r == 0:
                    false_t = NEVER
        count[k] = w - a
        pending[0, k] = run if cur == -1 else -1
        pending[1, k] = run_fresh
        pending[2, k] = prev_open
        if cur >= 0:
            final[OPENED, k] = ts[opened[cur]]
            final[SINCE, k] = ts[since[cur]] if since[cur] >= 0 else init[RUN, k]
            final[LAST, k] = ts[last[cur]]
        elif cur == -2:
            final[OPENED, k] = init[OPENED, k]
            final[SINCE, k] = init[SINCE, k]
            final[LAST, k] = carry_last
        else:
            final[OPENED, k] = NEVER
            final[SINCE, k] = NEVER
            final[LAST, k] = NEVER
        final[RUN, k] = run_t
        final[FRESH, k] = run_fresh
        final[FALSE_AT, k] = false_t
        final[PREV, k] = prev_open
        carry[0, k] = carry_last
        carry[1, k] = carry_res


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
                  pack, *, pending: list | None = None, lang: str = DEFAULT_LANG,
                  resume=None) -> pl.DataFrame:
    """Episodes of every enabled rule of ``pack`` from its condition columns (one per rule id,
    from :func:`engine.ruleset.evaluate.conditions`, computed or lazy) on ``timeline``.

    With ``pending`` (a list), the frame of the rules pending at each patient's last timeline
    time (:data:`PENDING_COLUMNS`) is appended to it. ``lang`` ('fr' or 'en') is the language
    of the titles and reasons (:mod:`engine.ruleset.i18n`); nothing else depends on it.

    With ``resume`` (an incremental run's :class:`engine.incremental.Resume`), each patient's
    timeline is evaluated from the first time after the previous run, each (patient, rule)
    from the state that run left, and every series' state at its end is handed back to
    ``resume``: the frame holds the episodes opened in this run only.
    """
    check_lang(lang)
    rules = [r for r in pack.rules if r.enabled]
    if timeline.height == 0 or not rules:
        return pl.DataFrame(schema=EPISODE_COLUMNS)
    pid = timeline.patient
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
    offsets = np.append(starts, timeline.height).astype(np.int64)
    no_count = np.ones(1, np.bool_)       # read only when a rule counts readings
    # a null condition becomes the state its rule's on_missing says, in one pass for all rules
    coded = conditions.select(
        [pl.col(r.id).cast(pl.Int8).fill_null(_MISSING[r.on_missing]) for r in rules]
        + [pl.col(resolve_column(r.id)).cast(pl.Int8).fill_null(UNKNOWN) for r in rules
           if r.resolve_expr is not None])
    if isinstance(coded, pl.LazyFrame):
        coded = coded.collect()
    rows, waiting = [], []
    slots_out = POOL.empty((4, timeline.height), np.int64)     # reused rule after rule
    start = series_ids = None
    if resume is not None:
        series_ids = timeline.patient_ids(starts)
        start = resume.start(series_ids, timeline.ts, offsets)
    skip = _guarded_starts(rules, timeline, starts, offsets) if resume is None else {}
    for r in rules:
        state = coded.get_column(r.id).to_numpy()
        fresh = (timeline.values.get_column(fresh_column(r.confirm_metrics)).to_numpy()
                 if r.confirm_readings > 1 else no_count)
        resolving = (coded.get_column(resolve_column(r.id)).to_numpy()
                     if r.resolve_expr is not None else None)
        init = resume.init(r.id, series_ids) if resume is not None else None
        o, s, l, z, count, _, final, carry = resume_kernel(
            timeline.ts, state, offsets, r.for_us, r.cooldown_us, r.resolve_after_us, fresh,
            r.confirm_readings, out=slots_out, resolving=resolving,
            start=skip.get(r.id, start), init=init)
        keep = slots(offsets, count)
        if keep.size:
            since = s[keep]
            since_ts = timeline.ts[np.maximum(since, 0)]
            if init is not None and (since < 0).any():     # a run begun in an earlier run
                series_of = np.repeat(np.arange(count.size), count)
                since_ts = np.where(since >= 0, since_ts, init[RUN][series_of])
            rows.append((r, o[keep], since_ts, l[keep], z[keep]))
        if resume is not None:
            resume.record(pack, r, series_ids, init, final, carry, timeline.ts)
        if pending is not None:
            waits = (final[OPENED] == NEVER) & (final[RUN] != NEVER)
            if start is not None:       # only the series this run evaluated say what waits now
                waits &= start < offsets[1:]
            series = np.flatnonzero(waits)
            if series.size:
                waiting.append((r, series, final[:, series], offsets))
    if pending is not None and waiting:
        pending.append(_pending_frame(pack, timeline, waiting, lang))
    if not rows:
        return pl.DataFrame(schema=EPISODE_COLUMNS)
    return _frame(pack, timeline, rows, lang)


def _guarded_starts(rules, timeline: Timeline, starts: np.ndarray,
                    offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Per rule with a patient guard (:attr:`CompiledRule.guard`, e.g. ``programme ==
    "copd"``) false for some patients: the first row the kernel reads of each series, past
    the series' end for those patients. Their condition is false at every time (false and
    anything is false), where the kernel would open nothing, leave nothing pending and only
    walk the rows; a guard that is unknown (a patient without a programme) skips nothing, since
    the condition may then be unknown and ``on_missing`` decides. The guards are evaluated on
    each patient's first timeline row: patient fields are the same at all of its rows."""
    guarded = [r for r in rules if r.guard is not None]
    if not guarded:
        return {}
    values = timeline.values
    first = values[starts] if values.width else pl.DataFrame(height=starts.size)
    out = {}
    for r in guarded:
        excluded = r.guard_false(first)
        if excluded.any():
            begin = offsets[:-1].copy()
            begin[excluded] = offsets[1:][excluded]
            out[r.id] = begin
    return out


def _pending_frame(pack, tl: Timeline, waiting, lang: str) -> pl.DataFrame:
    """The pending rules (``waiting``: a rule, its series with a pending run and their kernel
    state at the end: run start, fresh readings, latest opening), with evidence and reason at
    the last time."""
    found, extra = [], []
    for r, series, state, offsets in waiting:
        last = offsets[series + 1] - 1
        since = state[RUN]
        found.append((r, last, since, last, np.full(series.size, -1, np.int64)))
        now = tl.ts[last]
        for k in range(series.size):
            if now[k] - since[k] < r.for_us:
                extra.append((f"for: {format_duration(r.for_us)}", since[k] + r.for_us))
            elif r.confirm_readings > 1 and state[FRESH, k] < r.confirm_readings:
                extra.append((f"confirm_readings: {r.confirm_readings - state[FRESH, k]} more "
                              "reading(s)", None))
            else:
                extra.append((f"cooldown: {format_duration(r.cooldown_us)}",
                              state[PREV, k] + r.cooldown_us))
    frame = _frame(pack, tl, found, lang)
    return frame.with_columns(
        waiting_for=pl.Series([e[0] for e in extra], dtype=pl.String),
        fires_at=pl.Series([e[1] for e in extra], dtype=pl.Int64).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")).select(
        [pl.col(c).cast(t) for c, t in PENDING_COLUMNS.items()])


def _frame(pack, tl: Timeline, found, lang: str) -> pl.DataFrame:
    """The episodes of a pack's rules (``found``: a rule and its episodes' rows, their
    condition_since as times), with the evidence at their opening and the title and reason sentence in ``lang``, built as one
    frame."""
    ts = tl.ts
    opened = np.concatenate([f[1] for f in found])
    resolved = np.concatenate([f[4] for f in found])
    ids, sev, title, evidence, reasons, labels = [], [], [], [], [], []
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
        heading, heading_lang = rule.title_in(lang)
        template, reason_lang = rule.reason_in(lang)
        # a rule without a reason reads its title and values, in the title's language
        parts = parse_template(template)[0] if template else None
        evidence += evidence_column(columns)
        reasons += reason_column(parts, heading, columns, set(rule.params),
                                 lang=reason_lang if parts is not None else heading_lang)
        ids += [rule.id] * k
        sev += [rule.severity] * k
        title += [heading] * k
        labels += [labels_json(rule.labels)] * k
        start += k
    # built column by column in its final type, one frame at the end: a chunk pays this for
    # every pack, so each polars pass saved here is paid a hundred times in a large run
    text = {"rule_id": ids, "pack": [pack.name] * len(ids), "severity": sev, "title": title,
            "evidence": evidence, "reason": reasons, "labels": labels}
    times = {"opened_at": ts_series(ts[opened], "opened_at"),
             "condition_since": ts_series(np.concatenate([f[2] for f in found]),
                                          "condition_since"),
             "last_seen_at": ts_series(ts[np.concatenate([f[3] for f in found])],
                                       "last_seen_at"),
             "resolved_at": ts_series(ts[np.maximum(resolved, 0)], "resolved_at",
                                      missing=resolved < 0)}
    return pl.DataFrame(
        [tl.patient_ids(opened) if c == "patient_id" else times[c] if c in times
         else pl.Series(c, text[c], dtype=pl.String) for c in EPISODE_COLUMNS])


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


def combine_pending(frames, patients: pl.DataFrame | None) -> pl.DataFrame:
    """The pending rules of every pack and chunk as one frame, for patients still followed
    (none after a discharge), by patient, then since when the condition holds, then rule."""
    frames = [f for f in frames if f.height]
    pending = pl.concat(frames) if frames else pl.DataFrame(schema=PENDING_COLUMNS)
    if patients is not None and "discharged_at" in patients.columns and pending.height:
        gone = pending.join(patients.select("patient_id", "discharged_at"), on="patient_id",
                            how="left")["discharged_at"]
        pending = pending.filter((gone.is_null() | (pending["last_seen_at"] <= gone))
                                 .fill_null(True))
    return pending.sort("patient_id", "condition_since", "rule_id")
