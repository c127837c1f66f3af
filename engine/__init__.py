"""veille: clinical alert and risk-scoring engine for home telemonitoring."""
from __future__ import annotations

import os as _os

from .config import cache_dir as _cache_dir

# Before numba is imported anywhere: compiled kernels go to a folder the user can write.
_os.environ.setdefault("NUMBA_CACHE_DIR", _cache_dir())

__version__ = "0.1.0"
