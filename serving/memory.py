"""Giving back to the system the memory a large request freed.

A large ``POST /score`` (10,000 leads of 50 events: 77 MB of JSON) is parsed and scored on worker threads, and
glibc keeps what those threads freed in their malloc arenas for later allocations: after such requests a worker
stayed at 600-650 MB where it started at 283 MB, with under 1 MB of those arenas in use (``malloc_stats``).
``malloc_trim(0)`` returns the free pages of every arena (measured in README "Serving"). It runs on a thread of
its own after a large request's answer went out, never on the event loop, one trim at a time. Where the C
library has no ``malloc_trim`` (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("leadscore.serving")
TRIM_AFTER_BODY_BYTES = 1 << 20  # a request body of at least this size is followed by a trim (~14 MB per MB of JSON)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None when the C library has none."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function


class MemoryTrimmer:
    """``request()`` starts a trim on a daemon thread unless one is running (requests meanwhile are folded into
    it: the one running frees what they freed before it reached their arena, the next large request's trim the
    rest). ``trims`` counts the trims started."""

    def __init__(self, trim: Callable[[int], int] | None = None) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def request(self) -> bool:
        """Start a trim (True), or not: none available, or one running (False)."""
        if self._trim is None or not self._busy.acquire(blocking=False):
            return False
        self.trims += 1
        self._thread = threading.Thread(target=self._run, daemon=True, name="malloc-trim")
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for the last trim started (tests, benchmarks)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._trim(0)
        except Exception as exc:  # never let a trim take the worker down
            logger.warning("malloc_trim failed: %s", exc)
        finally:
            self._busy.release()


__all__ = ["TRIM_AFTER_BODY_BYTES", "MemoryTrimmer"]
