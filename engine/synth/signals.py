"""What each programme's devices send: schedules, personal levels, noise, artefacts.

A reading is ``level + slow + episode + noise + artefact``: ``level`` is the patient's own usual
value (drawn per patient), ``slow`` a day-to-day AR(1) wander (fluid, fitness), ``episode`` the
change of a labelled episode (:mod:`engine.synth.episodes`), ``noise`` the device's reading
error and ``artefact`` a rare plausible-but-wrong reading (a cold finger on the oximeter, shoes on
the scale, a pedometer left on the table). Every series then goes through
:meth:`engine.synth.context.Context.emit`.

Glucose (CGM) lives in :mod:`engine.synth.glucose`.

The cohort's :class:`~engine.synth.variant.Variant` acts through the context: every habitual
share of sent readings goes through :meth:`Context.kept <engine.synth.context.Context.kept>`,
every noise through :meth:`Context.measure <engine.synth.context.Context.measure>` or
:meth:`Context.noise <engine.synth.context.Context.noise>`, every artefact rate through
:func:`_artefact` (or ``artefact_rate`` directly).
"""
from __future__ import annotations

import numpy as np

from .cohort import Patient
from .context import Context, Readings
from .episodes import Episode
from .glucose import glucose
from .timeline import (DAY, HOUR, MINUTE, WEEK, daily_times, jitter, local_days, local_hour,
                       local_midnight, slot_times)
from .variant import Variant

#: the device that reports an episode's marker row
MARKER_SOURCE = {"fall": "fall-detector"}


def _artefact(ctx: Context, rng: np.random.Generator, x: np.ndarray, rate: float, lo: float,
              hi: float) -> np.ndarray:
    """Add ``U(lo, hi)`` to a random ``rate`` of the readings (one-off wrong readings); the rate
    is scaled by the variant's ``artefact_rate_scale``."""
    hit = rng.random(x.size) < ctx.variant.artefact_rate(rate)
    x = x.copy()
    x[hit] += rng.uniform(lo, hi, int(hit.sum()))
    return x


# -- devices shared by several programmes ---------------------------------------------------

def weight(ctx: Context, keep: float, sd_day: float = 0.35, sd_read: float = 0.2,
           level=None) -> np.ndarray:
    """Morning weighing around 07:30 on a share ``keep`` of days; returns the weighing times.

    ``level`` (kg, or a function of ``ts``) defaults to the patient's baseline weight.
    """
    rng = ctx.rng("weight")
    ts = daily_times(rng, ctx.t0, ctx.t1, 7.5, 45, ctx.kept(keep))
    base = ctx.patient.baseline_weight_kg if level is None else level
    x = ctx.measure(rng, "weight", ts, base, sd_day, sd_read, phi=0.7)
    ctx.emit("weight", ts, _artefact(ctx, rng, x, 0.01, 0.8, 2.0), "scale-01")  # shoes, clothes
    return ts


def dyspnoea(ctx: Context, level: float) -> None:
    """Evening breathlessness self-report (mMRC-like 0-4), on about 60 % of days."""
    rng = ctx.rng("dyspnoea")
    ts = daily_times(rng, ctx.t0, ctx.t1, 20.0, 60, ctx.kept(0.6))
    ctx.emit("dyspnoea", ts, ctx.measure(rng, "dyspnoea", ts, level, 0.3, 0.35),
             "questionnaire")


def spot_vitals(ctx: Context, levels: dict, keep: float, on_oxygen: int) -> None:
    """NEWS2 vitals sessions at up to four habitual times a day (COPD, COVID-19).

    ``levels`` gives each of spo2, heart_rate, resp_rate, temp, sbp and dbp its usual value (or
    a function of ``ts``); each slot is kept with probability ``keep``. Every session sends
    SpO2 and pulse (oximeter), a self-counted respiratory rate, ACVPU (alert unless an episode
    says otherwise) and the oxygen flag; temperature is taken at the morning and evening
    sessions, blood pressure in the morning only.
    """
    rng = ctx.rng("vitals")
    ts = slot_times(rng, ctx.t0, ctx.t1, (8.5, 13.0, 18.5, 21.5), 30, ctx.kept(keep))
    hour = local_hour(ts)
    sd = {"spo2": (0.7, 0.9), "heart_rate": (3, 5), "resp_rate": (1.0, 1.5),
          "temp": (0.12, 0.18), "sbp": (5, 7), "dbp": (3, 5)}
    x = {m: ctx.measure(rng, m, ts, levels[m], *sd[m]) for m in sd}
    x["spo2"] = _artefact(ctx, rng, x["spo2"], 0.015, -12.0, -6.0)  # cold finger, poor contact
    x["heart_rate"] = _artefact(ctx, rng, x["heart_rate"], 0.01, 20.0, 40.0)  # moving hand
    x["temp"] = _artefact(ctx, rng, x["temp"], 0.01, -1.6, -1.0)  # thermometer too far
    x["sbp"] = _artefact(ctx, rng, x["sbp"], 0.01, 15.0, 30.0)  # talking, arm below the heart
    morning, evening = hour < 11.0, (hour > 17.0) & (hour < 20.0)
    ctx.emit("spo2", ts, x["spo2"], "oximeter-02")
    ctx.emit("heart_rate", ts, x["heart_rate"], "oximeter-02")
    ctx.emit("resp_rate", ts, x["resp_rate"], "questionnaire")
    ctx.emit("temp", ts[morning | evening], x["temp"][morning | evening], "thermometer-04")
    ctx.emit("sbp", ts[morning], x["sbp"][morning], "bp-cuff-03")
    ctx.emit("dbp", ts[morning], x["dbp"][morning], "bp-cuff-03")
    ctx.emit("consciousness", ts, ctx.effect("consciousness", ts, np.zeros(ts.size)),
             "questionnaire")
    ctx.emit("on_oxygen", ts, np.full(ts.size, float(on_oxygen)), "questionnaire")


def steps(ctx: Context, median: float) -> None:
    """Daily step total, stamped at 23:59 local; day-to-day CV about 25 %."""
    rng = ctx.rng("steps")
    ts = local_days(ctx.t0, ctx.t1) + 23 * HOUR + 59 * MINUTE
    ts = ts[rng.random(ts.size) < ctx.kept(0.95)]
    log = ctx.day_wander(rng, ts, 0.5, 0.15) + rng.normal(0, ctx.noise(0.2), ts.size)
    x = ctx.effect("steps", ts, median * np.exp(log))
    # left on the table: a near-empty day
    worn = rng.random(ts.size) >= ctx.variant.artefact_rate(0.03)
    x = np.where(worn, x, x * rng.uniform(0.02, 0.2, ts.size))
    ctx.emit("steps", ts, x, "pedometer")


def albumin(ctx: Context) -> None:
    """Serum albumin from the lab now and then: at enrolment for most, once more for some,
    and a few days after a nutrition event."""
    rng = ctx.rng("albumin")
    planned = [day for day, share in ((0, 0.6), (20, 0.4)) if rng.random() < share]
    ts = [ctx.t0 + (day + int(rng.integers(0, 3))) * DAY for day in planned]
    check = ctx.after_event("albumin")
    ts += [check] if check is not None else []
    ts = np.asarray([local_midnight(t) + 9 * HOUR for t in ts], dtype=np.int64)
    ts = ts + jitter(rng, ts.size, 60)
    x = ctx.effect("albumin", ts, rng.uniform(36.0, 44.0)
                   + rng.normal(0, ctx.noise(1.5), ts.size))
    ctx.emit("albumin", ts, x, "lab")


ICOPE_FLAGS = {"icope_cognition": 0.2, "icope_vitality": 0.1, "icope_vision": 0.3,
               "icope_hearing": 0.35, "icope_psychological": 0.15}


def icope(ctx: Context) -> None:
    """ICOPE step 1 at enrolment, and again a few weeks later for about half of the patients
    (or a few days after an event that calls for it). A repeat changes a flag 3 % of the time
    and the chair-rise time by about a second, unless an episode worsens them."""
    rng = ctx.rng("icope")
    first = ctx.t0 + int(rng.integers(1 * HOUR, 3 * HOUR))
    second = ctx.after_event("icope")
    again = rng.random() < 0.5
    at = rng.uniform(21, 35)
    if second is None and again:
        second = local_midnight(ctx.t0 + int(at * DAY)) + int(rng.integers(10, 16)) * HOUR
    ts = np.asarray([first] + ([second] if second is not None else []), dtype=np.int64)
    for metric, prevalence in ICOPE_FLAGS.items():
        flag = float(rng.random() < prevalence)
        flip = rng.random(ts.size) < 0.03
        flip[0] = False
        x = np.where(flip, 1.0 - flag, flag)
        ctx.emit(metric, ts, ctx.effect(metric, ts, x), "icope-monitor")
    chair = np.clip(rng.normal(12.5, 3.0), 6.0, 30.0) \
        + np.r_[0.0, rng.normal(0, ctx.noise(1.0), 1)]
    ctx.emit("icope_locomotion", ts, ctx.effect("icope_locomotion", ts, chair[: ts.size]),
             "icope-monitor")


# -- programmes ------------------------------------------------------------------------------

def heart_failure(ctx: Context) -> None:
    """Daily weight; pulse and blood pressure a few minutes after most weighings; evening
    breathlessness. The weight level is the dry weight (``baseline_weight_kg``)."""
    w_ts = weight(ctx, keep=0.9)
    rng = ctx.rng("bp-cuff")
    ts = w_ts[rng.random(w_ts.size) < ctx.kept(0.85, scheduled=False)]  # follows weighings
    ts = ts + rng.integers(2 * MINUTE, 7 * MINUTE, ts.size)
    hr = ctx.measure(rng, "heart_rate", ts, rng.uniform(60, 85), 3, 4)
    sbp = ctx.measure(rng, "sbp", ts, rng.uniform(105, 135), 5, 7)
    dbp = ctx.measure(rng, "dbp", ts, rng.uniform(60, 80), 3, 5)
    ctx.emit("heart_rate", ts, _artefact(ctx, rng, hr, 0.01, 20.0, 40.0), "bp-cuff-03")
    ctx.emit("sbp", ts, _artefact(ctx, rng, sbp, 0.01, 15.0, 30.0), "bp-cuff-03")
    ctx.emit("dbp", ts, dbp, "bp-cuff-03")
    dyspnoea(ctx, rng.uniform(0.8, 2.0))


def copd(ctx: Context) -> None:
    """Vitals 2-4 times a day, breathlessness, weight twice a week. Scale-2 patients
    (hypercapnic failure, 88-92 % target) sit at 88-91 % on long-term oxygen."""
    rng = ctx.rng("copd")
    scale2 = ctx.patient.spo2_scale == 2
    levels = {"spo2": rng.uniform(88, 91) if scale2 else rng.uniform(92, 96),
              "heart_rate": rng.uniform(75, 95), "resp_rate": rng.uniform(16, 21),
              "temp": rng.uniform(36.4, 36.9), "sbp": rng.uniform(118, 145),
              "dbp": rng.uniform(68, 85)}
    spot_vitals(ctx, levels, keep=rng.uniform(0.55, 0.9), on_oxygen=int(scale2))
    dyspnoea(ctx, rng.uniform(1.5, 2.8))
    weight(ctx, keep=0.3)


def covid_home(ctx: Context) -> None:
    """Vitals 2-4 times a day for 2-3 weeks; an early fever settles over the first days."""
    rng = ctx.rng("covid")
    t0, base = ctx.t0, rng.uniform(36.5, 36.9)
    fever, settle = rng.uniform(0, 1.4), rng.uniform(2.0, 4.0)  # °C above usual, days
    levels = {"spo2": rng.uniform(95, 98), "heart_rate": rng.uniform(72, 92),
              "resp_rate": rng.uniform(14, 18), "sbp": rng.uniform(115, 140),
              "dbp": rng.uniform(70, 85),
              "temp": lambda ts: base + fever * np.exp(-(ts - t0) / DAY / settle)}
    spot_vitals(ctx, levels, keep=rng.uniform(0.6, 0.9), on_oxygen=0)


def diabetes(ctx: Context) -> None:
    """CGM every 5 minutes (:mod:`engine.synth.glucose`) and a weight about once a week."""
    glucose(ctx)
    weight(ctx, keep=0.15, sd_day=0.5)


def sleep_apnoea(ctx: Context) -> None:
    """The CPAP's nightly summary (use, residual AHI, leak) sent on waking around 07:00.

    About 4 % of nights the mask stays off (0 h, no AHI or leak for that night).
    """
    rng = ctx.rng("cpap")
    ts = daily_times(rng, ctx.t0, ctx.t1, 7.0, 40, ctx.kept(0.95))
    hours = ctx.measure(rng, "cpap_hours", ts, rng.uniform(5.5, 8.0), 0.6, 0.9, phi=0.5)
    hours[rng.random(ts.size) < 0.04] = 0.0
    ahi = ctx.measure(rng, "ahi", ts, rng.uniform(1.0, 5.5), 0.6, 1.0)
    leak = ctx.measure(rng, "mask_leak", ts, rng.uniform(4.0, 18.0), 3.0, 4.0)
    leak = _artefact(ctx, rng, leak, 0.03, 20.0, 60.0)  # mouth leak, mask knocked off
    used = hours >= 0.5
    ctx.emit("cpap_hours", ts, hours, "cpap-resmed")
    ctx.emit("ahi", ts[used], ahi[used], "cpap-resmed")
    ctx.emit("mask_leak", ts[used], leak[used], "cpap-resmed")


def post_bariatric(ctx: Context) -> None:
    """Daily weight from a few days after surgery, losing 1-1.5 kg/week early (15 % of
    patients 0.3-0.7 kg/week: unlabelled slow losers), slowing with a 6-month time constant;
    albumin now and then."""
    rng = ctx.rng("bariatric")
    slow_loser = rng.random() < 0.15
    rate = rng.uniform(0.3, 0.7) if slow_loser else rng.uniform(1.0, 1.5)  # kg/week
    w0, t0, tau = ctx.patient.baseline_weight_kg, ctx.t0, 26.0  # weeks

    def trajectory(ts):
        return w0 - rate * tau * (1.0 - np.exp(-(ts - t0) / WEEK / tau))

    weight(ctx, keep=0.85, sd_day=0.3, level=trajectory)
    albumin(ctx)


def older_home(ctx: Context) -> None:
    """Steps every day, weight about three times a week, ICOPE step 1, albumin now and then."""
    rng = ctx.rng("older")
    steps(ctx, float(np.exp(rng.uniform(np.log(1200), np.log(6000)))))
    weight(ctx, keep=0.45, sd_day=0.3, sd_read=0.25)
    icope(ctx)
    albumin(ctx)


PROGRAMME_SIGNALS = {
    "heart_failure": heart_failure, "copd": copd, "diabetes": diabetes,
    "covid_home": covid_home, "sleep_apnoea": sleep_apnoea, "post_bariatric": post_bariatric,
    "older_home": older_home,
}


def simulate(patient: Patient, episode: Episode | None,
             variant: Variant | None = None) -> list[Readings]:
    """All series one patient sends over follow-up, with the episode's marker row if any,
    under ``variant`` (default: :class:`~engine.synth.variant.Variant()`)."""
    ctx = Context(patient, episode, variant=Variant() if variant is None else variant)
    PROGRAMME_SIGNALS[patient.programme](ctx)
    marker = episode.model.marker if episode is not None else None
    if marker:
        ctx.emit(marker, np.asarray([episode.event_time]), np.ones(1), MARKER_SOURCE[marker])
    return ctx.out
