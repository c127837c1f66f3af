"""``veille backtest``: per rule and per pack, alert burden, sensitivity, PPV and lead time on a
labelled cohort; ``--compare`` two versions of the rules; ``--sweep`` a param's range."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import cell, console, friendly_errors, say

CohortArg = Annotated[Optional[Path], typer.Argument(
    help="Folder with telemetry.parquet, patients.parquet and events.parquet (as written by "
         "`veille generate`). Default: the bundled sample cohort.", show_default=False)]
TelemetryOpt = Annotated[Optional[Path], typer.Option(
    help="Telemetry file, instead of the folder's telemetry.parquet.")]
PatientsOpt = Annotated[Optional[Path], typer.Option(
    help="Patients table, instead of the folder's patients.parquet.")]
EventsOpt = Annotated[Optional[Path], typer.Option(
    help="Labelled events (patient_id, event_type, onset, event_time), instead of the "
         "folder's events.parquet.")]
RulesOpt = Annotated[list[Path], typer.Option(help="Rule packs (default: bundled rules/).")]
SiteOpt = Annotated[list[Path], typer.Option(help="Site override file (repeatable).")]
ModelOpt = Annotated[str, typer.Option(
    help="Deterioration-risk model: 'none', 'default' (the bundled one) or a folder; packs "
         "whose rules read the risk need one.")]
TzOpt = Annotated[Optional[str], typer.Option(
    help="Time zone of naive timestamps (telemetry and events), e.g. Europe/Paris.")]
ColumnsOpt = Annotated[Optional[str], typer.Option(
    help="Rename telemetry columns to the contract, e.g. 'id=patient_id,time=ts'.")]
WindowOpt = Annotated[Optional[str], typer.Option(
    help="Detection window before each event, e.g. 72h (default: from the event's labelled "
         "onset). Events without a prodrome are detected within 24 h after them.")]
NursesOpt = Annotated[float, typer.Option(
    help="Nurses working the queue every day: the staffing of 'alerts per nurse-day'.")]
SweepOpt = Annotated[list[str], typer.Option(
    help="PACK.PARAM=START:STOP:STEP, in the param's unit (repeatable: a grid), e.g. "
         "heart_failure.gain_3d=1.1:3.0:0.1.")]


def window_option(text: str | None) -> dt.timedelta | None:
    from ..durations import parse_duration

    if text is None:
        return None
    return dt.timedelta(microseconds=parse_duration(text, what="--window"))


def check_nurses(nurses: float) -> None:
    from ..errors import InputError

    if not nurses > 0:
        raise InputError(f"--nurses must be a positive number of nurses. Got {nurses:g} "
                         "instead.")


@friendly_errors
def backtest(
    cohort: CohortArg = None,
    telemetry: TelemetryOpt = None,
    patients: PatientsOpt = None,
    events: EventsOpt = None,
    rules: RulesOpt = [],
    site: SiteOpt = [],
    model: ModelOpt = "none",
    tz: TzOpt = None,
    columns: ColumnsOpt = None,
    skip_unknown_events: Annotated[bool, typer.Option(
        "--skip-unknown-events", help="Leave out event types no pack is meant to detect "
        "(listed) instead of refusing the events table.")] = False,
    window: WindowOpt = None,
    nurses: NursesOpt = 1.0,
    compare: Annotated[Optional[Path], typer.Option(
        "--compare", help="Another version of the rules: a site override file, a pack file or "
        "a folder of packs (replacing the packs of the same name). Prints both side by side "
        "and the alerts gained and lost.")] = None,
    sweep: SweepOpt = [],
    markdown: Annotated[bool, typer.Option(help="Print the tables as Markdown.")] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write the table (.parquet, .csv, .jsonl, .duckdb); with --compare the "
             "alerts and events changed go beside it (NAME.alerts.EXT, NAME.events.EXT).")] = None,
    hygiene: Annotated[bool, typer.Option(
        "--hygiene", help="Also say what alert hygiene does: alerts reaching the queue per "
        "100 patient-days without and with it, and the labelled events still caught.")] = False,
) -> None:
    """Score a labelled cohort and report, per rule and per pack, the alerts and the labelled
    episodes caught."""
    from ..errors import InputError
    from ..labelled import LabelledCohort, score
    from ..pipeline import Engine
    from ..sinks import check_outputs, write_frame
    from .score import parse_columns

    if compare is not None and sweep:
        raise InputError("give --compare or --sweep, not both.")
    if hygiene and (compare is not None or sweep):
        raise InputError("--hygiene reports on one version of the rules: leave out --compare "
                         "and --sweep.")
    check_nurses(nurses)
    win = window_option(window)
    outs = [out] if out else []
    if out and compare is not None:
        outs += [_beside(out, "alerts"), _beside(out, "events")]
    given = [p for p in (telemetry, patients, events) if p]
    folder = cohort
    if outs:
        check_outputs(outs, inputs=given + ([folder / f"{n}.parquet" for n in
                                             ("telemetry", "patients", "events")]
                                            if folder else []))
    if sweep:
        from ..sweep import parse_spec
        for s in sweep:                   # a malformed range is refused before any reading
            parse_spec(s)
    data = LabelledCohort.load(folder, telemetry=telemetry, patients=patients, events=events,
                               tz=tz, columns=parse_columns(columns),
                               skip_unknown=skip_unknown_events)
    if data.unknown:
        say("left out: " + ", ".join(f"{t} ({n} events)" for t, n in sorted(data.unknown.items()))
            + " — no pack is meant to detect these event types")
    model_arg = None if model == "none" else model
    if sweep:
        _sweep(data, sweep, rules, site, win, nurses, markdown, out)
        return
    engine = Engine.from_paths(rules or None, sites=site, model=model_arg)
    if compare is not None:
        _compare(data, engine, rules, site, compare, model_arg, win, nurses, markdown, out)
        return
    scored = score(data, engine, window=win, nurses=nurses)
    table = scored.table
    if hygiene:
        _hygiene_lines(engine, scored.result, data.events)
    if out:
        write_frame(table, out, table="backtest")
    if markdown:
        from ..backtest import to_markdown
        say(to_markdown(table))
        return
    console.print(_table(table, f"Backtest on {data.folder}", nurses))


def _beside(out: Path, what: str) -> Path:
    return out.with_name(f"{out.stem}.{what}{out.suffix}")


def _f(v, fmt: str) -> str:
    return "–" if v is None else fmt.format(v)


def _table(table, title: str, nurses: float) -> Table:
    from ..backtest import lead_text

    t = Table(title=title)
    for col in ("pack / rule", "events", "early", "sens.", "lead h, median (IQR)", "≤ +24 h",
                "alerts", "per 100 pd", "patients alerted", "PPV",
                f"per nurse-day ({nurses:g})"):
        t.add_column(col, justify="left" if col == "pack / rule" else "right")
    for r in table.iter_rows(named=True):
        name = {"all": "all packs", "pack": r["pack"]}.get(r["level"], "  " + (r["rule_id"] or ""))
        t.add_row(cell(name), str(r["events"]), str(r["detected"]), _f(r["sensitivity"], "{:.0%}"),
                  lead_text(r), str(r["detected_24h"]), str(r["episodes"]),
                  _f(r["alerts_per_100_pd"], "{:.2f}"),
                  f"{r['patients_alerted']}/{r['patients']}", _f(r["ppv"], "{:.0%}"),
                  _f(r["alerts_per_nurse_day"], "{:.2f}"),
                  style="bold" if r["level"] != "rule" else "dim")
    return t


def _compare(data, engine, rules, site, other, model, win, nurses, markdown, out) -> None:
    from ..compare import compare, other_version
    from ..pipeline import Engine
    from ..sinks import write_frames

    b_rules, b_sites = other_version(rules, site, other)
    other_engine = Engine.from_paths(b_rules, sites=b_sites, model=model)
    c = compare(data, engine, other_engine, window=win, nurses=nurses)
    if out:
        write_frames([(c.table, out, "compare"), (c.alerts, _beside(out, "alerts"), "alerts"),
                      (c.events, _beside(out, "events"), "events")])
    changed = c.table.filter(
        (pl_col_ne("episodes")) | pl_col_ne("detected") | pl_col_ne("median_lead_h"))
    say(f"compare  A = the rules as given; B = with {other}")
    if markdown:
        say(compare_markdown(changed, c))
        return
    t = Table(title=f"Backtest on {data.folder}: A → B (rows that change)")
    for col in ("pack / rule", "alerts", "per 100 pd", "events detected", "sens.",
                "lead h (median)", "PPV", "per nurse-day"):
        t.add_column(col, justify="left" if col == "pack / rule" else "right")
    for r in changed.iter_rows(named=True):
        name = {"all": "all packs", "pack": r["pack"]}.get(r["level"], "  " + (r["rule_id"] or ""))
        t.add_row(cell(name), _ab(r, "episodes", "{}"), _ab(r, "alerts_per_100_pd", "{:.2f}"),
                  _ab(r, "detected", "{}"), _ab(r, "sensitivity", "{:.0%}"),
                  _ab(r, "median_lead_h", "{:.1f}"), _ab(r, "ppv", "{:.0%}"),
                  _ab(r, "alerts_per_nurse_day", "{:.2f}"))
    console.print(t)
    if not changed.height:
        say("no change: both versions raise the same alerts on this cohort")
    for r in c.alerts.iter_rows(named=True):
        ev = ("outside any labelled event" if r["event_type"] is None else
              f"{r['event_type']} at {r['event_time'].isoformat(timespec='minutes')}")
        say(f"{r['change']:<7}  {r['patient_id']}  {r['rule_id']}  "
            f"{r['opened_at'].isoformat(timespec='minutes')}  ({ev})")
    for r in c.events.iter_rows(named=True):
        say(f"event {r['change']} by B: {r['patient_id']} {r['event_type']} at "
            f"{r['event_time'].isoformat(timespec='minutes')}")


def pl_col_ne(name: str):
    import polars as pl

    a, b = pl.col(name + "_a"), pl.col(name + "_b")
    return a.ne_missing(b)


def _ab(r: dict, col: str, fmt: str) -> str:
    a, b = r[col + "_a"], r[col + "_b"]
    return _f(a, fmt) if a == b else f"{_f(a, fmt)} → {_f(b, fmt)}"


def compare_markdown(changed, c) -> str:
    lines = ["| pack / rule | alerts A → B | detected A → B | sensitivity A → B "
             "| median lead A → B | PPV A → B |", "|---|---:|---:|---:|---:|---:|"]
    for r in changed.iter_rows(named=True):
        name = {"all": "**all packs**", "pack": r["pack"]}.get(r["level"], r["rule_id"])
        lines.append(f"| {name} | {_ab(r, 'episodes', '{}')} | {_ab(r, 'detected', '{}')} "
                     f"| {_ab(r, 'sensitivity', '{:.0%}')} "
                     f"| {_ab(r, 'median_lead_h', '{:.1f} h')} | {_ab(r, 'ppv', '{:.0%}')} |")
    lines += ["", "| change | patient | rule | opened at | labelled event |",
              "|---|---|---|---|---|"]
    for r in c.alerts.iter_rows(named=True):
        ev = "–" if r["event_type"] is None else \
            f"{r['event_type']} {r['event_time'].isoformat(timespec='minutes')}"
        lines.append(f"| {r['change']} | {r['patient_id']} | {r['rule_id']} "
                     f"| {r['opened_at'].isoformat(timespec='minutes')} | {ev} |")
    return "\n".join(lines)


def _sweep(data, specs, rules, site, win, nurses, markdown, out) -> None:
    from ..sinks import write_frame
    from ..sweep import sweep

    res = sweep(data, specs, rules=rules or None, sites=site, window=win, nurses=nurses)
    if out:
        write_frame(res.points, out, table="sweep")
    names = [p.qualified for p in res.params]
    units = {p.qualified: p.unit for p in res.params}
    tm = res.timings
    if markdown:
        say(sweep_markdown(res.points, names, units))
    else:
        t = Table(title=f"Sweep on {data.folder} (★ current value, ◆ Pareto front: fewer "
                        "alerts, more events detected, longer lead)")
        for n in names:
            t.add_column(f"{n} ({units[n]})" if units[n] else n, justify="right")
        for col in ("", "alerts", "per 100 pd", "detected", "sens.", "lead h, median (IQR)",
                    "PPV", f"per nurse-day ({nurses:g})"):
            t.add_column(col, justify="right")
        for r in res.points.iter_rows(named=True):
            mark = ("★" if r["current"] else "") + ("◆" if r["pareto"] else "")
            t.add_row(*(f"{r[n]:g}" for n in names), mark, str(r["episodes"]),
                      _f(r["alerts_per_100_pd"], "{:.2f}"),
                      f"{r['detected']}/{r['events']}", _f(r["sensitivity"], "{:.0%}"),
                      _lead(r), _f(r["ppv"], "{:.0%}"), _f(r["alerts_per_nurse_day"], "{:.2f}"),
                      style="bold" if r["current"] else None)
        console.print(t)
    say(f"time     {res.points.height} points in {tm['total']:.2f} s (compile "
        f"{tm['compile']:.2f}, detect {tm['detect']:.2f}, rules+episodes {tm['evaluate']:.2f}, "
        f"metrics {tm['metrics']:.2f}); the telemetry read once in {data.inputs.seconds:.2f} s")


def _lead(r: dict) -> str:
    from ..backtest import lead_text
    return lead_text(r)


def sweep_markdown(points, names, units) -> str:
    head = " | ".join(f"{n} ({units[n]})" if units[n] else n for n in names)
    lines = [f"| {head} | | alerts | alerts / 100 patient-days | detected | sensitivity "
             "| lead time, median (IQR) | PPV |",
             "|" + "---:|" * (len(names) + 7)]
    for r in points.iter_rows(named=True):
        mark = ("★" if r["current"] else "") + ("◆" if r["pareto"] else "")
        lines.append("| " + " | ".join(f"{r[n]:g}" for n in names) + f" | {mark} "
                     f"| {r['episodes']} | {_f(r['alerts_per_100_pd'], '{:.2f}')} "
                     f"| {r['detected']}/{r['events']} | {_f(r['sensitivity'], '{:.0%}')} "
                     f"| {_lead(r)} | {_f(r['ppv'], '{:.0%}')} |")
    return "\n".join(lines)


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
