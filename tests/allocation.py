"""Allocation peaks of a call, as tracemalloc sees them (numpy reports its buffers to it)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any


def allocation_peak(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """``call(*args, **kwargs)``'s result and the peak of the bytes allocated while it ran."""
    tracemalloc.start()
    try:
        result = call(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
