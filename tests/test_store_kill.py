"""A run killed (SIGKILL) at random points while it reads, computes and writes the queue store
leaves the store as the previous run left it or as the new run leaves it, never in between;
the store opens and takes the re-run, which equals an undisturbed run.

Each run is ``veille score --store`` in a process of its own. The process imports the command
line first and starts the run on a word from the test, so the kill points fall in the run
itself (reading the telemetry, loading the packs and kernels, scoring, the store's reads and
writes), none in the imports, which touch no store; the next run's process imports while the
current one runs."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from engine.synth import generate_cohort

KILLS = 20
ROOT = Path(__file__).resolve().parents[1]


# `veille score ARGS` (python -m cli score ARGS), started when a line arrives on stdin
_CHILD = """
import os, sys
import cli
from engine import incremental, pipeline, silences, store, warmup  # what `score` imports first
print("ready", flush=True)
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1)
os.dup2(null, 2)
if sys.stdin.readline().strip() != "go":     # the test ended first
    sys.exit(0)
sys.argv = ["veille", "score", *sys.argv[1:]]
cli.main()
"""


class _Run:
    """A ``veille score`` process, imported and waiting for :meth:`start`."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)

    def start(self):
        """Wait until the process has imported, then start the run; the time it started."""
        assert self.proc.stdout.readline().strip() == "ready"
        t = time.perf_counter()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return t

    def stop(self):
        """End the process if it still runs (a test that failed halfway)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def wait(self):
        code = self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        return code


def _state(store):
    con = duckdb.connect(str(store), read_only=True)
    try:
        runs = con.sql("select run_id, alerts from runs order by run_id").fetchall()
        alerts = con.sql("select alert_id, status, severity, last_run from alerts "
                         "order by alert_id").fetchall()
        per_run = dict(con.sql("select run_id, count(*) from quarantine group by run_id")
                       .fetchall())
    finally:
        con.close()
    return runs, alerts, per_run


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_runs_never_leaves_a_half_written_store(tmp_path):
    c = generate_cohort(25, days=10, seed=31)
    bad = c.telemetry.head(3).with_columns(value=c.telemetry["value"].head(3) * 0 - 1.0)
    import polars as pl

    tel = pl.concat([c.telemetry, bad.with_columns(metric=pl.lit("spo2"))])
    tel.write_parquet(tmp_path / "t.parquet")
    c.patients.write_parquet(tmp_path / "p.parquet")
    store = tmp_path / "q.duckdb"
    # three packs that alert on this cohort (open and resolved alerts): loading all eleven would
    # put most kill points in the reading of the rule files, far from the store
    packs = [f"--rules={ROOT / 'rules' / p}.yaml" for p in ("news2", "device_silence", "malnutrition_older")]
    args = [str(tmp_path / "t.parquet"), "--patients", str(tmp_path / "p.parquet"), "--store",
            str(store), "--model", "none", "--lang", "en", *packs]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = []

    def spawn():
        procs.append(_Run(args, env))
        return procs[-1]

    try:
        _kill_runs(spawn, store, tmp_path)
    finally:
        for p in procs:
            p.stop()


def _kill_runs(spawn, store, tmp_path):
    # the undisturbed reference, and how long a run takes (the next process importing meanwhile,
    # as during the kills)
    run, nxt = spawn(), spawn()
    run.start()
    assert run.wait() == 0              # on a fresh clone this run compiles the kernels
    run, nxt = nxt, spawn()
    t = run.start()                     # timed once they are cached, as the kills' runs are
    assert run.wait() == 0
    span = time.perf_counter() - t
    reference = _state(store)
    n_alerts = reference[0][0][1]
    rng = random.Random(7)
    killed = 0
    for _ in range(KILLS):
        before = _state(store)
        run, nxt = nxt, spawn()
        run.start()
        time.sleep(rng.uniform(0.1 * span, 1.05 * span))
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGKILL)
            killed += 1
        run.wait()
        runs, alerts, per_run = _state(store)
        # either the previous state, or the previous state plus one complete run
        assert len(runs) in (len(before[0]), len(before[0]) + 1)
        assert [r[1] for r in runs] == [n_alerts] * len(runs)
        assert sorted(per_run) == [r[0] for r in runs]          # a quarantine per run
        assert [a[:3] for a in alerts] == [a[:3] for a in reference[1]]
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert killed >= KILLS // 2, f"only {killed} runs were killed before they ended"
    # the store takes the re-run, equal to an undisturbed one
    nxt.start()
    assert nxt.wait() == 0
    runs, alerts, _ = _state(store)
    assert [a[:3] for a in alerts] == [a[:3] for a in reference[1]]
