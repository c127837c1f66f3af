"""Readers for every telemetry and patient source: Parquet, CSV, Arrow IPC, DuckDB tables, frames.

A DuckDB table is named ``path/to/file.duckdb:table``. CSV is read as text so that one bad cell
quarantines one row instead of failing the whole file.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .errors import InputError
from .parquet_checksums import verify as verify_page_checksums

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv",
            ".arrow": "ipc", ".ipc": "ipc", ".feather": "ipc"}
_DUCKDB = re.compile(r"^(?P<path>.+\.(?:duckdb|db|ddb)):(?P<table>[A-Za-z_][\w.]*)$")


@dataclass
class Rejects:
    """Rows of a CSV file that cannot be rows of a table (a line that is not UTF-8 text, a line
    with another number of fields than the header): ``rows`` their data-row numbers (1 = the
    first line after the header), ``details`` why, and ``kept`` the data-row number of each row
    of the frame read (None when nothing was rejected: row ``i`` is data row ``i + 1``)."""

    rows: list[int] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    kept: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


def read_table(source, *, what: str = "telemetry") -> pl.DataFrame:
    """Read a source into a polars frame, or raise :class:`InputError` naming the file. A CSV
    line that cannot be a row is refused here with its line number; telemetry reads it with
    :func:`read_table_rows`, which quarantines it instead."""
    df, rejects = read_table_rows(source, what=what)
    if len(rejects):
        raise InputError(f"line {rejects.rows[0] + 1} cannot be read as a row: "
                         f"{rejects.details[0]}.", path=str(source), row=rejects.rows[0])
    return df


def read_table_rows(source, *, what: str = "telemetry") -> tuple[pl.DataFrame, Rejects]:
    """:func:`read_table`, with the lines of a CSV file that cannot be rows set apart
    (:class:`Rejects`) rather than refusing the file."""
    if isinstance(source, pl.DataFrame):
        return source, Rejects()
    return _read(source, what)


def _read(source, what: str) -> tuple[pl.DataFrame, Rejects]:
    if isinstance(source, pl.LazyFrame):
        return source.collect(), Rejects()
    mod = type(source).__module__.split(".")[0]
    if mod == "pyarrow":
        return pl.DataFrame(pl.from_arrow(source)), Rejects()
    if mod == "pandas":
        return pl.from_pandas(source), Rejects()
    text = str(source)
    m = _DUCKDB.match(text)
    if m:
        return read_duckdb(m["path"], m["table"]), Rejects()
    path = Path(text)
    if not path.exists():
        raise InputError(f"{what} file not found.", path=text)
    if path.is_dir():
        raise InputError(f"is a folder; give a {what} file (.parquet, .csv, .arrow) or "
                         "file.duckdb:table.", path=text)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        if path.suffix.lower() in (".duckdb", ".db", ".ddb"):
            raise InputError("name the table too, as file.duckdb:table.", path=text)
        raise InputError(f"unknown {what} format '{path.suffix}'; use .parquet, .csv, .tsv, "
                         ".arrow/.ipc/.feather or file.duckdb:table.", path=text)
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes).", path=text)
    rejects = Rejects()
    try:
        if kind == "parquet":
            verify_page_checksums(path)     # the pages that carry a CRC (engine.parquet_checksums)
            df = pl.read_parquet(path)
        elif kind == "ipc":
            df = pl.read_ipc(path)
        else:
            sep = _separator(path)
            _check_header(path, sep)
            try:
                df = pl.read_csv(path, infer_schema=False, separator=sep)
            except (pl.exceptions.PolarsError, UnicodeDecodeError):
                df, rejects = _read_csv_lines(path, sep)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError,
            UnicodeDecodeError) as exc:    # a panic: polars' reader on a damaged file
        raise InputError(f"cannot be read as {kind.upper()} ({_short(exc)}). Check that the "
                         "file is complete and that its extension matches its content.",
                         path=text) from None
    if df.width == 0:
        raise InputError("the file has no columns.", path=text)
    return df, rejects


def _header(path: Path, sep: str) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16)
    try:
        line = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError("the header line is not UTF-8 text; save the export as UTF-8.",
                         path=str(path), row=0) from None
    try:
        return next(csv.reader([line], delimiter=sep)) if line else []
    except csv.Error:                        # a carriage return inside the line
        raise InputError("the header line has a line break inside a field that is not "
                         "quoted.", path=str(path), row=0) from None


def _check_header(path: Path, sep: str) -> None:
    """Refuse a header naming a column twice (which column would be the value?)."""
    names = _header(path, sep)
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"the header names column '{name}' twice; each column must have "
                             "one name.", path=str(path), column=name)
        seen.add(name)


def _read_csv_lines(path: Path, sep: str) -> tuple[pl.DataFrame, Rejects]:
    """A CSV file line by line, when the fast reader refuses it: each line that is not UTF-8
    text, or has another number of fields than the header, is set apart (its number and why,
    never its content) and the others are read. A quoted field spanning lines is not supported
    on this path."""
    names = _header(path, sep)
    rows, kept, rejects = [], [], Rejects()
    with open(path, "rb") as fh:
        fh.readline(1 << 16)
        for k, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                rejects.rows.append(k)
                rejects.details.append(f"not UTF-8 text (byte {exc.start + 1})")
                continue
            try:
                fields = next(csv.reader([line], delimiter=sep))
            except csv.Error:                # a carriage return inside the line
                rejects.rows.append(k)
                rejects.details.append("a line break inside a field that is not quoted")
                continue
            if len(fields) != len(names):
                rejects.rows.append(k)
                rejects.details.append(f"{len(fields)} fields, the header has {len(names)}")
                continue
            rows.append([f if f != "" else None for f in fields])
            kept.append(k)
    df = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row")
    rejects.kept = np.asarray(kept, np.int64)
    return df, rejects


def _separator(path: Path) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, "rb") as fh:
        header = fh.readline(4096)
    # French spreadsheet exports separate fields with ';' because the comma is the decimal mark
    if b";" in header and b"," not in header:
        return ";"
    return ","


def read_duckdb(path: str, table: str) -> pl.DataFrame:
    import duckdb

    if not Path(path).exists():
        raise InputError("DuckDB file not found.", path=path)
    try:
        # an input database is untrusted: read-only, and a view in it cannot read other files
        con = duckdb.connect(path, read_only=True, config={"enable_external_access": False})
    except duckdb.Error as exc:
        raise InputError(f"cannot be opened as a DuckDB database ({_short(exc)}).",
                         path=path) from None
    try:
        tables = [r[0] for r in con.sql(
            "select case when table_schema = 'main' then table_name "
            "else table_schema || '.' || table_name end from information_schema.tables "
            "order by 1").fetchall()]
        if table not in tables:
            raise InputError(f"has no table '{table}'; its tables: {', '.join(tables) or 'none'}.",
                             path=path)
        ident = ".".join('"' + p.replace('"', '""') + '"' for p in table.split("."))
        try:
            rel = con.sql(f"select * from {ident}")
            types = dict(zip(rel.columns, (str(t) for t in rel.types)))
            for col, t in types.items():
                if t.startswith(("INTERVAL", "MAP", "UNION", "BIT", "BLOB")):
                    raise InputError(f"has DuckDB type {t}, which veille does not read; cast it "
                                     "(a time as TIMESTAMPTZ or ISO text, a value as a number) "
                                     "in a view.", path=f"{path}:{table}", column=col)
            return pl.DataFrame(pl.from_arrow(rel.to_arrow_table()))
        except duckdb.Error as exc:
            raise InputError(f"cannot be read ({_short(exc)}).", path=f"{path}:{table}") from None
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise InputError(f"holds a column veille cannot read ({_short(exc)}).",
                             path=f"{path}:{table}") from None
    finally:
        con.close()


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:200]


def file_sha256(path) -> str | None:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks; None when ``path`` is not a file
    (a frame, a ``file.duckdb:table`` source): what run records and model cards note of their
    inputs."""
    p = Path(str(path))
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
