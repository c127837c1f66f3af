"""Sinks: write frames atomically, by the output path's extension.

A run never leaves a half-written output: each file is written to a temporary name in the same
folder and renamed over the target only once complete (``os.replace`` is atomic on POSIX).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import polars as pl

from ..errors import OutputError

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
           ".duckdb": "duckdb"}


def output_format(path: str | Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: cannot tell the output format from '{Path(path).suffix}'; "
                          f"use one of {', '.join(sorted(FORMATS))}.")
    return fmt


def write_frame(frame: pl.DataFrame, path: str | Path, *, table: str = "alerts") -> Path:
    """Write ``frame`` to ``path`` (Parquet, JSON Lines, CSV or a DuckDB table), atomically."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "duckdb" and path.exists():
        return _replace_duckdb_table(frame, path, table)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the folder ({exc.strerror}).") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        if fmt == "parquet":
            frame.write_parquet(tmp, compression="zstd", statistics=True)
        elif fmt == "jsonl":
            _write_jsonl(frame, tmp)
        elif fmt == "csv":
            frame.write_csv(tmp)
        else:
            _write_duckdb(frame, tmp, table)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written ({exc.strerror}).") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_jsonl(frame: pl.DataFrame, tmp: str) -> None:
    # evidence is JSON text: embed it as an object, not as an escaped string
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in frame.iter_rows(named=True):
            for k, v in row.items():
                if k == "evidence" and isinstance(v, str):
                    row[k] = json.loads(v)
                elif hasattr(v, "isoformat"):
                    row[k] = v.isoformat()
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _replace_duckdb_table(frame: pl.DataFrame, path: Path, table: str) -> Path:
    """Replace one table of an existing database in a single transaction (other tables kept)."""
    import duckdb

    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise OutputError(f"{path}: cannot be opened as a DuckDB database ({exc}).") from None
    try:
        con.register("frame_view", frame.to_arrow())
        con.sql("begin transaction")
        con.sql(f'create or replace table "{table}" as select * from frame_view')
        con.sql("commit")
    finally:
        con.close()
    return path


def _write_duckdb(frame: pl.DataFrame, tmp: str, table: str) -> None:
    import duckdb

    os.unlink(tmp)  # duckdb creates the file itself
    con = duckdb.connect(tmp)
    try:
        con.register("frame_view", frame.to_arrow())
        con.sql(f'create table "{table}" as select * from frame_view')
    finally:
        con.close()
