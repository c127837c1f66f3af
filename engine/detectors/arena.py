"""Reuse the memory of a released detector output for the next one.

Why: the fused pass writes its outputs (8 bytes per row per spec, 640 MB for eight specs over
1e7 rows) into fresh memory, and the first write to each fresh page is a page fault in which the
kernel zeroes the page. On the 2-core benchmark machine that cost 50-100 ms per 640 MB, and up to
a second when the hypervisor had taken the freed memory back, against ~350 ms for the detectors
themselves. Allocators such as jemalloc (polars') keep freed pages for reuse; numpy's large
arrays are ``mmap``-ed and handed back to the system when freed. :class:`Arena` keeps the memory
of the last output block whose every user has gone, and backs the next block of a similar size
with it.

Safety: a block is handed out as an array ``flat`` whose base is a ``memoryview`` (not an
ndarray), so every view numpy derives from it (rows, slices) keeps ``flat`` itself alive, and so
does every polars column built on those views; the memory returns to the arena only when ``flat``
is garbage collected (``weakref.finalize``), i.e. when nothing can read it any more.
"""
from __future__ import annotations

import math
import threading
import weakref

import numpy as np

#: blocks below this size are left to the ordinary allocator (which already reuses them)
MIN_POOLED_BYTES = 16 << 20
#: a kept block backs a request of at least this fraction of its size (so a small evaluation
#: does not pin a block many times larger than it needs)
MIN_FILL = 0.5


class Arena:
    """Keeps at most one released block of memory for the next :meth:`empty` call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: np.ndarray | None = None

    def empty(self, shape, dtype) -> np.ndarray:
        """An uninitialised C-contiguous array, like ``np.empty(shape, dtype)``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_POOLED_BYTES:
            return np.empty(shape, dtype)
        raw = None
        with self._lock:
            if self._free is not None and nbytes <= self._free.size <= nbytes / MIN_FILL:
                raw, self._free = self._free, None
        if raw is None:
            raw = np.empty(nbytes, dtype=np.uint8)   # numpy asks for huge pages at this size
        flat = np.frombuffer(memoryview(raw)[:nbytes], dtype=dtype)
        weakref.finalize(flat, self._release, raw)
        return flat.reshape(shape)

    def _release(self, raw: np.ndarray) -> None:
        with self._lock:
            self._free = raw          # the newest released block; an older one is freed

    def clear(self) -> None:
        """Hand the kept block (if any) back to the system."""
        with self._lock:
            self._free = None

    @property
    def kept_bytes(self) -> int:
        """Size of the block kept for reuse (0 when none)."""
        with self._lock:
            return 0 if self._free is None else int(self._free.size)


#: the arena of the fused detector outputs
OUTPUTS = Arena()
