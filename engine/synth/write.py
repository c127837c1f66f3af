"""Write a cohort as three Parquet files, byte for byte the same for the same arguments.

:func:`write_cohort` also writes ``generator.json`` beside them: the arguments and the
generator settings (:class:`~engine.synth.variant.Variant`) that made the files, so that a
held-out cohort says which configuration it comes from (:func:`read_generator_record`).
"""
from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import polars as pl

from .. import __version__
from ..errors import InputError, OutputError
from ..parquet_checksums import verify, write_options
from .generate import Cohort, _check_programmes, generate_cohort, start_us
from .variant import Variant, resolve_variant

#: fixed writer settings: with them the bytes depend only on the data (and the pyarrow version,
#: which the file's ``created_by`` names); no wall-clock time is written anywhere. Each page
#: carries its CRC (:func:`engine.parquet_checksums.write_options`)
PARQUET_OPTIONS = dict(compression="zstd", compression_level=9, statistics=True,
                       row_group_size=500_000)

FILES = ("telemetry", "patients", "events")
#: the record of how a written cohort was made (arguments and generator settings)
GENERATOR_FILE = "generator.json"


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
            getattr(cohort, name).write_parquet(part, **PARQUET_OPTIONS, **write_options())
            os.replace(part, path)
            paths[name] = path
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the cohort files ({exc.strerror or exc}).") \
            from None
    return paths


def generator_record(*, patients: int, days: int, seed: int,
                     start: datetime | date | str | None, programmes: Sequence[str] | None,
                     variant: Variant) -> dict:
    """What ``generator.json`` holds: the arguments of a generation and its settings.

    ``variant`` is the preset's name when the settings are one of
    :data:`~engine.synth.variant.VARIANTS`, else ``null``; ``settings`` is every setting of
    the variant that ran (``episode_rate`` included, as it was used).

    >>> from engine.synth import Variant
    >>> r = generator_record(patients=3, days=7, seed=1, start=None, programmes=["copd"],
    ...                      variant=Variant(noise_scale=2.0))
    >>> r["start"], r["programmes"], r["variant"], r["settings"]["noise_scale"]
    ('2026-01-05T00:00:00Z', ['copd'], None, 2.0)
    """
    first = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=start_us(start))
    return {
        "generator": "engine.synth",
        "veille_version": __version__,
        "patients": int(patients),
        "days": int(days),
        "seed": int(seed),
        "start": first.isoformat().replace("+00:00", "Z"),
        "programmes": list(_check_programmes(programmes)),
        "variant": variant.name,
        "settings": variant.to_dict(),
    }


def write_generator_record(record: dict, out_dir: str | os.PathLike) -> Path:
    """Write ``record`` as ``out_dir/generator.json`` (sorted as given, two-space indent)."""
    path = Path(out_dir) / GENERATOR_FILE
    part = path.with_name(f".{GENERATOR_FILE}.part")
    try:
        part.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(part, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the generator record "
                          f"({exc.strerror or exc}).") from None
    return path


def read_generator_record(out_dir: str | os.PathLike) -> tuple[dict, Variant]:
    """``generator.json`` of a written cohort and the :class:`Variant` of its settings."""
    path = Path(out_dir) / GENERATOR_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        settings = record["settings"]
        return record, Variant(**settings)
    except FileNotFoundError:
        raise InputError(f"no {GENERATOR_FILE} here (a cohort written before generator "
                         "variants, or by another tool)", path=str(path.parent)) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a generator record: {exc}", path=str(path)) from None


def write_cohort(out_dir: str | os.PathLike, *, patients: int, days: int, seed: int,
                 start: datetime | date | str | None = None,
                 programmes: Sequence[str] | None = None,
                 episode_rate: float | None = None,
                 variant: Variant | str | None = None) -> dict[str, Path]:
    """Generate a cohort (:func:`engine.synth.generate_cohort`) and write it into ``out_dir``.

    Same arguments, same bytes: the three files are written with fixed Parquet settings
    (:data:`PARQUET_OPTIONS`) and hold no wall-clock time. ``generator.json`` beside them
    records the arguments and the generator settings (:func:`generator_record`).

    Returns
    -------
    dict
        ``{"telemetry": Path, "patients": Path, "events": Path}`` (the Parquet files;
        ``generator.json`` is :data:`GENERATOR_FILE` in the same folder).
    """
    v = resolve_variant(variant, episode_rate)
    cohort = generate_cohort(patients, days, seed, start, programmes, variant=v)
    paths = write_frames(cohort, out_dir)
    write_generator_record(generator_record(patients=patients, days=days, seed=seed,
                                            start=start, programmes=programmes, variant=v),
                           out_dir)
    return paths


def read_cohort(out_dir: str | os.PathLike) -> Cohort:
    """Read back the three files written by :func:`write_cohort`."""
    out = Path(out_dir)
    missing = [f"{name}.parquet" for name in FILES if not (out / f"{name}.parquet").is_file()]
    if missing:
        raise InputError(f"no cohort here: {', '.join(missing)} missing", path=str(out))
    for name in FILES:
        verify(out / f"{name}.parquet")     # each page's CRC (a file written by veille has them)
    return Cohort(*(pl.read_parquet(out / f"{name}.parquet") for name in FILES))


def write_randomised_cohort(out_dir: str | os.PathLike, *, patients: int, days: int,
                            seed: int, parts: int,
                            start: datetime | date | str | None = None,
                            programmes: Sequence[str] | None = None) -> dict[str, Path]:
    """A domain-randomised cohort (:func:`engine.synth.randomise.randomised_cohort`) written
    into ``out_dir`` like :func:`write_cohort`, same arguments, same bytes.

    ``generator.json`` records the arguments with ``variant`` and ``settings`` null (no single
    configuration made the files) and ``randomised``: the ranges the settings were drawn from
    and, per part, its seed, its patients and the settings it ran with.
    """
    from .randomise import RANGES, randomised_cohort

    cohort, records = randomised_cohort(patients, days, seed, parts, start, programmes)
    paths = write_frames(cohort, out_dir)
    record = generator_record(patients=patients, days=days, seed=seed, start=start,
                              programmes=programmes, variant=Variant())
    record.update(variant=None, settings=None, randomised={
        "parts": len(records),
        "ranges": {k: list(v) for k, v in RANGES.items()},
        "draw": "a Latin hypercube over the ranges (episode_rate uniform, every other setting "
                "log-uniform): engine.synth.randomise.draw_settings(seed, parts); part k "
                "has generator seed seed*1000+k+1",
        "cohorts": records})
    write_generator_record(record, out_dir)
    return paths
