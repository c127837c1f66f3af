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
    group: Annotated[Optional[str], typer.Option(
        help="One line per group, worst first: 'patient' or 'label:NAME' (e.g. "
             "label:domain).")] = None,
) -> None:
    """The queue in the store, most urgent first (silences and snoozes honoured)."""
    from ..store import open_queue

    df = open_queue(store, status=status, patient=patient)
    if group is not None:
        _grouped(df, group, limit)
        return
    table = Table(title=f"{df.height:,} alert(s)")
    for col in ("alert", "patient", "severity", "risk", "status", "workflow", "opened", "reason"):
        table.add_column(col)
    for r in df.head(limit).iter_rows(named=True):
        risk = "" if r["risk"] is None else f"{100 * r['risk']:.0f} %"
        workflow = r["workflow"]
        if r.get("reraise_count"):            # an unacknowledged high alert raised again
            workflow += f", re-raised ×{r['reraise_count']}"
        table.add_row(cell(r["alert_id"]), cell(r["patient_id"]), cell(r["severity"]),
                      risk, cell(r["status"]), cell(workflow),
                      cell(r["opened_at"].isoformat(timespec="minutes")), cell(r["reason"]))
    console.print(table)


def _grouped(df, group: str, limit: int) -> None:
    import json

    import polars as pl

    from ..errors import InputError

    if group == "patient":
        key = df["patient_id"]
    elif group.startswith("label:") and group[6:]:
        name = group[6:]
        key = pl.Series([json.loads(x or "{}").get(name, "(none)") for x in df["labels"]],
                        dtype=pl.String)
    else:
        raise InputError(f"--group must be 'patient' or 'label:NAME'; got {group!r}.")
    by = (df.with_columns(_g=key, _n=pl.int_range(pl.len()))
          .group_by("_g", maintain_order=True)
          .agg(pl.len().alias("n"), pl.col("severity").first(), pl.col("rule_id").first(),
               pl.col("rule_id").slice(1).str.join(", ").alias("others"),
               pl.col("reason").first()))
    table = Table(title=f"{by.height:,} group(s), {df.height:,} alert(s)")
    for col in ("group", "alerts", "worst", "rule", "also", "reason"):
        table.add_column(col)
    for r in by.head(limit).iter_rows(named=True):
        table.add_row(cell(r["_g"]), str(r["n"]), cell(r["severity"]), cell(r["rule_id"]),
                      cell(r["others"]), cell(r["reason"]))
    console.print(table)


silence_app = typer.Typer(no_args_is_help=True, add_completion=False,
                          help="Silences: hide matching alerts until a time (a hospital "
                               "stay, a known outage), with who and why.")
app.add_typer(silence_app, name="silence")


@silence_app.command("add")
@friendly_errors
def silence_add(
    store: Annotated[Path, _STORE], by: Annotated[str, _BY],
    reason: Annotated[str, typer.Option(help="Why, e.g. 'hospital stay' (recorded).")],
    until: Annotated[str, typer.Option(help="End, an ISO time with its zone.")],
    starts: Annotated[Optional[str], typer.Option(help="Start (default: now).")] = None,
    patient: Annotated[list[str], typer.Option(help="Patient id (repeatable).")] = [],
    rule: Annotated[list[str], typer.Option(help="Rule id (repeatable).")] = [],
    pack: Annotated[list[str], typer.Option(help="Pack name (repeatable).")] = [],
    severity: Annotated[list[str], typer.Option(help="high, medium or low (repeatable).")] = [],
    label: Annotated[list[str], typer.Option(help="NAME=VALUE (repeatable), e.g. "
                                                  "device=oximeter.")] = [],
) -> None:
    """Silence the alerts matching every option given, until a time."""
    from ..errors import InputError
    from ..store import add_silence
    from .score import parse_as_of

    labels = {}
    for item in label:
        k, sep, v = item.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise InputError(f"--label takes NAME=VALUE, e.g. device=oximeter; got {item!r}.")
        labels[k.strip()] = v.strip()
    sid = add_silence(store, by=by, reason=reason, ends_at=parse_as_of(until),
                      starts_at=parse_as_of(starts), patients=patient, rules=rule,
                      packs=pack, severity=severity, labels=labels)
    say(f"silence {sid} added by {by.strip()} until {until}")


@silence_app.command("list")
@friendly_errors
def silence_list(store: Annotated[Path, _STORE],
                 all_: Annotated[bool, typer.Option("--all", help="Expired ones too.")] = False
                 ) -> None:
    """The silences in force (or every one with --all)."""
    from ..store import list_silences

    df = list_silences(store, every=all_)
    table = Table(title=f"{df.height:,} silence(s)")
    for col in ("id", "matches", "author", "reason", "starts", "ends", "expired"):
        table.add_column(col)
    for r in df.iter_rows(named=True):
        what = "; ".join(f"{k} {r[k]}" for k in ("patients", "rules", "packs", "severity",
                                                 "labels") if r[k] and r[k] != "{}")
        table.add_row(cell(r["silence_id"]), cell(what), cell(r["author"]), cell(r["reason"]),
                      cell(r["starts_at"].isoformat(timespec="minutes")),
                      cell(r["ends_at"].isoformat(timespec="minutes")),
                      cell("" if r["expired_at"] is None else
                           f"{r['expired_at'].isoformat(timespec='minutes')} by "
                           f"{r['expired_by']}"))
    console.print(table)


@silence_app.command("expire")
@friendly_errors
def silence_expire(silence_id: str, store: Annotated[Path, _STORE], by: Annotated[str, _BY],
                   note: Annotated[Optional[str], _NOTE] = None) -> None:
    """End a silence now: its alerts are back in the open queue."""
    from ..store import expire_silence

    expire_silence(store, silence_id, by=by, note=note)
    say(f"silence {silence_id} expired by {by.strip()}")


@app.command("test")
@friendly_errors
def test(paths: list[Path],
         rules: Annotated[list[Path], typer.Option(
             "--rules", help="Rule pack file or folder (repeatable), instead of the files' own "
                             "'rules:'.")] = []) -> None:
    """Run queue-level tests written as data (grouping, inhibition, silences, snoozes, flap
    detection, working hours); exit 1 on a failure."""
    from ..queuetest import run_files

    report = run_files(paths, rules)
    for line in report.lines():
        say(line)
    if report.failed:
        raise typer.Exit(1)


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
