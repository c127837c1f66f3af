"""The queue store (veille score --store, veille queue): one transaction per run, stable ids
and idempotent re-runs, the team's actions with an audit trail, a second writer refused."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from engine.errors import InputError, OutputError
from engine.pipeline import Engine
from engine.store import act, history, open_queue, write_run
from engine.synth import generate_cohort

def later() -> dt.datetime:
    """A moment after the runs a test has just recorded (the store times them on the clock)."""
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def run():
    c = generate_cohort(30, days=14, seed=21)
    eng = Engine.from_paths(lang="en")
    return c, eng, eng.score(c.telemetry, c.patients)


def test_a_run_is_recorded_with_its_provenance_and_rerunning_changes_nothing(tmp_path, run):
    NOW = later()
    _, eng, result = run
    store = tmp_path / "q.duckdb"
    assert write_run(store, result, engine=eng) == 1
    first = open_queue(store, status="all", now=NOW).drop("last_run")
    assert write_run(store, result, engine=eng) == 2
    again = open_queue(store, status="all", now=NOW).drop("last_run")
    assert first.equals(again) and first.height == result.queue.height
    assert set(first["alert_id"]) == set(result.queue["alert_id"])
    con = duckdb.connect(str(store), read_only=True)
    runs = con.sql("select run_id, rows_in, alerts, opened, packs, engine_version from runs "
                   "order by run_id").fetchall()
    events = con.sql("select count(*) from alert_events where event = 'opened'").fetchall()
    con.close()
    assert [r[0] for r in runs] == [1, 2]
    assert runs[0][3] == result.queue.height and runs[1][3] == 0      # nothing new the 2nd time
    assert '"pack": "heart_failure"' in runs[0][4] and runs[0][5]
    assert events[0][0] == result.queue.height
    assert (store.stat().st_mode & 0o777) == 0o600


def test_the_open_queue_honours_snoozes_and_closures(tmp_path, run):
    NOW = later()
    _, eng, result = run
    store = tmp_path / "q.duckdb"
    write_run(store, result, engine=eng)
    open_ = open_queue(store, now=NOW)
    assert open_.height == int((result.queue["status"] == "open").sum()) > 2
    a, b, c = open_["alert_id"][:3]
    act(store, a, "ack", by="MD", note="called", now=NOW)
    act(store, b, "snooze", by="MD", until=NOW + dt.timedelta(hours=6), now=NOW)
    act(store, c, "resolve", by="JL", note="seen at home", now=NOW)
    ids = set(open_queue(store, now=NOW + dt.timedelta(hours=1))["alert_id"])
    assert a in ids and b not in ids and c not in ids
    assert b in set(open_queue(store, now=NOW + dt.timedelta(hours=6))["alert_id"])
    trail = history(store, a)
    assert trail["event"].to_list() == ["opened", "acknowledged"]
    assert trail["actor"].to_list() == ["veille", "MD"] and trail["note"][1] == "called"


def test_an_acknowledged_alert_whose_severity_rises_is_new_again(tmp_path, run):
    NOW = later()
    _, eng, result = run
    store = tmp_path / "q.duckdb"
    write_run(store, result, engine=eng)
    low = result.queue.filter(pl.col("severity") == "low", pl.col("status") == "open")
    if low.height == 0:
        pytest.skip("no open low alert in this cohort")
    alert = low["alert_id"][0]
    act(store, alert, "ack", by="MD", now=NOW)
    worse = result.queue.with_columns(
        severity=pl.when(pl.col("alert_id") == alert).then(pl.lit("high"))
        .otherwise(pl.col("severity")))
    result2 = type(result)(**{**result.__dict__, "queue": worse})
    write_run(store, result2, engine=eng)
    row = open_queue(store, status="all", now=NOW).filter(pl.col("alert_id") == alert)
    assert row["workflow"][0] == "new" and row["severity"][0] == "high"
    assert "severity_raised" in history(store, alert)["event"].to_list()


def test_bad_actions_are_refused_with_a_reason(tmp_path, run):
    NOW = later()
    _, eng, result = run
    store = tmp_path / "q.duckdb"
    with pytest.raises(InputError, match="no queue store there"):
        open_queue(store)
    write_run(store, result, engine=eng)
    with pytest.raises(InputError, match="no alert 'nope'"):
        act(store, "nope", "ack", by="MD")
    alert = result.queue["alert_id"][0]
    with pytest.raises(InputError, match="--by must name"):
        act(store, alert, "ack", by=" ")
    with pytest.raises(InputError, match="has already passed"):
        act(store, alert, "snooze", by="MD", until=NOW - dt.timedelta(hours=1), now=NOW)
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.sql("create table alerts (x int)")
    con.close()
    with pytest.raises(OutputError, match="not a veille queue store"):
        write_run(other, result, engine=eng)


def test_a_second_writer_is_refused_and_the_store_keeps_the_first(tmp_path, run):
    NOW = later()
    _, eng, result = run
    store = tmp_path / "q.duckdb"
    write_run(store, result, engine=eng)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(30)"), str(store)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match="another veille run is writing this store"):
            write_run(store, result, engine=eng)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert open_queue(store, status="all", now=NOW).height == result.queue.height


def test_the_commands(tmp_path, run):
    c, _, _ = run
    c.telemetry.write_parquet(tmp_path / "t.parquet")
    c.patients.write_parquet(tmp_path / "p.parquet")
    store = tmp_path / "q.duckdb"
    r = CliRunner().invoke(app, ["score", str(tmp_path / "t.parquet"), "--patients",
                                 str(tmp_path / "p.parquet"), "--store", str(store),
                                 "--model", "none"])
    assert r.exit_code == 0, r.output
    assert "stored   run 1" in r.output
    r = CliRunner().invoke(app, ["queue", "list", "--store", str(store)])
    assert r.exit_code == 0 and "alert(s)" in r.output
    alert = open_queue(store)["alert_id"][0]
    r = CliRunner().invoke(app, ["queue", "snooze", alert, "--store", str(store), "--by", "MD",
                                 "--until", "2099-01-01T08:00+01:00", "--note", "hospital"])
    assert r.exit_code == 0 and "snoozed by MD" in r.output, r.output
    r = CliRunner().invoke(app, ["queue", "history", alert, "--store", str(store)])
    assert "snoozed by MD" in r.output and "hospital" in r.output
    r = CliRunner().invoke(app, ["score", str(tmp_path / "t.parquet"), "--model", "none"])
    assert r.exit_code == 2 and "--store" in r.output


def test_the_store_exports_its_queue_as_a_fhir_bundle(tmp_path, run):
    import json

    from fhir.resources.R4B.bundle import Bundle

    _, eng, result = run
    store = tmp_path / "q.duckdb"
    write_run(store, result, engine=eng)
    out = tmp_path / "queue.fhir.json"
    r = CliRunner().invoke(app, ["queue", "export", "--store", str(store), "--out", str(out)])
    assert r.exit_code == 0, r.output
    bundle = json.loads(out.read_text(encoding="utf-8"))
    Bundle.model_validate(bundle)
    issues = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert len(issues) == result.queue.height
    r = CliRunner().invoke(app, ["queue", "export", "--store", str(store), "--out",
                                 str(tmp_path / "q.parquet"), "--status", "open"])
    assert r.exit_code == 0
    got = pl.read_parquet(tmp_path / "q.parquet")
    assert got.height == int((result.queue["status"] == "open").sum())
