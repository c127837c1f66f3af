"""veille: clinical alert and risk-scoring engine for home telemonitoring."""
from __future__ import annotations

import os as _os

from .config import cache_dir as _cache_dir

# Before numba is imported anywhere: compiled kernels go to a folder the user can write.
_os.environ.setdefault("NUMBA_CACHE_DIR", _cache_dir())
# Parallel kernels run on OpenMP threads; its default "active" wait makes idle threads spin, which
# on a shared or oversubscribed machine turns a 10 µs kernel call into 10 ms. Passive waiting
# costs a few µs per call and nothing on large inputs.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
