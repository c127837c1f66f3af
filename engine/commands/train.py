"""``veille train``: the deterioration-risk model, trained on a labelled cohort."""
from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import friendly_errors, say


@friendly_errors
def train(
    cohort: Annotated[Path, typer.Argument(
        help="Folder with telemetry.parquet, patients.parquet and events.parquet (as written "
             "by `veille generate`, or a site's own labelled history in the same format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model to "
                                      "(model.skops, card.json, card.md), e.g. models/site.")],
    horizon: Annotated[str, typer.Option(
        help="Predict an event within this time of each grid point, e.g. 48h or 3d.")] = "48h",
    seed: Annotated[int, typer.Option(help="Seed of the patient split and the models.")] = 0,
    name: Annotated[Optional[str], typer.Option(
        help="Model name in its card (default: the folder's name).")] = None,
    telemetry: Annotated[Optional[Path], typer.Option(
        help="Telemetry file, instead of the folder's telemetry.parquet.")] = None,
    patients: Annotated[Optional[Path], typer.Option(
        help="Patients table, instead of the folder's patients.parquet.")] = None,
    events: Annotated[Optional[Path], typer.Option(
        help="Labelled events, instead of the folder's events.parquet.")] = None,
    event_types: Annotated[Optional[str], typer.Option(
        "--event-types", help="Comma-separated event types that count as a deterioration "
        "(default: the generator's clinical ones, e.g. hf_decompensation,copd_exacerbation).")
    ] = None,
    recalibrate: Annotated[Optional[Path], typer.Option(
        help="Keep this trained model's trees and refit only its calibration on the cohort (a "
             "site's own history): 'default' or a model folder.")] = None,
) -> None:
    """Train, calibrate and evaluate the risk model on a labelled cohort; write its artifact."""
    from ..durations import parse_duration
    from ..risk.train import train as run

    command = "veille " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if recalibrate is not None:
        from ..paths import bundled
        from ..risk.train import recalibrate as refit

        source = bundled("models") / "default" if str(recalibrate) == "default" else recalibrate
        card = refit(source, cohort, out, seed=seed, name=name, telemetry=telemetry,
                     patients=patients, events=events, command=command)
        r = card["recalibrated"]
        for when in ("before", "after"):
            m = r["metrics_test_part"][when]
            say(f"{when:<8} AUROC {m.get('auroc', float('nan')):.3f}, calibration slope "
                f"{m.get('calibration_slope', float('nan')):.2f}, intercept "
                f"{m.get('calibration_intercept', float('nan')):.2f} "
                f"({r['patients']['test']:,} held-out patients of the cohort)")
        say(f"written  {out}/model.skops (SHA-256 {card['model_sha256'][:16]}…), card.json, "
            "card.md")
        return
    us = parse_duration(horizon, what="--horizon")
    from ..risk.train import DETERIORATION_EVENTS

    types = tuple(t.strip() for t in event_types.split(",") if t.strip()) if event_types \
        else DETERIORATION_EVENTS
    card = run(cohort, out, horizon=dt.timedelta(microseconds=us), seed=seed, name=name,
               telemetry=telemetry, patients=patients, events=events, command=command,
               event_types=types)
    t = card["training"]
    say(f"trained  {card['name']}: {t['grid_times']:,} grid times of "
        f"{sum(t['patients'].values()):,} patients, {t['deterioration_events']:,} labelled "
        f"deterioration events (horizon {card['horizon_hours']:g} h)")
    for model, m in card["metrics_test_split"].items():
        extra = (f", calibration slope {m['calibration_slope']:.2f}"
                 if "calibration_slope" in m and model != "news2" else "")
        say(f"test     {model}: AUROC {m.get('auroc', float('nan')):.3f}, AUPRC "
            f"{m.get('auprc', float('nan')):.3f}{extra}")
    say(f"written  {out}/model.skops (SHA-256 {card['model_sha256'][:16]}…), card.json, card.md")
