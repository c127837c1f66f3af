"""A run killed (SIGKILL) at random points while it reads, computes and writes the queue store
leaves the store as the previous run left it or as the new run leaves it, never in between;
the store opens and takes the re-run, which equals an undisturbed run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from engine.synth import generate_cohort

KILLS = 20


def _score(args, env):
    return subprocess.Popen([sys.executable, "-m", "cli", "score", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    args = [str(tmp_path / "t.parquet"), "--patients", str(tmp_path / "p.parquet"), "--store",
            str(store), "--model", "none", "--lang", "en"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    # the undisturbed reference, and how long a run takes
    t = time.perf_counter()
    assert _score(args, env).wait() == 0
    span = time.perf_counter() - t
    reference = _state(store)
    n_alerts = reference[0][0][1]
    rng = random.Random(7)
    killed = 0
    for _ in range(KILLS):
        before = _state(store)
        proc = _score(args, env)
        time.sleep(rng.uniform(0.3 * span, 1.05 * span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        runs, alerts, per_run = _state(store)
        # either the previous state, or the previous state plus one complete run
        assert len(runs) in (len(before[0]), len(before[0]) + 1)
        assert [r[1] for r in runs] == [n_alerts] * len(runs)
        assert sorted(per_run) == [r[0] for r in runs]          # a quarantine per run
        assert [a[:3] for a in alerts] == [a[:3] for a in reference[1]]
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert killed >= KILLS // 2, f"only {killed} runs were killed before they ended"
    # the store takes the re-run, equal to an undisturbed one
    assert _score(args, env).wait() == 0
    runs, alerts, _ = _state(store)
    assert [a[:3] for a in alerts] == [a[:3] for a in reference[1]]
