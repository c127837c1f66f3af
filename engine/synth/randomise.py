"""Domain-randomised cohorts: one labelled cohort made of parts with randomised settings.

A model trained on one generator configuration learns that configuration's noise, sampling,
prevalence and effect sizes along with the physiology, and its probabilities are too sure of
themselves at a site that differs (its calibration slope falls below 1). Training on a cohort
whose parts each draw their own settings around the default (*domain randomisation*) teaches
it how much a signal is worth across plausible sites instead of at one.

:func:`randomised_cohort` splits ``n_patients`` into ``parts`` sub-cohorts; part ``k`` is
:func:`~engine.synth.generate_cohort` with its own seed (:func:`part_seed`) and a
:class:`~engine.synth.variant.Variant` drawn by :func:`draw_settings` from :data:`RANGES` (a
Latin hypercube: every range covered evenly by the parts):
every rescaling setting log-uniform within a factor of :data:`SPREAD` of the default (the
episode size within a factor of :data:`EFFECT_SPREAD`), the episode rate uniform in
:data:`EPISODE_RATE_RANGE`. The ranges are fixed here, around the default; no part is given
a named preset. Patient ids are renumbered so that they are unique across parts (part 0 keeps
``P000001`` ...). Nothing of the default generator changes: a part is an ordinary cohort.

>>> c, parts = randomised_cohort(14, days=14, seed=3, parts=2)
>>> [p["patients"] for p in parts], c.patients["patient_id"].n_unique()
([7, 7], 14)
>>> all(RANGES[k][0] <= v <= RANGES[k][1] for p in parts for k, v in p["settings"].items())
True
"""
from __future__ import annotations

import math
from datetime import date, datetime
from typing import Sequence

import numpy as np
import polars as pl

from ..errors import InputError
from .generate import Cohort, generate_cohort
from .variant import BOUNDS, Variant

#: rescaling settings: log-uniform within this factor of the default (1)
SPREAD = 2.0
#: the size of episode changes: within this factor (an event stays an event)
EFFECT_SPREAD = 1.5
#: share of patients with an episode: uniform in this range (the default is 0.3)
EPISODE_RATE_RANGE = (0.1, 0.4)
#: setting -> (lowest, highest); ``episode_rate`` uniform, every other one log-uniform
RANGES: dict[str, tuple[float, float]] = {
    "noise_scale": (1 / SPREAD, SPREAD),
    "episode_rate": EPISODE_RATE_RANGE,
    "sampling_scale": (1 / SPREAD, SPREAD),
    "missed_rate_scale": (1 / SPREAD, SPREAD),
    "effect_scale": (1 / EFFECT_SPREAD, EFFECT_SPREAD),
    "prodrome_scale": (1 / SPREAD, SPREAD),
    "gap_rate_scale": (1 / SPREAD, SPREAD),
    "artefact_rate_scale": (1 / SPREAD, SPREAD),
}
#: the most parts a cohort is split into
MAX_PARTS = 100


def part_seed(seed: int, k: int) -> int:
    """The generator seed of part ``k`` of a randomised cohort of ``seed``: ``seed * 1000 + k
    + 1``, so that no part reuses the cohort's own seed (or a small seed of another cohort)."""
    return seed * 1000 + k + 1


def draw_settings(seed: int, parts: int) -> list[Variant]:
    """The settings of each of ``parts`` parts, a Latin hypercube over :data:`RANGES`: for
    every setting, its range is cut into ``parts`` equal slices (equal in log scale for the
    log-uniform ones) and each part draws in a slice of its own, in a random order, so that even
    a few parts cover each range evenly instead of clustering by chance. One stream
    (``default_rng([seed, parts, 0x5e77])``); values rounded to 3 decimals so that the record
    reads back exactly."""
    rng = np.random.default_rng([seed, parts, 0x5E77])
    columns = {}
    for name, (lo, hi) in RANGES.items():
        u = (rng.permutation(parts) + rng.uniform(size=parts)) / parts
        if name == "episode_rate":
            v = lo + u * (hi - lo)
        else:
            v = np.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        blo, bhi = BOUNDS[name]
        columns[name] = [min(bhi, max(blo, round(float(x), 3))) for x in v]
    return [Variant(**{name: columns[name][k] for name in RANGES}) for k in range(parts)]


def _sizes(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (k < extra) for k in range(parts)]


def _renumber(frame: pl.DataFrame, offset: int) -> pl.DataFrame:
    if offset == 0:
        return frame
    number = pl.col("patient_id").str.slice(1).cast(pl.Int64) + offset
    return frame.with_columns(patient_id=pl.lit("P") + number.cast(pl.String).str.zfill(6))


def randomised_cohort(n_patients: int, days: int, seed: int, parts: int,
                      start: datetime | date | str | None = None,
                      programmes: Sequence[str] | None = None) -> tuple[Cohort, list[dict]]:
    """A cohort of ``parts`` sub-cohorts with randomised settings (see the module), and the
    record of each part: ``{"part", "seed", "patients", "first_patient", "settings"}``."""
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
        raise InputError(f"The number of randomised parts must be an int from 1 to "
                         f"{MAX_PARTS}. Got {parts!r} instead.")
    if isinstance(n_patients, int) and n_patients < parts:
        raise InputError(f"A randomised cohort needs at least one patient per part: "
                         f"{n_patients} patients for {parts} parts.")
    frames: dict[str, list[pl.DataFrame]] = {"telemetry": [], "patients": [], "events": []}
    records, offset = [], 0
    settings = draw_settings(seed, parts)
    for k, size in enumerate(_sizes(n_patients, parts)):
        v = settings[k]
        c = generate_cohort(size, days, part_seed(seed, k), start, programmes, variant=v)
        for name in frames:
            frames[name].append(_renumber(getattr(c, name), offset))
        records.append({"part": k, "seed": part_seed(seed, k), "patients": size,
                        "first_patient": f"P{offset + 1:06d}", "settings": v.to_dict()})
        offset += size
    cohort = Cohort(
        pl.concat(frames["telemetry"]).sort("patient_id", "metric", "ts", maintain_order=True),
        pl.concat(frames["patients"]).sort("patient_id", maintain_order=True),
        pl.concat(frames["events"]).sort("patient_id", "event_time", maintain_order=True))
    return cohort, records
