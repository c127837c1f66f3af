"""engine.memory: the pool that lets chunk after chunk reuse the same memory."""
from __future__ import annotations

import gc
import os
import subprocess
import sys

import numpy as np
import polars as pl

from engine.memory import MIN_POOLED_BYTES, Pool


def test_pool_reuses_memory_only_once_every_user_has_gone():
    pool = Pool()
    n = MIN_POOLED_BYTES // 8
    a = pool.empty((2, n), np.float64)
    a[:] = 1.0
    row = a[1]
    col = pl.Series("c", row)                  # polars may keep a view of the memory
    del a, row
    gc.collect()
    assert pool.kept_bytes == 0               # the Series still reads it
    b = pool.empty((2, n), np.float64)        # so this is new memory
    b[:] = 2.0
    assert col.sum() == n
    addr = b.__array_interface__["data"][0]
    del b
    gc.collect()
    assert pool.kept_bytes == 2 * n * 8       # b is gone: its memory is kept ...
    c = pool.empty((2, n), np.float64)
    assert c.__array_interface__["data"][0] == addr     # ... and backs the next block
    assert pool.empty((2, n), np.float64).__array_interface__["data"][0] != addr
    small = pool.empty((4,), np.float64)      # small blocks are ordinary numpy arrays
    assert small.base is None
    del col, c
    gc.collect()
    pool.clear()
    assert pool.kept_bytes == 0


def test_pool_does_not_back_a_much_smaller_block_with_a_large_one():
    pool = Pool()
    big = pool.empty((4 * MIN_POOLED_BYTES,), np.uint8)
    del big
    gc.collect()
    assert pool.kept_bytes == 4 * MIN_POOLED_BYTES
    small = pool.empty((MIN_POOLED_BYTES,), np.uint8)
    assert pool.kept_bytes == 4 * MIN_POOLED_BYTES    # not taken: it would pin 4x its size
    del small

def test_pool_takes_the_smallest_block_that_fits():
    pool = Pool()
    blocks = [pool.empty((k * MIN_POOLED_BYTES,), np.uint8) for k in (3, 1, 2)]
    addrs = [b.__array_interface__["data"][0] for b in blocks]
    del blocks
    gc.collect()
    assert pool.kept_bytes == 6 * MIN_POOLED_BYTES
    got = pool.empty((MIN_POOLED_BYTES + 1,), np.uint8)        # the 2x block, not the 3x one
    assert got.__array_interface__["data"][0] == addrs[2]
    whole = pool.empty((3 * MIN_POOLED_BYTES,), np.uint8)
    assert whole.__array_interface__["data"][0] == addrs[0]
    assert pool.kept_bytes == MIN_POOLED_BYTES


def test_pool_keeps_at_most_keep_bytes():
    pool = Pool(keep_bytes=2 * MIN_POOLED_BYTES)
    blocks = [pool.empty((MIN_POOLED_BYTES,), np.uint8) for _ in range(3)]
    del blocks
    gc.collect()
    assert pool.kept_bytes == 2 * MIN_POOLED_BYTES


def test_a_buffer_series_over_a_pool_block_copies_it_and_frees_it():
    """engine.arrow_buffers never hands polars memory Python owns: a Series built over a pool
    block reads a copy in Arrow memory, so the block returns to the pool once its array is
    gone."""
    import pyarrow as pa

    from engine import arrow_buffers
    pool = Pool()
    n = MIN_POOLED_BYTES // 8
    a = pool.empty(n, np.float64)
    a[:] = 1.0
    col = arrow_buffers.series("c", pa.float64(), a)
    del a
    gc.collect()
    assert pool.kept_bytes == n * 8           # the block is back for reuse
    b = pool.empty(n, np.float64)             # the same memory, overwritten
    b[:] = 2.0
    assert col.sum() == n                     # the Series reads its own copy
    del b, col
    pool.clear()


_REUSE = """
import resource, sys, time
if sys.argv[1] == "engine-first":
    import engine  # noqa: F401
import polars as pl

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

first = faults()
s = pl.int_range(20_000_000, eager=True).cast(pl.Float64) * 2.0     # 160 MB
first = faults() - first
del s
time.sleep(2.0)             # polars' own setting hands freed memory back within about a second
again = faults()
s = pl.int_range(20_000_000, eager=True).cast(pl.Float64) * 2.0
print(first, faults() - again)
"""


def _clean_env() -> dict:
    """This process's environment without the settings ``import engine`` made in it."""
    return {k: v for k, v in os.environ.items()
            if k not in ("_RJEM_MALLOC_CONF", "MIMALLOC_PURGE_DELAY")}


def _reuse_faults(order: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _REUSE, order], env=_clean_env(),
                         capture_output=True, text=True, check=True)
    first, again = map(int, out.stdout.split())
    return first, again


def test_a_process_that_imports_engine_first_reuses_the_memory_polars_freed():
    # importing engine sets polars' allocator to keep freed memory for a minute: the second
    # 160 MB column reuses the first one's pages (no page fault), where polars' default has
    # handed them back and every page faults again
    first, again = _reuse_faults("engine-first")
    assert first > 0
    assert again < first // 20
    first, again = _reuse_faults("polars-only")
    assert again > first // 2


def test_engine_sets_the_allocator_settings_before_polars_and_pyarrow_load():
    code = ("import sys, os; import engine; "
            "print('polars' in sys.modules, 'pyarrow' in sys.modules, "
            "os.environ['_RJEM_MALLOC_CONF'], os.environ['MIMALLOC_PURGE_DELAY'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=_clean_env())
    assert out.stdout.split() == ["False", "False", "dirty_decay_ms:60000,muzzy_decay_ms:60000",
                                  "60000"]
