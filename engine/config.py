"""Numerical knobs in one place, never hard-coded at a decorator.

``NUMBA_CACHE_DIR`` is set by :mod:`engine` before numba is imported, to a folder the user can
write (``$VEILLE_CACHE_DIR`` or ``$XDG_CACHE_HOME/veille/numba``), so compiled kernels are cached
even when the package folder is read-only.
"""
from __future__ import annotations

import os

#: options for every @njit kernel
JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
#: options for kernels that loop over series with prange
JIT_PARALLEL = dict(JIT, parallel=True)
#: relative tolerance used when comparing kernels with their references in tests
RTOL = 1e-9
ATOL = 1e-9


def cache_dir() -> str:
    base = os.environ.get("VEILLE_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "veille")
    return os.path.join(base, "numba")
