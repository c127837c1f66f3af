"""Sinks: write frames atomically, by the output path's extension.

A run never leaves a half-written output: each file is written to a temporary name in the same
folder and renamed over the target only once complete (``os.replace`` is atomic on POSIX), and a
run's files (the queue and its quarantine) are all written before any is renamed, so an error
while writing leaves every one of them as it was. :func:`check_outputs` refuses, before any
work, a path that is a folder, under a file, or one of the run's inputs.

Two files cannot be renamed at once, so a run whose files are complete first records them in
a journal beside them (``.<queue>.veille-journal.json``: each temporary file and its target),
removes the previous run's files, then renames its own and removes the journal. A run stopped
in between (killed, power lost) leaves the previous pair, or some of the new files with the
others missing — never a queue from one run beside a quarantine from another — and the next
run writing there first completes the journal's renames (:func:`recover_pending`).

A run holds an exclusive lock on each of its targets while it writes (``.<name>.veille-lock``
beside it): a second run writing the same files at once is refused, and under the lock the
temporary files a killed run left behind (``.<name>.*.tmp``) are removed. Every file written is
owner-only (0600), DuckDB files included. In a CSV export, a text cell that a spreadsheet would
read as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is
written with a leading apostrophe, as OWASP advises against CSV injection.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

import polars as pl

from ..errors import Interrupted, OutputError
from ..parquet_checksums import write_options

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
           ".duckdb": "duckdb", ".fhir.json": "fhir"}


def output_format(path: str | Path) -> str:
    p = Path(path)
    fmt = FORMATS.get("".join(p.suffixes[-2:]).lower()) or FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: cannot tell the output format from '{Path(path).suffix}'; "
                          f"use one of {', '.join(sorted(FORMATS))}.")
    return fmt


def check_outputs(paths, inputs=()) -> None:
    """Refuse, before any work, output paths that cannot be written or that would overwrite an
    input: a folder where a file is expected, a parent that is a file, an output naming one of
    the ``inputs`` (a file, or the file of a ``file.duckdb:table``)."""
    read = {_real(str(p).split(":")[0] if _is_duckdb_table(p) else p) for p in inputs if p}
    for path in paths:
        path = Path(path)
        output_format(path)
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; give a file name such as "
                              f"{path / 'queue.parquet'}.")
        parent = next((a for a in [path.parent, *path.parent.parents] if a.exists()), None)
        if parent is not None and not parent.is_dir():
            raise OutputError(f"{path}: cannot create the folder: {parent} is a file.")
        if _real(path) in read:
            raise OutputError(f"{path}: is an input of this run; writing the queue there would "
                              "overwrite it. Choose another --out.")


def _is_duckdb_table(p) -> bool:
    from ..sources import _DUCKDB
    return bool(_DUCKDB.match(str(p)))


def _real(p) -> str:
    return os.path.realpath(os.fspath(p))


def write_frames(items) -> list[Path]:
    """Write several ``(frame, path, table)`` together: every file is written to a temporary
    name first and renamed over its target only once all are complete, so an error while writing
    (a full disk, a bad folder) leaves none of them changed. Two tables of one DuckDB file are
    written in one transaction."""
    items = [(f, Path(p), t) for f, p, t in items]
    with _locked(sorted({p for _, p, _ in items})):
        return _write_locked(items)


def _write_locked(items) -> list[Path]:
    recover_pending({p.parent if str(p.parent) else Path(".") for _, p, _ in items})
    for _, path, _ in items:
        remove_orphans(path)
    by_db: dict[Path, list] = {}
    files = []
    for frame, path, table in items:
        if output_format(path) == "duckdb":
            by_db.setdefault(path, []).append((frame, table))
        else:
            files.append((frame, path))
    temps = []
    journal = None
    current = None                          # the file being written, for the message
    try:
        for frame, path in files:
            current = path
            temps.append((_write_temp(frame, path), path))
        for path, tables in by_db.items():
            current = path
            if path.exists():
                _replace_duckdb_tables(tables, path)
            else:
                temps.append((_write_temp_duckdb(tables, path), path))
        if len(temps) > 1:
            journal = _write_journal(temps)
            for _, path in temps:           # no old file stays beside a new one
                if path.exists():
                    os.unlink(path)
        for tmp, path in temps:
            os.replace(tmp, path)
        if journal is not None:
            fsync_dir(journal.parent)
            journal.unlink()
            journal = None
    except KeyboardInterrupt:
        if journal is None:
            raise Interrupted("interrupted before the outputs were replaced: nothing was "
                              "written.") from None
        # the run's files are complete and journalled: finish the renames (a few, quick)
        recover_pending([journal.parent])
        journal = None
        raise Interrupted("interrupted while putting the outputs in place: the run's files "
                          f"were completed ({', '.join(str(p) for _, p in temps)}).") from None
    except _write_errors() as exc:
        why = _why(exc)
        if journal is not None:
            raise OutputError(f"{current}: cannot be written ({why}); the run's files are "
                              f"complete and will be put in place by the next run writing "
                              f"there (journal {journal.name}).") from None
        raise OutputError(f"{current}: cannot be written ({why}); nothing was "
                          "written.") from None
    finally:
        if journal is None:                 # stopped before its journal: nothing was changed
            for tmp, _ in temps:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return [p for _, p, _ in items]


def _write_errors() -> tuple:
    """What a writer raises when the disk is full, a file too large, a folder gone: an output
    error for the user (a bug elsewhere still traces). DuckDB's errors are among them once
    DuckDB is loaded: it cannot have raised one before, and importing it only to name its
    error class cost every run 0.15-0.2 s."""
    duckdb = sys.modules.get("duckdb")
    return (OSError, pl.exceptions.PolarsError) + ((duckdb.Error,) if duckdb else ())


def _why(exc: BaseException) -> str:
    """The reason of a write error in a few words ('No space left on device')."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__) or type(exc).__name__


JOURNAL_SUFFIX = ".veille-journal.json"
LOCK_SUFFIX = ".veille-lock"


@contextlib.contextmanager
def _locked(targets):
    """Hold an exclusive lock on each target (a ``.<name>.veille-lock`` file beside it) for the
    duration; a target another process is writing is refused at once. The lock file is removed
    at the end (a lock taken on a file another run has just removed is not a lock: refused)."""
    held = []
    busy = None
    try:
        for path in targets:
            folder = _mkdir(path)
            lock = folder / f".{path.name}{LOCK_SUFFIX}"
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise OutputError(f"{path}: cannot be written ({exc.strerror or exc}); nothing "
                                  "was written.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except (BlockingIOError, FileNotFoundError):
                same = False
            if not same:
                os.close(fd)
                busy = path
                break
            held.append((fd, lock))
        if busy is not None:
            raise OutputError(f"{busy}: another veille run is writing it now; nothing was "
                              "written (run again once it has finished).")
        yield
    finally:
        for fd, lock in reversed(held):
            lock.unlink(missing_ok=True)        # still held: nobody else can have taken it
            os.close(fd)                        # closing releases the lock


def remove_orphans(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` a stopped run left (``.<name>.*.tmp``, and a
    DuckDB temporary's ``.wal``). Called under the target's lock, after
    :func:`recover_pending` has put the journalled ones in place: what is left belongs to no
    complete run."""
    folder = path.parent if str(path.parent) else Path(".")
    gone = []
    if folder.is_dir():
        for tmp in folder.glob(f".{path.name}.*.tmp*"):
            if tmp.name.endswith(".tmp") or tmp.name.endswith(".tmp.wal"):
                tmp.unlink(missing_ok=True)
                gone.append(tmp)
    return gone


def _fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (its renames) to disk, where the file system can."""
    try:
        _fsync_file(folder)
    except OSError:        # a file system that cannot sync a folder: the renames still hold
        pass


def _write_journal(temps) -> Path:
    """Record a run's complete temporary files and their targets, durably, before any rename."""
    for tmp, _ in temps:
        _fsync_file(tmp)
    first = temps[0][1]
    folder = first.parent if str(first.parent) else Path(".")
    journal = folder / f".{first.name}{JOURNAL_SUFFIX}"
    entries = [{"tmp": os.path.abspath(tmp), "target": os.path.abspath(path)}
               for tmp, path in temps]
    fd, tmp = tempfile.mkstemp(prefix=f".{first.name}.", suffix=".journal.tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(entries, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, journal)
    fsync_dir(folder)
    return journal


def recover_pending(folders) -> list[Path]:
    """Complete the renames of a run stopped between its journal and its end, in ``folders``:
    every temporary file the journal lists that is still there replaces its target (they were
    complete when the journal was written); then the journal goes. Returns the files put in
    place."""
    done = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for journal in folder.glob(f".*{JOURNAL_SUFFIX}"):
            try:
                entries = json.loads(journal.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for e in entries if isinstance(entries, list) else []:
                tmp, target = e.get("tmp"), e.get("target")
                if tmp and target and os.path.exists(tmp) and \
                        Path(tmp).parent == Path(target).parent:
                    os.replace(tmp, target)
                    done.append(Path(target))
            journal.unlink(missing_ok=True)
    return done


def _mkdir(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the folder ({exc.strerror}).") from None
    return folder


def _write_temp(frame: pl.DataFrame, path: Path) -> str:
    folder = _mkdir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        fmt = output_format(path)
        if fmt == "parquet":
            # a CRC in every page, checked when veille reads it (engine.parquet_checksums)
            frame.write_parquet(tmp, compression="zstd", statistics=True, **write_options())
        elif fmt == "jsonl":
            _write_jsonl(frame, tmp)
        elif fmt == "fhir":
            from .fhir import _write_fhir      # a queue, or a Bundle built by fhir.result_bundle

            _write_fhir(frame, tmp)
        else:
            csv_safe(frame).write_csv(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return tmp


def _write_temp_duckdb(tables, path: Path) -> str:
    import duckdb

    folder = _mkdir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)  # duckdb creates the file itself
    # DuckDB creates the file itself, with the umask's mode: create it owner-only first
    os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    os.unlink(tmp)
    old = os.umask(0o077)
    try:
        con = duckdb.connect(tmp)
    finally:
        os.umask(old)
    try:
        for frame, table in tables:
            con.register("frame_view", frame.to_arrow())
            con.sql(f'create table "{table}" as select * from frame_view')
            con.unregister("frame_view")
    finally:
        con.close()
    os.chmod(tmp, 0o600)
    return tmp


def _replace_duckdb_tables(tables, path: Path) -> None:
    """Replace tables of an existing database in a single transaction (other tables kept)."""
    import duckdb

    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise OutputError(f"{path}: cannot be opened as a DuckDB database ({exc}).") from None
    try:
        con.sql("begin transaction")
        for frame, table in tables:
            con.register("frame_view", frame.to_arrow())
            con.sql(f'create or replace table "{table}" as select * from frame_view')
            con.unregister("frame_view")
        con.sql("commit")
    except duckdb.Error as exc:
        con.sql("rollback")
        raise OutputError(f"{path}: cannot be written ({exc}); nothing was changed.") from None
    finally:
        con.close()


def write_frame(frame: pl.DataFrame, path: str | Path, *, table: str = "alerts") -> Path:
    """Write ``frame`` to ``path`` (Parquet, JSON Lines, CSV or a DuckDB table), atomically."""
    return write_frames([(frame, path, table)])[0]


#: what a spreadsheet reads as the start of a formula (OWASP, CSV injection)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text cell that starts like a formula prefixed by an apostrophe
    (``=cmd|…`` → ``'=cmd|…``), so a nurse opening the CSV in a spreadsheet sees text."""
    texts = [c for c, t in frame.schema.items() if t == pl.String]
    if not texts:
        return frame
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(r"^[=+\-@\t\r]"))
        .then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c) for c in texts)


def _write_jsonl(frame: pl.DataFrame, tmp: str) -> None:
    # evidence and labels are JSON text: embed them as objects, not as escaped strings
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in frame.iter_rows(named=True):
            for k, v in row.items():
                if k in ("evidence", "labels") and isinstance(v, str):
                    row[k] = json.loads(v)
                elif hasattr(v, "isoformat"):
                    row[k] = v.isoformat()
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
