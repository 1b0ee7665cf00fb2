"""Large request bodies against a real `leadscore serve`: the worker's memory and the answers.

Starts the service on 127.0.0.1 with a small exported champion (one worker process) and sends
``POST /score`` bodies of ``--mb`` MB over raw sockets, one case after the other:

- ``json``: a body with a ``Content-Length``: leads of 10,000 events each (every field within its
  own limit; together far over the 500,000 events of a request);
- ``chunked``: the same bytes with ``Transfer-Encoding: chunked`` (no length up front);
- ``lying``: a ``Content-Length`` of 4 GB, then ``--mb`` MB sent and the connection held open;
- ``expect``: a ``Content-Length`` of 4 GB with ``Expect: 100-continue``, no body sent;
- ``realistic``: the largest realistic request (``--mb`` not used): 10,000 leads (LEADSCORE_MAX_BATCH at
  its maximum: the server is started with it) of 50 events each (the 500,000 events a request may hold),
  every event with a microsecond timestamp and offset, type, channel, campaign and value (~150 B).

For each case it prints the answer's status and first bytes, the seconds until it came, the worker's
resident memory before and at its peak (sampled every 20 ms from /proc) and its CPU seconds, then
whether a small request right after still gets its 200. ``LEADSCORE_*`` variables in the environment
(``LEADSCORE_MAX_BODY_MB``) reach the server.

Usage: .venv/bin/python benchmarks/request_body.py [--mb 200] [--cases json,chunked,lying,expect,realistic]
       [--wait 45]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from benchmarks.serving import process_tree  # noqa: E402
from tests.serving_fixtures import AS_OF, export_champion, start_server, train_small_champion  # noqa: E402

PIECE = 1 << 20  # bytes per send
SMALL = json.dumps({"leads": [{"lead_id": 1, "created_at": "2026-01-05T10:00:00"}],
                    "as_of": AS_OF.isoformat()}).encode()


def worker_pid(server_pid: int) -> int:
    """The BentoML worker process of the service (the one that reads the requests)."""
    for pid in process_tree(server_pid):
        try:
            if b"_bentoml_impl.worker.service" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise RuntimeError(f"no BentoML worker process under {server_pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """The highest resident memory of a process while the block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._done = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def events_body(megabytes: float) -> bytes:
    """``{"leads": [...]}`` of about ``megabytes`` MB: leads of 10,000 events each (each lead valid alone)."""
    events = ",".join(f'{{"occurred_at":"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00",'
                      f'"event_type":"{("page_view", "email_open", "pricing_page_view")[i % 3]}"}}'
                      for i in range(10_000))
    lead = '{"lead_id":%d,"created_at":"2024-12-01T00:00:00","events":[' + events + "]}"
    n_leads = max(1, int(megabytes * 1e6 / len(lead)))
    return ('{"leads":[' + ",".join(lead % i for i in range(n_leads)) + '],"as_of":"2026-03-01T00:00:00"}').encode()


def realistic_body() -> bytes:
    """10,000 leads of the synthetic CRM's attributes, 50 full events each (~80 MB)."""
    kinds = ("page_view", "email_open", "email_click", "pricing_page_view", "webinar_attended")
    leads = []
    for i in range(10_000):
        events = [{"occurred_at": f"2025-{1 + j % 12:02d}-{1 + (i + j) % 28:02d}T{j % 24:02d}:{i % 60:02d}:00.{i:06d}"
                                  "+00:00", "event_type": kinds[j % len(kinds)], "channel": "email",
                   "campaign": f"2025Q{1 + j % 4} nurture", "value": float(j % 7)} for j in range(50)]
        leads.append({"lead_id": f"00Q{i:012d}", "created_at": "2024-12-01T09:30:00.000000+00:00",
                      "attributes": {"industry": "software", "country": "US", "job_title": "Senior Marketing Manager",
                                     "seniority": "manager", "lead_source": "referral", "email_domain": "business",
                                     "account_type": "prospect", "employees": 250, "annual_revenue": 401333000.0},
                      "events": events})
    return json.dumps({"leads": leads, "as_of": "2026-03-01T00:00:00+00:00", "top_k": 3}).encode()


def read_answer(sock: socket.socket, wait: float) -> tuple[str, bytes]:
    """The status line and the first bytes of the body of the answer on ``sock`` ("none" if none came)."""
    sock.settimeout(wait)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 300:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    except TimeoutError:
        pass
    except OSError as exc:
        return f"none ({type(exc).__name__})", b""
    if not data:
        return "none (connection closed or timed out)", b""
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode("latin-1"), body[:300]


def send_case(url: str, case: str, body: bytes, wait: float) -> tuple[str, bytes, float]:
    """Send one case; returns the status line, the body's first bytes and the seconds until the answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = "POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if case in ("json", "realistic"):
        head += f"Content-Length: {len(body)}\r\n"
    elif case == "chunked":
        head += "Transfer-Encoding: chunked\r\n"
    elif case in ("lying", "expect"):
        head += f"Content-Length: {4 << 30}\r\n" + ("Expect: 100-continue\r\n" if case == "expect" else "")
    started = time.perf_counter()
    sent = 0
    try:
        sock.sendall((head + "\r\n").encode())
        if case != "expect":
            for start in range(0, len(body), PIECE):
                piece = body[start:start + PIECE]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if case == "chunked" else piece)
                sent += len(piece)
            if case == "chunked":
                sock.sendall(b"0\r\n\r\n")
    except OSError as exc:  # the server answered and closed before the body was all sent
        print(f"  sending stopped after {sent / 1e6:.1f} MB: {type(exc).__name__}")
    status, first = read_answer(sock, wait)
    seconds = time.perf_counter() - started
    sock.close()
    return status, first, seconds


def small_request(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(SMALL), SMALL))
        return read_answer(sock, 30)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=200, help="body size in MB (json, chunked; sent by lying)")
    parser.add_argument("--cases", default="json,chunked,lying,expect", help="comma-separated cases")
    parser.add_argument("--wait", type=float, default=45, help="seconds to wait for an answer")
    args = parser.parse_args()
    limit = os.environ.get("LEADSCORE_MAX_BODY_MB")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"LEADSCORE_MAX_BODY_MB={limit if limit is not None else '(unset)'}")
    cases = args.cases.split(",")
    body = events_body(args.mb) if set(cases) - {"realistic"} else b""
    if body:
        print(f"body: {len(body) / 1e6:.1f} MB ({body.count(b'lead_id')} leads of 10,000 events)")
    realistic = realistic_body() if "realistic" in cases else b""
    if realistic:
        print(f"realistic body: {len(realistic) / 1e6:.1f} MB ({len(realistic) / (1 << 20):.1f} MiB), 10,000 leads")
    champion = train_small_champion(n_leads=800, seed=4)
    with tempfile.TemporaryDirectory() as tmp:
        export_champion(champion.model, Path(tmp) / "models", version="1")
        env = {"LEADSCORE_MODEL_DIR": str(Path(tmp) / "models"), "LEADSCORE_RELOAD_SECONDS": "0",
               "LEADSCORE_MAX_BATCH": "10000"}
        server = start_server(env, Path(tmp) / "bento.log")
        try:
            worker = worker_pid(server.process.pid)
            print(f"{'case':8s} {'answer':34s} {'s':>6s} {'RSS before':>11s} {'RSS peak':>9s} {'CPU s':>6s}  next")
            for case in cases:
                before, cpu = rss_mb(worker), cpu_seconds(worker)
                with PeakRss(worker) as peak:
                    status, first, seconds = send_case(server.url, case, realistic if case == "realistic" else body,
                                                       args.wait)
                    time.sleep(0.5)  # a parse left running after the answer still counts
                alive = server.process.poll() is None
                after = small_request(server.url) if alive else "server gone"
                print(f"{case:8s} {status[:34]:34s} {seconds:6.1f} {before:8.0f} MB {peak.peak:6.0f} MB "
                      f"{cpu_seconds(worker) - cpu:6.1f}  {after}")
                print(f"  answer: {first[:200]!r}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
