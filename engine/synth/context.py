"""One patient while their devices are simulated: random streams, gaps, and the last step of
every series (:meth:`Context.emit`).

:meth:`Context.emit` is where a simulated series becomes clean telemetry: no data outside
follow-up, in a transmission gap, a hospital stay or a labelled silence; values rounded to the
device's resolution and clipped into what the device can physically report (inside the
:data:`engine.schema.METRICS` limits, so the sample is clean); whole-second times; one reading
per instant.

The context also carries the cohort's :class:`~engine.synth.variant.Variant`: :meth:`measure`,
:meth:`day_wander` and :meth:`noise` scale the noise, :meth:`kept` turns a device's habitual
share of sent readings into the variant's, and the unlabelled gaps follow its gap rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..schema import METRICS
from .cohort import Patient
from .episodes import Episode
from .timeline import DAY, SECOND, WEEK, ar1, outside
from .variant import Variant

#: decimals each metric is reported with (whole numbers where not listed)
DECIMALS = {"weight": 1, "temp": 1, "cpap_hours": 2, "ahi": 1, "mask_leak": 1, "albumin": 1,
            "icope_locomotion": 1}

#: what a device can physically report, inside the schema's plausibility limits
DEVICE_RANGE = {
    "heart_rate": (35, 200), "spo2": (70, 100), "resp_rate": (6, 50), "temp": (34.5, 41.5),
    "sbp": (70, 230), "dbp": (40, 130), "weight": (30, 300), "glucose": (40, 400),
    "steps": (0, 40_000), "cpap_hours": (0, 12), "ahi": (0, 80), "mask_leak": (0, 120),
    "albumin": (15, 50), "icope_locomotion": (4, 60),
}

#: unlabelled transmission gaps: expected number per patient-week (times the variant's
#: ``gap_rate_scale``), and their length in days
GAPS_PER_WEEK = 0.06
GAP_DAYS = (1.0, 2.5)


@dataclass
class Readings:
    """One patient's series of one metric, ready for the telemetry frame."""

    metric: str
    ts: np.ndarray
    value: np.ndarray
    source: str


@dataclass
class Context:
    """One patient while their devices are simulated; collects the emitted series."""

    patient: Patient
    episode: Episode | None
    out: list[Readings] = field(default_factory=list)
    variant: Variant = field(default_factory=Variant)

    def __post_init__(self):
        self.t0, self.t1 = self.patient.enrolled_at, self.patient.ends_at
        self.n_days = max(int((self.t1 - self.t0) // DAY) + 1, 1)
        ep = self.episode
        self.absences = ep.absences() if ep else []
        self.gaps = self._draw_gaps()

    def rng(self, purpose: str) -> np.random.Generator:
        return self.patient.rng(purpose)

    def clear_of_episode(self, intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The intervals that do not overlap the episode's :attr:`Episode.keep_clear` stretch.

        Gaps are real life, but a gap over a labelled onset would make the label unreadable.
        """
        if self.episode is None:
            return intervals
        lo, hi = self.episode.keep_clear
        return [(a, b) for a, b in intervals if b <= lo or a >= hi]

    def _draw_gaps(self) -> list[tuple[int, int]]:
        rng = self.rng("gaps")
        per_week = GAPS_PER_WEEK * self.variant.gap_rate_scale
        n = int(rng.poisson(per_week * (self.t1 - self.t0) / WEEK))
        starts = rng.integers(self.t0, self.t1, n)
        lengths = (rng.uniform(*GAP_DAYS, n) * DAY).astype(np.int64)
        return self.clear_of_episode([(int(a), int(a + d)) for a, d in zip(starts, lengths)])

    def day_wander(self, rng: np.random.Generator, ts: np.ndarray, phi: float,
                   sd: float) -> np.ndarray:
        """A slow AR(1) wander by day of follow-up (fluid, fitness, diet), read at ``ts``;
        ``sd`` is scaled by the variant's ``noise_scale``."""
        day = np.clip((ts - self.t0) // DAY, 0, self.n_days - 1)
        return ar1(rng, self.n_days, phi, self.noise(sd))[day]

    def noise(self, sd: float) -> float:
        """A noise standard deviation scaled by the variant's ``noise_scale``."""
        return sd * self.variant.noise_scale

    def kept(self, keep: float, *, scheduled: bool = True) -> float:
        """The probability a reading is sent, for a device that sends it with ``keep`` by
        default (:meth:`engine.synth.variant.Variant.kept`)."""
        return self.variant.kept(keep, scheduled=scheduled)

    def effect(self, metric: str, ts: np.ndarray, x: np.ndarray) -> np.ndarray:
        return x if self.episode is None else self.episode.apply(metric, ts, x)

    def after_event(self, check: str) -> int | None:
        """When the team examines the patient after the event (a few days after discharge)."""
        ep = self.episode
        if ep is None or check not in ep.model.checks:
            return None
        return ep.home_again + int(self.rng("checks/" + check).integers(1 * DAY, 4 * DAY))

    def measure(self, rng: np.random.Generator, metric: str, ts: np.ndarray, level,
                sd_day: float, sd_read: float, phi: float = 0.6) -> np.ndarray:
        """``level`` + slow AR(1) wander by day + episode change + reading noise, at ``ts``.

        ``level`` is the patient's usual value, or a function of ``ts`` for a usual value that
        moves (weight after bariatric surgery, a settling fever). Both ``sd_day`` and ``sd_read``
        are scaled by the variant's ``noise_scale``.
        """
        base = level(ts) if callable(level) else level
        x = self.effect(metric, ts, base + self.day_wander(rng, ts, phi, sd_day))
        return x + rng.normal(0.0, self.noise(sd_read), ts.size)

    def emit(self, metric: str, ts: np.ndarray, value: np.ndarray, source: str) -> None:
        """Keep what is transmitted, round and clip it, and add the series to :attr:`out`."""
        ts = np.asarray(ts, dtype=np.int64) // SECOND * SECOND  # devices log whole seconds
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), ts.shape)
        keep = (ts >= self.t0) & (ts < self.t1) & outside(ts, self.absences + self.gaps)
        ts, value = ts[keep], value[keep]
        spec = METRICS[metric]
        lo, hi = DEVICE_RANGE.get(metric, (spec.low, spec.high))
        value = np.clip(np.round(value, DECIMALS.get(metric, 0)), max(lo, spec.low),
                        min(hi, spec.high)) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
        ts, first = np.unique(ts, return_index=True)
        self.out.append(Readings(metric, ts, value[first], source))
