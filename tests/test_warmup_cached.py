"""engine.warmup.is_cached: whether ``veille score`` announces that it compiles the kernels."""
from __future__ import annotations

import subprocess
import sys


def test_after_a_warm_up_every_listed_kernel_is_loaded_or_cached():
    """One listed helper that only other kernels call never had a cache entry of its own, so
    every run said "compiling the kernels (first run after install…)"."""
    from engine import warmup
    from engine.detectors.warmup import _has_cache
    from engine.paths import bundled
    from engine.pipeline import Engine

    warmup.warmup_ingest()
    warmup.warmup(Engine.from_paths([bundled("rules")], model=None).ruleset)
    missing = [d.py_func.__qualname__ for d in warmup._dispatchers() if not _has_cache(d)]
    assert missing == []
    assert warmup.is_cached()


def test_a_second_run_does_not_say_it_compiles(tmp_path):
    args = [sys.executable, "-m", "cli", "score", "--model", "none", "--out",
            str(tmp_path / "q.parquet")]
    subprocess.run(args, capture_output=True, check=True)
    second = subprocess.run(args, capture_output=True, text=True, check=True)
    assert "compiling the kernels" not in second.stderr, second.stderr
