"""veille: clinical alert and risk-scoring engine for home telemonitoring.

>>> import engine
>>> eng = engine.Engine.from_paths()        # the bundled rule packs
>>> sorted(p.name for p in eng.ruleset.packs)[:3]
['copd', 'covid_home', 'device_silence']
"""
from __future__ import annotations

import os as _os

from .kernel_cache import cache_dir as _cache_dir

# Before numba is imported anywhere: compiled kernels go to a folder the user can write.
_os.environ.setdefault("NUMBA_CACHE_DIR", _cache_dir())
# Parallel kernels run on OpenMP threads; its default "active" wait makes idle threads spin, which
# on a shared or oversubscribed machine turns a 10 µs kernel call into 10 ms. Passive waiting
# costs a few µs per call and nothing on large inputs.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Before polars and pyarrow are loaded: their allocators keep the memory a run frees for a
# minute instead of handing it back to the system at once. A run allocates and frees the same
# large buffers chunk after chunk, and every page handed back is a page fault (the kernel zeroes
# it) when it is used again: 130-190 k faults, a second of system time, in a warm run over 1e7
# readings, against 10-20 k with these settings. Idle memory still goes back after a minute.
# (polars' jemalloc reads _RJEM_MALLOC_CONF, pyarrow's mimalloc MIMALLOC_PURGE_DELAY, when they
# start; a setting already in the environment wins, and a process that loaded polars before
# importing engine keeps polars' defaults: see docs/architecture.md, "Memory".)
_os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:60000,muzzy_decay_ms:60000")
_os.environ.setdefault("MIMALLOC_PURGE_DELAY", "60000")

__version__ = "0.1.0"
__all__ = ["Engine", "Result", "VeilleError", "__version__"]


def __getattr__(name: str):
    # the façade is imported on first use, so `import engine` stays cheap for tools that only
    # need one stage (a notebook reading detectors, the CLI's --help)
    if name in ("Engine", "Result"):
        from . import pipeline
        return getattr(pipeline, name)
    if name == "VeilleError":
        from .errors import VeilleError
        return VeilleError
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
