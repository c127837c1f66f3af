"""The compiled-kernel cache, hardened: a damaged file is rebuilt, never fatal, and a cache
folder other users can write is refused.

Numba caches each compiled kernel in two pickled files (an index, ``.nbi``, and the code,
``.nbc``), and unpickles them when a kernel is first called. Two faults follow, and this module
closes both:

* **Damage** (a truncated or emptied file, a disk error): numba would raise from ``pickle`` (a
  traceback at every later run) or abort while loading the code. Every cache file veille's
  kernels write is *sealed* — a header and the SHA-256 of its content — and checked before it is
  unpickled: a file that does not match its seal (or has none: written by another version) is
  treated as absent, so the kernel is compiled again and the file rewritten.
* **Planting**: unpickling runs code, so whoever can write the cache folder can run code in the
  next run. The folder is created owner-only (0700) and a folder (or its parent) that is not
  owned by the user or is writable by group or others is refused with the fix, before any file
  in it is read.

:func:`install` is called by :mod:`engine.config`, which every kernel module imports before its
first call.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import stat
import tempfile
from pathlib import Path

from .errors import InputError

MAGIC = b"veille-kernel-cache/1\n"
_DIGEST = 32
_installed = False


def cache_dir() -> str:
    """``$VEILLE_CACHE_DIR/numba``, else ``$XDG_CACHE_HOME/veille/numba``, else
    ``~/.cache/veille/numba``."""
    base = os.environ.get("VEILLE_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "veille")
    return os.path.join(base, "numba")


def seal(payload: bytes) -> bytes:
    """``payload`` behind a header and its SHA-256."""
    return MAGIC + hashlib.sha256(payload).digest() + payload


def unseal(blob: bytes) -> bytes | None:
    """The payload of a sealed file, or None when the file is not one or does not match."""
    head = len(MAGIC)
    if len(blob) < head + _DIGEST or not blob.startswith(MAGIC):
        return None
    digest, payload = blob[head:head + _DIGEST], blob[head + _DIGEST:]
    return payload if hashlib.sha256(payload).digest() == digest else None


def read_sealed(path: Path, max_bytes: int) -> bytes | None:
    """The payload of the sealed file ``path`` (at most ``max_bytes``), or None: absent,
    unreadable, too large or damaged. For veille's other caches (rule parses, compiled
    models), which hold JSON and are never unpickled."""
    try:
        with open(path, "rb") as f:
            blob = f.read(max_bytes + len(MAGIC) + _DIGEST + 1)
    except OSError:
        return None
    if len(blob) > max_bytes + len(MAGIC) + _DIGEST:
        return None
    return unseal(blob)


def write_sealed(folder: Path, name: str, payload: bytes) -> bool:
    """Write ``payload`` sealed as ``folder/name``, owner-only (0600) and atomically (a reader
    sees the old file or the whole new one); False, leaving nothing behind, when the folder
    refuses it (read-only, full)."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=Path(name).suffix, dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(seal(payload))
        os.replace(tmp, folder / name)
        return True
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return False


def trim_folder(folder: Path, max_files: int, max_bytes: int | None = None) -> None:
    """Delete the oldest files of ``folder`` until it holds at most ``max_files`` files (and
    ``max_bytes`` bytes); another process may be deleting them too: whatever fails is left."""
    files = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    files.append((st.st_mtime_ns, st.st_size, e.path))
    except OSError:
        return
    total, count = sum(size for _, size, _ in files), len(files)
    for _, size, path in sorted(files):
        if count <= max_files and (max_bytes is None or total <= max_bytes):
            break
        with contextlib.suppress(OSError):
            os.unlink(path)
        total, count = total - size, count - 1


def check_folder(folder: str | os.PathLike) -> Path:
    """Create the cache folder owner-only if missing; refuse one (or a parent up to the
    ``veille`` folder) not owned by this user or writable by others."""
    path = Path(folder)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"the kernel cache folder cannot be created ({exc.strerror or exc}); "
                         "set VEILLE_CACHE_DIR to a folder of yours.", path=str(path)) from None
    for p in (path, path.parent):
        st = p.stat()
        uid = os.geteuid()
        if st.st_uid != uid or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            mode = stat.S_IMODE(st.st_mode)
            raise InputError(
                f"the kernel cache folder is {'not yours' if st.st_uid != uid else 'writable by other users'} "
                f"(owner uid {st.st_uid}, mode {mode:o}): a file planted there would run code "
                f"in veille. Fix: chmod go-w '{p}' (and own it), or set VEILLE_CACHE_DIR to a "
                "folder only you can write.", path=str(p))
    return path


def install() -> None:
    """Check the cache folder and seal numba's cache files (once per process)."""
    global _installed
    if _installed:
        return
    folder = os.environ.get("NUMBA_CACHE_DIR") or cache_dir()
    check_folder(folder)
    from numba.core import caching

    cls = caching.IndexDataCacheFile

    def _save_index(self, overloads):
        payload = pickle.dumps(self._version, protocol=-1) + self._dump(
            (self._source_stamp, overloads))
        with self._open_for_write(self._index_path) as f:
            f.write(seal(payload))

    def _load_index(self):
        try:
            with open(self._index_path, "rb") as f:
                payload = unseal(f.read())
        except FileNotFoundError:
            return {}
        except OSError:
            return {}
        if payload is None:                 # damaged, or not written by this scheme: rebuild
            return {}
        try:
            stream = io.BytesIO(payload)
            version = pickle.load(stream)
            if version != self._version:
                return {}
            stamp, overloads = pickle.loads(stream.read())
        except Exception:                   # sealed yet unreadable: rebuild, never fatal
            return {}
        return overloads if stamp == self._source_stamp else {}

    def _save_data(self, name, data):
        with self._open_for_write(self._data_path(name)) as f:
            f.write(seal(self._dump(data)))

    def _load_data(self, name):
        with open(self._data_path(name), "rb") as f:
            payload = unseal(f.read())
        if payload is None:
            # numba's load() takes an OSError as "no such entry": the kernel is compiled again
            raise OSError(f"damaged kernel cache file {name}")
        try:
            return pickle.loads(payload)
        except Exception as exc:
            raise OSError(f"unreadable kernel cache file {name}") from exc

    cls._save_index = _save_index
    cls._load_index = _load_index
    cls._save_data = _save_data
    cls._load_data = _load_data
    _installed = True
