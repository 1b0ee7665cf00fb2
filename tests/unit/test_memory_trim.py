"""After a large request the endpoint worker gives back what its threads freed: glibc keeps freed memory in the
malloc arena of the thread that used it (a worker stayed at 600-650 MB after the largest request, from 283 MB,
with under 1 MB of those arenas in use), and ``malloc_trim(0)`` returns it (serving.memory)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from serving.memory import MemoryTrimmer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim, /proc")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fragment_a_thread_arena(megabytes: int = 200) -> list[bytes]:
    """On a thread of its own (its own malloc arena): ``megabytes`` of 4 KiB buffers (over pymalloc's 512 bytes:
    glibc's), all freed but one in 64, which keeps the arena's heaps from shrinking. Returns the survivors."""
    kept: list[bytes] = []

    def work() -> None:
        buffers = [bytes(4096) for _ in range(megabytes * 256)]
        kept.extend(buffers[::64])
        buffers.clear()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return kept


def test_a_trim_gives_back_what_a_thread_freed() -> None:
    trimmer = MemoryTrimmer()
    assert trimmer.available  # glibc
    start = rss_mb()
    kept = fragment_a_thread_arena(200)
    held = rss_mb()
    assert held - start > 100, (start, held)  # the freed buffers' pages stay with the process
    assert trimmer.request()
    trimmer.join(60)
    after = rss_mb()
    assert after - start < 0.25 * (held - start), (start, held, after)
    assert len(kept) == 200 * 256 // 64


def test_one_trim_at_a_time_and_requests_meanwhile_are_folded_into_it() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_trim(pad: int) -> int:
        calls.append(pad)
        started.set()
        release.wait(30)
        return 1

    trimmer = MemoryTrimmer(slow_trim)
    assert trimmer.request() and started.wait(30)
    assert not trimmer.request()  # one running: folded into it
    release.set()
    trimmer.join(30)
    assert trimmer.request()
    trimmer.join(30)
    assert calls == [0, 0] and trimmer.trims == 2
