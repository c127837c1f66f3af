"""``veille backtest``: per-pack sensitivity, alert burden and lead time on a labelled cohort."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..paths import bundled
from ._common import cell, console, friendly_errors, say


@friendly_errors
def backtest(
    cohort: Annotated[Optional[Path], typer.Argument(
        help="Folder with telemetry.parquet, patients.parquet and events.parquet (as written "
             "by `veille generate`). Default: the bundled sample cohort.",
        show_default=False)] = None,
    telemetry: Annotated[Optional[Path], typer.Option(
        help="Telemetry file, instead of the folder's telemetry.parquet.")] = None,
    patients: Annotated[Optional[Path], typer.Option(
        help="Patients table, instead of the folder's patients.parquet.")] = None,
    events: Annotated[Optional[Path], typer.Option(
        help="Labelled events (patient_id, event_type, onset, event_time), instead of the "
             "folder's events.parquet.")] = None,
    rules: Annotated[list[Path], typer.Option(help="Rule packs (default: bundled rules/).")] = [],
    site: Annotated[list[Path], typer.Option(help="Site override file (repeatable).")] = [],
    tz: Annotated[Optional[str], typer.Option(
        help="Time zone of naive timestamps (telemetry and events), e.g. Europe/Paris.")] = None,
    columns: Annotated[Optional[str], typer.Option(
        help="Rename telemetry columns to the contract, e.g. 'id=patient_id,time=ts'.")] = None,
    skip_unknown_events: Annotated[bool, typer.Option(
        "--skip-unknown-events", help="Leave out event types no pack is meant to detect "
        "(listed) instead of refusing the events table.")] = False,
    markdown: Annotated[bool, typer.Option(help="Print the table as Markdown.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table (.parquet, .csv, "
                                                     ".jsonl).")] = None,
    hygiene: Annotated[bool, typer.Option(
        "--hygiene", help="Also say what alert hygiene does: alerts reaching the queue per "
        "100 patient-days without and with it, and the labelled events still caught.")] = False,
) -> None:
    """Score a labelled cohort and report, per pack, how many labelled episodes it caught."""
    from ..backtest import backtest as run_backtest
    from ..backtest import load_events, to_markdown
    from ..errors import InputError
    from ..pipeline import Engine
    from ..sinks import check_outputs, write_frame
    from .score import parse_columns

    folder = cohort or bundled("data_samples") / "cohort"
    files = {"telemetry": telemetry, "patients": patients, "events": events}
    for name, given in files.items():
        if given is None:
            files[name] = folder / f"{name}.parquet"
            if not files[name].exists():
                raise InputError(f"the cohort folder has no {name}.parquet (give --{name}).",
                                 path=str(folder))
    if out:
        check_outputs([out], inputs=list(files.values()))
    labelled, unknown = load_events(str(files["events"]), tz=tz,
                                    skip_unknown=skip_unknown_events)
    engine = Engine.from_paths(rules or [bundled("rules")], sites=site)
    result = engine.score(str(files["telemetry"]), str(files["patients"]), tz=tz,
                          columns=parse_columns(columns))
    table = run_backtest(result.episodes, labelled, result.clean, result.patients,
                         engine.ruleset.packs)
    if hygiene:
        _hygiene_lines(engine, result, labelled)
    if unknown:
        say("left out: " + ", ".join(f"{t} ({n} events)" for t, n in sorted(unknown.items()))
            + " — no pack is meant to detect these event types")
    if out:
        write_frame(table, out, table="backtest")
    if markdown:
        say(to_markdown(table))
        return
    t = Table(title=f"Backtest on {folder}")
    for col in ("pack", "events", "early", "sens.", "lead", "≤ +24 h", "episodes",
                "per 100 pd", "unmatched"):
        t.add_column(col, justify="left" if col == "pack" else "right")

    def f(v, fmt):
        return "–" if v is None else fmt.format(v)

    for r in table.iter_rows(named=True):
        t.add_row(cell(r["pack"]), str(r["events"]), str(r["detected"]),
                  f(r["sensitivity"], "{:.0%}"), f(r["median_lead_h"], "{:.1f} h"),
                  str(r["detected_24h"]), str(r["episodes"]), f(r["alerts_per_100_pd"], "{:.2f}"),
                  f(r["unmatched_share"], "{:.0%}"))
    console.print(t)


def _hygiene_lines(engine, result, labelled) -> None:
    from .. import hygiene as H
    from ..backtest import hygiene_effect

    queue, _ = H.apply(result.queue, as_of=result.as_of, inhibitions=engine.ruleset.inhibitions,
                       patients=result.patients, config=H.HygieneConfig(),
                       silence_rules=H.silence_rule_ids(engine.ruleset))
    e = hygiene_effect(queue, labelled, result.clean, result.patients)
    say(f"hygiene  alerts reaching the queue per 100 patient-days: off {e['off']:.2f} "
        f"({e['alerts_off']:,} alerts), on {e['on']:.2f} ({e['alerts_on']:,}) over "
        f"{e['patient_days']:,.0f} patient-days; labelled events with an alert: "
        f"{e['caught_off']} of {e['events']} off, {e['caught_on']} on")
    for r in e["lost"].iter_rows(named=True):
        say(f"lost     {r['patient_id']} {r['event_type']} at "
            f"{r['event_time'].isoformat(timespec='minutes')}: {', '.join(r['reasons'])}")
