"""Write a cohort as three Parquet files, byte for byte the same for the same arguments."""
from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Sequence

import polars as pl

from ..errors import InputError, OutputError
from .cohort import EPISODE_RATE
from .generate import Cohort, generate_cohort

#: fixed writer settings: with them the bytes depend only on the data (and the polars version,
#: which the file's ``created_by`` names); no wall-clock time is written anywhere
PARQUET_OPTIONS = dict(compression="zstd", compression_level=9, statistics=True,
                       row_group_size=500_000)

FILES = ("telemetry", "patients", "events")


def write_frames(cohort: Cohort, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``telemetry.parquet``, ``patients.parquet`` and ``events.parquet`` into ``out_dir``.

    Each file is written beside its final name then renamed, so a reader never sees half a file.
    """
    out = Path(out_dir)
    paths = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            path = out / f"{name}.parquet"
            part = out / f".{name}.parquet.part"
            getattr(cohort, name).write_parquet(part, **PARQUET_OPTIONS)
            os.replace(part, path)
            paths[name] = path
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the cohort files ({exc.strerror or exc}).") \
            from None
    return paths


def write_cohort(out_dir: str | os.PathLike, *, patients: int, days: int, seed: int,
                 start: datetime | date | str | None = None,
                 programmes: Sequence[str] | None = None,
                 episode_rate: float = EPISODE_RATE) -> dict[str, Path]:
    """Generate a cohort (:func:`engine.synth.generate_cohort`) and write it into ``out_dir``.

    Same arguments, same bytes: the three files are written with fixed Parquet settings
    (:data:`PARQUET_OPTIONS`) and hold no wall-clock time.

    Returns
    -------
    dict
        ``{"telemetry": Path, "patients": Path, "events": Path}``.
    """
    cohort = generate_cohort(patients, days, seed, start, programmes, episode_rate=episode_rate)
    return write_frames(cohort, out_dir)


def read_cohort(out_dir: str | os.PathLike) -> Cohort:
    """Read back the three files written by :func:`write_cohort`."""
    out = Path(out_dir)
    missing = [f"{name}.parquet" for name in FILES if not (out / f"{name}.parquet").is_file()]
    if missing:
        raise InputError(f"no cohort here: {', '.join(missing)} missing", path=str(out))
    return Cohort(*(pl.read_parquet(out / f"{name}.parquet") for name in FILES))
