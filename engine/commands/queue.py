"""``veille queue``: the alert queue kept in a store (``veille score --store``), and the team's
actions on it (acknowledge, snooze, resolve), each recorded with who, when and why."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import cell, console, friendly_errors, say

app = typer.Typer(no_args_is_help=True, add_completion=False)

_STORE = typer.Option("--store", help="Queue store written by `veille score --store`.")
_BY = typer.Option("--by", help="Who acts: initials or a staff id (recorded).")
_NOTE = typer.Option("--note", help="Why, in a few words (recorded).")


@app.command("list")
@friendly_errors
def list_(
    store: Annotated[Path, _STORE],
    status: Annotated[str, typer.Option(help="open (the queue: snoozes honoured, closed "
                                              "left out) or all.")] = "open",
    patient: Annotated[Optional[str], typer.Option(help="Only this patient's alerts.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 30,
) -> None:
    """The queue in the store, most urgent first."""
    from ..store import open_queue

    df = open_queue(store, status=status, patient=patient)
    table = Table(title=f"{df.height:,} alert(s)")
    for col in ("alert", "patient", "severity", "risk", "status", "workflow", "opened", "reason"):
        table.add_column(col)
    for r in df.head(limit).iter_rows(named=True):
        risk = "" if r["risk"] is None else f"{100 * r['risk']:.0f} %"
        table.add_row(cell(r["alert_id"]), cell(r["patient_id"]), cell(r["severity"]),
                      risk, cell(r["status"]), cell(r["workflow"]),
                      cell(r["opened_at"].isoformat(timespec="minutes")), cell(r["reason"]))
    console.print(table)


def _act(action: str, store: Path, alert_id: str, by: str, note: str | None,
         until: str | None = None) -> None:
    from ..store import act
    from .score import parse_as_of

    when = parse_as_of(until) if until is not None else None
    state = act(store, alert_id, action, by=by, note=note, until=when)
    extra = (f" until {state['snoozed_until'].isoformat(timespec='minutes')}"
             if state["snoozed_until"] is not None else "")
    say(f"{state['alert_id']}: {state['workflow']} by {state['workflow_by']}{extra} "
        f"(alert {state['status']})")


@app.command("ack")
@friendly_errors
def ack(alert_id: str, store: Annotated[Path, _STORE], by: Annotated[str, _BY],
        note: Annotated[Optional[str], _NOTE] = None) -> None:
    """Acknowledge an alert: the team has seen it (it comes back if its severity rises)."""
    _act("ack", store, alert_id, by, note)


@app.command("snooze")
@friendly_errors
def snooze(alert_id: str, store: Annotated[Path, _STORE], by: Annotated[str, _BY],
           until: Annotated[str, typer.Option(help="ISO time with its zone, e.g. "
                                                   "2026-02-15T08:00+01:00.")],
           note: Annotated[Optional[str], _NOTE] = None) -> None:
    """Hide an alert from the open queue until a time (a hospital stay, a planned call)."""
    _act("snooze", store, alert_id, by, note, until)


@app.command("resolve")
@friendly_errors
def resolve(alert_id: str, store: Annotated[Path, _STORE], by: Annotated[str, _BY],
            note: Annotated[Optional[str], _NOTE] = None) -> None:
    """Close an alert: the team has dealt with it."""
    _act("resolve", store, alert_id, by, note)


@app.command("export")
@friendly_errors
def export(store: Annotated[Path, _STORE],
           out: Annotated[Path, typer.Option("--out", "-o", help="File to write: .parquet, "
                                              ".jsonl, .csv or .fhir.json (a FHIR R4 Bundle).")],
           status: Annotated[str, typer.Option(help="all (every alert) or open (the queue "
                                                    "as the team sees it).")] = "all") -> None:
    """Write the store's alerts as a file, e.g. a FHIR R4 Bundle for the platform."""
    from ..sinks import check_outputs, output_format, write_frames
    from ..store import latest_as_of, queue_frame

    check_outputs([out], inputs=[store])
    if output_format(out) == "duckdb":
        from ..errors import InputError

        raise InputError("the store is already a DuckDB file: export to .parquet, .jsonl, "
                         ".csv or .fhir.json.")
    frame = queue_frame(store, status=status)
    data = frame
    if output_format(out) == "fhir":
        from ..sinks.fhir import queue_bundle

        data = queue_bundle(frame, as_of=latest_as_of(store))
    write_frames([(data, out, "alerts")])
    say(f"written  {out} ({frame.height:,} alerts from {store})")


@app.command("history")
@friendly_errors
def history(alert_id: str, store: Annotated[Path, _STORE]) -> None:
    """The audit trail of one alert: what the engine and the team did, oldest first."""
    from ..store import history as trail

    df = trail(store, alert_id)
    if df.height == 0:
        say(f"no recorded event for {alert_id}")
        return
    for r in df.iter_rows(named=True):
        who = f" by {r['actor']}" if r["actor"] else ""
        extra = "".join(f"; {k} {r[k]}" for k in ("detail", "note") if r[k])
        say(f"{r['happened_at'].isoformat(timespec='seconds')}  {r['event']}{who}{extra}")
