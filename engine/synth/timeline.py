"""Time grids and noise for the synthetic cohort.

Every time is an ``int64`` count of microseconds since the Unix epoch, the resolution of the
telemetry ``ts`` column, so schedules are plain integer arithmetic and never depend on the host's
clock or time zone.

Habits (morning weighing, evening questionnaire, meals) are drawn on French local clock time and
stored in UTC. A fixed offset of one hour (CET) is used: a cohort that crosses a daylight-saving
change keeps winter habits in UTC, i.e. its summer readings sit one hour later on the local clock.
That is harmless for a test cohort and keeps every local day exactly 24 h long.
"""
from __future__ import annotations

import numpy as np
import polars as pl

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
#: local clock (CET, UTC+1) minus UTC
LOCAL_OFFSET = HOUR


def local_midnight(t: int) -> int:
    """UTC instant of the local midnight that starts the local day holding ``t``."""
    return (t + LOCAL_OFFSET) // DAY * DAY - LOCAL_OFFSET


def local_days(t0: int, t1: int) -> np.ndarray:
    """UTC instants of the local midnights of every local day that overlaps ``[t0, t1)``."""
    first = (t0 + LOCAL_OFFSET) // DAY
    last = (t1 - 1 + LOCAL_OFFSET) // DAY
    return np.arange(first, last + 1, dtype=np.int64) * DAY - LOCAL_OFFSET


def local_hour(ts: np.ndarray) -> np.ndarray:
    """Local clock hour (0.0 to 24.0, fractional) of each instant."""
    return ((ts + LOCAL_OFFSET) % DAY) / HOUR


def jitter(rng: np.random.Generator, n: int, sd_minutes: float) -> np.ndarray:
    """Normal jitter in whole seconds, cut at three standard deviations (no 3 a.m. weighing)."""
    z = np.clip(rng.normal(0.0, 1.0, n), -3.0, 3.0)
    return np.round(z * sd_minutes * 60.0).astype(np.int64) * SECOND


def daily_times(rng: np.random.Generator, t0: int, t1: int, hour: float, sd_minutes: float,
                keep: float) -> np.ndarray:
    """One reading a day around local ``hour``; each day is kept with probability ``keep``.

    Returns sorted instants inside ``[t0, t1)`` (days that fall outside are dropped).
    """
    days = local_days(t0, t1)
    ts = days + int(hour * HOUR) + jitter(rng, days.size, sd_minutes)
    ts = ts[rng.random(days.size) < keep]
    return np.sort(ts[(ts >= t0) & (ts < t1)])


def slot_times(rng: np.random.Generator, t0: int, t1: int, hours: tuple[float, ...],
               sd_minutes: float, keep: float) -> np.ndarray:
    """Readings at habitual local ``hours`` (spot checks); each slot kept with probability ``keep``.

    With four slots and ``keep`` 0.75 a patient sends three sets a day on average, sometimes
    fewer (a missed reading) and sometimes all four.
    """
    days = local_days(t0, t1)
    grid = days[:, None] + (np.asarray(hours) * HOUR).astype(np.int64)[None, :]
    ts = grid.ravel() + jitter(rng, grid.size, sd_minutes)
    ts = ts[rng.random(grid.size) < keep]
    return np.sort(ts[(ts >= t0) & (ts < t1)])


def regular_times(rng: np.random.Generator, t0: int, t1: int, step: int) -> np.ndarray:
    """A device clock ticking every ``step`` from a random phase, to the second (CGM)."""
    phase = int(rng.integers(0, step // SECOND)) * SECOND
    return np.arange(t0 + phase, t1, step, dtype=np.int64)


def outside(ts: np.ndarray, intervals: list[tuple[int, int]]) -> np.ndarray:
    """Mask of instants that fall in none of the half-open ``[a, b)`` intervals."""
    keep = np.ones(ts.size, dtype=bool)
    for a, b in intervals:
        keep &= (ts < a) | (ts >= b)
    return keep


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path of length ``n`` with lag-one correlation ``phi`` and marginal ``sd``.

    Computed as a convolution with the truncated impulse response ``phi**k`` (terms below 1e-4
    dropped) over a burn-in of the same length, so it is vectorised and starts in its stationary
    regime. Used for the slow day-to-day wander of a physiological level (fluid, fitness, diet).
    """
    if n <= 0:
        return np.zeros(0)
    if sd == 0.0:
        return np.zeros(n)
    k = 1 if phi <= 0.0 else max(1, int(np.ceil(np.log(1e-4) / np.log(phi))))
    e = rng.normal(0.0, sd * np.sqrt(1.0 - phi * phi), n + k - 1)
    return np.convolve(e, phi ** np.arange(k), mode="valid")


def timestamps(us) -> pl.Series:
    """A ``Datetime("us", "UTC")`` series from µs since the epoch."""
    return pl.Series(np.asarray(us, dtype=np.int64)).cast(pl.Datetime("us")).dt \
        .replace_time_zone("UTC")
