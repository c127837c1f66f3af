"""The ``Engine`` façade: telemetry and patients in, a ranked alert queue out (DESIGN.md §1-2).

Each stage is a plain function of frames (``engine.ingest``, ``engine.detectors``,
``engine.ruleset``, ``engine.queue``), so a caller can stop at any stage; ``Engine.score`` only
chains them and times them.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import queue as queue_mod
from .episodes import within_follow_up
from .errors import InputError
from .ingest import IngestResult, Reconciliation, ingest
from .patients import check_patients, load_patients
from .paths import bundled


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

    def __init__(self, ruleset):
        self.ruleset = ruleset

    @classmethod
    def from_paths(cls, rules: str | Path | Sequence[str | Path] | None = None,
                   sites: Sequence[str | Path] = ()) -> "Engine":
        from .ruleset import load_rules

        if rules is None:
            rules = [bundled("rules")]
        elif isinstance(rules, (str, Path)):
            rules = [rules]
        return cls(load_rules(list(rules), sites=list(sites)))

    def score(self, telemetry, patients=None, *, tz: str | None = None,
              now: dt.datetime | None = None, as_of: dt.datetime | None = None,
              columns: dict[str, str] | None = None, metric: str | None = None,
              unit: str | None = None, programme: str | None = None,
              progress: Callable[[str], None] | None = None) -> Result:
        """Run every stage. ``telemetry`` and ``patients`` are paths or frames.

        ``as_of`` is the time the queue is drawn up for: rules are evaluated up to it, so a device
        that stopped sending before it is seen as silent. It defaults to the latest reading in
        the input (a batch over an export describes the moment of the export). ``now`` is only
        the reference for refusing future timestamps. ``columns``, ``metric`` and ``unit`` adapt
        an export to the contract (see :func:`engine.ingest.ingest`); ``programme`` enrols
        every patient without a patients table in one programme (e.g. a CGM export: diabetes).
        """
        if progress:
            progress("ingest")
        inputs = load_inputs(telemetry, patients, tz=tz, now=now, columns=columns,
                             metric=metric, unit=unit, programme=programme)
        return self.score_inputs(inputs, as_of=as_of, progress=progress)

    def score_inputs(self, inputs: "Inputs", *, as_of: dt.datetime | None = None,
                     progress: Callable[[str], None] | None = None) -> Result:
        """The stages after ingest, on inputs from :func:`load_inputs`."""
        timings = {"ingest": inputs.seconds}
        step = progress or (lambda _stage: None)
        ing, pats = inputs.ingest, inputs.patients

        t = time.perf_counter()
        step("rules")
        until = as_of if as_of is not None else (ing.clean["ts"].max() if ing.clean.height
                                                  else None)
        episodes = within_follow_up(self.ruleset.evaluate(ing.clean, pats, until=until), pats)
        timings["rules"] = time.perf_counter() - t

        t = time.perf_counter()
        step("queue")
        q = queue_mod.build_queue(episodes)
        timings["queue"] = time.perf_counter() - t
        return Result(clean=ing.clean, quarantine=ing.quarantine, report=ing.report,
                      patients=pats, episodes=episodes, queue=q, timings=timings)


@dataclass
class Inputs:
    """Checked telemetry and patients, ready for :meth:`Engine.score_inputs`."""

    ingest: IngestResult
    patients: pl.DataFrame | None
    seconds: float


def load_inputs(telemetry, patients=None, *, tz: str | None = None,
                now: dt.datetime | None = None, columns: dict[str, str] | None = None,
                metric: str | None = None, unit: str | None = None,
                programme: str | None = None) -> Inputs:
    """Ingest telemetry and check the patients table (see :meth:`Engine.score`).

    Independent of the rules, so a caller can run it while the rule packs load (the command
    line does: reading a large export overlaps the packs' parsing and the kernels' loading).
    """
    t = time.perf_counter()
    ing: IngestResult = ingest(telemetry, tz=tz, now=now, columns=columns, metric=metric,
                               unit=unit)
    pats = None
    if patients is not None:
        if programme is not None:
            raise InputError("give either a patients table or a programme for every "
                             "patient, not both.")
        pats = (check_patients(patients) if isinstance(patients, pl.DataFrame)
                else load_patients(patients))
    elif programme is not None:
        pats = check_patients(pl.DataFrame({
            "patient_id": ing.clean["patient_id"].unique().sort(),
            "programme": programme}), name="--programme")
    return Inputs(ingest=ing, patients=pats, seconds=time.perf_counter() - t)
