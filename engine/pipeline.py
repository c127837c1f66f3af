"""The ``Engine`` façade: telemetry and patients in, a ranked alert queue out.

The stages, each a function of frames that a caller can run, stop after, or feed directly::

    ingest     engine.ingest.ingest            raw rows → clean rows + quarantine (+ series index)
    detect     engine.detect.detect            every distinct detector of the packs, once
    timeline   engine.timeline.build           per pack: evaluation times, as-of values, scores
    rules      engine.ruleset.evaluate         per rule: its condition on the timeline
    episodes   engine.episodes.open_episodes   conditions → episodes (timing, follow-up)
    queue      engine.queue.build_queue        episodes → the ranked alert queue

:func:`evaluate_packs` chains detect → episodes over clean telemetry, in chunks of whole
patients (every stage after ingest is per patient, so a chunk's result does not depend on the
others and memory stays bounded by the chunk); :meth:`Engine.score` adds ingest before and the
queue after, and times each stage.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from . import arrow_buffers
from . import queue as queue_mod
from .detect import DetectorPlan, arrays, concat_ranges, detect_arrays
from .episodes import PENDING_COLUMNS, combine, combine_pending, open_episodes
from .errors import InputError
from .ingest import IngestResult, Reconciliation, ingest
from .ingest.index import SeriesIndex
from .patients import Cohort, check_patients, load_patients
from .paths import bundled
from .ruleset.evaluate import conditions
from .ruleset.i18n import DEFAULT_LANG, check_lang
from .schema import METRIC_NAMES
from .timeline import Telemetry, build

if TYPE_CHECKING:
    from .hygiene import HygieneConfig, HygieneReport

#: rows of telemetry per chunk of whole patients: large enough that per-chunk overheads vanish,
#: small enough that the chunk's detector outputs and timelines stay in a few hundred MB
CHUNK_ROWS = 2_000_000
#: chunks evaluated at the same time (each one's kernels are themselves parallel)
WORKERS = 2
STAGES = ("ingest", "detect", "timeline", "rules+episodes", "risk", "queue")
#: the furthest a queue may be drawn up after the latest reading of the input: beyond it the
#: export is stale (a year of silence for every device) and an evaluation cadence would run over
#: a span no telemonitoring programme has
MAX_AS_OF_AFTER_LATEST = dt.timedelta(days=366)


@dataclass
class Result:
    """Everything a run produced. ``queue`` is what the coordination platform consumes."""

    clean: pl.DataFrame
    quarantine: pl.DataFrame
    report: Reconciliation
    patients: pl.DataFrame | None
    episodes: pl.DataFrame
    queue: pl.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    as_of: dt.datetime | None = None
    #: rules whose condition holds at a patient's last evaluation time without having fired
    #: (``for:``, ``confirm_readings`` or a cooldown to come): :data:`engine.episodes.PENDING_COLUMNS`
    pending: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PENDING_COLUMNS))
    #: the risk model's calibrated probability at every point of each patient's 4-hour grid
    #: (``patient_id``, ``ts``, ``risk``); None without a model
    risk: pl.DataFrame | None = None
    #: the model's input at those times (``patient_id``, ``ts``, the features in order)
    features: pl.DataFrame | None = None
    #: alerts hidden by the hygiene stage, by kind (:class:`engine.hygiene.HygieneReport`);
    #: None when hygiene is off
    hygiene: "HygieneReport | None" = None
    #: how a streamed run read its file (its chunks, and 'in file order' or 'ordered by
    #: DuckDB first'); None
    #: when the input was read whole (:mod:`engine.stream`)
    streamed: str | None = None
    #: the risk grid times scored, when ``risk`` keeps only each patient's latest (a streamed
    #: run); None otherwise
    risk_points: int | None = None
    #: the risk grid's times, when ``risk`` and ``features`` hold only the rows the queue reads
    #: (:meth:`Engine.score_inputs` with ``risk_at="queue"``, as the command line scores); None
    #: when they hold every grid time
    risk_grid: int | None = None

    @property
    def alerts_by_severity(self) -> dict[str, int]:
        return queue_mod.summary(self.queue)


class Engine:
    """Score telemetry with a set of rule packs.

    Examples
    --------
    >>> import engine
    >>> eng = engine.Engine.from_paths()          # bundled rules
    >>> result = eng.score(*engine.paths.sample_cohort())   # doctest: +SKIP
    >>> result.queue.head()                        # doctest: +SKIP
    """

    def __init__(self, ruleset, model=None, *, lang: str = DEFAULT_LANG,
                 hygiene: "HygieneConfig | None" = None):
        self.ruleset = ruleset
        self.model = model
        #: the alert-hygiene stage's settings (:mod:`engine.hygiene`); None: off, the queue as
        #: ranked (``veille score`` turns it on unless ``--no-hygiene``)
        self.hygiene = hygiene
        #: the language of the alerts' titles and reasons: 'fr' (default) or 'en'
        self.lang = check_lang(lang)
        packs = list(ruleset.packs)
        if model is not None:
            from .risk.features import features_pack

            packs.append(features_pack())
        self.plan = DetectorPlan.of(packs)

    @classmethod
    def from_paths(cls, rules: str | Path | Sequence[str | Path] | None = None,
                   sites: Sequence[str | Path] = (), *, model: str | Path | None = None,
                   lang: str = DEFAULT_LANG,
                   hygiene: "HygieneConfig | None" = None) -> "Engine":
        """An engine over rule packs (default: the bundled ``rules/``) and site overrides, with
        the risk model of the artifact folder ``model`` (``"default"``: the bundled one; None:
        no model, the queue ranks by severity then waiting time). ``lang`` is the language of
        the alerts' titles and reasons: 'fr' (the default) or 'en' (rules/README.md,
        "Languages")."""
        from .ruleset import load_rules

        if rules is None:
            rules = [bundled("rules")]
        elif isinstance(rules, (str, Path)):
            rules = [rules]
        risk = None
        if model is not None:
            from .risk.model import RiskModel

            risk = RiskModel.load(model)
        return cls(load_rules(list(rules), sites=list(sites)), model=risk, lang=lang,
                   hygiene=hygiene)

    def score(self, telemetry, patients=None, *, tz: str | None = None,
              now: dt.datetime | None = None, as_of: dt.datetime | None = None,
              columns: dict[str, str] | None = None, metric: str | None = None,
              unit: str | None = None, programme: str | None = None,
              progress: Callable[[str], None] | None = None, silences: Sequence = (),
              memory_limit: int | None = None) -> Result:
        """Run every stage. ``telemetry`` and ``patients`` are paths or frames.

        ``as_of`` is the time the queue is drawn up for: rules are evaluated up to it, so a device
        that stopped sending before it is seen as silent. It defaults to the latest reading in
        the input (a batch over an export describes the moment of the export). ``now`` is only
        the reference for refusing future timestamps. ``columns``, ``metric`` and ``unit`` adapt
        an export to the contract (see :func:`engine.ingest.ingest`); ``programme`` enrols
        every patient without a patients table in one programme (e.g. a CGM export: diabetes).

        A Parquet file whose in-memory run would need more than ``memory_limit`` bytes
        (default: a quarter of the machine's memory) is streamed in chunks of whole patients
        (:mod:`engine.stream`): the same queue, quarantine and accounting in bounded memory.
        """
        from . import stream

        how = stream.plan(telemetry, memory_limit)
        if how.streams:
            return stream.score(self, telemetry, patients, chunk_rows=how.chunk_rows,
                                memory_limit=how.limit, tz=tz, now=now, as_of=as_of,
                                columns=columns, metric=metric, unit=unit, programme=programme,
                                silences=silences, progress=progress)
        if progress:
            progress("ingest")
        inputs = load_inputs(telemetry, patients, tz=tz, now=now, columns=columns,
                             metric=metric, unit=unit, programme=programme)
        return self.score_inputs(inputs, as_of=as_of, progress=progress, silences=silences)

    def score_inputs(self, inputs: "Inputs", *, as_of: dt.datetime | None = None,
                     progress: Callable[[str], None] | None = None,
                     silences: Sequence = (), history=None, risk_at: str = "grid") -> Result:
        """The stages after ingest, on inputs from :func:`load_inputs`. ``silences``
        (:class:`engine.hygiene.Silence`) are honoured when hygiene is on. With ``history``
        (:func:`engine.incremental.open_history`), the run continues a store's history: it
        evaluates the times after the store's last run from the states it left, and the
        result holds every episode (:mod:`engine.incremental`).

        ``risk_at`` says where the risk model scores: ``"grid"``, every time of each patient's
        4-hour grid (``Result.risk`` and ``features`` hold them all: what a report, a backtest
        or a notebook reads); ``"queue"``, only the grid times the queue reads
        (:func:`engine.risk.model.queue_rows`: the same queue, the model run on a few rows per
        patient instead of six a day; ``Result.risk_grid`` counts the grid). The command line
        scores so. A pack whose rules read ``risk`` needs every grid time: with one, ``"queue"``
        scores the whole grid."""
        timings = {"ingest": inputs.seconds}
        ing, pats = inputs.ingest, inputs.patients
        require_usable(ing)
        until = check_as_of(as_of, ing, inputs.now) if as_of is not None \
            else ing.clean["ts"].max()
        clean, index, report = cut_after(ing, until)
        quarantine = ing.quarantine
        resume = None
        if history is not None:
            clean, index, report, quarantine = history.telemetry(clean, index, report,
                                                                 quarantine)
            resume = history.resume
        check_care_plan(pats, self.ruleset.packs, inputs.patients_label)
        ev = self.evaluate(clean, index, pats, until=until, timings=timings, progress=progress,
                           history=history, resume=resume, risk_at=risk_at)
        q, cleaned = self.rank(ev, pats, until=until, timings=timings, progress=progress,
                               silences=silences)
        return Result(clean=clean, quarantine=quarantine, report=report, patients=pats,
                      episodes=ev.episodes, queue=q, timings=timings, as_of=until,
                      pending=combine_pending(ev.pending, pats), risk=ev.risk,
                      features=ev.features, hygiene=cleaned, risk_grid=ev.risk_grid)

    def evaluate(self, clean: pl.DataFrame, index: SeriesIndex, pats: pl.DataFrame | None, *,
                 until: dt.datetime, timings: dict, progress: Callable[[str], None] | None = None,
                 history=None, resume=None, risk_at: str = "grid") -> "Evaluation":
        """The per-patient stages on clean telemetry cut at ``until``: detect → episodes of
        every pack, then the risk model and the packs that read it. Patients never meet here,
        so slices of whole patients evaluated apart and merged (:func:`merge_evaluations`) give
        what one evaluation of them all gives. ``risk_at``: see :meth:`score_inputs`."""
        if risk_at not in ("grid", "queue"):
            raise ValueError(f"risk_at must be 'grid' or 'queue'; got {risk_at!r}.")
        pending: list = []
        parts: list | None = None
        fpack = None
        packs = list(self.ruleset.packs)
        later: list = []
        if self.model is not None:
            from .risk.features import features_pack

            parts, fpack = [], features_pack()
            # packs whose rules read the risk run after the model, which reads the others'
            # alerts (rule states) among its features
            later = [p for p in packs if "risk" in p.reads]
            packs = [p for p in packs if "risk" not in p.reads]
        episodes = evaluate_packs(packs, clean, pats, until=until, index=index,
                                  plan=self.plan, timings=timings, progress=progress,
                                  lang=self.lang,
                                  pending=pending, features=parts, features_pack=fpack,
                                  resume=resume)
        if history is not None:
            episodes = history.merge(episodes, pats)
        risk = alert_risk = feats = grid = None
        if self.model is not None:
            from .risk import features as F
            from .risk import model as M

            if progress:
                progress("risk")
            t = time.perf_counter()
            feats = F.assemble(parts, episodes)
            if risk_at == "queue" and not later:
                grid = feats.height
                feats = feats[M.queue_rows(feats, episodes)]
            risk = M.score(self.model, feats)
            timings["risk"] = timings.get("risk", 0.0) + time.perf_counter() - t
            if later:
                more = evaluate_packs(later, clean, pats, until=until, index=index,
                                      plan=self.plan, timings=timings, pending=pending,
                                      lang=self.lang,
                                      risk=risk, resume=resume)
                episodes = combine([episodes, more], pats)
            t = time.perf_counter()
            alert_risk = M.for_alerts(self.model, feats, risk, episodes, lang=self.lang)
            timings["risk"] += time.perf_counter() - t
        return Evaluation(episodes, pending, risk, feats, alert_risk, grid)

    def rank(self, ev: "Evaluation", pats: pl.DataFrame | None, *, until: dt.datetime,
             timings: dict, progress: Callable[[str], None] | None = None,
             silences: Sequence = ()) -> "tuple[pl.DataFrame, HygieneReport | None]":
        """The queue of an evaluation (ranked, stable ids), through the hygiene stage when it
        is on; with what hygiene hid (None when off)."""
        t = time.perf_counter()
        if progress:
            progress("queue")
        q = queue_mod.build_queue(ev.episodes, ev.alert_risk)
        cleaned = None
        if self.hygiene is not None:
            from . import hygiene

            q, cleaned = hygiene.apply(q, as_of=until, inhibitions=self.ruleset.inhibitions,
                                       silences=silences, patients=pats, config=self.hygiene,
                                       silence_rules=hygiene.silence_rule_ids(self.ruleset))
        timings["queue"] = time.perf_counter() - t
        return q, cleaned


@dataclass
class Evaluation:
    """What the per-patient stages give (:meth:`Engine.evaluate`): the queue's input."""

    episodes: pl.DataFrame
    #: frames of pending rules, per pack and chunk (:func:`engine.episodes.combine_pending`)
    pending: list = field(default_factory=list)
    #: the risk at every grid time, the features it read, and each episode's risk and factors
    #: (:func:`engine.risk.model.for_alerts`); None without a model
    risk: pl.DataFrame | None = None
    features: pl.DataFrame | None = None
    alert_risk: pl.DataFrame | None = None
    #: the grid's times when ``risk`` and ``features`` hold only the rows the queue reads
    risk_grid: int | None = None


def merge_evaluations(parts: Sequence[Evaluation], patients: pl.DataFrame | None) -> Evaluation:
    """One evaluation of the patients of ``parts``, evaluations of disjoint sets of whole
    patients: their episodes combined as chunks' are, the risk frames in patient and time
    order."""
    def stack(frames):
        frames = [f for f in frames if f is not None]
        return pl.concat(frames).sort("patient_id", "ts") if frames else None

    alert_risk = [p.alert_risk for p in parts if p.alert_risk is not None]
    return Evaluation(combine([p.episodes for p in parts], patients),
                      [f for p in parts for f in p.pending],
                      stack([p.risk for p in parts]), stack([p.features for p in parts]),
                      pl.concat(alert_risk) if alert_risk else None,
                      None if all(p.risk_grid is None for p in parts)
                      else sum(p.risk_grid or 0 for p in parts))


@dataclass
class Inputs:
    """Checked telemetry and patients, ready for :meth:`Engine.score_inputs`."""

    ingest: IngestResult
    patients: pl.DataFrame | None
    seconds: float
    now: dt.datetime | None = None
    #: how the patients table is named in messages (its path)
    patients_label: str = "patients"


def load_inputs(telemetry, patients=None, *, tz: str | None = None,
                now: dt.datetime | None = None, columns: dict[str, str] | None = None,
                metric: str | None = None, unit: str | None = None,
                programme: str | None = None) -> Inputs:
    """Check the patients table and ingest telemetry (see :meth:`Engine.score`).

    Independent of the rules, so a caller can run it while the rule packs load (the command
    line does: reading a large export overlaps the packs' parsing and the kernels' loading).
    """
    t = time.perf_counter()
    now = now or dt.datetime.now(dt.timezone.utc)
    pats, label = patients_input(patients, programme)
    ing: IngestResult = ingest(telemetry, tz=tz, now=now, columns=columns, metric=metric,
                               unit=unit, patients=pats)
    if programme is not None:
        pats = programme_table(ing.index.patient_ids, programme)
    return Inputs(ingest=ing, patients=pats, seconds=time.perf_counter() - t, now=now,
                  patients_label=label)


def patients_input(patients, programme: str | None = None) -> tuple[pl.DataFrame | None, str]:
    """The checked patients table (a path or a frame; None without one) and how messages name
    it. A table and a ``programme`` for every patient exclude each other."""
    label = "patients" if isinstance(patients, pl.DataFrame) or patients is None \
        else str(patients)
    if patients is None:
        return None, label
    if programme is not None:
        raise InputError("give either a patients table or a programme for every "
                         "patient, not both.")
    return (check_patients(patients) if isinstance(patients, pl.DataFrame)
            else load_patients(patients)), label


def programme_table(ids: pl.Series, programme: str) -> pl.DataFrame:
    """The patients table enrolling every patient of ``ids`` in one programme (``--programme``)."""
    return check_patients(pl.DataFrame({"patient_id": ids, "programme": programme}),
                          name="--programme")


@dataclass
class Slice:
    """What :func:`score_slice` gives for a slice of whole patients."""

    #: the per-patient stages' output; None when the slice has no patient to evaluate
    evaluation: Evaluation | None
    quarantine: pl.DataFrame
    report: Reconciliation
    timings: dict[str, float]
    #: the latest and earliest clean reading of the slice (before the cut at ``until``)
    latest: dt.datetime | None = None
    earliest: dt.datetime | None = None
    #: the slice's patients with clean telemetry
    patient_ids: pl.Series | None = None
    #: risk grid times scored (set when the risk frame is cut to each patient's latest)
    risk_points: int = 0


def score_slice(engine: Engine, raw: pl.DataFrame, patients: pl.DataFrame | None, *,
                now: dt.datetime, until: dt.datetime | None, tz: str | None = None,
                name: str = "<frame>", columns: dict[str, str] | None = None,
                metric: str | None = None, unit: str | None = None,
                programme: str | None = None, rows: pl.Series | None = None) -> Slice:
    """Ingest and the per-patient stages (:meth:`Engine.evaluate`) on a slice of the input
    holding whole patients: every raw row of its patients, in input order, and their rows of
    the patients table (with those enrolled without telemetry), so that
    :func:`merge_evaluations` of the slices' evaluations and the slices' quarantines and
    reports, merged, are the run's. What ingest computes over the whole input comes in as
    arguments: ``now``, and ``until`` (the run's ``as_of``, by default the latest clean reading
    of the whole input; None: ingest only, no evaluation). ``rows`` are the raw rows' 1-based
    numbers in the whole input (the quarantine's ``row``). ``name`` names the whole input in
    messages.
    """
    from .schema import TELEMETRY_SCHEMA

    t = time.perf_counter()
    if raw.height:
        ing = ingest(raw, tz=tz, now=now, name=name, columns=columns, metric=metric,
                     unit=unit, patients=patients)
    else:                   # patients enrolled without any telemetry, in no slice's rows
        from .ingest import QUARANTINE_SCHEMA

        ing = IngestResult(pl.DataFrame(schema=TELEMETRY_SCHEMA),
                           pl.DataFrame(schema=QUARANTINE_SCHEMA),
                           Reconciliation(source=name, rows_in=0, rows_used=0,
                                          rows_quarantined=0, duplicates_collapsed=0))
    if programme is not None:
        patients = programme_table(ing.index.patient_ids, programme)
    quarantine = ing.quarantine
    if rows is not None and quarantine.height:
        quarantine = quarantine.with_columns(row=rows.gather(quarantine["row"] - 1)
                                             .cast(pl.Int64))
    timings = {"ingest": time.perf_counter() - t}
    out = Slice(None, quarantine, ing.report, timings, latest=ing.clean["ts"].max(),
                earliest=ing.clean["ts"].min(), patient_ids=ing.index.patient_ids)
    if until is None:
        return out
    clean, index, out.report = cut_after(ing, until, allow_empty=True)
    if clean.height or (patients is not None and patients.height):
        out.evaluation = engine.evaluate(clean, index, patients, until=until, timings=timings)
    return out


def result_of_slices(engine: Engine, slices: Sequence[Slice], patients: pl.DataFrame | None,
                     until: dt.datetime, source: str, *, silences: Sequence = (),
                     progress: Callable[[str], None] | None = None,
                     timings: dict[str, float] | None = None) -> Result:
    """The run's :class:`Result` from the :func:`score_slice` results of slices of whole
    patients covering the input: their evaluations merged (:func:`merge_evaluations`), their
    quarantines in row order, their accounting summed, then ranked (:meth:`Engine.rank`).
    ``Result.clean`` is empty: the slices' telemetry stayed where they were scored. Each
    stage's time is the sum over the slices; ``timings`` adds the caller's own."""
    from .episodes import combine_pending
    from .ingest import QUARANTINE_SCHEMA
    from .schema import TELEMETRY_SCHEMA

    spent: dict[str, float] = {}
    for s in slices:
        for k, v in s.timings.items():
            spent[k] = spent.get(k, 0.0) + v
    spent.update(timings or {})
    ev = merge_evaluations([s.evaluation for s in slices if s.evaluation is not None], patients)
    quarantine = [s.quarantine for s in slices if s.quarantine.height]
    quarantine = (pl.concat(quarantine).sort("row") if quarantine
                  else pl.DataFrame(schema=QUARANTINE_SCHEMA))
    q, cleaned = engine.rank(ev, patients, until=until, timings=spent, progress=progress,
                             silences=silences)
    return Result(clean=pl.DataFrame(schema=TELEMETRY_SCHEMA), quarantine=quarantine,
                  report=merge_reports([s.report for s in slices], source), patients=patients,
                  episodes=ev.episodes, queue=q, timings=spent, as_of=until,
                  pending=combine_pending(ev.pending, patients), risk=ev.risk,
                  features=ev.features, hygiene=cleaned)


class SlicesSummary:
    """What :func:`require_usable` and :func:`check_as_of` read of a whole input, from
    :func:`score_slice` results of slices of it: the accounting, and the slices' latest clean
    readings as ``clean.ts`` (their maximum is the input's)."""

    def __init__(self, slices: Sequence[Slice], source: str):
        self.report = merge_reports([s.report for s in slices], source)
        self.clean = pl.DataFrame({"ts": [s.latest for s in slices if s.latest is not None]},
                                  schema={"ts": pl.Datetime("us", "UTC")})


def settle_slices(engine: Engine, slices: Sequence[Slice], source: str, *,
                  until: dt.datetime | None, as_of: dt.datetime | None, now: dt.datetime,
                  patients: pl.DataFrame | None, programme: str | None,
                  label: str) -> tuple[dt.datetime, pl.DataFrame | None]:
    """What a run scored in slices (Spark's partitions, the stream's chunks) settles once its
    ingest has seen the whole input, as :meth:`Engine.score` does on one frame: the input must
    be usable, and the run's as-of time (``as_of`` checked, else ``until``, the latest clean
    reading, found here when ``until`` is None) not before every reading; ``--programme``
    makes the patients table of the patients seen, and the care plan is checked. Returns the
    as-of time and the table."""
    summary = SlicesSummary(slices, source)
    require_usable(summary)
    if as_of is not None:
        until = check_as_of(as_of, summary, now)
    elif until is None:
        until = summary.clean["ts"].max()        # the latest clean reading of the whole input
    earliest = min((s.earliest for s in slices if s.earliest is not None), default=None)
    if earliest is not None and until < earliest:
        raise nothing_before(summary.report.rows_used, until, earliest, source)
    if programme is not None:
        ids = pl.concat([s.patient_ids for s in slices if s.patient_ids is not None]).sort()
        patients = programme_table(ids, programme)
    check_care_plan(patients, engine.ruleset.packs, label)
    return until, patients


def merge_reports(reports: Sequence[Reconciliation], source: str) -> Reconciliation:
    """The row accounting of an input from that of slices of it holding disjoint patients."""
    total = Reconciliation(source=source, rows_in=0, rows_used=0, rows_quarantined=0,
                           duplicates_collapsed=0)
    reasons: dict[str, int] = {}
    for r in reports:
        for k in ("rows_in", "rows_used", "rows_quarantined", "duplicates_collapsed",
                  "patients", "rows_after_as_of"):
            setattr(total, k, getattr(total, k) + getattr(r, k))
        for k, v in r.by_reason.items():
            reasons[k] = reasons.get(k, 0) + v
    total.by_reason = dict(sorted(reasons.items()))
    return total.check()


def check_care_plan(patients: pl.DataFrame | None, packs, name: str = "patients") -> None:
    """A care-plan value that sets a pack param per patient must lie within the param's bounds
    (``min``/``max``): the error names the patients table's row, column and the bound."""
    if patients is None:
        return
    from .schema import CARE_PLAN
    from .units import UNITS

    for pack in packs:
        for prm in pack.params.values():
            if prm.patient is None or prm.patient not in patients.columns:
                continue
            ratio = prm.type.unit.ratio(UNITS[CARE_PLAN[prm.patient].unit])
            values = patients[prm.patient].cast(pl.Float64) * ratio
            for bound, bad in ((prm.low, values < (prm.low if prm.low is not None else 0)),
                               (prm.high, values > (prm.high if prm.high is not None else 0))):
                if bound is None or not bad.any():
                    continue
                i = int(bad.arg_true()[0])
                side = "below the minimum" if bound == prm.low else "above the maximum"
                raise InputError(
                    f"{prm.patient} {patients[prm.patient][i]:g} sets param '{prm.name}' of pack "
                    f"'{pack.name}' for this patient, and is {side} "
                    f"{bound:g} {prm.unit} the pack allows ({prm.origin}).", path=name,
                    row=i + 1, column=prm.patient)


#: what to do about the commonest reasons a whole input is quarantined
_FIXES = {
    "naive_timestamp": "the timestamps carry no time zone: give the zone they were written in, "
                       "e.g. --tz Europe/Paris",
    "unknown_patient": "no telemetry patient is in the patients table: check that both files "
                       "use the same pseudonymous ids (same spelling, no leading zeros lost)",
    "unknown_metric": "map the export's metric names with --metric (single-metric exports) or "
                      "rename them to canonical metrics or LOINC codes",
    "unconvertible_unit": "give the export's unit with --unit, or check the unit column",
    "future_timestamp": "the times are after the run time: check the export's time zone (--tz) "
                        "or the device clocks",
    "timestamp_too_early": "the times are before 2000: device clocks were reset",
    "unparseable_timestamp": "the ts column is not ISO-8601 date-times",
}


def require_usable(ing: IngestResult) -> None:
    """Refuse a run that would use no row at all: an empty queue would read as "nobody to
    call". The message gives the reasons, most frequent first, and the fix of the first."""
    if ing.clean.height:
        return
    rep = ing.report
    reasons = sorted(rep.by_reason.items(), key=lambda kv: -kv[1])
    listed = ", ".join(f"{k} {v:,}" for k, v in reasons)
    fix = _FIXES.get(reasons[0][0], "see the quarantine reasons") if reasons else ""
    raise InputError(f"no usable row: all {rep.rows_in:,} rows were quarantined ({listed}). "
                     f"Fix: {fix}.", path=rep.source)


def check_as_of(as_of: dt.datetime, ing: IngestResult, now: dt.datetime | None) -> dt.datetime:
    """``as_of`` checked against the run: aware, not in the future, and not absurdly after the
    latest reading (an evaluation cadence runs up to it)."""
    from .ingest import FUTURE_TOLERANCE

    if not isinstance(as_of, dt.datetime) or as_of.tzinfo is None:
        raise InputError(f"as_of must be a timezone-aware datetime. Got {as_of!r} instead.")
    now = now or dt.datetime.now(dt.timezone.utc)
    if as_of > now + FUTURE_TOLERANCE:
        raise InputError(f"--as-of {as_of.isoformat()} is in the future (the run time is "
                         f"{now.isoformat(timespec='seconds')}): a queue is drawn up for a "
                         "moment that has passed.")
    latest = ing.clean["ts"].max()
    if as_of > latest + MAX_AS_OF_AFTER_LATEST:
        raise InputError(f"--as-of {as_of.isoformat()} is more than "
                         f"{MAX_AS_OF_AFTER_LATEST.days} days after the latest reading of the "
                         f"input ({latest.isoformat()}): the export is stale or --as-of is "
                         "mistyped.", path=ing.report.source)
    return as_of


def cut_after(ing: IngestResult, until: dt.datetime, *, allow_empty: bool = False):
    """Clean telemetry up to ``until`` (inclusive), its index, and the row accounting with the
    rows after it counted apart. Raises when no row is left, unless ``allow_empty`` (a slice of
    the input: other slices may have rows)."""
    if until.tzinfo is None:
        raise InputError(f"as_of must be a timezone-aware datetime. Got {until!r} instead.")
    clean, index, report = ing.clean, ing.index, ing.report
    last = clean["ts"].max()
    if last is None or last <= until:
        return clean, index, report
    keep = (clean["ts"] <= until)
    n_after = int((~keep).sum())
    clean = clean.filter(keep)
    if clean.height == 0 and not allow_empty:
        raise nothing_before(n_after, until, ing.clean["ts"].min(), report.source)
    index = SeriesIndex.of(clean)
    report = Reconciliation(**{**report.__dict__, "rows_used": clean.height,
                               "rows_after_as_of": n_after,
                               "patients": index.n_patients}).check()
    return clean, index, report


def nothing_before(n_after: int, until: dt.datetime, earliest: dt.datetime,
                   source: str) -> InputError:
    """The error of a run whose every clean row is after its ``as_of``."""
    return InputError(f"no usable row: every one of the {n_after:,} clean rows is after "
                      f"--as-of {until.isoformat()}; the earliest is {earliest.isoformat()}.",
                      path=source)


def _us(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _patients_table(patients) -> pl.DataFrame | None:
    if patients is None:
        return None
    if not isinstance(patients, pl.DataFrame) or "patient_id" not in patients.columns:
        raise InputError("patients must be a polars DataFrame with a 'patient_id' column.")
    return patients.unique("patient_id", keep="first", maintain_order=True)


def _chunk_weights(packs, ts, index, cohort, patient_rows, until_us) -> np.ndarray:
    """Cumulative work per patient (int64[P+1]): its rows, plus the cadence ticks of the packs
    evaluated on a cadence from its first reading (or enrolment) to ``until`` — so that a
    patient whose readings span years is a chunk of its own rather than a timeline that
    swamps memory."""
    rows = np.diff(patient_rows)
    cadences = [p.evaluate_every_us for p in packs if p.evaluate_every_us]
    if not cadences or until_us is None or cohort.size == 0:
        return patient_rows
    first = np.full(cohort.size, np.iinfo(np.int64).max, np.int64)
    if index.n_series:
        np.minimum.at(first, index.patient, ts[index.offsets[:-1]])
    first = np.minimum(first, np.where(cohort.start == cohort.NO_START,
                                       np.iinfo(np.int64).max, cohort.start))
    span = np.where(first < until_us, until_us - np.minimum(first, until_us), 0)
    ticks = sum(span // every + 1 for every in cadences)
    return np.concatenate([[0], np.cumsum(rows + ticks)]).astype(np.int64)


def _schedule(packs, plan: DetectorPlan, ts, index: SeriesIndex, cohort: Cohort,
              patient_rows: np.ndarray, until_us, chunk_rows: int, features_pack) -> list:
    """The jobs of :func:`evaluate_packs`: ``(packs, plan, with_features, metrics, (a, b))``
    each, the packs to evaluate on patients ``a..b`` with the detectors of ``plan`` (and the
    risk features when ``with_features``), on the readings of ``metrics`` (metric codes; None:
    every reading).

    Each (pack, chunk) costs a fixed ~20 ms (the kernels' calls, the polars queries, the
    episodes' frames) whatever the rows, so a pack that applies to few readings (NEWS2 on the
    COPD and COVID-19 patients, ICOPE's questionnaires) paid it once per chunk of the heavy
    packs (device silence on every reading and hour, CGM glucose): at 1e7 rows, eleven chunks
    times nine such packs was a third of the time of the packs. Packs whose readings and
    ticks in scope (:func:`_pack_work`) are at most half a chunk are evaluated apart, on the
    readings of the metrics they read (:func:`metrics_read`), in chunks sized by those readings
    and their own ticks (usually one or two chunks); the others (and the risk features) in the
    chunks of the whole telemetry, as before. A patient is never split, patients never meet,
    and a pack's timeline holds only the readings of its metrics, so the episodes are the same
    whatever the chunks.
    """
    light, heavy, light_work = [], [], np.zeros(cohort.size, np.int64)
    for pack in packs:
        work = _pack_work(pack, ts, index, cohort, patient_rows, until_us)
        if int(work.sum()) <= chunk_rows // 2:
            light.append(pack)
            light_work += work
        else:
            heavy.append(pack)
    every = chunks(_chunk_weights(heavy or packs, ts, index, cohort, patient_rows, until_us),
                   chunk_rows)
    if not light or not heavy or len(every) < 2:
        return [(list(packs), plan, features_pack is not None, None, c) for c in every]
    light_plan = _plan_for(plan, light)
    heavy_plan = _plan_for(plan, heavy + ([features_pack] if features_pack is not None else []))
    # the light packs' detectors read every series of their metrics in a chunk (any patient)
    names = metrics_read(light)
    codes = None
    if names is None:
        light_work += np.diff(patient_rows)
    else:
        codes = np.array(sorted(METRIC_NAMES.index(m) for m in names), np.int16)
        light_work += _metric_rows(index, cohort.size, names)
    light_chunks = chunks(np.concatenate([[0], np.cumsum(light_work)]).astype(np.int64),
                          chunk_rows)
    # the light packs first: as the pool's last job they would run on one worker alone
    return ([(light, light_plan, False, codes, c) for c in light_chunks]
            + [(heavy, heavy_plan, features_pack is not None, None, c) for c in every])


def metrics_read(packs) -> set[str] | None:
    """The metrics whose readings the timelines of ``packs`` read (None: every metric, for a
    silence or a reading count over any metric): their observed metrics, their detectors'
    metrics, and the metrics of the readings their rules count (``confirm_readings``)."""
    names: set[str] = set()
    for pack in packs:
        names.update(pack.metrics)
        for d in pack.detectors.values():
            if d.metrics is None:
                return None
            names.update(d.metrics)
        for r in pack.rules:
            if r.enabled and r.confirm_readings > 1:
                if r.confirm_metrics is None:
                    return None
                names.update(r.confirm_metrics)
    return names


def _pack_work(pack, ts, index: SeriesIndex, cohort: Cohort, patient_rows: np.ndarray,
               until_us) -> np.ndarray:
    """int64 per patient: the rows and cadence ticks of ``pack``'s timeline, an upper bound
    (the readings of the metrics it reads, :func:`metrics_read`, and its ticks; 0 out of scope
    or with no enabled rule)."""
    if not any(r.enabled for r in pack.rules):
        return np.zeros(cohort.size, np.int64)
    scope = cohort.in_scope(pack)
    work = np.diff(_chunk_weights([pack], ts, index, cohort, patient_rows, until_us))
    names = metrics_read([pack])
    if names is not None:               # the readings of other metrics are not in its timeline
        work += _metric_rows(index, cohort.size, names) - np.diff(patient_rows)
    return np.where(scope, work, 0).astype(np.int64)


def _metric_rows(index: SeriesIndex, n_patients: int, names) -> np.ndarray:
    """int64 per patient: its readings of the metrics ``names``."""
    codes = [METRIC_NAMES.index(m) for m in names]
    lengths = np.diff(index.offsets) * np.isin(index.metric, codes)
    return np.bincount(index.patient, weights=lengths, minlength=n_patients).astype(np.int64)


def _plan_for(plan: DetectorPlan, packs) -> DetectorPlan:
    """``plan`` restricted to the metrics whose detectors ``packs`` read (the timeline finds
    a detector's output through ``plan.uses``, kept whole)."""
    metrics = {plan.uses[d.column][0] for p in packs for d in p.detectors.values()
               if d.kind != "silence"}
    return DetectorPlan({m: s for m, s in plan.by_metric.items() if m in metrics}, plan.uses)


def patient_row_bounds(index: SeriesIndex, n_patients: int) -> np.ndarray:
    """int64[P+1]: the first telemetry row of each patient code (and the end), from the
    series index (rows sorted by patient)."""
    return index.offsets[np.searchsorted(index.patient, np.arange(n_patients + 1))]


def chunk_of(ts, x, index: SeriesIndex, cohort: Cohort, patient_rows: np.ndarray,
             a: int, b: int, *, metrics: np.ndarray | None = None) -> tuple[Telemetry, Cohort]:
    """The telemetry and cohort of patients ``a..b`` (codes of ``cohort``), as the detect and
    timeline stages read them; with ``metrics`` (metric codes), the readings of those metrics
    only (copied; without, the rows are views)."""
    r0, r1 = int(patient_rows[a]), int(patient_rows[b])
    sub = index.patients(a, b)
    if metrics is None:
        return Telemetry(ts[r0:r1], x[r0:r1], sub), cohort.slice(a, b)
    keep = np.flatnonzero(np.isin(sub.metric, metrics))
    lengths = np.diff(sub.offsets)[keep]
    rows = concat_ranges(sub.offsets, keep) + r0
    # in Arrow memory, like every array that may become a column (engine.arrow_buffers)
    kts, kx = arrow_buffers.empty(rows.size, np.int64), arrow_buffers.empty(rows.size, np.float64)
    np.take(ts, rows, out=kts)
    np.take(x, rows, out=kx)
    kept = SeriesIndex(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                       sub.patient[keep], sub.metric[keep], sub.patient_ids)
    return Telemetry(kts, kx, kept), cohort.slice(a, b)


def chunks(patient_rows: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """Patient ranges ``(a, b)`` holding about ``chunk_rows`` rows each (a patient is never
    split; one with more rows than that is a chunk of its own)."""
    n_pat = patient_rows.size - 1
    out, a = [], 0
    while a < n_pat:
        b = int(np.searchsorted(patient_rows, patient_rows[a] + chunk_rows, side="right")) - 1
        b = min(max(b, a + 1), n_pat)
        out.append((a, b))
        a = b
    return out


def evaluate_packs(packs, telemetry: pl.DataFrame, patients: pl.DataFrame | None = None, *,
                   until: dt.datetime | None = None, index: SeriesIndex | None = None,
                   plan: DetectorPlan | None = None, chunk_rows: int = CHUNK_ROWS,
                   workers: int = WORKERS, timings: dict | None = None,
                   progress: Callable[[str], None] | None = None,
                   pending: list | None = None, features: list | None = None,
                   features_pack=None, risk: pl.DataFrame | None = None,
                   lang: str = DEFAULT_LANG, resume=None) -> pl.DataFrame:
    """Episodes of every enabled rule of ``packs`` on clean telemetry (detect → timeline → rules
    → episodes, then the follow-up window), sorted by patient, opening time and rule.

    ``telemetry`` is clean telemetry as ingest gives it (sorted by patient, metric, time; not
    checked again), with no reading after ``until``; ``index`` its series index. With
    ``pending`` (a list), the frames of the rules pending at each patient's last evaluation
    time are appended to it (:func:`engine.episodes.combine_pending` joins them). With
    ``features`` (a list) and ``features_pack`` (:func:`engine.risk.features.features_pack`,
    whose detectors ``plan`` must hold), each chunk's risk-model features on the pack's 4-hour
    grid are appended to it (:func:`engine.risk.features.assemble` adds the rule states).
    ``risk`` (the risk stage's ``patient_id``, ``ts``, ``risk``) is what rules reading ``risk``
    see; without it their ``risk`` is unknown. ``lang`` ('fr' or 'en') is the language of the
    episodes' titles and reasons (:mod:`engine.ruleset.i18n`). ``resume`` (an incremental
    run's :class:`engine.incremental.Resume`) starts each (patient, rule) where a store's
    previous run left it (:func:`engine.episodes.open_episodes`).
    """
    if until is not None and (not isinstance(until, dt.datetime) or until.tzinfo is None):
        raise InputError(f"until must be a timezone-aware datetime (e.g. datetime.now(timezone."
                         f"utc)). Got {until!r} instead.")
    check_lang(lang)
    timings = timings if timings is not None else {}
    for s in ("detect", "timeline", "rules+episodes") + (("risk",) if features is not None
                                                         else ()):
        timings.setdefault(s, 0.0)
    pats = _patients_table(patients)
    check_care_plan(pats, packs)
    index = index if index is not None else SeriesIndex.of(telemetry)
    plan = plan if plan is not None else DetectorPlan.of(packs)
    cohort = Cohort.of(index.patient_ids, pats)
    index = index.recode(cohort.ids)
    ts, x = arrays(telemetry)
    until_us = _us(until) if until is not None else None
    patient_rows = patient_row_bounds(index, cohort.size)
    work = _schedule(packs, plan, ts, index, cohort, patient_rows, until_us, chunk_rows,
                     features_pack if features is not None else None)

    def run_chunk(job):
        group, group_plan, with_features, metrics, (a, b) = job
        spent = dict.fromkeys(("detect", "timeline", "rules+episodes", "risk"), 0.0)
        tel, part = chunk_of(ts, x, index, cohort, patient_rows, a, b, metrics=metrics)
        t = time.perf_counter()
        det = detect_arrays(tel.ts, tel.x, tel.index, group_plan)
        spent["detect"] += time.perf_counter() - t
        found, waiting = [], ([] if pending is not None else None)
        for pack in group:
            if not any(r.enabled for r in pack.rules) or not part.in_scope(pack).any():
                continue
            t = time.perf_counter()
            # without a resumed state, a rule's guarded-out patients are not read (only_needed)
            tl = build(pack, tel, det, part, until_us, risk=risk, only_needed=resume is None)
            t2 = time.perf_counter()
            # the conditions are evaluated in the same polars pass as the episodes' coding of
            # them: their time is counted with the episodes
            found.append(open_episodes(tl, conditions(tl, pack, lazy=True), pack,
                                       pending=waiting, lang=lang, resume=resume))
            spent["timeline"] += t2 - t
            spent["rules+episodes"] += time.perf_counter() - t2
        feats = None
        if with_features:
            from .risk.features import timeline_features

            t = time.perf_counter()
            feats = timeline_features(build(features_pack, tel, det, part, until_us,
                                            readings=False), features_pack)
            spent["risk"] += time.perf_counter() - t
        return found, spent, waiting, feats

    # Chunks run two at a time: while one is in a kernel or in polars (both release the GIL),
    # the other formats its episodes' evidence and reasons in Python.
    out = []
    if progress:
        progress("detect")
    if workers > 1 and len(work) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(work))) as pool:
            results = list(pool.map(run_chunk, work))
    else:
        results = map(run_chunk, work)
    for found, spent, waiting, feats in results:
        out += found
        if pending is not None:
            pending += waiting
        if feats is not None:
            features.append(feats)
        for k, v in spent.items():
            if k in timings:
                timings[k] += v
    t = time.perf_counter()
    episodes = combine(out, pats)
    timings["rules+episodes"] += time.perf_counter() - t
    return episodes
