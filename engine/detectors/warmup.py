"""Compile every detector kernel ahead of use, and tell whether that is still to do.

Kernels are compiled by numba on first call and cached on disk (``cache=True``, in the folder
``engine/__init__.py`` sets as ``NUMBA_CACHE_DIR``). The first run after an install therefore
spends seconds compiling; the command line uses :func:`is_cached` to say so before it starts
and :func:`warmup` to do it with a progress callback.

Evaluation runs every registered detector through ONE fused kernel
(:func:`engine.detectors.kernels_fused.fused`), which contains them all: warming up means
compiling that kernel (about 15 s on the 2-core benchmark machine, 1 s to load from the cache),
the helpers evaluation and :func:`~engine.detectors.silence_at` call, and the own kernel of any
detector of ``fns`` the fused pass does not know. The one-spec kernels of the fused detectors
(the registry's contract, which the tests check the fused pass against) compile on their first
direct call.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import fused
from . import kernels_fused as kf
from . import kernels_window as kw
from .registry import DURATION, FLOAT, INT, REGISTRY, frozen
from .spec import resolve_specs

_SAMPLE_PARAM = {DURATION: 3_600_000_000, FLOAT: 1.0}


def _tiny():
    ts = frozen(np.array([0, 60_000_000, 60_000_000, 7_200_000_000], dtype=np.int64), np.int64)
    x = frozen(np.array([1.0, np.nan, 2.0, 3.0]), np.float64)
    offsets = frozen(np.array([0, 1, 4], dtype=np.int64), np.int64)
    return ts, x, offsets


def _fused_call(ts, x, offsets):
    """Run the fused pass the way evaluation does (one op per registered detector)."""
    sample = {DURATION: "1h", FLOAT: 1.0, INT: 1}
    specs = {f"s_{fn}": {"fn": fn, **{p.name: sample[p.kind] for p in REGISTRY[fn].params
                                      if p.required}}
             for fn in sorted(REGISTRY)}
    resolved = [s for s in resolve_specs(specs, metric_required=False).values()
                if fused.fusable(s)]
    fused.run_arrays(ts, x, offsets, np.zeros(offsets.size - 1, dtype=np.int64),
                     fused.plan(resolved))


def _calls(fns):
    """(label, dispatchers, thunk) for every kernel to compile, with evaluation's argument types."""
    ts, x, offsets = _tiny()
    calls = [("fused pass", (kf.fused, kf.merge_shared_bytes),
              lambda: _fused_call(ts, x, offsets))]
    for fn in fns:
        d = REGISTRY[fn]
        if d.kernel in fused.OPCODES:
            continue
        args = (ts, x, offsets) + tuple(_SAMPLE_PARAM.get(p.kind, 1) for p in d.params)
        calls.append((fn, (d.kernel,), lambda k=d.kernel, a=args: k(*a)))
    calls.append(("sort check", (kw.first_unsorted,), lambda: kw.first_unsorted(ts, offsets)))
    groups = frozen(np.array([0, 2], dtype=np.int64), np.int64)
    e = frozen(np.array([0, 10**10], dtype=np.int64), np.int64)
    calls.append(("silence_at", (kw.last_seen,),
                  lambda: kw.last_seen(ts, x, offsets, groups, e,
                                       frozen(np.array([0, -1]), np.int64))))
    return calls


def _dispatchers(fns):
    return [k for _, kernels, _ in _calls(fns) for k in kernels]


def _check(fns):
    fns = sorted(REGISTRY) if fns is None else list(fns)
    unknown = [f for f in fns if f not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown detector(s) {unknown}; registered: {sorted(REGISTRY)}")
    return fns


def warmup(fns=None, progress: Callable[[int, int, str], None] | None = None) -> None:
    """Compile (or load from the on-disk cache) the kernels of ``fns`` (default: all).

    Parameters
    ----------
    fns : iterable of str, optional
        Registered detector names; the fused pass and the wrapper's own kernels are always
        compiled, and the kernel of any of ``fns`` the fused pass does not run.
    progress : callable, optional
        Called as ``progress(done, total, label)`` after each kernel.
    """
    calls = _calls(_check(fns))
    for i, (label, _, thunk) in enumerate(calls, 1):
        thunk()
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
    return all(_has_cache(k) for k in _dispatchers(_check(fns)))
