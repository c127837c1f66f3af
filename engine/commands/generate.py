"""``veille generate``: a labelled synthetic cohort (telemetry, patients, events)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, friendly_errors


@friendly_errors
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the three files to.")],
    patients: Annotated[int, typer.Option(min=1, help="Number of patients.")] = 300,
    days: Annotated[int, typer.Option(min=1, help="Days of follow-up.")] = 42,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 20261126,
    start: Annotated[Optional[str], typer.Option(
        help="First day, ISO date (default 2026-01-05).")] = None,
) -> None:
    """Generate a realistic labelled home-telemonitoring cohort (same seed, same bytes)."""
    from ..errors import InputError
    from ..synth import write_cohort

    start_dt = None
    if start:
        try:
            start_dt = dt.datetime.fromisoformat(start)
        except ValueError:
            raise InputError(f"--start must be an ISO date like 2026-01-05; got {start!r}.") \
                from None
        if start_dt.tzinfo is None:
            start_dt = start_dt.replace(tzinfo=dt.timezone.utc)
    paths = write_cohort(out, patients=patients, days=days, seed=seed, start=start_dt)
    for name, path in paths.items():
        console.print(f"{name:10s} {path}")
