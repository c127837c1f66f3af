"""``veille score``: ingest, detect, evaluate rules, rank, write the queue."""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from ..paths import bundled, sample_cohort
from ..sinks import check_outputs, output_format, write_frames
from ._common import cell, console, err_console, friendly_errors, say, settled
from .stopping import stop_at_once

#: what a run stopped while its kernels load says (see stop_at_once)
STOPPED_LOADING = "interrupted while the kernels were loading: nothing was written."

STAGES = {"ingest": "checking and normalising telemetry", "detect": "running detectors",
          "timeline": "building evaluation timelines", "rules": "evaluating rules",
          "episodes": "opening episodes", "risk": "scoring the deterioration risk",
          "queue": "ranking the alert queue"}


def quarantine_path(out: Path) -> Path:
    fmt = output_format(out)
    if fmt == "duckdb":
        return out
    if fmt == "fhir":           # the rejected rows are not clinical resources: JSON Lines
        return out.with_name(out.name[:-len(".fhir.json")] + ".quarantine.jsonl")
    return out.with_name(f"{out.stem}.quarantine{out.suffix}")


@friendly_errors
def score(
    telemetry: Annotated[Optional[Path], typer.Argument(
        help="Telemetry file (.parquet, .csv, .arrow) or file.duckdb:table. "
             "Default: the bundled sample cohort.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Alert queue to write: .parquet, .jsonl, .csv, .duckdb or "
        ".fhir.json (a FHIR R4 Bundle) by extension.")] = None,
    store: Annotated[Optional[Path], typer.Option(
        "--store", help="Queue store (DuckDB) to record the run in, with every alert's "
        "history and the team's actions (`veille queue`); one transaction per run.")] = None,
    patients: Annotated[Optional[Path], typer.Option(
        help="Patients table (programme, age, ...). Default: the sample's, when scoring the "
             "sample.")] = None,
    rules: Annotated[list[Path], typer.Option(
        help="Rule pack file or folder (repeatable). Default: the bundled rules/.")] = [],
    site: Annotated[list[Path], typer.Option(
        help="Site override file (repeatable), e.g. rules/sites/meuse.yaml.")] = [],
    tz: Annotated[Optional[str], typer.Option(
        help="Time zone of naive timestamps, e.g. Europe/Paris. Without it naive timestamps "
             "are quarantined.")] = None,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", help="Draw the queue up as of this ISO time (default: the latest reading; "
        "with --store, never before the store's last run). A device silent since before it "
        "raises a silence alert.")] = None,
    columns: Annotated[Optional[str], typer.Option(
        help="Rename export columns to the contract, e.g. 'id=patient_id,time=ts,gl=value'.")
    ] = None,
    metric: Annotated[Optional[str], typer.Option(
        help="Metric of every row of a single-metric export without a metric column, e.g. "
             "glucose.")] = None,
    unit: Annotated[Optional[str], typer.Option(
        help="Unit of every row of an export without a unit column, e.g. mg/dL.")] = None,
    programme: Annotated[Optional[str], typer.Option(
        help="Enrol every patient in this programme when there is no patients table.")] = None,
    model: Annotated[str, typer.Option(
        help="Deterioration-risk model: 'default' (the bundled one), 'none' (rank by severity "
             "then waiting time only), or a folder written by `veille train`.")] = "default",
    top: Annotated[Optional[int], typer.Option(
        help="Patients to show in the 'Call first' table (their ids beside their reasons). "
             "Default: 10 on a terminal, none when the output goes to a file or a log (a "
             "scheduled run's log gets counts, not patients' values).")] = None,
    lang: Annotated[str, typer.Option(
        "--lang", help="Language of the alerts' titles and reasons: 'fr' (French) or 'en' "
                       "(English).")] = "fr",
    no_hygiene: Annotated[bool, typer.Option(
        "--no-hygiene", help="Turn alert hygiene off (inhibition, silences, flap detection, "
        "working hours, grouping, re-raise): the queue as ranked.")] = False,
    silences: Annotated[Optional[Path], typer.Option(
        "--silences", help="YAML file of silences for this run (a list of {id, patients, "
        "rules, packs, severity, labels, author, reason, starts, ends}); a store's own "
        "silences apply too.")] = None,
    working_hours: Annotated[str, typer.Option(
        help="The team's hours, local time of each patient: low alerts opened outside them "
             "wait for the next opening ('none': nothing waits).")] = "08:00-18:00",
    working_days: Annotated[str, typer.Option(help="The team's days, e.g. mon-fri.")] = "mon-fri",
    team_tz: Annotated[str, typer.Option(
        "--team-tz", help="Time zone of patients without a tz column, for working hours.")
    ] = "Europe/Paris",
    flap: Annotated[str, typer.Option(
        help="Flap detection: N openings of a patient's rule within a window merge into one "
             "entry flagged flapping, as 'N/WINDOW' ('none': off).")] = "3/72h",
    reraise_after: Annotated[str, typer.Option(
        "--reraise-after", help="With --store: re-raise an open, unacknowledged high alert "
        "after this long ('none': never).")] = "4h",
    engine_kind: Annotated[str, typer.Option(
        "--engine", help="Where the per-patient stages run: 'local' (this machine) or 'spark' "
        "(Spark at --master; a Parquet telemetry file; the same queue).")] = "local",
    master: Annotated[str, typer.Option(
        "--master", help="With --engine spark: the Spark master, e.g. local[2] (this machine, "
        "two executors) or spark://host:7077.")] = "local[2]",
    memory_limit: Annotated[Optional[str], typer.Option(
        "--memory-limit", help="Most memory the run may use, e.g. 4GiB or 30% (default: a "
        "quarter of this machine's). A Parquet file needing more is streamed in chunks of "
        "whole patients: the same queue, in bounded memory.")] = None,
    partitions: Annotated[Optional[int], typer.Option(
        "--partitions", min=1, help="With --engine spark: slices of whole patients (default: "
        "the cluster's parallelism).")] = None,
) -> None:
    """Score telemetry and write the prioritised alert queue (plus the quarantined rows)."""
    from ..pipeline import Engine, load_inputs
    from ..ruleset.i18n import check_lang
    from ..silences import load_silences
    from ..warmup import is_cached, warmup, warmup_ingest

    started = time.perf_counter()
    as_of_dt = parse_as_of(as_of)
    check_lang(lang)
    renames = parse_columns(columns)
    if telemetry is None:
        telemetry, sample_patients = sample_cohort()
        patients = patients or sample_patients
        say(f"scoring the bundled sample cohort ({telemetry})")
    from ..errors import InputError

    hygiene_cfg = None if no_hygiene else hygiene_config(working_hours, working_days, team_tz,
                                                         flap, reraise_after)
    if out is None and store is None:
        raise InputError("give --out FILE (the queue as a file), --store FILE.duckdb (the "
                         "queue kept across runs), or both.")
    if engine_kind not in ("local", "spark"):
        raise InputError(f"--engine must be 'local' or 'spark'; got {engine_kind!r}.")
    if engine_kind == "spark" and store is not None:
        raise InputError("--store is not available with --engine spark: a store's incremental "
                         "runs read its history back on one machine. Write the queue with "
                         "--out (and load it where the team works), or score without --engine "
                         "spark.")
    from .. import stream

    how = stream.plan(telemetry, stream.parse_memory(memory_limit) if memory_limit else None) \
        if engine_kind == "local" else None
    if how is not None and how.streams and store is not None:
        raise InputError(
            f"this file ({how.rows:,} rows) needs more memory than --memory-limit allows "
            f"({how.limit / (1 << 20):,.0f} MB), and a store's run holds its input in memory "
            "to keep the readings for the next run. A store takes daily batches (each run "
            "adds what is new); score a history this large with --out, or raise "
            "--memory-limit.", path=str(telemetry))
    q_path = quarantine_path(out) if out is not None else None
    check_outputs([p for p in (out, q_path, store) if p is not None],
                  inputs=[telemetry, patients])
    bars = (BarColumn(), MofNCompleteColumn(), TextColumn("rows")) \
        if how is not None and how.streams else ()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), *bars,
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(STAGES["ingest"], total=None)
        if engine_kind == "spark":
            from ..distributed import spark

            engine = Engine.from_paths(rules or [bundled("rules")], sites=site,
                                       model=None if model == "none" else model,
                                       lang=lang, hygiene=hygiene_cfg)
            result = spark.score(
                telemetry, patients, rules=rules or [bundled("rules")], sites=site,
                model=None if model == "none" else model, lang=lang, engine=engine,
                master=master, partitions=partitions, tz=tz, as_of=as_of_dt, columns=renames,
                metric=metric, unit=unit, programme=programme,
                silences=load_silences(silences) if hygiene_cfg and silences else [],
                progress=lambda s: bar.update(task, description=STAGES.get(s, s)))
        elif how.streams:
            with stop_at_once(STOPPED_LOADING):
                if not is_cached():
                    say("compiling the kernels (first run after install; later runs load "
                        "them from the on-disk cache)…", err=True)
                warmup_ingest()
                engine = Engine.from_paths(rules or [bundled("rules")], sites=site,
                                           model=None if model == "none" else model,
                                           lang=lang, hygiene=hygiene_cfg)
                warmup(engine.ruleset)
            settled()
            bar.update(task, total=2 * how.rows if as_of_dt is None else how.rows)
            done = {"patients": 0}

            def advance(phase, rows, patients):
                if phase == "restart":      # the file is being ordered: its rows come again
                    bar.update(task, completed=0)
                    done["patients"] = 0
                    return
                done["patients"] += patients if phase == "score" else 0
                bar.update(task, advance=rows, description=(
                    f"{'checking' if phase == 'ingest' else 'scoring'} whole patients: "
                    f"{done['patients']:,} scored"))

            result = stream.score(
                engine, telemetry, patients, chunk_rows=how.chunk_rows, memory_limit=how.limit,
                tz=tz, as_of=as_of_dt, columns=renames, metric=metric, unit=unit,
                programme=programme,
                silences=load_silences(silences) if hygiene_cfg and silences else [],
                progress=lambda s: bar.update(task, description=STAGES.get(s, s)),
                on_chunk=advance)
        else:
            # reading the telemetry (polars and numba, mostly off the GIL) overlaps loading the
            # packs and the pipeline's compiled kernels
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(
                    load_inputs, str(telemetry), str(patients) if patients else None, tz=tz,
                    columns=renames, metric=metric, unit=unit, programme=programme)
                with stop_at_once(STOPPED_LOADING):
                    try:
                        if not is_cached():
                            say("compiling the kernels (first run after install; later runs "
                                "load them from the on-disk cache)…", err=True)
                        warmup_ingest()  # ready before the file is read: ingest needs them next
                        engine = Engine.from_paths(rules or [bundled("rules")], sites=site,
                                                   model=None if model == "none" else model,
                                                   lang=lang, hygiene=hygiene_cfg)
                        warmup(engine.ruleset)
                    finally:
                        inputs = pending.result()  # an input error wins: the first to fix
            settled()
            muted = []
            if hygiene_cfg is not None:
                from ..store import store_silences

                muted = (load_silences(silences) if silences is not None else []) + (
                    store_silences(store) if store is not None else [])
            history = None
            if store is not None:
                from ..incremental import open_history

                latest = inputs.ingest.clean["ts"].max()
                if latest is not None:
                    history = open_history(store, engine, latest, as_of_dt)
                    as_of_dt = history.as_of
            result = engine.score_inputs(
                inputs, as_of=as_of_dt, silences=muted, history=history, risk_at="queue",
                progress=lambda s: bar.update(task, description=STAGES.get(s, s)))
        t = time.perf_counter()
        if out is not None:
            alerts = result.queue
            if output_format(out) == "fhir":
                from ..sinks.fhir import result_bundle

                alerts = result_bundle(result, engine)
            write_frames([(result.quarantine, q_path, "quarantine"), (alerts, out, "alerts")])
        run_id = None
        if store is not None:
            from ..store import write_run

            run_id = write_run(store, result, engine=engine, input_path=telemetry,
                               reraise_after=None if hygiene_cfg is None
                               else hygiene_cfg.reraise_after,
                               reraise=hygiene_cfg.reraise if hygiene_cfg else (),
                               history=history)
        result.timings["write"] = time.perf_counter() - t
    if top is None:
        top = 10 if sys.stdout.isatty() else 0
    _render(result, out, q_path, time.perf_counter() - started, top, lang=engine.lang)
    if store is not None:
        say(f"stored   run {run_id} in {store} (veille queue list --store {store})")
        if history is not None and history.incremental:
            say(f"history  {history.new_readings.height:,} new readings after "
                f"{history.t_prev.isoformat()}"
                + (f"; {history.late:,} late ones re-scored {len(history.rescored):,} "
                   "patients from their stored history" if history.late else "")
                + ("; every patient re-scored from the stored history (a risk model or a "
                   "new configuration)" if history.full_all else ""))


def hygiene_config(hours: str, days: str, zone: str, flap: str, reraise: str):
    """The :class:`engine.hygiene.HygieneConfig` of ``veille score``'s options."""
    import datetime as dt

    from ..durations import parse_duration
    from ..errors import InputError, SpecError
    from ..hygiene import HygieneConfig, WorkingHours, parse_days, parse_hours
    from ..ingest import check_zone

    check_zone(zone)
    wh = None
    if hours != "none":
        start, end = parse_hours(hours)
        wh = WorkingHours(parse_days(days), start, end)

    def duration(text, name):
        try:
            return dt.timedelta(microseconds=parse_duration(text, what=name))
        except SpecError as exc:
            raise InputError(str(exc)) from None

    n, window = 0, dt.timedelta(hours=72)
    if flap != "none":
        count, sep, span = flap.partition("/")
        if not sep or not count.strip().isdigit() or int(count) < 2:
            raise InputError(f"--flap must be like '3/72h' (at least 2 openings within a "
                             f"window) or 'none'; got {flap!r}.")
        n, window = int(count), duration(span.strip(), "--flap's window")
    return HygieneConfig(working_hours=wh, time_zone=zone, flap_openings=n,
                         flap_window=window,
                         reraise_after=None if reraise == "none"
                         else duration(reraise, "--reraise-after"))


def parse_columns(text: str | None) -> dict[str, str] | None:
    from ..errors import InputError

    if not text:
        return None
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InputError(f"--columns takes old=new pairs separated by commas, e.g. "
                             f"'id=patient_id,time=ts'; got {pair!r}.")
        out[old.strip()] = new.strip()
    return out


def parse_as_of(text: str | None):
    import datetime as dt

    from ..errors import InputError

    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--as-of must be an ISO time like 2026-02-15T08:00+01:00; got "
                         f"{text!r}.") from None
    if value.tzinfo is None:
        raise InputError("--as-of needs a time zone (e.g. 2026-02-15T08:00+01:00 or ...Z): "
                         "a queue time without one is ambiguous.")
    return value.astimezone(dt.timezone.utc)


def _render(result, out: Path | None, q_path: Path | None, seconds: float, top: int,
            lang: str = "en") -> None:
    from ..pipeline import _FIXES

    rep = result.report
    say(f"rows     {rep.summary()}")
    if rep.by_reason:
        reasons = sorted(rep.by_reason.items(), key=lambda kv: -kv[1])
        say("         quarantined: " + ", ".join(f"{k} {v:,}" for k, v in reasons))
        top_reason, count = reasons[0]
        if count * 2 >= rep.rows_in and top_reason in _FIXES:
            say(f"note     most rows were quarantined as {top_reason}: {_FIXES[top_reason]}.")
    unknown = result.quarantine.filter(result.quarantine["reason"] == "unknown_patient")
    if unknown.height:
        ids = unknown["patient_id"].str.strip_chars().unique(maintain_order=True)
        shown = ", ".join(ids.head(5).to_list()) + (", …" if ids.len() > 5 else "")
        say(f"unknown  {ids.len():,} telemetry patients are not in the patients table (their "
            f"{unknown.height:,} rows are quarantined, no alert is raised for them): {shown}")
    if result.patients is not None:
        say(f"patients {rep.patients:,} with usable telemetry ({result.patients.height:,} in the "
            "patients table)")
    else:
        say(f"patients {rep.patients:,} with usable telemetry (no patients table: only packs "
            "scoped to any cohort apply)")
    s = result.alerts_by_severity
    say(f"alerts   open: high {s['high']:,}, medium {s['medium']:,}, low {s['low']:,} — "
        f"{s['patients']:,} patients to call; {s['resolved']:,} episodes already resolved")
    if result.hygiene is not None:
        say(f"hygiene  {result.hygiene.line()}")
    if result.pending.height:
        waiting = result.pending["patient_id"].n_unique()
        say(f"pending  {result.pending.height:,} rules hold for {waiting:,} patients without "
            "having fired yet (a for:, a confirmation or a cooldown to come)")
    if result.streamed is not None:
        say(f"read     streamed {result.streamed}")
    if out is not None:
        say(f"written  {out} ({result.queue.height:,} alerts); quarantine {q_path} "
            f"({result.quarantine.height:,} rows)")
    if result.risk is not None:
        m = engine_model_line(result)
        say(f"risk     {m}")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
    say(f"time     {seconds:.2f} s ({stages})")
    open_q = result.queue.filter(result.queue["status"] == "open")
    if "suppressed_by" in open_q.columns:
        open_q = open_q.filter(open_q["suppressed_by"].is_null())
    if top and open_q.height:
        table = Table(title="Call first", show_lines=False)
        with_risk = result.risk is not None
        for col in ("#", "patient", "severity", "rule", "reason") + (
                ("risk",) if with_risk else ()):
            table.add_column(col)
        firsts = open_q.unique("patient_id", keep="first", maintain_order=True).head(top)
        for r in firsts.iter_rows(named=True):
            extra, reason = (), cell(r["reason"])
            if with_risk:
                extra = ("–" if r["risk"] is None else "<1 %" if r["risk"] < 0.005
                         else f"{100 * r['risk']:.0f} %",)
                if r["risk_factors"]:
                    why = "risque accru par :" if lang == "fr" else "risk raised by:"
                    reason = reason + Text("\n") + cell(f"{why} {r['risk_factors']}")
            table.add_row(cell(r["patient_rank"]), cell(r["patient_id"]), cell(r["severity"]),
                          cell(r["rule_id"]), reason, *extra)
        console.print(table)


def engine_model_line(result) -> str:
    """One line on the risk scores of a run: grid times scored and the open alerts ranked."""
    import polars as pl

    risk = result.risk
    open_q = result.queue.filter(result.queue["status"] == "open")
    high = int((risk.group_by("patient_id").agg(pl.col("risk").last().alias("r"))["r"] >= 0.2)
               .sum()) if risk.height else 0
    points = risk.height if result.risk_points is None else result.risk_points
    scored = (f"{points:,} grid times scored (every 4 h per patient)"
              if result.risk_grid is None else
              f"{points:,} of {result.risk_grid:,} grid times scored (those the queue reads: "
              "each patient's latest, each resolved alert's last; every 4 h per patient)")
    return (f"{scored}; {high:,} "
            f"patient{'s' if high != 1 else ''} at 20 % or more now; open alerts ranked by risk "
            "within each severity "
            f"({open_q['risk'].is_not_null().sum():,} of {open_q.height:,} with a risk)")
