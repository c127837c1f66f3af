"""A labelled cohort read once, then scored with one or more rule sets: what ``veille backtest``,
its ``--compare`` and ``--sweep``, and ``veille report`` share.

>>> from engine.labelled import LabelledCohort, backtest_frame
>>> cohort = LabelledCohort.load()                      # doctest: +SKIP
>>> backtest_frame(cohort).filter(level="pack").select("pack", "sensitivity")  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .backtest import backtest_table, load_events
from .errors import InputError
from .paths import bundled
from .pipeline import Engine, Inputs, Result, load_inputs

COHORT_FILES = ("telemetry", "patients", "events")


@dataclass
class LabelledCohort:
    """Telemetry and patients ingested once (:class:`engine.pipeline.Inputs`) and the labelled
    events (:func:`engine.backtest.load_events`)."""

    inputs: Inputs
    events: pl.DataFrame
    #: event types no pack detects that were left out, with their counts
    unknown: dict
    files: dict
    folder: Path

    @classmethod
    def load(cls, folder: str | Path | None = None, *, telemetry=None, patients=None,
             events=None, tz: str | None = None, columns: dict[str, str] | None = None,
             skip_unknown: bool = False) -> "LabelledCohort":
        """Read a cohort folder (``telemetry.parquet``, ``patients.parquet``,
        ``events.parquet``, as ``veille generate`` writes them; default: the bundled sample),
        any of its files replaced by the one given."""
        folder = Path(folder) if folder is not None else bundled("data_samples") / "cohort"
        files = {"telemetry": telemetry, "patients": patients, "events": events}
        for name, given in files.items():
            if given is None:
                files[name] = folder / f"{name}.parquet"
                if not files[name].exists():
                    raise InputError(f"the cohort folder has no {name}.parquet (give "
                                     f"--{name}).", path=str(folder))
        labelled, unknown = load_events(str(files["events"]), tz=tz, skip_unknown=skip_unknown)
        inputs = load_inputs(str(files["telemetry"]), str(files["patients"]), tz=tz,
                             columns=columns)
        return cls(inputs, labelled, unknown, files, folder)


@dataclass
class Scored:
    """A rule set scored on a labelled cohort: the run and its complete backtest table."""

    engine: Engine
    result: Result
    table: pl.DataFrame
    seconds: float = 0.0
    options: dict = field(default_factory=dict)


def score(cohort: LabelledCohort, engine: Engine, *, window: dt.timedelta | None = None,
          nurses: float = 1.0) -> Scored:
    """Score the cohort with ``engine`` and draw up the backtest table
    (:func:`engine.backtest.backtest_table`)."""
    t = time.perf_counter()
    result = engine.score_inputs(cohort.inputs)
    table = backtest_table(result.episodes, cohort.events, result.clean, result.patients,
                           engine.ruleset.packs, window=window, nurses=nurses)
    return Scored(engine, result, table, time.perf_counter() - t,
                  {"window": window, "nurses": nurses})


def backtest_frame(cohort: LabelledCohort | str | Path | None = None, rules=None, sites=(), *,
                   model=None, window: dt.timedelta | None = None,
                   nurses: float = 1.0) -> pl.DataFrame:
    """The complete backtest table of a cohort (a folder, or a loaded one) with rule packs and
    site overrides: the frame ``veille backtest`` prints."""
    if not isinstance(cohort, LabelledCohort):
        cohort = LabelledCohort.load(cohort)
    eng = Engine.from_paths(rules, sites=sites, model=model)
    return score(cohort, eng, window=window, nurses=nurses).table
