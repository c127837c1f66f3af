"""The compiled-kernel cache under faults: a damaged file is compiled again, never fatal; a
cache folder other users can write is refused before any file in it is read."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.kernel_cache import MAGIC, check_folder, seal, unseal

# one small kernel, compiled with the engine's options into a cache folder of the test's
KERNEL = r"""
import os, sys
import engine            # first: it points numba's cache at veille's folder
import numpy as np
sys.path.insert(0, os.environ["KDIR"])
from kmod import add1
print(add1(np.arange(3.0)).sum())
"""
MODULE = """
from engine.config import JIT
from numba import njit

@njit(**JIT)
def add1(x):
    return x + 1
"""


def _run(tmp_path: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VEILLE_CACHE_DIR": str(cache), "KDIR": str(tmp_path),
           "PYTHONPATH": os.getcwd()}
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-c", KERNEL], env=env, capture_output=True,
                          text=True, timeout=300)


def _files(cache: Path, suffix: str) -> list[Path]:
    return sorted(p for p in cache.rglob(f"*{suffix}") if "add1" in p.name)


def test_seal_round_trip_and_damage():
    blob = seal(b"payload")
    assert blob.startswith(MAGIC) and unseal(blob) == b"payload"
    assert unseal(blob[:-1]) is None                     # truncated
    assert unseal(b"") is None                           # emptied
    assert unseal(blob[:-1] + b"X") is None              # a bit changed
    assert unseal(b"\x80\x04K\x01.") is None             # a bare pickle: never unpickled


@pytest.mark.parametrize("damage", ["truncated_code", "planted_pickle"])
def test_a_damaged_cache_file_is_compiled_again(tmp_path, damage):
    (tmp_path / "kmod.py").write_text(MODULE)
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache)
    assert first.returncode == 0 and first.stdout.strip() == "6.0", first.stderr
    index, code = _files(cache, ".nbi"), _files(cache, ".nbc")
    assert index and code
    if damage == "truncated_code":
        code[0].write_bytes(code[0].read_bytes()[:40])     # the index still points at it
    else:
        target = index[0]
        # a pickle that would run code when loaded: it must never be unpickled
        marker = tmp_path / "pwned"
        target.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    again = _run(tmp_path, cache)
    assert again.returncode == 0 and again.stdout.strip() == "6.0", again.stderr
    assert "Traceback" not in again.stderr
    assert not (tmp_path / "pwned").exists()
    # the file was rewritten, sealed, and the next run loads it
    assert all(unseal(p.read_bytes()) is not None for p in _files(cache, ".nbi"))
    assert _run(tmp_path, cache).returncode == 0


def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "shared" / "numba"
    folder.mkdir(parents=True)
    os.chmod(folder, 0o777)
    with pytest.raises(InputError, match="writable by other users"):
        check_folder(folder)
    os.chmod(folder, 0o755)
    os.chmod(folder.parent, 0o777)
    with pytest.raises(InputError, match="writable by other users"):
        check_folder(folder)
    os.chmod(folder.parent, 0o755)
    assert check_folder(folder) == folder
    fresh = tmp_path / "new" / "numba"
    check_folder(fresh)
    assert fresh.stat().st_mode & 0o077 == 0               # created owner-only


def test_the_cli_refuses_a_shared_cache_folder_with_the_fix(tmp_path):
    shared = tmp_path / "c"
    shared.mkdir()
    os.chmod(shared, 0o777)
    env = {**os.environ, "VEILLE_CACHE_DIR": str(shared), "PYTHONPATH": os.getcwd()}
    env.pop("NUMBA_CACHE_DIR", None)
    r = subprocess.run([sys.executable, "-m", "cli", "score", "--model", "none", "--out",
                        str(tmp_path / "q.parquet")], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert "writable by other users" in r.stderr and "chmod go-w" in r.stderr
    assert "Traceback" not in r.stderr
