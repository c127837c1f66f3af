"""Export pairs under SIGKILL: a process writing the queue and its quarantine over and over,
alternating two runs' frames, is killed at 20 random points. Whatever the point — a temporary
file half written, the journal written, between the renames — each file present is complete
and the two present files are of the same run (at worst one is missing); the next writer's
recovery (:func:`engine.sinks.recover_pending`) leaves the last journalled run's complete
pair."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from engine.sinks import JOURNAL_SUFFIX, recover_pending

KILLS = 20
ROWS = {"A": (150_000, 40_000), "B": (90_000, 70_000)}   # run: (quarantine rows, alert rows)

WRITER = r"""
import sys
from pathlib import Path
import polars as pl
from engine.sinks import write_frames
out, ext = Path(sys.argv[1]), sys.argv[2]
rows = {"A": (150_000, 40_000), "B": (90_000, 70_000)}
frames = {k: (pl.DataFrame({"run": [k] * q, "i": range(q)}),
              pl.DataFrame({"run": [k] * a, "i": range(a)})) for k, (q, a) in rows.items()}
print("ready", flush=True)
n = 0
while True:
    q, a = frames["AB"[n % 2]]
    write_frames([(q, out / f"queue.quarantine.{ext}", "quarantine"),
                  (a, out / f"queue.{ext}", "alerts")])
    n += 1
"""


def _read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)


def _run_of(path: Path, which: int) -> str | None:
    """The run a complete file belongs to (None when absent); fails on a torn file."""
    if not path.exists():
        return None
    df = _read(path)
    runs = set(df["run"].to_list())
    assert len(runs) == 1, f"{path.name} mixes runs {runs}"
    run = runs.pop()
    assert df.height == ROWS[run][which], f"{path.name}: {df.height} rows, a torn file"
    assert df["i"].to_list() == list(range(df.height))
    return run


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_sigkill_while_writing_the_pair_never_mixes_two_runs(tmp_path, ext):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    rng = random.Random(11)
    # a previous run's pair is in place before the first kill (a writer killed before its
    # first rename leaves that pair)
    from engine.sinks import write_frames

    q, a = ROWS["B"]
    write_frames([(pl.DataFrame({"run": ["B"] * q, "i": range(q)}),
                   tmp_path / f"queue.quarantine.{ext}", "quarantine"),
                  (pl.DataFrame({"run": ["B"] * a, "i": range(a)}),
                   tmp_path / f"queue.{ext}", "alerts")])
    seen_journal = 0
    for k in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), ext], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.3))
        assert proc.poll() is None, "the writer stopped by itself"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        queue, quarantine = tmp_path / f"queue.{ext}", tmp_path / f"queue.quarantine.{ext}"
        runs = {_run_of(quarantine, 0), _run_of(queue, 1)} - {None}
        assert len(runs) <= 1, f"kill {k}: the queue and its quarantine are of two runs"
        journals = list(tmp_path.glob(f".*{JOURNAL_SUFFIX}"))
        seen_journal += bool(journals)
        recover_pending([tmp_path])      # what the next run writing there does first
        after = (_run_of(quarantine, 0), _run_of(queue, 1))
        assert None not in after and after[0] == after[1], f"kill {k}: {after} after recovery"
        assert not list(tmp_path.glob(f".*{JOURNAL_SUFFIX}"))
    # the kills land in the writes, not only before them (a journal is seen now and then)
    print(f"{KILLS} kills, {seen_journal} between a journal and its renames")
