"""Continuous glucose monitoring: a reading every 5 minutes, meals, sensor life and artefacts.

Glucose (mg/dL) = personal mean + meal responses + dawn rise + slow AR(1) wander, then the
episode's change, then a relative sensor error (sd 4 %). Meal responses are impulses at three
local meal times convolved with ``(t / tp) exp(1 - t / tp)`` (a peak ``tp`` = 45-70 min after
eating, back within ~4 h). Parameters give a time in range 70-180 of roughly 70-90 % and
almost no time below 54 mg/dL outside labelled episodes, so a level-2 hypoglycaemia alert on a
stable patient is a false alarm (or a compression low).

The sensor reads 40-400 mg/dL (outside it a Dexcom shows LOW/HIGH, written here as 40/400). It is
changed every 10 days with a 2-hour warm-up without readings; a quarter of the days have a
signal loss of 15 min to 3 h; about one night in 15 a *compression low* (the patient lies on
the sensor) reads 30-60 mg/dL too low for 15-40 min: a plausible but wrong low.

Under a :class:`~engine.synth.variant.Variant` the 5-minute interval stays (it is the device's,
and the rule packs' ``cgm_interval``); ``noise_scale`` scales the sensor error and the slow
wander, ``missed_rate_scale`` the odds of a day with a signal loss, ``sampling_scale`` the
length of a signal loss and ``artefact_rate_scale`` the rate of compression lows.
"""
from __future__ import annotations

import numpy as np

from .context import Context
from .timeline import DAY, HOUR, MINUTE, ar1, jitter, local_days, local_hour, outside, \
    regular_times

STEP = 5 * MINUTE
SENSOR_LIFE = 10 * DAY
WARM_UP = 2 * HOUR
MEAL_HOURS = (7.5, 12.5, 19.5)


def _meal_response(rng: np.random.Generator, ctx: Context, ts: np.ndarray,
                   amplitude: float) -> np.ndarray:
    days = local_days(ctx.t0, ctx.t1)
    meals = (days[:, None] + (np.asarray(MEAL_HOURS) * HOUR).astype(np.int64)).ravel()
    meals = meals + jitter(rng, meals.size, 40)
    size = amplitude * rng.lognormal(0.0, 0.3, meals.size) * (rng.random(meals.size) < 0.92)
    at = np.searchsorted(ts, meals)
    inside = at < ts.size
    impulses = np.bincount(at[inside], weights=size[inside], minlength=ts.size)
    peak = rng.uniform(45, 70) * MINUTE
    t = np.arange(0, 5 * HOUR, STEP) / peak
    return np.convolve(impulses, t * np.exp(1.0 - t))[: ts.size]


def _sensor_gaps(rng: np.random.Generator, ctx: Context) -> list[tuple[int, int]]:
    changes = np.arange(ctx.t0, ctx.t1, SENSOR_LIFE, dtype=np.int64)
    gaps = [(int(a), int(a + WARM_UP)) for a in changes[1:]]
    days = local_days(ctx.t0, ctx.t1)
    lost = days[rng.random(days.size) < ctx.variant.missed(0.25)]
    starts = lost + rng.integers(0, DAY, lost.size)
    shortest, longest = 15 * MINUTE, 3 * HOUR
    stretch = ctx.variant.sampling_scale
    if stretch != 1.0:
        shortest, longest = round(shortest * stretch), round(longest * stretch)
    lengths = rng.integers(shortest, longest, lost.size)
    gaps += [(int(a), int(a + d)) for a, d in zip(starts, lengths)]
    # a sensor change or signal loss is never placed over a labelled episode
    return ctx.clear_of_episode(gaps)


def glucose(ctx: Context) -> None:
    """Emit the patient's CGM series (``glucose``, mg/dL, source ``cgm-dexcom``)."""
    rng = ctx.rng("glucose")
    type1 = rng.random() < (0.5 if ctx.patient.age < 40 else 0.15)
    mean = rng.uniform(125, 170) if type1 else rng.uniform(110, 150)
    amplitude = rng.uniform(45, 80) if type1 else rng.uniform(30, 60)
    wander = 22.0 if type1 else 12.0
    ts = regular_times(rng, ctx.t0, ctx.t1, STEP)
    dawn = rng.uniform(0, 20) * np.exp(-(((local_hour(ts) - 6.5) / 1.5) ** 2))
    x = mean + _meal_response(rng, ctx, ts, amplitude) + dawn \
        + ar1(rng, ts.size, 0.985, ctx.noise(wander))
    # sensor error is relative (CGM MARD about 9 %): small at a hypoglycaemic nadir
    x = ctx.effect("glucose", ts, x) * (1.0 + rng.normal(0.0, ctx.noise(0.04), ts.size))
    nights = local_days(ctx.t0, ctx.t1)
    nights = nights[rng.random(nights.size) < ctx.variant.artefact_rate(1 / 15)]
    nights = nights + rng.integers(HOUR, 5 * HOUR, nights.size)
    for a in nights:
        span = int(rng.integers(15 * MINUTE, 40 * MINUTE))
        hit = (ts >= a) & (ts < a + span)
        x[hit] -= rng.uniform(30, 60)
    keep = outside(ts, _sensor_gaps(rng, ctx))
    ctx.emit("glucose", ts[keep], x[keep], "cgm-dexcom")
