"""Labelled deterioration episodes: what each event type does to which signal, and when.

An episode has four instants (µs, UTC):

- ``onset``: the physiological change starts (weight starts to creep up, SpO2 to drift down);
- ``event_time``: the clinical event (decompensation, exacerbation, severe hypoglycaemia). An
  alert inside ``[onset, event_time]`` is an early detection; ``event_time - onset`` is the lead
  the signals give;
- ``hold_end``: the change stays at full size from ``event_time`` until here;
- ``recovery_end``: back to the patient's usual level (linear recovery), or ``None`` when the
  change persists to the end of follow-up (malnutrition, excess post-operative weight loss).

The size of the change follows a shape ``s(t)`` that rises from 0 at onset to 1 at the event
(``((t - onset) / lead) ** exponent``), holds, then falls back. Each :class:`Effect` turns
``s(t)`` into a change of one metric: ``add`` (``x + m s``), ``scale`` (``x (1 + m s)``),
``toward`` (``x + s (m - x)``: the signal is pulled to a level ``m``, flattening its daily
pattern, as glucose in a hypoglycaemia) or ``set`` (a flag takes the value ``m`` once ``s >= 0.8``).

The magnitudes are drawn from one severity quantile ``u`` per episode (each effect jitters it a
little), so a severe episode is severe in every signal; ``severity`` is ``mild`` (u < 1/3),
``moderate`` or ``severe`` (u >= 2/3). Effects marked ``severe_only`` (new confusion) apply to
severe episodes only, and an episode is followed by a hospital stay (no data at all) when
``u >= 1 - hospital_prob``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..durations import parse_duration
from .timeline import DAY, HOUR, SECOND


@dataclass(frozen=True)
class Effect:
    """The change one episode makes to one metric at full size (``s = 1``)."""

    metric: str
    kind: str  # add | scale | toward | set
    lo: float
    hi: float
    severe_only: bool = False


@dataclass(frozen=True)
class EventModel:
    """How one event type unfolds. Durations are strings of :mod:`engine.durations`."""

    event_type: str
    description: str
    lead: tuple[str, str]
    effects: tuple[Effect, ...] = ()
    hold: tuple[str, str] = ("0m", "0m")
    recovery: tuple[str, str] | None = ("1d", "3d")
    exponent: float = 1.0
    hospital_prob: float = 0.0
    hospital_stay: tuple[str, str] = ("0m", "0m")
    #: data the patient must have sent before onset (personal baselines need it)
    baseline: str = "7d"
    #: follow-up needed after the event for it to be placed
    tail: str = "1d"
    #: a metric written once, value 1, at the event time (a fall)
    marker: str | None = None
    #: no transmission at all from onset to event_time (the event *is* the gap)
    silence: bool = False
    #: examinations the team orders after the event ("icope" step 1, "albumin")
    checks: tuple[str, ...] = ()


EVENT_MODELS: dict[str, EventModel] = {m.event_type: m for m in [
    EventModel(
        "hf_decompensation",
        "fluid retention: weight +2 to 4 kg and resting heart rate +8 to 15 /min over 3-7 days, "
        "breathlessness score +1 to 2; hospital stay for the most severe",
        ("3d", "7d"),
        (Effect("weight", "add", 2.0, 4.0), Effect("heart_rate", "add", 8.0, 15.0),
         Effect("dyspnoea", "add", 1.0, 2.0)),
        recovery=("1d", "3d"), hospital_prob=0.5, hospital_stay=("4d", "10d")),
    EventModel(
        "copd_exacerbation",
        "SpO2 -3 to 5 points, resp. rate +4 to 8 /min, heart rate +10 to 20 /min, temperature "
        "+0.2 to 1.0 °C, breathlessness +1 to 2 over 2-5 days; new confusion when severe",
        ("2d", "5d"),
        (Effect("spo2", "add", -3.0, -5.0), Effect("resp_rate", "add", 4.0, 8.0),
         Effect("heart_rate", "add", 10.0, 20.0), Effect("temp", "add", 0.2, 1.0),
         Effect("dyspnoea", "add", 1.0, 2.0), Effect("consciousness", "set", 1.0, 1.0, True)),
        recovery=("5d", "10d"), exponent=1.3, hospital_prob=0.4, hospital_stay=("5d", "10d")),
    EventModel(
        "covid_deterioration",
        "SpO2 pulled down to 85-90 %, resp. rate +6 to 10 /min, heart rate +12 to 25 /min, "
        "temperature +0.4 to 1.2 °C over 1-3 days; new confusion when severe; mostly admitted",
        ("1d", "3d"),
        (Effect("spo2", "toward", 90.0, 85.0), Effect("resp_rate", "add", 6.0, 10.0),
         Effect("heart_rate", "add", 12.0, 25.0), Effect("temp", "add", 0.4, 1.2),
         Effect("consciousness", "set", 1.0, 1.0, True)),
        recovery=("5d", "10d"), hospital_prob=0.7, hospital_stay=("5d", "14d"),
        baseline="2d"),
    EventModel(
        "hypoglycaemia_severe",
        "glucose falls over 30-90 min and stays at 35-44 mg/dL (below 54) for 20-60 min, then "
        "comes back over 20-45 min after sugar",
        ("30m", "90m"), (Effect("glucose", "toward", 44.0, 35.0),),
        hold=("20m", "60m"), recovery=("20m", "45m"), baseline="3d"),
    EventModel(
        "hyperglycaemia",
        "glucose +150 to 220 mg/dL over 6-24 h (illness, missed insulin), held 12-36 h, back "
        "over 12-24 h",
        ("6h", "24h"), (Effect("glucose", "add", 150.0, 220.0),),
        hold=("12h", "36h"), recovery=("12h", "24h"), baseline="3d"),
    EventModel(
        "cpap_nonadherence",
        "nightly CPAP use pulled down to 0.5-3 h over 4-10 nights, residual AHI +2 to 6 /h and "
        "mask leak +8 to 25 L/min (a mask problem); lasts 1-2 weeks then resolves",
        ("4d", "10d"),
        (Effect("cpap_hours", "toward", 3.0, 0.5), Effect("ahi", "add", 2.0, 6.0),
         Effect("mask_leak", "add", 8.0, 25.0)),
        hold=("7d", "14d"), recovery=("3d", "7d"), tail="7d"),
    EventModel(
        "excess_weight_loss",
        "after bariatric surgery, an extra 4-7 kg lost over 10-14 days on top of the expected "
        "1-1.5 kg/week (vomiting, intake failure); albumin -4 to 8 g/L; does not recover",
        ("10d", "14d"),
        (Effect("weight", "add", -4.0, -7.0), Effect("albumin", "add", -4.0, -8.0)),
        recovery=None, baseline="10d", checks=("albumin",)),
    EventModel(
        "malnutrition",
        "in a person aged 70+, weight -7 to 11 % over 18-28 days (HAS 2021: >= 5 % in a month), "
        "albumin -5 to 9 g/L, steps -10 to 25 %, ICOPE vitality screen positive; persists",
        ("18d", "28d"),
        (Effect("weight", "scale", -0.07, -0.11), Effect("albumin", "add", -5.0, -9.0),
         Effect("steps", "scale", -0.10, -0.25), Effect("icope_vitality", "set", 1.0, 1.0)),
        recovery=None, baseline="5d", tail="4d", checks=("icope", "albumin")),
    EventModel(
        "functional_decline",
        "daily steps -40 to 60 % over 2-5 days, held 5-10 days, recovering over 1-2 weeks; "
        "ICOPE chair-rise +4 to 8 s, low mood screen positive when severe",
        ("2d", "5d"),
        (Effect("steps", "scale", -0.40, -0.60), Effect("icope_locomotion", "add", 4.0, 8.0),
         Effect("icope_psychological", "set", 1.0, 1.0, True)),
        hold=("5d", "10d"), recovery=("7d", "14d"), tail="5d", checks=("icope",)),
    EventModel(
        "fall",
        "a fall row (value 1) at the event time, no prodrome (onset = event time); steps -35 to "
        "60 % for 2-5 days after, recovering over 4-10 days",
        ("0m", "0m"), (Effect("steps", "scale", -0.35, -0.60),),
        hold=("2d", "5d"), recovery=("4d", "10d"), baseline="3d", tail="3d", marker="fall",
        checks=("icope",)),
    EventModel(
        "device_silence",
        "no transmission from any device for 4-8 days (hub unplugged, phone lost): onset is the "
        "start of the silence, event_time its end",
        ("4d", "8d"), silence=True, recovery=None, baseline="3d"),
]}

#: which event types each programme's episodes are drawn from, with their weights
PROGRAMME_EVENTS: dict[str, dict[str, float]] = {
    "heart_failure": {"hf_decompensation": 0.85, "device_silence": 0.15},
    "copd": {"copd_exacerbation": 0.85, "device_silence": 0.15},
    "diabetes": {"hypoglycaemia_severe": 0.45, "hyperglycaemia": 0.40, "device_silence": 0.15},
    "covid_home": {"covid_deterioration": 0.9, "device_silence": 0.1},
    "sleep_apnoea": {"cpap_nonadherence": 0.85, "device_silence": 0.15},
    "post_bariatric": {"excess_weight_loss": 0.85, "device_silence": 0.15},
    "older_home": {"malnutrition": 0.3, "functional_decline": 0.3, "fall": 0.3,
                   "device_silence": 0.1},
}

SEVERITIES = ("mild", "moderate", "severe")


@dataclass(frozen=True)
class Episode:
    """One drawn episode of one patient (instants in µs since the epoch, UTC)."""

    model: EventModel
    onset: int
    event_time: int
    hold_end: int
    recovery_end: int | None
    severity: str
    #: metric -> magnitude at full size
    magnitudes: dict[str, float] = field(default_factory=dict)
    #: a stay in hospital right after the event: no data in [a, b)
    hospital: tuple[int, int] | None = None

    @property
    def event_type(self) -> str:
        return self.model.event_type

    @property
    def home_again(self) -> int:
        """When the patient sends data again after the event (discharge, or the event itself)."""
        return self.hospital[1] if self.hospital else self.event_time

    @property
    def keep_clear(self) -> tuple[int, int]:
        """The stretch no unlabelled gap may cover: two days before onset to five days after
        the patient is home again (the checks ordered after the event fall in it)."""
        return self.onset - 2 * DAY, self.home_again + 5 * DAY

    def absences(self) -> list[tuple[int, int]]:
        """Intervals with no data from any device (the silence itself, a hospital stay)."""
        out = [(self.onset, self.event_time)] if self.model.silence else []
        if self.hospital:
            out.append(self.hospital)
        return out

    def shape(self, ts: np.ndarray) -> np.ndarray:
        """Size of the change at each instant, 0 (usual) to 1 (full), see the module docstring."""
        s = np.zeros(ts.size)
        lead = self.event_time - self.onset
        if lead > 0:
            ramp = (ts >= self.onset) & (ts < self.event_time)
            s[ramp] = ((ts[ramp] - self.onset) / lead) ** self.model.exponent
        s[(ts >= self.event_time) & (ts < self.hold_end)] = 1.0
        after = ts >= self.hold_end
        if self.recovery_end is None:
            s[after] = 1.0
        else:
            span = max(self.recovery_end - self.hold_end, 1)
            s[after] = np.clip(1.0 - (ts[after] - self.hold_end) / span, 0.0, 1.0)
        return s

    def apply(self, metric: str, ts: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``x`` (the patient's usual signal at ``ts``) changed by this episode's effect on it."""
        m = self.magnitudes.get(metric)
        if m is None:
            return x
        kind = next(e.kind for e in self.model.effects if e.metric == metric)
        s = self.shape(ts)
        if kind == "add":
            return x + m * s
        if kind == "scale":
            return x * (1.0 + m * s)
        if kind == "toward":
            return x + s * (m - x)
        return np.where(s >= 0.8, m, x)  # set


def _seconds(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A uniform instant or duration in ``[lo, hi]`` µs, to the whole second."""
    lo, hi = -(-lo // SECOND), hi // SECOND
    return (int(rng.integers(lo, hi + 1)) if hi > lo else lo) * SECOND


def _duration(rng: np.random.Generator, bounds: tuple[str, str]) -> int:
    return _seconds(rng, *(parse_duration(b, what="episode duration") for b in bounds))


def draw_episode(rng: np.random.Generator, model: EventModel, t0: int, t1: int, *,
                 effect_scale: float = 1.0, prodrome_scale: float = 1.0) -> Episode | None:
    """Place one episode of ``model`` in a follow-up ``[t0, t1)``, or ``None`` if it cannot fit.

    The onset is uniform over the instants that leave ``model.baseline`` of data before it and
    ``model.tail`` of follow-up after the event.

    ``effect_scale`` multiplies the magnitudes of the ``add`` and ``scale`` effects (a relative
    fall at most -95 %; ``toward`` targets and ``set`` flags define the event and are kept);
    ``prodrome_scale`` multiplies the lead (onset to event, to the second) unless the model is a
    silence. Neither draws anything: the same ``rng`` gives the same draws whatever they are
    (:class:`engine.synth.Variant`).
    """
    u = float(rng.random())
    lead = _duration(rng, model.lead)
    if prodrome_scale != 1.0 and not model.silence:
        lead = round(lead * prodrome_scale / SECOND) * SECOND
    hold = _duration(rng, model.hold)
    recovery = None if model.recovery is None else _duration(rng, model.recovery)
    stay = _duration(rng, model.hospital_stay)
    jitters = rng.normal(0.0, 0.1, len(model.effects))
    lo = t0 + parse_duration(model.baseline)
    hi = t1 - parse_duration(model.tail) - lead
    if hi <= lo:
        return None
    onset = _seconds(rng, lo, hi - 1)
    event_time = onset + lead
    hold_end = event_time + hold
    severity = SEVERITIES[min(int(u * 3), 2)]
    magnitudes = {}
    for eff, j in zip(model.effects, jitters):
        if eff.severe_only and severity != "severe":
            continue
        q = float(np.clip(u + j, 0.0, 1.0))
        magnitudes[eff.metric] = eff.lo + q * (eff.hi - eff.lo)
        if effect_scale != 1.0 and eff.kind == "add":
            magnitudes[eff.metric] *= effect_scale
        elif effect_scale != 1.0 and eff.kind == "scale":
            # a relative fall stops short of nothing at all (steps -60 % at 2 is not -120 %)
            magnitudes[eff.metric] = max(magnitudes[eff.metric] * effect_scale, -0.95)
    hospital = None
    if model.hospital_prob and u >= 1.0 - model.hospital_prob:
        # admitted within a few hours of the event; nothing is transmitted from hospital
        hospital = (event_time + 2 * HOUR, event_time + stay)
    return Episode(model, onset, event_time, hold_end,
                   None if recovery is None else hold_end + recovery, severity, magnitudes,
                   hospital)
