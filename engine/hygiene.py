"""Alert hygiene, the stage between the ranked queue and the team (after Alertmanager).

A pure function of frames: the queue of :func:`engine.queue.build_queue` in, the same alerts
out with why each is hidden, grouped per patient and ranked again. **No alert is dropped**: a
hidden alert stays in the output with ``suppressed_by`` saying why, and out of the open ranking
(``priority`` null). The reasons, checked in this order (the first that applies is given):

``ended:device``
    a device-silence alert (a rule reading a ``silence_at`` detector) of a patient whose
    devices were returned (``device_ended_at`` in the patients table) opened after that time:
    a returned device is silent by design (the discharge itself is handled by the episodes).
``silence:<id>``
    a silence (a matcher, an author, a reason, an expiry: a hospital stay) covers the alert; a
    snooze of one alert is a silence of its patient and rule only, so snoozing "glucose high"
    never hides "glucose low".
``inhibited:<rule>``
    an alert matching an inhibition's source (declared in the rule files, ``inhibit:``) is open
    for the same patient and ``equal`` labels; an inhibition never hides an alert more severe
    than the one that hides it, nor an alert that matches the source side too.
``flapping:<alert_id>``
    the alert is one of a (patient, rule) chain that opened at least ``flap_openings`` times
    within ``flap_window``: the chain is merged into its latest alert, flagged ``flapping``
    with ``flap_count`` openings.
``held_until:<time>``
    an open low-severity alert opened outside the team's working hours, in the patient's time
    zone, waits for the next opening (medium and high alerts never wait); one that resolves
    before the opening is still delivered then, as resolved.

An **open** alert is judged as of the queue's time (``as_of``); a **resolved** one is marked
when it was hidden for its whole life (it never reached the team). ``group_key`` (the
patient), ``group_size`` and ``group_rules`` (the patient's shown open alerts, worst first)
make one entry per patient; ``veille queue list --group label:NAME`` groups by a label.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from .queue import QUEUE_COLUMNS, SEVERITY_TIER

HYGIENE_COLUMNS: dict[str, pl.DataType] = {
    "suppressed_by": pl.String(),
    "flapping": pl.Boolean(),
    "flap_count": pl.Int64(),
    "group_key": pl.String(),
    "group_size": pl.Int64(),
    "group_rules": pl.String(),
}
#: the kinds of ``suppressed_by``, in the order they are checked
KINDS = ("ended", "silence", "inhibited", "flapping", "held_until")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WorkingHours:
    """The team's opening hours: ``days`` (0 = Monday) from ``start`` to ``end``, local time."""

    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(18, 0)

    def next_opening(self, when: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """None when ``when`` is within the hours, else the next opening (UTC)."""
        local = when.astimezone(zone)
        if local.weekday() in self.days and self.start <= local.time() < self.end:
            return None
        day = local.date()
        if local.time() >= self.start:
            day += dt.timedelta(days=1)
        for _ in range(8):
            if day.weekday() in self.days:
                return dt.datetime.combine(day, self.start, zone).astimezone(dt.timezone.utc)
            day += dt.timedelta(days=1)
        return None                     # no working day at all: nothing is held


@dataclass(frozen=True)
class HygieneConfig:
    """The knobs of the hygiene stage (each ``veille score`` option sets one).

    ``working_hours`` None holds nothing; ``held`` are the severities that wait for them.
    ``time_zone`` is the zone of patients without a ``tz``. A (patient, rule) chain flaps from
    ``flap_openings`` openings within ``flap_window`` (Nagios' flap detection, counted in
    openings; the packs' cooldowns, 12 to 24 h, already keep a rule from re-opening within
    hours, so three openings in three days is a rule that keeps coming back). An open,
    unacknowledged alert of a ``reraise`` severity is raised again every
    ``reraise_after`` by the queue store (:func:`engine.store.write_run`).
    """

    working_hours: WorkingHours | None = field(default_factory=WorkingHours)
    held: tuple[str, ...] = ("low",)
    time_zone: str = "Europe/Paris"
    flap_openings: int = 3
    flap_window: dt.timedelta = dt.timedelta(hours=72)
    reraise_after: dt.timedelta = dt.timedelta(hours=4)
    reraise: tuple[str, ...] = ("high",)


@dataclass(frozen=True)
class Silence:
    """Hide the alerts it matches from ``starts_at`` until ``ends_at`` (a hospital stay, a
    known outage). ``patients`` None matches every patient."""

    id: str
    matcher: object                     # engine.ruleset.packs.AlertMatcher
    starts_at: dt.datetime
    ends_at: dt.datetime
    author: str = ""
    reason: str = ""
    patients: frozenset | None = None

    def matches(self, a: dict) -> bool:
        return ((self.patients is None or a["patient_id"] in self.patients)
                and self.matcher.matches(a["rule_id"], a["pack"], a["severity"], a["_labels"]))


@dataclass
class HygieneReport:
    """Alerts hidden, by kind: among the open ones (``open``) and among all (``all``)."""

    open: dict[str, int]
    all: dict[str, int]
    shown_open: int
    shown_all: int

    def line(self) -> str:
        hidden = ", ".join(f"{k} {v:,}" for k, v in self.open.items() if v) or "none"
        return (f"{self.shown_open:,} open alerts shown; hidden from the open queue: {hidden} "
                f"({self.shown_all:,} of all alerts reached the queue)")


def _covers(intervals: list[tuple], a: dt.datetime, b: dt.datetime) -> bool:
    """Does the union of ``intervals`` ([start, end)) cover [a, b]?"""
    t = a
    for s, e in sorted(intervals):
        if s > t:
            return False
        if e > t:
            t = e
        if t > b:
            return True
    return t > b


def _hidden(ivs: list[tuple], a: dict, now: dt.datetime) -> bool:
    """An open alert is hidden when ``now`` is inside an interval; a resolved one when the
    intervals cover its whole life."""
    if a["status"] == "open":
        return any(s <= now < e for s, e in ivs)
    return _covers(ivs, a["opened_at"], a["_end"])


def apply(queue: pl.DataFrame, *, as_of: dt.datetime, inhibitions=(), silences=(),
          patients: pl.DataFrame | None = None, config: HygieneConfig | None = None,
          silence_rules=frozenset()) -> tuple[pl.DataFrame, HygieneReport]:
    """The queue with :data:`HYGIENE_COLUMNS`, ranked again over the alerts shown.

    Parameters
    ----------
    queue : polars.DataFrame
        :data:`engine.queue.QUEUE_COLUMNS`, as :func:`engine.queue.build_queue` gives it.
    as_of : datetime
        The queue's time (aware): open alerts are judged at it.
    inhibitions : sequence of :class:`engine.ruleset.packs.InhibitRule`
        The rule files' ``inhibit:`` rules (``RuleSet.inhibitions``).
    silences : sequence of :class:`Silence`
    patients : polars.DataFrame, optional
        The patients table: ``tz`` (working hours) and ``device_ended_at``.
    silence_rules : set of str
        Ids of the rules that report a silent device (ended by ``device_ended_at``).
    """
    config = config or HygieneConfig()
    if queue.height == 0:
        empty = pl.DataFrame(schema={**QUEUE_COLUMNS, **HYGIENE_COLUMNS})
        return empty, HygieneReport(dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0), 0, 0)
    # only the columns judged here become Python objects (not the evidence and reasons)
    rows = queue.select(_JUDGED).to_dicts()
    labels: dict[str, dict] = {}            # one parsed dict per distinct labels text
    for i, a in enumerate(rows):
        a["_i"] = i
        text = a["labels"] or "{}"
        if text not in labels:
            labels[text] = json.loads(text)
        a["_labels"] = labels[text]
        a["_end"] = a["resolved_at"] or as_of
        a["_tier"] = SEVERITY_TIER.get(a["severity"], 3)
    zones, ended = _patient_context(patients, config)
    reason: list[str | None] = [None] * len(rows)
    flap = _flapping(queue, config)

    def mark(a, why):
        if reason[a["_i"]] is None:
            reason[a["_i"]] = why

    for a in rows:
        end = ended.get(a["patient_id"])
        if end is not None and a["rule_id"] in silence_rules and a["opened_at"] >= end:
            mark(a, "ended:device")
    for s in silences:
        for a in rows:
            if s.matches(a) and _hidden([(s.starts_at, s.ends_at)], a, as_of):
                mark(a, f"silence:{s.id}")
    _inhibit(rows, inhibitions, as_of, mark)
    for i, (kept, _) in flap.items():
        if kept != i:
            mark(rows[i], f"flapping:{rows[kept]['alert_id']}")
    if config.working_hours is not None:
        for a in rows:
            if a["severity"] not in config.held:
                continue
            zone = zones.get(a["patient_id"], zones[None])
            opening = config.working_hours.next_opening(a["opened_at"], zone)
            # a held alert that resolves before the opening is still delivered then (marked
            # resolved): what happened overnight reaches the morning team, it only waits
            if opening is not None and a["status"] == "open" and as_of < opening:
                mark(a, "held_until:" + opening.isoformat().replace("+00:00", "Z"))
    out = queue.with_columns(
        suppressed_by=pl.Series(reason, dtype=pl.String),
        flapping=pl.Series([i in flap and flap[i][0] == i for i in range(len(rows))],
                           dtype=pl.Boolean),
        flap_count=pl.Series([flap[i][1] if i in flap and flap[i][0] == i else None
                              for i in range(len(rows))], dtype=pl.Int64),
        group_key=pl.col("patient_id"))
    out = _rank(out)
    return out, _report(out)


def _patient_context(patients, config):
    """Per patient: its time zone (``None``: the default) and its devices' end."""
    zones: dict = {None: ZoneInfo(config.time_zone)}
    ended: dict = {}
    if patients is None:
        return zones, ended
    if "tz" in patients.columns:
        for pid, tz in patients.select("patient_id", "tz").iter_rows():
            if tz:
                zones[pid] = ZoneInfo(tz)
    if "device_ended_at" in patients.columns:
        ended = {pid: t for pid, t in patients.select("patient_id", "device_ended_at")
                 .iter_rows() if t is not None}
    return zones, ended


def _flapping(queue: pl.DataFrame, config) -> dict[int, tuple[int, int]]:
    """Alert index -> (index of the chain's kept alert, openings of the chain) for every alert
    of a flapping chain: a (patient, rule) run of alerts each opened within ``flap_window`` of
    the previous one, holding ``flap_openings`` openings within one window.

    A chain's alerts are taken in opening order (the queue's order between equal openings), and
    its kept alert is the last of them. Computed over arrays: the alerts sorted by (patient,
    rule, opening), a chain breaks at a new (patient, rule) or a gap over the window, and a
    chain flaps when some alert and the one ``flap_openings - 1`` places later lie in the same
    chain within the window.
    """
    n, window = config.flap_openings, config.flap_window
    if n < 2 or queue.height < n:
        return {}
    w = window // dt.timedelta(microseconds=1)
    s = (queue.select("patient_id", "rule_id", "opened_at").with_row_index("_i")
         .with_columns(pl.col("opened_at").dt.cast_time_unit("us").dt.epoch("us"))
         .sort("patient_id", "rule_id", "opened_at", "_i"))
    idx = s["_i"].to_numpy().astype(np.int64)
    opened = s["opened_at"].to_numpy()
    new_series = s.select((pl.col("patient_id") != pl.col("patient_id").shift())
                          | (pl.col("rule_id") != pl.col("rule_id").shift())).to_series()
    breaks = new_series.fill_null(True).to_numpy().copy()
    breaks[1:] |= (opened[1:] - opened[:-1]) > w
    chain = np.cumsum(breaks) - 1
    far = n - 1
    within = (chain[far:] == chain[:-far]) & ((opened[far:] - opened[:-far]) <= w)
    flaps = np.zeros(chain[-1] + 1, dtype=bool)
    flaps[chain[:-far][within]] = True
    if not flaps.any():
        return {}
    starts = np.flatnonzero(breaks)
    ends = np.append(starts[1:], chain.size)              # chain c is rows starts[c]:ends[c]
    out: dict[int, tuple[int, int]] = {}
    for c in np.flatnonzero(flaps):
        members = idx[starts[c]:ends[c]]
        kept, count = int(members[-1]), int(members.size)
        for i in members.tolist():
            out[i] = (kept, count)
    return out


#: the queue columns hygiene reads
_JUDGED = ("alert_id", "patient_id", "rule_id", "pack", "severity", "labels", "status",
           "opened_at", "resolved_at")


def _inhibit(rows, inhibitions, as_of, mark) -> None:
    """Mark the alerts an inhibition hides (see the module docstring)."""
    if not inhibitions:
        return
    # a matcher reads an alert's rule, pack, severity and labels: it is asked once per
    # distinct combination (a few hundred), not once per alert
    code: dict[tuple, int] = {}
    first: list[dict] = []
    sig = np.empty(len(rows), np.int64)
    for i, a in enumerate(rows):
        g = (a["rule_id"], a["pack"], a["severity"], a["labels"])
        c = code.get(g)
        if c is None:
            c = code[g] = len(first)
            first.append(a)
        sig[i] = c

    def matching(m) -> np.ndarray:
        hit = np.fromiter((m.matches(a["rule_id"], a["pack"], a["severity"], a["_labels"])
                           for a in first), dtype=bool, count=len(first))
        return hit[sig]

    for rule in inhibitions:
        def key(a):
            vals = []
            for name in rule.equal:
                v = a["patient_id"] if name == "patient_id" else a["_labels"].get(name)
                if v is None:
                    return None     # a label the alert lacks never equals (Alertmanager)
                vals.append(v)
            return tuple(vals)

        is_source, is_target = matching(rule.source), matching(rule.target)
        sources = defaultdict(list)
        for i in np.flatnonzero(is_source).tolist():
            if (k := key(rows[i])) is not None:
                sources[k].append(rows[i])
        if not sources:
            continue
        for i in np.flatnonzero(is_target & ~is_source).tolist():
            a = rows[i]
            found = [s for s in sources.get(key(a), ()) if s["_tier"] <= a["_tier"]]
            for rid in sorted({s["rule_id"] for s in found}):
                ivs = [(s["opened_at"], s["_end"] if s["status"] == "resolved"
                        else dt.datetime.max.replace(tzinfo=dt.timezone.utc))
                       for s in found if s["rule_id"] == rid]
                if _hidden(ivs, a, as_of):
                    mark(a, f"inhibited:{rid}")
                    break


def _rank(df: pl.DataFrame) -> pl.DataFrame:
    """Priorities and patient ranks over the alerts shown (open, not hidden), the patient's
    group columns, hidden and resolved alerts after their patient's shown ones."""
    shown = (pl.col("status") == "open") & pl.col("suppressed_by").is_null()
    df = df.with_row_index("_pos").with_columns(
        _shown=shown, _key=pl.when(shown).then(pl.col("priority")).otherwise(None))
    df = df.with_columns(priority=pl.when(pl.col("_shown")).then(
        pl.col("_key").rank("ordinal")).cast(pl.Int64))
    groups = (df.filter(pl.col("_shown")).sort("priority")
              .group_by("patient_id", maintain_order=True)
              .agg(group_size=pl.len().cast(pl.Int64),
                   group_rules=pl.col("rule_id").str.join(", "),
                   _best=pl.col("priority").min()))
    df = df.join(groups, on="patient_id", how="left")
    order = (df.group_by("patient_id").agg(_best=pl.col("_best").first(),
                                          _old=pl.col("patient_rank").min())
             .sort("_best", "_old", nulls_last=True)
             .with_row_index("patient_rank", offset=1)
             .select("patient_id", pl.col("patient_rank").cast(pl.Int64)))
    df = df.drop("patient_rank", "_best").join(order, on="patient_id", how="left")
    df = df.with_columns(group_size=pl.col("group_size").fill_null(0))
    return df.sort("patient_rank", pl.col("priority"), "_pos", nulls_last=True).select(
        [pl.col(c).cast(t) for c, t in {**QUEUE_COLUMNS, **HYGIENE_COLUMNS}.items()])


def _report(df: pl.DataFrame) -> HygieneReport:
    kind = pl.col("suppressed_by").str.extract(r"^([a-z_]+)")
    counts = {}
    for name, frame in (("open", df.filter(pl.col("status") == "open")), ("all", df)):
        got = dict(frame.select(kind.alias("k")).drop_nulls().group_by("k").len().iter_rows())
        counts[name] = {k: int(got.get(k, 0)) for k in KINDS}
    shown_open = int(df.filter((pl.col("status") == "open")
                               & pl.col("suppressed_by").is_null()).height)
    return HygieneReport(counts["open"], counts["all"], shown_open,
                         int(df["suppressed_by"].is_null().sum()))


def silence_rule_ids(ruleset) -> frozenset:
    """Ids of the rules that report a silent device (they read a ``silence_at`` detector)."""
    return frozenset(r.id for p in ruleset.packs for r in p.rules
                     if any(p.detectors[d].kind == "silence" for d in r.detectors
                            if d in p.detectors))


def parse_days(text: str) -> tuple[int, ...]:
    """``mon-fri`` or ``mon,wed,sat`` -> weekday numbers (0 = Monday)."""
    from .errors import InputError

    out: list[int] = []
    for part in text.lower().replace(" ", "").split(","):
        a, _, b = part.partition("-")
        if a not in DAYS or (b and b not in DAYS):
            raise InputError(f"working days must be like 'mon-fri' or 'mon,wed,sat'; got "
                             f"{text!r}.")
        i, j = DAYS.index(a), DAYS.index(b or a)
        out += list(range(i, j + 1)) if i <= j else list(range(i, 7)) + list(range(0, j + 1))
    return tuple(sorted(set(out)))


def parse_hours(text: str) -> tuple[dt.time, dt.time]:
    """``08:00-18:00`` -> (start, end)."""
    from .errors import InputError

    try:
        a, b = text.split("-")
        start, end = dt.time.fromisoformat(a.strip()), dt.time.fromisoformat(b.strip())
    except ValueError:
        start = end = None
    if start is None or end <= start:
        raise InputError(f"working hours must be like '08:00-18:00' (start before end); got "
                         f"{text!r}.")
    return start, end
