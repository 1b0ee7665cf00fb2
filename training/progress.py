"""The progress callback of the training steps: each step says one line of what it does."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def no_progress(_: str) -> None:
    """Progress that says nothing (the steps' default)."""
    return None
