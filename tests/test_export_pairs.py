"""The queue and its quarantine as two files: never one run's queue beside another run's
quarantine, whenever a run stops; the next run completes a stopped one's renames."""
from __future__ import annotations

import os

import polars as pl
import pytest

import engine.sinks as sinks
from engine.sinks import JOURNAL_SUFFIX, recover_pending, write_frames


def _pair(tmp_path, run: int, ext: str = ".parquet"):
    queue = pl.DataFrame({"alert_id": [f"a{run}"], "run": [run]})
    quarantine = pl.DataFrame({"row": [run], "run": [run]})
    return [(quarantine, tmp_path / f"queue.quarantine{ext}", "quarantine"),
            (queue, tmp_path / f"queue{ext}", "alerts")]


def _read(path):
    if not path.exists():
        return None
    return (pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path))["run"][0]


class Stop(BaseException):
    """A run stopped dead (no exception handler of veille's runs for it)."""


@pytest.mark.parametrize("ext", [".parquet", ".csv"])
@pytest.mark.parametrize("stop_at", [0, 1])
def test_a_run_stopped_between_renames_leaves_no_mixed_pair(tmp_path, monkeypatch, ext,
                                                             stop_at):
    write_frames(_pair(tmp_path, 1, ext))
    q, quar = tmp_path / f"queue{ext}", tmp_path / f"queue.quarantine{ext}"
    assert (_read(q), _read(quar)) == (1, 1)
    real = os.replace
    calls = []

    def replace(src, dst):
        if str(src).endswith(".tmp") and not str(src).endswith(".journal.tmp"):
            if len(calls) == stop_at:
                raise Stop()
            calls.append(dst)
        return real(src, dst)

    monkeypatch.setattr(sinks.os, "replace", replace)
    with pytest.raises(Stop):
        write_frames(_pair(tmp_path, 2, ext))
    monkeypatch.setattr(sinks.os, "replace", real)
    pair = (_read(q), _read(quar))
    # an incomplete pair (a file missing) at worst, never two runs side by side
    assert None in pair and set(pair) - {None} <= {2}, pair
    assert list(tmp_path.glob(".*" + JOURNAL_SUFFIX))
    # the next writer (or recover_pending) puts the stopped run's complete files in place
    recover_pending([tmp_path])
    assert (_read(q), _read(quar)) == (2, 2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    write_frames(_pair(tmp_path, 3, ext))
    assert (_read(q), _read(quar)) == (3, 3)


def test_an_error_before_the_journal_changes_nothing(tmp_path, monkeypatch):
    write_frames(_pair(tmp_path, 1))

    def broken(frame, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sinks, "_write_temp", broken)
    with pytest.raises(sinks.OutputError, match="nothing was written"):
        write_frames(_pair(tmp_path, 2))
    assert _read(tmp_path / "queue.parquet") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
