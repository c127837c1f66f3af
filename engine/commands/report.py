"""``veille report``: one self-contained HTML page about a labelled cohort and its rules."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import friendly_errors, say
from .backtest import (CohortArg, ColumnsOpt, EventsOpt, ModelOpt, NursesOpt, PatientsOpt,
                       RulesOpt, SiteOpt, SweepOpt, TelemetryOpt, TzOpt, WindowOpt,
                       check_nurses, window_option)


@friendly_errors
def report(
    cohort: CohortArg = None,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    telemetry: TelemetryOpt = None,
    patients: PatientsOpt = None,
    events: EventsOpt = None,
    rules: RulesOpt = [],
    site: SiteOpt = [],
    model: ModelOpt = "default",
    tz: TzOpt = None,
    columns: ColumnsOpt = None,
    window: WindowOpt = None,
    nurses: NursesOpt = 1.0,
    sweep: SweepOpt = [],
    patient: Annotated[list[str], typer.Option(
        help="A patient whose timeline to draw (repeatable; default: the top of the "
             "queue).")] = [],
    top: Annotated[int, typer.Option(help="Patients drawn from the top of the queue when no "
                                          "--patient is given.")] = 3,
    lang: Annotated[str, typer.Option(help="Language of the page: fr or en.")] = "fr",
) -> None:
    """Write the cohort summary, backtest tables, sweep curves and patient timelines as one
    HTML file that opens with no network (inline SVG and CSS, no script)."""
    from ..errors import InputError
    from ..labelled import LabelledCohort, score
    from ..pipeline import Engine
    from ..report import render
    from ..ruleset.i18n import check_lang
    from .score import parse_columns

    check_lang(lang)
    check_nurses(nurses)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError("the report is an HTML file: give --out a name ending in .html.",
                         path=str(out))
    if out.is_dir():
        raise InputError("is a folder; give a file name such as report.html.", path=str(out))
    if top < 0:
        raise InputError(f"--top must be 0 or more. Got {top} instead.")
    win = window_option(window)
    if sweep:
        from ..sweep import parse_spec
        for s in sweep:
            parse_spec(s)
    data = LabelledCohort.load(cohort, telemetry=telemetry, patients=patients, events=events,
                               tz=tz, columns=parse_columns(columns))
    engine = Engine.from_paths(rules or None, sites=site,
                               model=None if model == "none" else model, lang=lang)
    scored = score(data, engine, window=win, nurses=nurses)
    known = set(scored.result.clean["patient_id"].unique().to_list())
    missing = [p for p in patient if p not in known]
    if missing:
        raise InputError(f"--patient {missing[0]!r} has no reading in this cohort.",
                         path=str(data.files["telemetry"]))
    swept = None
    if sweep:
        from ..sweep import sweep as run_sweep
        swept = run_sweep(data, sweep, rules=rules or None, sites=site, window=win,
                          nurses=nurses, lang=lang)
    page = render(data, scored, sweep=swept, patients=patient, top=top, lang=lang,
                  nurses=nurses)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    say(f"written  {out} ({len(page.encode()) / 1e6:.1f} MB)")
