"""``veille generate``: a labelled synthetic cohort (telemetry, patients, events).

``--variant`` picks a named generator configuration (``default``, ``shifted``: see
:data:`engine.synth.VARIANTS`) and the ``--*-scale`` and ``--episode-rate`` options override one
setting of it each; ``generator.json`` in the output folder records what was used.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, friendly_errors

_SETTINGS = "Generator settings (override one setting of --variant)"


@friendly_errors
def generate(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write the files to: telemetry, patients and events "
        "(Parquet) and generator.json (the arguments and settings used).")],
    patients: Annotated[int, typer.Option(min=1, help="Number of patients.")] = 300,
    days: Annotated[int, typer.Option(min=1, help="Days of follow-up.")] = 42,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 20261126,
    start: Annotated[Optional[str], typer.Option(
        help="First day, ISO date (default 2026-01-05).")] = None,
    variant: Annotated[str, typer.Option(
        help="Generator configuration: 'default' (the bundled sample's) or 'shifted' (the "
             "held-out cohorts of the risk model: noisier, rarer events, sparser, subtler and "
             "slower deteriorations, more gaps and artefacts).")] = "default",
    episode_rate: Annotated[Optional[float], typer.Option(
        help="Share of each programme's patients with one labelled episode, 0-1 "
             "(default 0.3; shifted 0.15).", rich_help_panel=_SETTINGS)] = None,
    noise_scale: Annotated[Optional[float], typer.Option(
        help="Multiply the device noise and the day-to-day wander of every signal, 0.25-4 "
             "(shifted 1.5).", rich_help_panel=_SETTINGS)] = None,
    sampling_scale: Annotated[Optional[float], typer.Option(
        help="Stretch the spacing of scheduled readings, 0.25-4: 2 sends half as many a day "
             "at the same hours; the CGM keeps 5 minutes, its signal losses last longer "
             "(shifted 1.5).", rich_help_panel=_SETTINGS)] = None,
    missed_rate_scale: Annotated[Optional[float], typer.Option(
        help="Multiply the odds of a missed reading (and of a CGM signal-loss day), 0-4 "
             "(shifted 2).", rich_help_panel=_SETTINGS)] = None,
    effect_scale: Annotated[Optional[float], typer.Option(
        help="Multiply the size of episode changes (weight gain, pulse rise...), 0.25-4; "
             "target levels that define an event are kept (shifted 0.8).",
        rich_help_panel=_SETTINGS)] = None,
    prodrome_scale: Annotated[Optional[float], typer.Option(
        help="Stretch the time from onset to event, 0.25-4 (shifted 1.3).",
        rich_help_panel=_SETTINGS)] = None,
    gap_rate_scale: Annotated[Optional[float], typer.Option(
        help="Multiply the number of unlabelled transmission gaps, 0-4 (shifted 2).",
        rich_help_panel=_SETTINGS)] = None,
    artefact_rate_scale: Annotated[Optional[float], typer.Option(
        help="Multiply the rate of plausible-but-wrong readings, 0-4 (shifted 1.5).",
        rich_help_panel=_SETTINGS)] = None,
    randomise: Annotated[Optional[int], typer.Option(
        "--randomise", min=1, max=100,
        help="Domain randomisation: split the patients into this many parts, each generated "
             "with its own seed and settings drawn around the default (scales within x/÷2, "
             "episode size within x/÷1.5, episode rate 0.1-0.4; engine.synth.randomise). "
             "The training cohort of the bundled risk model. Not with --variant or a setting.",
        rich_help_panel=_SETTINGS)] = None,
) -> None:
    """Generate a realistic labelled home-telemonitoring cohort (same seed, same bytes)."""
    from ..errors import InputError
    from ..synth import write_cohort
    from ..synth.variant import named_variant
    from ..synth.write import GENERATOR_FILE

    start_dt = None
    if start:
        try:
            start_dt = dt.datetime.fromisoformat(start)
        except ValueError:
            raise InputError(f"--start must be an ISO date like 2026-01-05; got {start!r}.") \
                from None
        if start_dt.tzinfo is None:
            start_dt = start_dt.replace(tzinfo=dt.timezone.utc)
    overrides = dict(episode_rate=episode_rate, noise_scale=noise_scale,
                     sampling_scale=sampling_scale, missed_rate_scale=missed_rate_scale,
                     effect_scale=effect_scale, prodrome_scale=prodrome_scale,
                     gap_rate_scale=gap_rate_scale, artefact_rate_scale=artefact_rate_scale)
    if randomise is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
        if variant != "default":
            given.insert(0, "--variant")
        if given:
            raise InputError(f"--randomise draws every generator setting itself; it cannot be "
                             f"combined with {', '.join(given)}.")
        from ..synth.write import write_randomised_cohort

        paths = write_randomised_cohort(out, patients=patients, days=days, seed=seed,
                                        parts=randomise, start=start_dt)
        for name, path in {**paths, "generator": Path(out) / GENERATOR_FILE}.items():
            console.print(f"{name:10s} {path}")
        return
    settings = named_variant(variant, what="--variant")
    for name, value in overrides.items():
        if value is None:
            continue
        try:
            settings = settings.replace(**{name: value})
        except InputError as exc:
            raise InputError(f"--{name.replace('_', '-')}: {exc}") from None
    paths = write_cohort(out, patients=patients, days=days, seed=seed, start=start_dt,
                         variant=settings)
    for name, path in {**paths, "generator": Path(out) / GENERATOR_FILE}.items():
        console.print(f"{name:10s} {path}")
