"""Faults at the sinks: a second writer, the temporary files of a killed run, spreadsheet
formulas in a CSV export, and the modes of what is written."""
from __future__ import annotations

import fcntl
import os
import stat

import duckdb
import polars as pl
import pytest

from engine.errors import OutputError
from engine.sinks import LOCK_SUFFIX, csv_safe, write_frame, write_frames

FRAME = pl.DataFrame({"patient_id": ["P1", "=HYPERLINK(\"http://x\")"], "n": [1, 2]})


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("name", ["q.parquet", "q.csv", "q.jsonl", "q.duckdb"])
def test_outputs_are_owner_only(tmp_path, name):
    write_frames([(FRAME, tmp_path / name, "alerts"),
                  (FRAME, tmp_path / f"q.quarantine{os.path.splitext(name)[1]}", "quarantine")])
    assert _mode(tmp_path / name) == 0o600
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".tmp", ".wal"))]


def test_the_store_is_created_owner_only(tmp_path):
    from engine.store import _connect

    _connect(tmp_path / "s.duckdb").close()
    assert _mode(tmp_path / "s.duckdb") == 0o600


def test_a_second_writer_of_the_same_files_is_refused(tmp_path):
    out = tmp_path / "q.parquet"
    lock = tmp_path / f".q.parquet{LOCK_SUFFIX}"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)            # another run holds it
        with pytest.raises(OutputError, match="another veille run is writing it now"):
            write_frame(FRAME, out)
        assert not out.exists()
    finally:
        os.close(fd)
    write_frame(FRAME, out)                         # released: the next run writes
    assert pl.read_parquet(out).equals(FRAME)


def test_a_killed_runs_temporary_files_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "q.parquet"
    left = [tmp_path / ".q.parquet.abc123.tmp", tmp_path / ".q.parquet.def456.journal.tmp",
            tmp_path / ".q.duckdb.x1.tmp.wal"]
    for f in left:
        f.write_bytes(b"half")
    other = tmp_path / ".notes.txt.tmp"                # not veille's: left alone
    other.write_bytes(b"x")
    write_frame(FRAME, out)
    assert not left[0].exists() and not left[1].exists()
    assert left[2].exists() and other.exists()        # another target's files are its own
    write_frame(FRAME, tmp_path / "q.duckdb")
    assert not left[2].exists()


def test_csv_exports_neutralise_formulas(tmp_path):
    out = tmp_path / "q.csv"
    write_frame(FRAME, out)
    text = out.read_text()
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text
    cells = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "ok", "a=b", None]
    safe = csv_safe(pl.DataFrame({"c": cells}))["c"].to_list()
    assert safe == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "ok", "a=b", None]
    # numbers are numbers: untouched
    assert csv_safe(pl.DataFrame({"v": [-1.5]}))["v"].to_list() == [-1.5]


def test_duckdb_output_tables_read_back(tmp_path):
    out = tmp_path / "q.duckdb"
    write_frames([(FRAME, out, "alerts"), (FRAME.head(1), out, "quarantine")])
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("select count(*) from alerts").fetchone()[0] == 2
        assert con.execute("select count(*) from quarantine").fetchone()[0] == 1
