"""The endpoint worker's memory after the largest requests the limits allow, and small requests' latency.

Starts a real `leadscore serve` on 127.0.0.1 (one worker, a small exported champion, LEADSCORE_MAX_BATCH=10000)
and, in bounded loops: ``--small`` small requests (one lead) timed one after the other, then ``--large``
realistic requests (10,000 leads of 50 full events, 77 MB: ``benchmarks/request_body.py``'s largest), the
worker's resident memory 2 s after each, then the small requests again. With ``--gdb`` (gdb installed) it then
asks glibc in the worker for its arena statistics (``malloc_stats``, into the server log) and calls
``malloc_trim(0)``: memory that comes back was freed memory glibc kept, memory that stays is still referenced.
Variables given as ``--env NAME=VALUE`` (``MALLOC_ARENA_MAX=2``) reach the server.

Usage: .venv/bin/python benchmarks/worker_memory.py [--large 3] [--small 200] [--env NAME=VALUE ...] [--gdb]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from benchmarks.request_body import (  # noqa: E402
    cpu_seconds,
    realistic_body,
    rss_mb,
    send_case,
    small_request,
    worker_pid,
)
from tests.serving_fixtures import export_champion, start_server, train_small_champion  # noqa: E402


def small_latencies(url: str, n: int) -> list[float]:
    """Seconds of ``n`` one-lead requests, one after the other (each on its own connection)."""
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        status = small_request(url)
        seconds.append(time.perf_counter() - started)
        if " 200 " not in status:
            raise RuntimeError(f"small request answered {status}")
    return seconds


def latency_text(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (f"{len(seconds)} small requests: median {statistics.median(ordered) * 1e3:.1f} ms, "
            f"p99 {p99 * 1e3:.1f} ms, max {ordered[-1] * 1e3:.1f} ms")


def gdb_call(pid: int, expression: str) -> str:
    """``call expression`` in the process through gdb (batch mode): gdb's value line."""
    done = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", f"call {expression}"],
                          capture_output=True, text=True, timeout=120)
    values = re.findall(r"^\$\d+ = .*$", done.stdout, re.M)
    return values[-1] if values else "(no value)"


def arena_lines(log: Path) -> list[str]:
    """The last ``malloc_stats`` report in the server log, one line per arena and the total."""
    text = log.read_text(errors="replace")
    start = text.rfind("Arena 0:")
    if start < 0:
        return []
    lines, report = [], text[start:].splitlines()
    for i, line in enumerate(report):
        if line.startswith(("Arena", "Total")) and i + 2 < len(report):
            system = int(report[i + 1].split("=")[1]) / 1e6
            used = int(report[i + 2].split("=")[1]) / 1e6
            lines.append(f"  {line.rstrip(':'):20s} {system:8.1f} MB from the system, {used:8.1f} MB in use")
        if line.startswith("Total"):
            break
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", type=int, default=3, help="realistic large requests, one after the other")
    parser.add_argument("--small", type=int, default=200, help="small requests timed before and after")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server's environment")
    parser.add_argument("--gdb", action="store_true", help="malloc_stats and malloc_trim(0) in the worker at the end")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for a large request's answer")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; server environment {extra or '-'}")
    body = realistic_body()
    champion = train_small_champion(n_leads=800, seed=4)
    with tempfile.TemporaryDirectory() as tmp:
        export_champion(champion.model, Path(tmp) / "models", version="1")
        env = {"LEADSCORE_MODEL_DIR": str(Path(tmp) / "models"), "LEADSCORE_RELOAD_SECONDS": "0",
               "LEADSCORE_MAX_BATCH": "10000", **extra}
        log = Path(tmp) / "bento.log"
        server = start_server(env, log)
        try:
            worker = worker_pid(server.process.pid)
            small_latencies(server.url, 20)  # warm up
            print(f"worker at start: {rss_mb(worker):.0f} MB; before the large requests: "
                  f"{latency_text(small_latencies(server.url, args.small))}")
            for i in range(1, args.large + 1):
                cpu = cpu_seconds(worker)
                status, _, seconds = send_case(server.url, "realistic", body, args.wait)
                time.sleep(2.0)
                print(f"large request {i}: {status[:20]} in {seconds:.1f} s, {cpu_seconds(worker) - cpu:.1f} s of "
                      f"worker CPU; worker at {rss_mb(worker):.0f} MB 2 s after", flush=True)
            print(f"after the large requests: {latency_text(small_latencies(server.url, args.small))}; "
                  f"worker at {rss_mb(worker):.0f} MB")
            if args.gdb:
                print(f"malloc_stats: {gdb_call(worker, '(void) malloc_stats()')}")
                time.sleep(1.0)
                print("\n".join(arena_lines(log)))
                print(f"malloc_trim(0): {gdb_call(worker, '(int) malloc_trim(0)')}; worker at {rss_mb(worker):.0f} MB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
