"""Numerical knobs in one place, never hard-coded at a decorator.

``NUMBA_CACHE_DIR`` is set by :mod:`engine` before numba is imported, to a folder the user can
write (``$VEILLE_CACHE_DIR`` or ``$XDG_CACHE_HOME/veille/numba``), so compiled kernels are cached
even when the package folder is read-only. Every kernel module imports this one before its
first call, which hardens the cache (:mod:`engine.kernel_cache`: damaged files rebuilt, a folder
others can write refused).
"""
from __future__ import annotations

from .kernel_cache import cache_dir, install

install()

#: options for every @njit kernel
JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
#: options for kernels that loop over series with prange
JIT_PARALLEL = dict(JIT, parallel=True)
#: relative tolerance used when comparing kernels with their references in tests
RTOL = 1e-9
ATOL = 1e-9

__all__ = ["JIT", "JIT_PARALLEL", "RTOL", "ATOL", "cache_dir"]
