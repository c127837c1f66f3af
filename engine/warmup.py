"""Load (or, after an install, compile) every kernel a run calls, ahead of the data.

Numba compiles a kernel on its first call and caches it on disk (``cache=True``, in the folder
``engine/__init__.py`` sets as ``NUMBA_CACHE_DIR``); later processes load it from there, which
still takes a few hundred milliseconds for the whole pipeline. The command line calls
:func:`warmup` while the telemetry is being read, so that time overlaps the reading, and
:func:`is_cached` to say when the first run after an install will compile.

Warming up runs the pipeline itself on a tiny built-in cohort, so every kernel is compiled or
loaded with exactly the argument types a real run passes.
"""
from __future__ import annotations

import datetime as dt
import functools

import polars as pl

from .detectors.warmup import _has_cache


@functools.cache
def _dispatchers():
    from . import detect, episodes, parquet_walk
    from .detectors import kernels_fused
    from .ingest import encode, index, kernels as ingest_kernels
    from .risk import features, trees, treeshap
    from .timeline import kernels as timeline_kernels

    # the detect stage runs every block in kernels_fused.fused_blocks; kernels_fused.fused
    # (engine.detectors.evaluate: backtests, notebooks) is not part of a run
    out = [kernels_fused.fused_blocks, episodes._episodes, detect._block_positions,
           encode.run_starts, encode._view_changes, encode._run_ids, index._piece_heads,
           trees._forest_raw, treeshap._shap_values, features._count_at_or_before,
           parquet_walk.walk]
    from numba.core.caching import NullCache

    # every cached kernel of these modules; a helper only other kernels call is compiled into
    # them and has no cache entry of its own (cache=False), so it is not listed
    for module in (ingest_kernels, timeline_kernels):
        out += [v for v in vars(module).values()
                if hasattr(v, "_cache") and not isinstance(v._cache, NullCache)]
    return out


def is_cached() -> bool:
    """True when every kernel of a run is compiled in this process or in the on-disk cache.

    Only a run's kernels count: the detectors' evaluation pass (``engine.detectors.warmup``:
    backtests, notebooks) is not called by a run, so a run never caches it and asking for it
    made every run announce a compilation."""
    return all(_has_cache(d) for d in _dispatchers())


_T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)


def _tiny() -> tuple[pl.DataFrame, pl.DataFrame]:
    hours = [_T0 + dt.timedelta(hours=h) for h in range(4)]
    raw = pl.DataFrame({"patient_id": ["w1"] * 8, "ts": hours * 2,
                        "metric": ["spo2"] * 4 + ["glucose"] * 4,
                        "value": [95.0, 96.0, 94.0, 95.0, 90.0, 60.0, 65.0, 120.0]})
    patients = pl.DataFrame({"patient_id": ["w1"], "programme": ["diabetes"],
                             "enrolled_at": [_T0]})
    return raw, patients


def warmup_ingest() -> None:
    """Load ingest's kernels (a run's first numba call also sets numba itself up): the command
    line does it while the telemetry file is being read."""
    from .ingest import ingest_frame
    from .ingest.index import SeriesIndex, flagged_heads
    from .parquet_checksums import warmup_walk

    warmup_walk()
    raw, _ = _tiny()
    now = _T0 + dt.timedelta(days=1)
    clean = ingest_frame(raw, now=now).clean
    # a frame cut at --as-of is indexed again (engine.ingest.index): by probing, or reading
    # every row where series are short
    SeriesIndex.of(clean)
    flagged_heads(clean["patient_id"], clean["metric"])
    ingest_frame(raw.sample(fraction=1.0, shuffle=True, seed=1), now=now)   # the sort path


def warmup(ruleset=None) -> None:
    """Call every kernel of a run once (compiling or loading it): a tiny cohort through ingest
    and, with ``ruleset``, through its packs (else through the bundled ones), and the risk
    model's tree kernel on a one-split tree (its argument types do not depend on the model) and
    its rule-state count."""
    from .pipeline import Engine
    from .risk import features, trees

    warmup_ingest()
    raw, patients = _tiny()
    engine = Engine(ruleset) if ruleset is not None else Engine.from_paths()
    engine.score(raw, patients, now=_T0 + dt.timedelta(days=1))
    trees.warmup()
    features.warmup()
