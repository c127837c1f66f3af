"""A write that the disk refuses (the file-size limit of the process, as a full disk does:
the kernel fails the write) leaves the previous pair in place, no temporary file, and one
clear message naming the file — for every sink."""
from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import polars as pl
import pytest

from engine.sinks import write_frames

WRITER = r"""
import resource, signal, sys
from pathlib import Path
import polars as pl
from engine.errors import VeilleError
from engine.sinks import write_frames
out, ext = Path(sys.argv[1]), sys.argv[2]
big = pl.DataFrame({"run": ["new"] * 400_000, "i": range(400_000),
                    "text": [f"reason {i} " * 4 for i in range(400_000)]})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
try:
    write_frames([(big, out / f"q.quarantine.{ext}", "quarantine"), (big, out / f"q.{ext}", "alerts")]
                 if ext != "duckdb" else [(big, out / "q.duckdb", "quarantine"), (big, out / "q.duckdb", "alerts")])
except VeilleError as exc:
    print(str(exc))
    sys.exit(2)
"""


def _read(path):
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".csv":
        return pl.read_csv(path)
    return pl.read_ndjson(path)


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl", "duckdb"])
def test_a_full_disk_leaves_the_previous_pair(tmp_path, ext):
    old = pl.DataFrame({"run": ["old"] * 3, "i": [0, 1, 2], "text": ["a", "b", "c"]})
    if ext == "duckdb":
        write_frames([(old, tmp_path / "q.duckdb", "quarantine"),
                      (old, tmp_path / "q.duckdb", "alerts")])
    else:
        write_frames([(old, tmp_path / f"q.quarantine.{ext}", "quarantine"),
                      (old, tmp_path / f"q.{ext}", "alerts")])
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), ext], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "cannot be written" in r.stdout
    assert "nothing was written" in r.stdout or "nothing was changed" in r.stdout
    assert "(None)" not in r.stdout
    assert f"q.quarantine.{ext}" in r.stdout or f"q.{ext}" in r.stdout   # names the file
    if ext == "duckdb":
        with duckdb.connect(str(tmp_path / "q.duckdb"), read_only=True) as con:
            for table in ("alerts", "quarantine"):
                assert con.execute(f"select distinct run from {table}").fetchall() == [("old",)]
    else:
        for name in (f"q.{ext}", f"q.quarantine.{ext}"):
            assert _read(tmp_path / name)["run"].to_list() == ["old"] * 3
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f or f.endswith(".wal")]
