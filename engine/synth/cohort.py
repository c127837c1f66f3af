"""Synthetic patients: programme mix, demographics, enrolment and who gets an episode.

Each patient draws from its own random stream ``default_rng([seed, index, stream])``, so a
patient's data do not change when a signal is added to another programme; only the allocation
of programmes and episodes to patients (a quota, so that a small cohort still holds every
programme and every event type) depends on the cohort size.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import polars as pl

from ..schema import PATIENT_SCHEMA
from .episodes import EVENT_MODELS, PROGRAMME_EVENTS, Episode, draw_episode
from .timeline import DAY, HOUR, local_midnight, timestamps

#: share of each programme in a default cohort (diabetes, the CGM patients, is about 15 %)
PROGRAMME_MIX: dict[str, float] = {
    "heart_failure": 0.20, "copd": 0.17, "diabetes": 0.14, "covid_home": 0.12,
    "sleep_apnoea": 0.13, "post_bariatric": 0.10, "older_home": 0.14,
}

#: programme -> (age mean, sd, min, max), share of men, (BMI mean, sd, min, max)
DEMOGRAPHICS: dict[str, tuple[tuple[float, float, int, int], float,
                              tuple[float, float, float, float]]] = {
    "heart_failure": ((76, 9, 45, 95), 0.60, (28.0, 4.5, 17, 50)),
    "copd": ((68, 9, 45, 90), 0.55, (25.0, 4.5, 16, 45)),
    "diabetes": ((55, 15, 20, 85), 0.55, (29.0, 5.0, 18, 50)),
    "covid_home": ((58, 15, 25, 90), 0.50, (28.0, 5.0, 18, 50)),
    "sleep_apnoea": ((56, 11, 30, 80), 0.70, (32.0, 5.0, 20, 50)),
    # surgery needs BMI >= 40, or >= 35 with a comorbidity (HAS)
    "post_bariatric": ((42, 10, 20, 65), 0.20, (42.0, 5.0, 35, 60)),
    "older_home": ((83, 6, 70, 99), 0.35, (24.5, 3.5, 16, 40)),
}

#: default share of patients with one labelled episode during follow-up
EPISODE_RATE = 0.3

#: how long a COVID-19 home follow-up lasts (the chronic programmes run to the end of the window)
COVID_FOLLOW_UP_DAYS = (14, 21)
#: days from a bariatric operation to the installation visit (the first weeks at home)
SURGERY_TO_ENROLMENT_DAYS = (2, 10)
#: every synthetic patient lives in metropolitan France
TIME_ZONE = "Europe/Paris"


@dataclass(frozen=True)
class Patient:
    """One synthetic patient; instants are µs since the epoch, UTC."""

    index: int
    patient_id: str
    programme: str
    age: int
    sex: str
    height_cm: float
    baseline_weight_kg: float
    spo2_scale: int
    enrolled_at: int
    #: end of follow-up (end of the cohort window, or discharge from a COVID-19 follow-up)
    ends_at: int
    seed: int

    def rng(self, purpose: str) -> np.random.Generator:
        """The patient's random stream for one purpose (a device, its episode)."""
        return stream(self.seed, self.index, purpose)

    @property
    def surgery_at(self) -> int | None:
        """The operation a post-bariatric follow-up is for, a few days before enrolment."""
        if self.programme != "post_bariatric":
            return None
        days = self.rng("surgery").uniform(*SURGERY_TO_ENROLMENT_DAYS)
        return local_midnight(self.enrolled_at - int(days * DAY)) + 8 * HOUR

    @property
    def dry_weight_kg(self) -> float | None:
        """The care plan's dry weight of a heart failure patient: the weight level the signals
        start from (``baseline_weight_kg``)."""
        return self.baseline_weight_kg if self.programme == "heart_failure" else None


def stream(seed: int, index: int, purpose: str) -> np.random.Generator:
    """Patient ``index``'s own random stream for ``purpose``, independent of every other one."""
    return np.random.default_rng([seed, index, zlib.crc32(purpose.encode())])


def allocate(weights: dict[str, float], n: int) -> list[str]:
    """``n`` labels in proportion to ``weights`` by largest remainder, in the weights' order."""
    keys = list(weights)
    w = np.asarray([weights[k] for k in keys], dtype=float)
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(int)
    # stable sort so ties go to the first-listed label: the same result on every platform
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [k for k, c in zip(keys, counts) for _ in range(c)]


def draw_patients(n: int, days: int, seed: int, start: int,
                  programmes: Sequence[str]) -> list[Patient]:
    """``n`` patients of ``programmes`` over ``days`` days from ``start`` (µs since the epoch)."""
    mix = {p: PROGRAMME_MIX[p] for p in programmes}
    labels = allocate(mix, n)
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    end = start + days * DAY
    out = []
    for index, j in enumerate(order):
        programme = labels[j]
        rng = stream(seed, index, "demographics")
        (age_mean, age_sd, age_lo, age_hi), p_male, (bmi_mean, bmi_sd, bmi_lo, bmi_hi) = \
            DEMOGRAPHICS[programme]
        age = int(np.clip(round(rng.normal(age_mean, age_sd)), age_lo, age_hi))
        sex = "M" if rng.random() < p_male else "F"
        # older people have lost a few centimetres
        height = rng.normal(175.0 if sex == "M" else 162.0, 7.0 if sex == "M" else 6.0)
        height -= max(age - 65, 0) * 0.15
        height = float(round(np.clip(height, 140.0, 205.0)))
        bmi = float(np.clip(rng.normal(bmi_mean, bmi_sd), bmi_lo, bmi_hi))
        weight = round(bmi * (height / 100.0) ** 2, 1)
        scale = 2 if programme == "copd" and rng.random() < 0.25 else 1
        if programme == "covid_home":
            # a rolling intake: enrolled any day that leaves two weeks of follow-up
            first = float(rng.uniform(0.0, max(days - COVID_FOLLOW_UP_DAYS[0], 0)))
            stay = float(rng.uniform(*COVID_FOLLOW_UP_DAYS))
        else:
            # a fresh intake: the installation visit in the first two days
            first, stay = float(rng.uniform(0.0, min(2.0, days / 4))), float(days)
        # the nurse's visit, in working hours, logged to the hour
        visit = local_midnight(start + int(first * DAY)) + int(rng.integers(9, 17)) * HOUR
        enrolled = max(visit, start)
        out.append(Patient(index, f"P{index + 1:06d}", programme, age, sex, height, weight,
                           scale, enrolled, min(end, enrolled + int(stay * DAY)), seed))
    return out


def assign_episodes(patients: list[Patient], seed: int, rate: float, *,
                    effect_scale: float = 1.0, prodrome_scale: float = 1.0,
                    ) -> dict[int, Episode]:
    """Give ``rate`` of each programme's patients one episode (patient index -> episode).

    Event types are shared out by quota (:data:`PROGRAMME_EVENTS` weights). A patient whose
    follow-up is too short for the drawn event type stays without an episode.
    ``effect_scale`` and ``prodrome_scale`` go to :func:`~engine.synth.episodes.draw_episode`.
    """
    rng = np.random.default_rng([seed, 0xE915])
    episodes: dict[int, Episode] = {}
    for programme, weights in PROGRAMME_EVENTS.items():
        members = [p for p in patients if p.programme == programme]
        k = int(np.floor(rate * len(members) + 0.5))
        if not k:
            continue
        chosen = rng.permutation(len(members))[:k]
        types = rng.permutation(allocate(weights, k))
        for i, event_type in zip(chosen, types):
            p = members[i]
            ep = draw_episode(p.rng("episode"), EVENT_MODELS[str(event_type)], p.enrolled_at,
                              p.ends_at, effect_scale=effect_scale,
                              prodrome_scale=prodrome_scale)
            if ep is not None:
                episodes[p.index] = ep
    return episodes


def patients_frame(patients: list[Patient]) -> pl.DataFrame:
    """The patients frame of :data:`engine.schema.PATIENT_SCHEMA`, sorted by ``patient_id``."""
    df = pl.DataFrame({
        "patient_id": [p.patient_id for p in patients],
        "programme": [p.programme for p in patients],
        "age": [p.age for p in patients],
        "sex": [p.sex for p in patients],
        "height_cm": [p.height_cm for p in patients],
        "baseline_weight_kg": [p.baseline_weight_kg for p in patients],
        "spo2_scale": [p.spo2_scale for p in patients],
        "enrolled_at": timestamps([p.enrolled_at for p in patients]),
        # a COVID-19 follow-up ends with a discharge; chronic programmes run on past the window
        "discharged_at": pl.Series([p.ends_at if p.programme == "covid_home" else None
                                    for p in patients], dtype=pl.Int64)
        .cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "tz": [TIME_ZONE] * len(patients),
        "surgery_at": pl.Series([p.surgery_at for p in patients], dtype=pl.Int64)
        .cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "dry_weight_kg": pl.Series([p.dry_weight_kg for p in patients], dtype=pl.Float64),
    })
    return df.select([(pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype)
                      .alias(name) for name, (dtype, _, _) in PATIENT_SCHEMA.items()]) \
        .sort("patient_id")
