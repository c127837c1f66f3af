"""Score a telemetry file larger than memory: whole patients streamed through the pipeline.

Every stage after ingest is per patient (:func:`engine.pipeline.score_slice`), so a file can be
scored in chunks of whole patients, a few at a time, and the chunks' results merged
(:func:`engine.pipeline.result_of_slices`) give exactly the in-memory run's queue, quarantine and
accounting. Peak memory is then set by the chunk size, not by the file:

* **When.** :func:`plan` reads the Parquet footer (the row count) and streams when the
  in-memory run would need more than the memory limit (``--memory-limit``; default
  :data:`DEFAULT_FRACTION` of the machine's memory). Other formats (CSV, Arrow, DuckDB tables)
  are read whole; convert a larger-than-memory export to Parquet (DuckDB's ``COPY … TO``).
* **Order.** The file is read in its own order (pyarrow, one row group's batches at a time),
  and a chunk ends where a patient ends. A patient's rows must therefore be contiguous: the
  reader checks, batch by batch, that the patient key (the id as text, every white space
  removed — coarser than ingest's comparison, so one patient never spans two keys) never
  decreases. At the first key that does, the pass stops and the file is ordered by DuckDB
  (``ORDER BY key, row``, spilling to a temporary folder beyond its share of the memory
  limit) and streamed from that query instead; rows keep their numbers in the file, so the
  quarantine names the same rows.
* **Passes.** ``as_of`` defaults to the latest clean reading of the whole file, which every
  chunk's evaluation needs: a first pass ingests each chunk and keeps only its latest reading
  and row counts; the second scores. With an explicit ``as_of`` one pass suffices.
* **Cores.** Two chunks are scored at a time (ingest, the kernels and polars release the GIL)
  while the next one is read.

What the result keeps: the queue, the episodes, the pending rules, the quarantine and the
accounting, as in memory; ``Result.clean`` is empty (the telemetry is not kept), and with a
risk model ``Result.risk`` holds each patient's latest grid time only (``Result.risk_points``
counts the grid times scored) and ``Result.features`` is None — the in-memory run's full grid
would grow with the file.
"""
from __future__ import annotations

import collections
import datetime as dt
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import polars as pl

from .errors import InputError

if TYPE_CHECKING:
    from .pipeline import Engine, Result, Slice

#: share of the machine's memory a run may use when ``--memory-limit`` is not given
DEFAULT_FRACTION = 0.25
#: the process before any telemetry: interpreter, libraries, packs, compiled kernels, the
#: risk model (measured: about 600 MB)
BASE_BYTES = 700 << 20
#: peak resident bytes per input row of the in-memory run (the file read, its clean copy, the
#: pipeline's working set, the risk model's feature grid; measured at 1e7 generated rows with
#: the bundled packs and model: 4.5 GB, about 380 B/row)
IN_MEMORY_BYTES_PER_ROW = 450
#: peak bytes per row of a chunk being scored (raw rows, clean rows, detector outputs,
#: timelines, features; measured: 490-600 B/row), and chunks resident at once: two being
#: scored and one being read
CHUNK_BYTES_PER_ROW = 800
CHUNKS_RESIDENT = 3
#: scratch memory the pipeline's pool (:data:`engine.memory.POOL`) may keep between chunks, per
#: chunk row: without a bound, a long stream keeps every block size its chunks ever asked for
#: (measured: RSS rising 7 MB per chunk, 1.3 GB over 1e8 rows)
POOL_BYTES_PER_ROW = 200
#: chunk bounds: a smaller chunk pays per-chunk overheads; a larger one gains nothing (the
#: pipeline cuts its own chunks at this size)
MIN_CHUNK_ROWS = 50_000
MAX_CHUNK_ROWS = 2_000_000
#: rows per batch read from the file
BATCH_ROWS = 262_144
#: columns the stream adds (named so that no export has them)
ROW, KEY = "__veille_row", "__veille_key"
_WHITE = re.compile(r"\s")


def parse_memory(text: str) -> int:
    """Bytes of a ``--memory-limit`` value: ``4GiB``, ``512MB``, ``2G``, or ``30%`` of the
    machine's memory."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%|[kKmMgGtT]i?[bB]?|[bB])?\s*", text or "")
    if not m:
        raise InputError(f"--memory-limit must be a size like 4GiB, 512MB or 30%; got {text!r}.")
    number, unit = float(m[1]), (m[2] or "B")
    if unit == "%":
        if not 0 < number <= 100:
            raise InputError(f"--memory-limit as a share of memory must be in (0, 100] %; got "
                             f"{text!r}.")
        return int(total_memory() * number / 100)
    scale = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit[0].lower()]
    if unit[0].lower() != "b" and "i" not in unit.lower():
        scale = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[unit[0].lower()]
    return int(number * scale)


def total_memory() -> int:
    """The machine's memory in bytes (or the cgroup's limit, when lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return total


def default_limit() -> int:
    return int(total_memory() * DEFAULT_FRACTION)


@dataclass(frozen=True)
class Plan:
    """How a run reads its telemetry: whole (``chunk_rows`` None) or streamed."""

    rows: int | None
    limit: int
    chunk_rows: int | None = None

    @property
    def streams(self) -> bool:
        return self.chunk_rows is not None

    def line(self) -> str:
        mb = self.limit / (1 << 20)
        if not self.streams:
            return f"read whole (memory limit {mb:,.0f} MB)"
        return (f"streamed in chunks of about {self.chunk_rows:,} rows of whole patients "
                f"(memory limit {mb:,.0f} MB)")


def parquet_rows(source) -> int | None:
    """The row count of a Parquet telemetry file from its footer; None for anything else (a
    frame, another format, a file that cannot be read: the in-memory path says why)."""
    if not isinstance(source, (str, Path)) or Path(str(source)).suffix.lower() not in (
            ".parquet", ".pq"):
        return None
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(str(source)).metadata.num_rows
    except Exception:       # noqa: BLE001 - an unreadable file is the in-memory path's to explain
        return None


def plan(source, memory_limit: int | None = None) -> Plan:
    """Whether ``source`` is read whole or streamed under ``memory_limit`` bytes (default
    :func:`default_limit`), and in chunks of how many rows."""
    limit = default_limit() if memory_limit is None else int(memory_limit)
    rows = parquet_rows(source)
    if rows is None or BASE_BYTES + rows * IN_MEMORY_BYTES_PER_ROW <= limit:
        return Plan(rows, limit)
    budget = limit - BASE_BYTES
    chunk = budget // (CHUNKS_RESIDENT * CHUNK_BYTES_PER_ROW)
    if chunk < MIN_CHUNK_ROWS:
        need = BASE_BYTES + MIN_CHUNK_ROWS * CHUNKS_RESIDENT * CHUNK_BYTES_PER_ROW
        raise InputError(f"--memory-limit {limit / (1 << 20):,.0f} MB is below what streaming "
                         f"needs (about {need / (1 << 20):,.0f} MB: the libraries, the packs and "
                         f"{CHUNKS_RESIDENT} chunks of {MIN_CHUNK_ROWS:,} rows).", path=str(source))
    return Plan(rows, limit, int(min(chunk, MAX_CHUNK_ROWS)))


# --- reading whole patients ----------------------------------------------------------------

@dataclass
class Chunk:
    """Rows of whole patients, in file order, with their 1-based numbers in the file."""

    raw: pl.DataFrame
    rows: pl.Series
    keys: pl.Series           # the chunk's distinct patient keys


class Unordered(Exception):
    """The file's patients are not contiguous (a key smaller than one before it)."""

    def __init__(self, row: int):
        self.row = row


def key_expr(column: str) -> pl.Expr:
    """A patient's key: its id as text with every white space removed (a coarser comparison
    than ingest's, so rows ingest takes as one patient always share a key)."""
    return pl.col(column).cast(pl.String).str.replace_all(r"\s", "").fill_null("")


def id_column(schema: dict, columns: dict | None) -> str | None:
    """The file's column that becomes ``patient_id`` (after ``--columns``), if it has one."""
    renamed = {new: old for old, new in (columns or {}).items()}
    name = renamed.get("patient_id", None if "patient_id" in (columns or {}) else "patient_id")
    return name if name in schema else None


def _file_batches(path: str, batch_rows: int = BATCH_ROWS, schema: dict | None = None
                  ) -> Iterator[tuple[pl.DataFrame, int]]:
    """The file's rows in order, as polars reads them (the in-memory run's types), a row group
    (or a ``batch_rows`` slice of a larger one) at a time, with the file number of each batch's
    first row, cast to ``schema`` when given (the original file's types, for the file DuckDB
    ordered). Pages carrying a checksum are verified first (:mod:`engine.parquet_checksums`).

    Row groups are read by polars through a slice of a lazy scan, which decodes only the row
    groups it covers; pyarrow's ``iter_batches`` was not used: it keeps memory from every batch
    it has read (measured: 1.5 MB per batch of 262,144 rows, 1 GB over 1e8 rows)."""
    import pyarrow.parquet as pq

    from .parquet_checksums import verify

    try:
        verify(path)
        meta = pq.ParquetFile(path).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        scan = pl.scan_parquet(path)
        start = 0
        for rows in groups:
            step = rows if rows <= 4 * batch_rows else batch_rows
            for off in range(0, rows, step):
                df = scan.slice(start + off, min(step, rows - off)).collect()
                if schema is not None:
                    df = df.cast({c: t for c, t in schema.items()
                                  if c in df.columns and df[c].dtype != t})
                yield df, start + off + 1
            start += rows
    except (OSError, ValueError, pl.exceptions.PolarsError,
            pl.exceptions.PanicException) as exc:
        raise InputError(f"cannot be read as PARQUET ({_first_line(exc)}). Check that the file "
                         "is complete.", path=path) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def chunks(batches: Iterator[tuple[pl.DataFrame, int]], column: str | None, chunk_rows: int, *,
           ordered_keys: bool = False) -> Iterator[Chunk]:
    """Chunks of about ``chunk_rows`` rows of whole patients from ``batches`` (frames and the
    file number of their first row; or frames carrying :data:`ROW` and :data:`KEY` when
    ``ordered_keys``, as the file :func:`sort_file` writes gives). Raises :class:`Unordered` at the first
    row whose key is smaller than the one before it."""
    held: list[pl.DataFrame] = []
    n_held = 0
    last = None
    for df, start in batches:
        if not ordered_keys:
            df = df.with_columns(pl.int_range(start, start + df.height, dtype=pl.Int64)
                                 .alias(ROW),
                                 (key_expr(column) if column else pl.lit("")).alias(KEY))
        keys = df[KEY]
        if not ordered_keys:
            down = (keys < keys.shift(1)).fill_null(False)
            if last is not None and df.height and keys[0] < last:
                raise Unordered(int(df[ROW][0]))
            if down.any():
                raise Unordered(int(df[ROW][int(down.arg_true()[0])]))
        if df.height:
            last = keys[-1]
        held.append(df)
        n_held += df.height
        if n_held >= chunk_rows:
            frame = pl.concat(held, rechunk=False)
            while frame.height >= chunk_rows:
                # the chunk ends with the patient of its chunk_rows-th row (keys are ordered);
                # a patient reaching the end of what is held may go on in the next batch
                end = int(frame[KEY].search_sorted(frame[KEY][chunk_rows - 1], "right"))
                if end >= frame.height:
                    break
                yield _chunk(frame.slice(0, end))
                frame = frame.slice(end)
            held, n_held = [frame], frame.height
    if n_held:
        yield _chunk(pl.concat(held, rechunk=False))


def _chunk(frame: pl.DataFrame) -> Chunk:
    frame = frame.rechunk()
    return Chunk(raw=frame.drop(ROW, KEY), rows=frame[ROW], keys=frame[KEY].unique())


def sort_file(path: str, column: str | None, memory_limit: int, tmp: str) -> str:
    """The file ordered by patient key (and, within a patient, file order) by DuckDB, written
    to a Parquet file in ``tmp`` with each row's number in the file (:data:`ROW`) and its key
    (:data:`KEY`); DuckDB spills its sort to ``tmp`` beyond ``memory_limit`` bytes."""
    import duckdb

    out = str(Path(tmp) / "ordered.parquet")
    con = duckdb.connect(config={"memory_limit": f"{max(memory_limit >> 20, 256)}MB",
                                 "temp_directory": tmp, "threads": 2,
                                 "preserve_insertion_order": False})
    try:
        lit = "'" + path.replace("'", "''") + "'"
        ident = '"' + column.replace('"', '""') + '"' if column else None
        # RE2's \s is ASCII; \p{Z} and U+0085 add the Unicode white space polars' \s removes
        key = (f"coalesce(regexp_replace(CAST({ident} AS VARCHAR), '[\\s\\p{{Z}}\\x{{85}}]', "
               "'', 'g'), '')" if ident else "''")
        con.execute(f"COPY (SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW}, "
                    f"{key} AS {KEY} FROM read_parquet({lit}, file_row_number = true) "
                    f"ORDER BY {KEY}, {ROW}) TO '{out}' (FORMAT parquet, "
                    f"ROW_GROUP_SIZE {BATCH_ROWS})")
    except duckdb.Error as exc:
        raise InputError(f"cannot be ordered by patient ({_first_line(exc)}).",
                         path=path) from None
    finally:
        con.close()
    return out


# --- the run --------------------------------------------------------------------------------

def score(engine: "Engine", telemetry, patients=None, *, chunk_rows: int,
          memory_limit: int, tz: str | None = None, now: dt.datetime | None = None,
          as_of: dt.datetime | None = None, columns: dict[str, str] | None = None,
          metric: str | None = None, unit: str | None = None, programme: str | None = None,
          silences: Sequence = (), progress: Callable[[str], None] | None = None,
          on_chunk: Callable[[str, int, int], None] | None = None) -> "Result":
    """:meth:`engine.Engine.score` of a Parquet file, streamed in chunks of about
    ``chunk_rows`` rows of whole patients (see the module's notes). ``on_chunk(phase, rows,
    patients)`` is called after each chunk with the rows and patients it held."""
    from .memory import POOL

    kept = POOL.keep_bytes
    POOL.keep_bytes = chunk_rows * POOL_BYTES_PER_ROW
    try:
        return _score(engine, telemetry, patients, chunk_rows=chunk_rows,
                      memory_limit=memory_limit, tz=tz, now=now, as_of=as_of, columns=columns,
                      metric=metric, unit=unit, programme=programme, silences=silences,
                      progress=progress, on_chunk=on_chunk)
    finally:
        POOL.keep_bytes = kept


def _score(engine, telemetry, patients, *, chunk_rows, memory_limit, tz, now, as_of, columns,
           metric, unit, programme, silences, progress, on_chunk):
    from .pipeline import (SlicesSummary, patients_input, require_usable, result_of_slices,
                           score_slice, settle_slices)

    started = time.perf_counter()
    path = str(telemetry)
    now = now or dt.datetime.now(dt.timezone.utc)
    pats, label = patients_input(patients, programme)
    schema = dict(pl.read_parquet_schema(path))
    column = id_column(schema, columns)
    pkeys = (pats.select(key_expr("patient_id").alias(KEY), pl.int_range(pl.len()).alias("i"))
             if pats is not None else None)
    slice_args = dict(tz=tz, name=path, columns=columns, metric=metric, unit=unit,
                      programme=programme)
    if progress:
        progress("ingest")

    with tempfile.TemporaryDirectory(prefix="veille-sort-") as tmp:
        source = {"ordered": True}

        def stream() -> Iterator[Chunk]:
            """The file's chunks; ordered by DuckDB once a pass has found it out of order."""
            if source["ordered"]:
                try:
                    yield from chunks(_file_batches(path, min(BATCH_ROWS, chunk_rows)), column,
                                      chunk_rows)
                    return
                except Unordered as u:
                    source["ordered"] = False
                    source["first_unordered_row"] = u.row
                    raise
            if "ordered_file" not in source:
                if progress:
                    progress("ordering the file by patient (DuckDB)")
                source["ordered_file"] = sort_file(path, column, memory_limit // 2, tmp)
            yield from chunks(_file_batches(source["ordered_file"], min(BATCH_ROWS, chunk_rows),
                                            schema), None, chunk_rows,
                              ordered_keys=True)

        def run(phase: str, fn) -> list:
            """``fn(chunk)`` on every chunk, two at a time; restarted on the ordered file
            when the file turns out not to be in patient order."""
            for attempt in (0, 1):
                out: list = []
                all_keys.clear()
                try:
                    with ThreadPoolExecutor(max_workers=2) as pool:
                        waiting: collections.deque = collections.deque()
                        for chunk in stream():
                            waiting.append((pool.submit(fn, chunk), chunk.raw.height,
                                            chunk.keys.len()))
                            while len(waiting) >= 2:
                                out.append(_done(waiting.popleft(), phase, on_chunk))
                        while waiting:
                            out.append(_done(waiting.popleft(), phase, on_chunk))
                    return out
                except Unordered:
                    if on_chunk:
                        on_chunk("restart", 0, 0)
            raise AssertionError("unreachable")

        def patients_of(chunk: Chunk | None) -> pl.DataFrame | None:
            if pats is None:
                return None
            if chunk is None:
                return pats.filter(~pkeys[KEY].is_in(seen_keys()))
            return pats.filter(pkeys[KEY].is_in(chunk.keys.implode()))

        all_keys: list[pl.Series] = []

        def seen_keys() -> pl.Series:
            return pl.concat(all_keys).unique().implode() if all_keys else \
                pl.Series([], dtype=pl.String).implode()

        until = as_of
        if until is None:
            first = run("ingest", lambda c: score_slice(
                engine, c.raw, patients_of(c), now=now, until=None, rows=c.rows,
                **slice_args))
            summary = SlicesSummary(first, path)
            require_usable(summary)
            until = summary.clean["ts"].max()
        if progress:
            progress("detect")

        def score_chunk(c: Chunk) -> "Slice":
            all_keys.append(c.keys)
            s = score_slice(engine, c.raw, patients_of(c), now=now, until=until, rows=c.rows,
                            **slice_args)
            _slim(s)
            return s

        slices = run("score", score_chunk)
        if pats is not None:
            rest = patients_of(None)
            if rest.height:          # patients enrolled without telemetry
                s = score_slice(engine, pl.DataFrame(), rest, now=now, until=until,
                                rows=pl.Series([], dtype=pl.Int64), **slice_args)
                _slim(s)
                slices.append(s)
    until, pats = settle_slices(engine, slices, path, until=until, as_of=as_of, now=now,
                                patients=pats, programme=programme, label=label)
    result = result_of_slices(engine, slices, pats, until, path, silences=silences,
                              progress=progress,
                              timings={"stream": time.perf_counter() - started})
    if engine.model is not None:
        result.risk_points = sum(s.risk_points for s in slices)
    result.streamed = (f"in chunks of about {chunk_rows:,} rows of whole patients, "
                       + ("in file order" if source["ordered"] else "ordered by DuckDB first"))
    return result


def _done(item, phase: str, on_chunk) -> "Slice":
    future, rows, keys = item
    s = future.result()
    _trim()
    if on_chunk:
        on_chunk(phase, rows, keys)
    return s


def _trim() -> None:
    """Hand the C heap's free memory back to the system after a chunk (glibc's
    ``malloc_trim``): without it the freed pages of one chunk's frames stay resident and
    fragmented, and the resident size creeps up chunk after chunk (measured: 55 MB over 30
    chunks of 250,000 rows, against none with it)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):    # not glibc: nothing to trim
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def _slim(s: "Slice") -> None:
    """Keep of a slice's evaluation what grows with the alerts, not with the telemetry: each
    patient's latest risk (the grid's size is counted), no feature grid."""
    ev = s.evaluation
    if ev is None:
        return
    if ev.risk is not None:
        s.risk_points = ev.risk.height
        ev.risk = ev.risk.group_by("patient_id", maintain_order=True).last()
    ev.features = None
