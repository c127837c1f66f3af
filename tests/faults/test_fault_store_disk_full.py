"""The disk refuses a write under the queue store's transaction (``veille score --store``).

A store holds a first batch; a second batch is scored into it in a process whose file-size
limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the kernel fail writes as a full disk does. The
limits put the failure at different points: the write-ahead log's first write and its middle
(the commit), the copy of the log into the store file at its first extension and in the middle
of its growth (the checkpoint after the commit), and the next run on a disk still full.

After each: exit 2, one message naming the store and the reason (no traceback, no "(None)");
the store opens and holds exactly the previous runs, or, when only the checkpoint failed, the
previous runs plus the whole new one, as the message says (the commit is durable in the log);
a re-run without the limit gives the store an undisturbed run gives, and leaves no log behind.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from engine.synth import generate_cohort

ROOT = Path(__file__).resolve().parents[2]
PACKS = [f"--rules={ROOT / 'rules' / 'news2.yaml'}"]   # one pack: the packs are read per run

# `veille score ARGS` for each (LIMIT, ARGS) in turn, writes past LIMIT refused; one process for
# them all (the imports, seconds, once); the exit status and what each printed, as JSON
_CHILD = r"""
import io, json, resource, signal, sys, traceback
import cli
from engine import incremental, pipeline, silences, store, warmup
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a write past the limit fails with EFBIG
unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)
done = []
for limit, args in json.loads(sys.argv[1]):
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, unlimited[1]))
    try:
        code = cli.run(["score", *args])
    except BaseException:
        code = "raised"
        sys.stderr.write(traceback.format_exc())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, unlimited)
    done.append((code, sys.stderr.getvalue()))
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
print(json.dumps(done))
"""

#: what a store holds, without the clock (started_at, finished_at, happened_at)
_TABLES = {
    "runs": "select * exclude (started_at, finished_at) from runs",
    "alerts": "select * exclude (last_run) from alerts",
    "alert_events": "select alert_id, event, detail from alert_events",
    "readings": "select * from readings",
    "rule_state": "select * from rule_state",
    "episodes": "select * from episodes",
    "quarantine": "select * exclude (run_id) from quarantine",
}


def _state(store: Path, *, batches_only: bool = False) -> dict:
    """The store's tables (``batches_only``: without the runs that brought no new reading,
    a batch scored again)."""
    con = duckdb.connect(str(store), read_only=True)     # replays a log left beside it
    try:
        return {t: sorted(con.sql(sql + (" where new_readings <> 0" if batches_only
                                         and t == "runs" else "")).fetchall(), key=repr)
                for t, sql in _TABLES.items()}
    finally:
        con.close()


def _args(d: Path, batch: str, store: Path) -> list[str]:
    return [str(d / batch), "--store", str(store), "--patients", str(d / "p.parquet"),
            "--model", "none", "--lang", "en", *PACKS]


def _score(d: Path, batch: str, store: Path) -> None:
    r = CliRunner().invoke(app, ["score", *_args(d, batch, store)])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two batches, the store after the first, and the store after both, undisturbed."""
    d = tmp_path_factory.mktemp("store_disk_full")
    c = generate_cohort(25, days=10, seed=31)
    mid = c.telemetry["ts"].min() + dt.timedelta(days=6)
    c.telemetry.filter(pl.col("ts") < mid).write_parquet(d / "b1.parquet")
    c.telemetry.filter(pl.col("ts") >= mid).write_parquet(d / "b2.parquet")
    c.patients.write_parquet(d / "p.parquet")
    _score(d, "b1.parquet", d / "base.duckdb")
    shutil.copy(d / "base.duckdb", d / "reference.duckdb")
    _score(d, "b2.parquet", d / "reference.duckdb")
    base, reference = _state(d / "base.duckdb"), _state(d / "reference.duckdb")
    assert len(base["runs"]) == 1 and len(reference["runs"]) == 2
    assert reference["alerts"] != base["alerts"]           # the second batch changes the queue
    return d, base, reference


# (where the write fails, the limit: bytes, or "store+N": N bytes past the store's size)
CASES = [
    ("log", 4096),                    # the write-ahead log's first write (the commit)
    ("log", 128 * 1024),              # the middle of the log (the commit)
    ("checkpoint", "store+4096"),     # the store file's first extension (after the commit)
    ("checkpoint", "store+1048576"),  # the middle of its growth
]
IDS = [f"{w}-{lim}" for w, lim in CASES]


@pytest.fixture(scope="module")
def refused(stores):
    """Each case's store, and what the second batch scored into it under the limit printed;
    the store+4096 case's run is made twice (the disk still full at the next run)."""
    d = stores[0]
    runs, paths = [], {}
    for case, (_, limit) in zip(IDS, CASES):
        store = d / case / "q.duckdb"
        store.parent.mkdir()
        shutil.copy(d / "base.duckdb", store)
        size = store.stat().st_size
        if isinstance(limit, str):
            limit = size + int(limit.removeprefix("store"))
        paths[case] = store
        runs += [(case, limit)] * (2 if case == "checkpoint-store+4096" else 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plan = json.dumps([(limit, _args(d, "b2.parquet", paths[case])) for case, limit in runs])
    r = subprocess.run([sys.executable, "-c", _CHILD, plan], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = {}
    for (case, _), got in zip(runs, json.loads(r.stdout)):
        printed.setdefault(case, []).append(got)
    return paths, printed


def _refused(code, stderr, store):
    """The one message of a run the disk refused, on one line."""
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr and "(None)" not in stderr, stderr
    # one message (after, on a first run after install, the note that the kernels compile)
    assert [line[:6] for line in stderr.splitlines()
            if line.strip() and not line.startswith("compiling the kernels")] == ["error:"], stderr
    message = " ".join(stderr.split())
    assert f"{store}:" in message and "the disk refused a write" in message, message
    assert "File too large" in message, message
    return message


@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_FSIZE"), reason="POSIX only")
@pytest.mark.parametrize("case", IDS)
def test_a_full_disk_under_the_stores_transaction(stores, refused, case):
    d, base, reference = stores
    paths, printed = refused
    store = paths[case]
    message = _refused(*printed[case][0], store)
    if case.startswith("log"):
        assert "the run could not be recorded" in message, message
        assert "nothing was written" in message, message
        assert _state(store) == base                       # exactly the previous run
    else:
        assert "run 2 is recorded" in message and "write-ahead log" in message, message
        assert _state(store) == reference                  # the previous run and the new one
        # the log left holds patients' alerts: owner-only, as the store
        assert stat.S_IMODE(store.with_name("q.duckdb.wal").stat().st_mode) == 0o600
    for again in printed[case][1:]:
        # the disk still full at the next run: refused before anything is written, the log
        # kept
        message = _refused(*again, store)
        assert "the run could not be recorded" in message, message
        assert _state(store) == reference
    # the disk has room again: the batch scored again gives the undisturbed store
    _score(d, "b2.parquet", store)
    assert _state(store, batches_only=True) == reference
    assert not store.with_name("q.duckdb.wal").exists()    # the log copied in, removed
    assert not [f for f in os.listdir(store.parent) if f.endswith(".tmp")]
