"""Stopping at once: while nothing has been written, a signal ends the process on the spot."""
from __future__ import annotations

import contextlib
import os
import signal
import threading


@contextlib.contextmanager
def stop_at_once(message: str):
    """Inside the block, Ctrl-C or SIGTERM ends the process at once (exit 130, ``message`` on
    stderr) instead of raising KeyboardInterrupt.

    For the blocks that load code and write nothing: the modules at start-up (``cli.run``) and
    the kernels compiling or loading (``veille score``). Numba's compiler is Python code
    driving LLVM: a KeyboardInterrupt raised inside it (in an llvmlite finaliser, say) is
    swallowed there and leaves LLVM half-updated, and the process then died of a segmentation
    fault instead of stopping cleanly. The kernel and model caches replace their files
    atomically, so ending at once leaves nothing half-written. This module imports nothing
    heavy, so that ``cli`` can use it before it imports anything else. Outside the main thread
    (where handlers cannot be set) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    text = (message + "\n").encode()

    def stop(signum, frame):
        try:
            os.write(2, text)
        finally:
            os._exit(130)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
