"""Labelled synthetic home-telemonitoring cohorts (no real patient, ever).

``generate_cohort`` draws patients of the seven programmes with their own baselines, simulates
what their devices send (irregular times, missed days, transmission gaps, device noise and
plausible-but-wrong artefacts) and places labelled deterioration episodes whose onset shows in
the signals before the event. ``write_cohort`` writes the three frames as Parquet; the same
arguments give the same bytes.

>>> from engine.synth import generate_cohort
>>> cohort = generate_cohort(20, days=21, seed=7)
>>> sorted(cohort.telemetry.columns) == sorted(["patient_id", "ts", "metric", "value", "unit",
...                                             "source"])
True

Modules: :mod:`.cohort` (patients, programme and episode allocation), :mod:`.episodes` (event
models), :mod:`.signals` and :mod:`.glucose` (devices per programme), :mod:`.context` (one
patient's simulation and the final clean-up of every series), :mod:`.timeline` (time grids and
noise), :mod:`.variant` (the generator's settings: noise, sampling, missed readings, episode size
and speed, gaps, artefacts; :data:`VARIANTS` names the default and the held-out ``"shifted"``
configuration), :mod:`.generate` (frames), :mod:`.write` (Parquet, and ``generator.json``).
"""
from __future__ import annotations

from .episodes import EVENT_MODELS, PROGRAMME_EVENTS, Effect, EventModel
from .generate import DEFAULT_START, EVENTS_SCHEMA, Cohort, generate_cohort
from .variant import VARIANTS, Variant
from .write import read_cohort, read_generator_record, write_cohort

__all__ = ["Cohort", "generate_cohort", "write_cohort", "read_cohort", "read_generator_record",
           "Variant", "VARIANTS", "EVENT_MODELS", "PROGRAMME_EVENTS", "EventModel", "Effect",
           "DEFAULT_START", "EVENTS_SCHEMA"]
