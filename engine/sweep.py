"""Sweep: the trade-off a pack's params make between alert burden, sensitivity and lead time.

``veille backtest --sweep heart_failure.gain_3d=1.1:3.0:0.1`` evaluates the swept packs at
every point of the grid (several params: their product) on a labelled cohort and returns one
row per point with the backtest figures of those packs (:func:`engine.backtest.backtest_table`,
its ``all`` row over the swept packs), the current value marked and the Pareto front (no other
point has fewer alerts, a higher sensitivity and a longer median lead time, one of them
strictly) flagged.

Why it costs far less than one run per point:

* the telemetry is read and checked once, and only the swept packs are evaluated — the other
  packs' alerts do not depend on the params;
* each point's packs are compiled from rule files parsed once (a generated site override sets
  the point's values, so bounds, units and every derived param and duration follow exactly as
  for a site's own change);
* every distinct detector of every point is computed once per chunk of patients: a param that
  is not a detector argument (a threshold) adds none, a window adds only its own;
* a point whose pack reads the same detector outputs, readings and scope as another point
  reuses that point's timeline: only the columns the params set (care-plan defaults, named
  conditions) are computed again before its rules and episodes;
* the points run two at a time (numba kernels and polars release the GIL).
"""
from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from .backtest import backtest_table, patient_days
from .detect import DetectorPlan, arrays, detect_arrays, spec_key
from .episodes import combine, open_episodes
from .errors import InputError, RuleError
from .labelled import LabelledCohort
from .patients import Cohort
from .pipeline import CHUNK_ROWS, WORKERS, chunk_of, chunks, patient_row_bounds
from .ruleset.evaluate import conditions
from .ruleset.format.diagnostics import Diagnostics, did_you_mean
from .timeline import build, context_columns, fresh_column

#: the most grid points one sweep evaluates (a typo in a step must not start a night's work)
MAX_POINTS = 400
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_PACK_NAME = re.compile(r"^pack:[ \t]*[\"']?([A-Za-z0-9_.-]+)[\"']?[ \t]*(?:#.*)?$", re.M)
_SPEC = re.compile(rf"^([A-Za-z_][\w]*)\.([A-Za-z_]\w*)=({_NUMBER}):({_NUMBER}):({_NUMBER})$")
#: the backtest columns a sweep reports per point
POINT_COLUMNS = ("episodes", "alerts_per_100_pd", "patients_alerted", "patient_share",
                 "events", "detected", "sensitivity", "detected_24h", "ppv", "median_lead_h",
                 "lead_q1_h", "lead_q3_h", "alerts_per_nurse_day")


@dataclass(frozen=True)
class SweepParam:
    """One swept param: ``pack.name`` and the values of its range, in the param's unit."""

    pack: str
    name: str
    values: tuple[float, ...]
    text: str
    unit: str = ""
    current: float | None = None

    @property
    def qualified(self) -> str:
        return f"{self.pack}.{self.name}"


def parse_spec(text: str) -> tuple[str, str, tuple[float, ...]]:
    """``pack.param=START:STOP:STEP`` → (pack, param, values): START, START + STEP, … up to
    STOP included (within a millionth of a step), in the param's own unit."""
    m = _SPEC.match(text.strip())
    if not m:
        raise InputError(f"--sweep {text!r} is not PACK.PARAM=START:STOP:STEP (e.g. "
                         "heart_failure.gain_3d=1.5:3:0.1; numbers in the param's unit).")
    pack, name = m.group(1), m.group(2)
    start, stop, step = (float(m.group(i)) for i in (3, 4, 5))
    if step <= 0 or not math.isfinite(step):
        raise InputError(f"--sweep {text!r}: the step must be a positive number. Got "
                         f"{m.group(5)} instead.")
    if stop < start:
        raise InputError(f"--sweep {text!r}: STOP ({m.group(4)}) is below START "
                         f"({m.group(3)}); write the range from the lower value.")
    n = int(math.floor((stop - start) / step + 1e-6)) + 1
    if n > MAX_POINTS:
        raise InputError(f"--sweep {text!r} has {n:,} points; a sweep may have at most "
                         f"{MAX_POINTS}. Use a larger step.")
    return pack, name, tuple(round(start + i * step, 10) for i in range(n))


class RuleSources:
    """Rule files parsed once, compiled again for each set of values of a sweep.

    A point is compiled as the packs with the site overrides given, then one generated site
    override holding the point's values: the loader's own checks (bounds, units, what depends
    on a param) apply to it. Only the packs asked for — and those the site files name — are
    compiled; when that is not enough (an inhibition naming another pack's rule), every pack.
    """

    def __init__(self, rules, sites=()):
        from .paths import bundled
        from .ruleset.format.source import read_source
        from .ruleset.ruleset import pack_files

        diags = Diagnostics()
        self._read = read_source
        files = pack_files([bundled("rules")] if not rules else list(rules), diags)
        self.sites = [s for f in pack_files(list(sites), diags)
                      if (s := read_source(f, diags))] if sites else []
        diags.raise_if_any()
        # a pack file is parsed when a point needs it: parsing every file of rules/ costs more
        # than compiling the swept pack twenty times
        self._files: dict[str, object] = {}
        for f in files:
            m = _PACK_NAME.search(f.read_text(encoding="utf-8", errors="replace"))
            name = m.group(1) if m else None
            if name is None or name in self._files:
                src = self._parse(f)
                name = str((src.data or {}).get("pack"))
                self._files.setdefault(name, src)
            else:
                self._files[name] = f
        self.packs = tuple(self._files)

    def _parse(self, path):
        diags = Diagnostics()
        src = self._read(path, diags)
        diags.raise_if_any()
        return src

    def _source(self, name: str):
        if not hasattr(self._files[name], "data"):
            self._files[name] = self._parse(self._files[name])
        return self._files[name]

    def load(self, packs, values: dict | None = None):
        """A :class:`~engine.ruleset.RuleSet` of ``packs`` (names), with ``values``
        (``{(pack, param): value}``) set by a generated site override named ``--sweep``."""
        from .ruleset.ruleset import _load

        diags = Diagnostics()
        extra = []
        if values:
            src = self._read("--sweep", diags, text=site_text(values))
            diags.raise_if_any()
            extra = [src]
        named = {p for s in self.sites for p in ((s.data or {}).get("packs") or {})}
        want = [self._source(n) for n in self.packs if n in set(packs) | named]
        try:
            return _load(want, self.sites + extra, Diagnostics(), None)
        except RuleError:
            if len(want) == len(self.packs):
                raise
            return _load([self._source(n) for n in self.packs], self.sites + extra,
                         Diagnostics(), None)


def site_text(values: dict) -> str:
    """A site override setting ``{(pack, param): value}`` (plain numbers: the pack's unit)."""
    lines = ["site: sweep", "packs:"]
    for pack in sorted({p for p, _ in values}):
        lines += [f"  {pack}:", "    params:"]
        lines += [f"      {name}: {value!r}" for (p, name), value in sorted(values.items())
                  if p == pack]
    return "\n".join(lines) + "\n"


def check_params(specs: list[str], base) -> list[SweepParam]:
    """The swept params, checked against the loaded packs: known, numeric, within bounds."""
    out, seen = [], set()
    for text in specs:
        pack, name, values = parse_spec(text)
        names = [p.name for p in base.packs]
        if pack not in names:
            raise InputError(f"--sweep {text!r}: unknown pack '{pack}'. "
                             + did_you_mean(pack, names, noun="packs"))
        cp = base.pack(pack)
        if name not in cp.params:
            raise InputError(f"--sweep {text!r}: pack '{pack}' has no param '{name}'. "
                             + did_you_mean(name, list(cp.params), noun="params"))
        if (pack, name) in seen:
            raise InputError(f"--sweep {text!r}: {pack}.{name} is swept twice.")
        seen.add((pack, name))
        prm = cp.params[name]
        if prm.type.kind != "number" or isinstance(prm.value, bool):
            raise InputError(f"--sweep {text!r}: param '{name}' of pack '{pack}' is a "
                             f"{prm.type.kind}, not a number; only numeric params (thresholds, "
                             "durations) are swept.")
        unit = f" {prm.unit}" if prm.unit else ""
        for v, bound, side in ((values[0], prm.low, "minimum"), (values[-1], prm.high,
                                                                   "maximum")):
            if bound is not None and (v < bound if side == "minimum" else v > bound):
                raise InputError(
                    f"--sweep {text!r}: {v:g}{unit} is {'below' if side == 'minimum' else 'above'}"
                    f" the {side} {bound:g}{unit} that pack '{pack}' allows for '{name}' "
                    f"({prm.origin}). Choose a range within "
                    f"{'' if prm.low is None else f'{prm.low:g}'}–"
                    f"{'' if prm.high is None else f'{prm.high:g}'}{unit}.")
        out.append(SweepParam(pack, name, values, text, prm.unit, float(prm.value)))
    return out


@dataclass
class SweepResult:
    """``points``: one row per grid point (a column per param, then :data:`POINT_COLUMNS`,
    ``current``, ``pareto``); ``params``; ``timings`` (seconds: compile, detect, evaluate,
    total)."""

    points: pl.DataFrame
    params: list[SweepParam]
    timings: dict = field(default_factory=dict)
    detectors: dict = field(default_factory=dict)


def pareto(frame: pl.DataFrame) -> pl.Series:
    """Bool per row: on the Pareto front of fewer alerts, higher sensitivity and longer median
    lead time (an unknown is the worst value)."""
    burden = frame["alerts_per_100_pd"].fill_null(np.inf).to_numpy()
    sens = frame["sensitivity"].fill_null(-np.inf).to_numpy()
    lead = frame["median_lead_h"].fill_null(-np.inf).to_numpy()
    front = []
    for i in range(frame.height):
        no_worse = (burden <= burden[i]) & (sens >= sens[i]) & (lead >= lead[i])
        better = (burden < burden[i]) | (sens > sens[i]) | (lead > lead[i])
        front.append(not bool((no_worse & better).any()))
    return pl.Series("pareto", front, pl.Boolean)


def sweep(cohort: LabelledCohort, specs: list[str], *, rules=None, sites=(),
          window: dt.timedelta | None = None, nurses: float = 1.0,
          workers: int = WORKERS, lang: str = "fr") -> SweepResult:
    """Evaluate the grid of ``specs`` (``pack.param=START:STOP:STEP`` each) on ``cohort``.

    The point at the params' current values is evaluated too (added when the grid misses it)
    and flagged ``current``.
    """
    t0 = time.perf_counter()
    sources = RuleSources(rules, sites)
    affected = sorted({parse_spec(s)[0] for s in specs})
    unknown = [p for p in affected if p not in sources.packs]
    if unknown:
        raise InputError(f"--sweep: unknown pack '{unknown[0]}'. "
                         + did_you_mean(unknown[0], list(sources.packs), noun="packs"))
    base = sources.load(affected)
    params = check_params(specs, base)
    for name in affected:
        if "risk" in base.pack(name).reads:
            raise InputError(f"--sweep: pack '{name}' reads the risk model's output; a sweep "
                             "evaluates rules without a model.")
    grid = [dict(zip([(p.pack, p.name) for p in params], combo))
            for combo in itertools.product(*(p.values for p in params))]
    current = {(p.pack, p.name): p.current for p in params}
    if not any(all(math.isclose(g[k], v, abs_tol=1e-9) for k, v in current.items())
               for g in grid):
        grid.append(current)
    try:
        point_packs = [[sources.load(affected, g).pack(n) for n in affected] for g in grid]
    except RuleError as err:
        raise InputError(f"--sweep {' '.join(specs)}: the pack refuses a point of the grid "
                         f"(the generated override is named --sweep): {err}") from None
    t_compile = time.perf_counter() - t0

    episodes, spent = _evaluate(cohort, point_packs, workers=workers, lang=lang)
    t = time.perf_counter()
    clean, pats = cohort.inputs.ingest.clean, cohort.inputs.patients
    days = patient_days(clean, pats)

    def table(i):
        return backtest_table(episodes[i], cohort.events, clean, pats, point_packs[i],
                              window=window, nurses=nurses, days=days,
                              levels=("all",)).row(0, named=True)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(table, range(len(grid))))
    frame = pl.DataFrame(
        [{**{f"{p}.{n}": v for (p, n), v in g.items()},
          **{c: r[c] for c in POINT_COLUMNS},
          "current": all(math.isclose(g[k], v, abs_tol=1e-9) for k, v in current.items())}
         for g, r in zip(grid, rows)])
    names = [p.qualified for p in params]
    frame = frame.with_columns(pareto(frame)).sort(names)
    spent["metrics"] = time.perf_counter() - t
    spent["compile"] = t_compile
    spent["total"] = time.perf_counter() - t0
    return SweepResult(frame, params, spent)


def timeline_key(pack) -> tuple:
    """What a pack's timeline is computed from apart from its params' values: two points with
    the same key share the timeline's detector, reading and score columns."""
    dets = tuple((d.column, d.kind, d.metrics,
                  spec_key(d.resolved) if d.resolved is not None else repr(sorted(d.spec.items())),
                  d.staleness_us) for d in pack.detectors.values())
    fresh = tuple(sorted({r.confirm_metrics for r in pack.rules
                          if r.enabled and r.confirm_readings > 1}, key=fresh_column))
    return (pack.name, dets, tuple(pack.metrics), tuple(sorted(pack.staleness_us.items())),
            fresh, pack.evaluate_every_us, pack.cohorts, pack.min_age, pack.max_age,
            pack.time_zone, tuple(pack.scores), tuple(sorted(pack.reads)))


def retarget(timeline, pack, cohort: Cohort):
    """``timeline`` (built for another point with the same :func:`timeline_key`) with the
    columns ``pack``'s param values set: the care-plan defaults and the named conditions."""
    values = timeline.values
    context = context_columns(pack, timeline.ts, timeline.patient, cohort)
    if context:
        values = values.with_columns(context.values())
    for cond in pack.conditions:
        values = values.with_columns(cond.expr)
    return replace(timeline, values=values)


def _evaluate(cohort: LabelledCohort, point_packs: list[list], *, workers: int,
              lang: str) -> tuple[list[pl.DataFrame], dict]:
    """Each point's episodes of its packs, detectors computed once per chunk for all points."""
    spent = {"detect": 0.0, "evaluate": 0.0}
    ing, pats = cohort.inputs.ingest, cohort.inputs.patients
    pats = pats.unique("patient_id", keep="first", maintain_order=True) \
        if pats is not None else None
    until = ing.clean["ts"].max()
    until_us = (until - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) \
        // dt.timedelta(microseconds=1)
    uses = {f"{i}\x00{d.column}": replace(d.resolved, name=f"{i}\x00{d.column}")
            for i, packs in enumerate(point_packs)
            for p in packs for d in p.detectors.values() if d.kind == "detector"}
    union = DetectorPlan.from_specs(uses)
    views = [DetectorPlan(union.by_metric, {d.column: union.uses[f"{i}\x00{d.column}"]
                                            for p in packs for d in p.detectors.values()
                                            if d.kind == "detector"})
             for i, packs in enumerate(point_packs)]
    full = Cohort.of(ing.index.patient_ids, pats)
    index = ing.index.recode(full.ids)
    ts, x = arrays(ing.clean)
    patient_rows = patient_row_bounds(index, full.size)
    found: list[list] = [[] for _ in point_packs]
    for a, b in chunks(patient_rows, CHUNK_ROWS):
        tel, part = chunk_of(ts, x, index, full, patient_rows, a, b)
        t = time.perf_counter()
        det = detect_arrays(tel.ts, tel.x, tel.index, union)
        spent["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        # one timeline per distinct key, built from the first point that has it
        firsts: dict = {}
        for i, packs in enumerate(point_packs):
            for p in packs:
                if part.in_scope(p).any() and any(r.enabled for r in p.rules):
                    firsts.setdefault(timeline_key(p), (i, p))

        def built(item):
            i, p = item
            return build(p, tel, replace(det, plan=views[i]), part, until_us)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            shared = dict(zip(firsts, pool.map(built, firsts.values())))

        def run(i):
            out = []
            for p in point_packs[i]:
                key = timeline_key(p)
                if key not in shared:
                    continue
                src_i, _ = firsts[key]
                tl = shared[key] if src_i == i else retarget(shared[key], p, part)
                out.append(open_episodes(tl, conditions(tl, p, lazy=True), p, lang=lang))
            return out

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, frames in enumerate(pool.map(run, range(len(point_packs)))):
                found[i] += frames
        spent["evaluate"] += time.perf_counter() - t
    return [combine(f, pats) for f in found], spent
