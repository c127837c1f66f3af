"""Assemble a synthetic cohort: patients, their episodes, their telemetry, as polars frames.

A :class:`~engine.synth.variant.Variant` (``variant=``) changes the generator's settings; the
default variant is the generator as it always was, frame for frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Sequence

import numpy as np
import polars as pl

from ..errors import InputError
from ..schema import METRICS, PROGRAMMES, TELEMETRY_SCHEMA, TS_DTYPE
from .cohort import Patient, assign_episodes, draw_patients, patients_frame
from .episodes import Episode
from .signals import simulate
from .timeline import timestamps
from .variant import Variant, resolve_variant

#: default first day of a cohort: fixed, so that a seed alone fixes the bytes
DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.String(), "event_type": pl.String(), "onset": TS_DTYPE,
    "event_time": TS_DTYPE, "severity": pl.String(), "programme": pl.String(),
}


@dataclass(frozen=True)
class Cohort:
    """A labelled synthetic cohort.

    Attributes
    ----------
    telemetry : polars.DataFrame
        Clean telemetry (:data:`engine.schema.TELEMETRY_SCHEMA`), sorted by
        ``(patient_id, metric, ts)``, one row per ``(patient_id, metric, ts)``.
    patients : polars.DataFrame
        One row per patient (:data:`engine.schema.PATIENT_SCHEMA`), sorted by ``patient_id``.
    events : polars.DataFrame
        The labelled episodes: ``patient_id, event_type, onset, event_time, severity,
        programme``, sorted by ``(patient_id, event_time)``.
    """

    telemetry: pl.DataFrame
    patients: pl.DataFrame
    events: pl.DataFrame


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"The '{name}' parameter of generate_cohort must be an int >= {low}. "
                         f"Got {value!r} instead.")
    return int(value)


def start_us(start: datetime | date | str | None) -> int:
    """The cohort's first instant in µs since the epoch; a naive date or datetime is UTC."""
    if start is None:
        start = DEFAULT_START
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            raise InputError("The 'start' parameter of generate_cohort must be an ISO date or "
                             f"datetime like '2026-01-05'. Got {start!r} instead.") from None
    if isinstance(start, date) and not isinstance(start, datetime):
        start = datetime(start.year, start.month, start.day)
    if not isinstance(start, datetime):
        raise InputError("The 'start' parameter of generate_cohort must be a datetime. "
                         f"Got {start!r} instead.")
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return (start - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _check_programmes(programmes: Sequence[str] | None) -> tuple[str, ...]:
    if programmes is None:
        return PROGRAMMES
    if isinstance(programmes, str):
        programmes = [programmes]
    chosen = tuple(dict.fromkeys(programmes))
    unknown = [p for p in chosen if p not in PROGRAMMES]
    if unknown or not chosen:
        raise InputError("The 'programmes' parameter of generate_cohort must list programmes "
                         f"among {', '.join(PROGRAMMES)}. Got {list(programmes)!r} instead.")
    return chosen


def generate_cohort(n_patients: int, days: int, seed: int,
                    start: datetime | date | str | None = None,
                    programmes: Sequence[str] | None = None, *,
                    episode_rate: float | None = None,
                    variant: Variant | str | None = None) -> Cohort:
    """Generate a labelled synthetic home-telemonitoring cohort.

    Parameters
    ----------
    n_patients : int
        Number of patients (``P000001`` ...), shared among ``programmes`` by quota.
    days : int
        Length of the window in days; chronic programmes are followed over all of it, a
        COVID-19 home follow-up for 14-21 days inside it.
    seed : int
        Seed of every random draw: the same arguments give the same frames, row for row.
    start : datetime, date or ISO string, optional
        First instant of the window (naive means UTC). Default 2026-01-05T00:00Z, never "now".
    programmes : sequence of str, optional
        Programmes to draw from (names of :data:`engine.schema.PROGRAMMES`); default all.
    episode_rate : float, optional
        Share of each programme's patients given one labelled episode (default: the variant's,
        0.3 for the default variant). A patient whose follow-up is too short for the drawn
        episode stays stable. Given, it overrides the variant's ``episode_rate``.
    variant : Variant or str, optional
        The generator's settings (noise, sampling, missed readings, episode size and speed,
        gaps, artefacts): a :class:`~engine.synth.variant.Variant` or the name of one of
        :data:`~engine.synth.variant.VARIANTS` (``"default"``, ``"shifted"``). Default
        ``Variant()``, which gives exactly the frames of the generator without variants.

    Returns
    -------
    Cohort
        ``.telemetry``, ``.patients`` and ``.events`` polars frames.

    Examples
    --------
    >>> from engine.synth import generate_cohort
    >>> c = generate_cohort(7, days=14, seed=1)
    >>> c.patients.select("patient_id", "programme", "age").head(2).rows()
    [('P000001', 'covid_home', 72), ('P000002', 'older_home', 86)]
    >>> c.telemetry.filter(metric="weight").select("patient_id", "value", "source").head(2).rows()
    [('P000002', 68.4, 'scale-01'), ('P000002', 68.3, 'scale-01')]
    >>> held_out = generate_cohort(7, days=14, seed=1, variant="shifted")
    >>> held_out.patients.equals(c.patients)   # the same patients, other data
    True
    """
    n = _check_int("n_patients", n_patients, 1)
    n_days = _check_int("days", days, 1)
    seed = _check_int("seed", seed, 0)
    chosen = _check_programmes(programmes)
    v = resolve_variant(variant, episode_rate)
    patients = draw_patients(n, n_days, seed, start_us(start), chosen)
    episodes = assign_episodes(patients, seed, v.episode_rate, effect_scale=v.effect_scale,
                               prodrome_scale=v.prodrome_scale)
    series = [(p.patient_id, r) for p in patients
              for r in simulate(p, episodes.get(p.index), v)]
    return Cohort(telemetry_frame(series), patients_frame(patients),
                  events_frame(patients, episodes))


def telemetry_frame(series: list) -> pl.DataFrame:
    """Clean telemetry from ``(patient_id, Readings)`` pairs, sorted by patient, metric, ts."""
    series = [(pid, r) for pid, r in series if r.ts.size]
    row = np.repeat(np.arange(len(series), dtype=np.uint32), [r.ts.size for _, r in series])

    def column(values: list[str]) -> pl.Series:
        return pl.Series(values, dtype=pl.String).gather(row)

    if not series:
        return pl.DataFrame(schema=TELEMETRY_SCHEMA)
    df = pl.DataFrame({
        "patient_id": column([pid for pid, _ in series]),
        "ts": timestamps(np.concatenate([r.ts for _, r in series])),
        "metric": column([r.metric for _, r in series]),
        "value": np.concatenate([r.value for _, r in series]),
        "unit": column([METRICS[r.metric].unit for _, r in series]),
        "source": column([r.source for _, r in series]),
    })
    return df.cast(TELEMETRY_SCHEMA).sort("patient_id", "metric", "ts")


def events_frame(patients: list[Patient], episodes: dict[int, Episode]) -> pl.DataFrame:
    """The labelled episodes, one row each, sorted by ``(patient_id, event_time)``."""
    rows = [(p.patient_id, episodes[p.index]) for p in patients if p.index in episodes]
    df = pl.DataFrame({
        "patient_id": pl.Series([pid for pid, _ in rows], dtype=pl.String),
        "event_type": pl.Series([e.event_type for _, e in rows], dtype=pl.String),
        "onset": timestamps(np.asarray([e.onset for _, e in rows], dtype=np.int64)),
        "event_time": timestamps(np.asarray([e.event_time for _, e in rows], dtype=np.int64)),
        "severity": pl.Series([e.severity for _, e in rows], dtype=pl.String),
        "programme": pl.Series([p.programme for p in patients if p.index in episodes],
                               dtype=pl.String),
    })
    return df.cast(EVENTS_SCHEMA).sort("patient_id", "event_time")
