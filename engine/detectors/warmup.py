"""Compile every detector kernel ahead of use, and tell whether that is still to do.

Kernels are compiled by numba on first call and cached on disk (``cache=True``, in the folder
``engine/__init__.py`` sets as ``NUMBA_CACHE_DIR``). The first run after an install therefore
spends seconds compiling; the command line uses :func:`is_cached` to say so before it starts
and :func:`warmup` to do it with a progress callback.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import kernels_window as kw
from .evaluate import frozen
from .registry import DURATION, FLOAT, REGISTRY

#: kernels the wrapper calls that are not registered detectors
_HELPERS = ("rolling_mean_std", "first_unsorted", "last_seen")
_SAMPLE_PARAM = {DURATION: 3_600_000_000, FLOAT: 1.0}


def _tiny():
    ts = frozen(np.array([0, 60_000_000, 60_000_000, 7_200_000_000], dtype=np.int64), np.int64)
    x = frozen(np.array([1.0, np.nan, 2.0, 3.0]), np.float64)
    offsets = frozen(np.array([0, 1, 4], dtype=np.int64), np.int64)
    return ts, x, offsets


def _calls(fns):
    """(label, thunk) for every kernel to compile, with the argument types evaluation uses."""
    ts, x, offsets = _tiny()
    calls = []
    for fn in fns:
        d = REGISTRY[fn]
        args = tuple(_SAMPLE_PARAM.get(p.kind, 1) for p in d.params)
        calls.append((fn, d.kernel, (ts, x, offsets) + args))
    if set(fns) >= {"mean", "std"}:
        calls.append(("mean+std", kw.rolling_mean_std, (ts, x, offsets, 3_600_000_000)))
    calls.append(("sort check", kw.first_unsorted, (ts, offsets)))
    groups = frozen(np.array([0, 2], dtype=np.int64), np.int64)
    e = frozen(np.array([0, 10**10], dtype=np.int64), np.int64)
    calls.append(("silence_at", kw.last_seen,
                  (ts, x, offsets, groups, e, frozen(np.array([0, -1]), np.int64))))
    return calls


def _dispatchers(fns):
    return [kernel for _, kernel, _ in _calls(fns)]


def warmup(fns=None, progress: Callable[[int, int, str], None] | None = None) -> None:
    """Compile (or load from the on-disk cache) the kernels of ``fns`` (default: all).

    Parameters
    ----------
    fns : iterable of str, optional
        Registered detector names; the wrapper's own kernels are always included.
    progress : callable, optional
        Called as ``progress(done, total, label)`` after each kernel.
    """
    fns = sorted(REGISTRY) if fns is None else list(fns)
    unknown = [f for f in fns if f not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown detector(s) {unknown}; registered: {sorted(REGISTRY)}")
    calls = _calls(fns)
    for i, (label, kernel, args) in enumerate(calls, 1):
        kernel(*args)
        if progress is not None:
            progress(i, len(calls), label)


def _has_cache(dispatcher) -> bool:
    if dispatcher.overloads:          # already compiled or loaded in this process
        return True
    try:
        # numba's index of cached overloads for this function; empty when missing, when the
        # source changed since, or when it was written by another numba version
        return bool(dispatcher._cache._cache_file._load_index())
    except (AttributeError, OSError, EOFError, ValueError):
        return False


def is_cached(fns=None) -> bool:
    """True when every kernel of ``fns`` (default: all) is compiled or in the on-disk cache.

    False means the next evaluation will first compile (seconds per kernel): print a notice such
    as "compiling detectors (first run after install)…" and call :func:`warmup`.
    """
    fns = sorted(REGISTRY) if fns is None else list(fns)
    return all(_has_cache(k) for k in _dispatchers(fns))
