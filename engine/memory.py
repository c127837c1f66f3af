"""Reuse the memory of released arrays for the next ones.

Why: the pipeline works chunk after chunk, and every chunk needs the same large scratch arrays
(detector outputs, timelines, their validity bitmaps). Numpy hands arrays above 32 MB back to the
system when they are freed (``munmap``), so each new one starts as fresh pages, and the first
write to each fresh page is a page fault in which the kernel zeroes it. On the 2-core benchmark
machine (a VM whose host reclaims freed memory) that cost 1.3-1.6 ms per MB — more than the
kernels that fill the arrays. :data:`POOL` keeps the memory of released arrays and backs the next
requests with it (the smallest kept block large enough), so a run touches fresh memory only up to
its largest chunk's working set.

Safety: an array is handed out as a view ``flat`` of a kept block whose base is a
``memoryview`` (not an ndarray), so every view numpy derives from it (rows, slices) keeps
``flat`` itself alive; the block returns to the pool only when ``flat`` is garbage collected
(``weakref.finalize``), i.e. when nothing can read it any more. Pool blocks are scratch: arrays
that become polars columns are allocated in Arrow memory (:mod:`engine.arrow_buffers`), and a
column built over a pool block reads a copy.
"""
from __future__ import annotations

import bisect
import math
import threading
import weakref

import numpy as np

#: arrays below this size are left to the ordinary allocator (which already reuses them)
MIN_POOLED_BYTES = 4 << 20
#: a kept block backs a request only when it is at most this many times its size (so a small
#: array does not pin a block a later large request needs)
MAX_SLACK = 2


class Pool:
    """Blocks of memory released by the arrays it handed out, for the next :meth:`empty`."""

    def __init__(self, keep_bytes: int | None = None) -> None:
        self._lock = threading.Lock()
        self._sizes: list[int] = []
        self._free: list[np.ndarray] = []
        #: most bytes kept while unused (None: no limit); beyond it the largest blocks go back
        self.keep_bytes = keep_bytes

    def empty(self, shape, dtype) -> np.ndarray:
        """An uninitialised C-contiguous array, like ``np.empty(shape, dtype)``."""
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in (shape if isinstance(shape, tuple) else (shape,)))
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_POOLED_BYTES:
            return np.empty(shape, dtype)
        raw = None
        with self._lock:
            i = bisect.bisect_left(self._sizes, nbytes)
            if i < len(self._sizes) and self._sizes[i] <= MAX_SLACK * nbytes:
                raw = self._free.pop(i)
                self._sizes.pop(i)
        if raw is None:
            raw = np.empty(nbytes, dtype=np.uint8)   # numpy asks for huge pages at this size
        flat = np.frombuffer(memoryview(raw)[:nbytes], dtype=dtype)
        weakref.finalize(flat, self._release, raw)
        return flat.reshape(shape)

    def zeros(self, shape, dtype) -> np.ndarray:
        a = self.empty(shape, dtype)
        a[...] = 0
        return a

    def _release(self, raw: np.ndarray) -> None:
        with self._lock:
            i = bisect.bisect_left(self._sizes, raw.size)
            self._sizes.insert(i, raw.size)
            self._free.insert(i, raw)
            if self.keep_bytes is not None:
                while self._sizes and sum(self._sizes) > self.keep_bytes:
                    self._sizes.pop()
                    self._free.pop()

    def clear(self) -> None:
        """Hand every kept block back to the system."""
        with self._lock:
            self._sizes.clear()
            self._free.clear()

    @property
    def kept_bytes(self) -> int:
        """Bytes kept for reuse (0 when none)."""
        with self._lock:
            return int(sum(self._sizes))


#: the pool of the pipeline's large scratch arrays
POOL = Pool()
