"""Serving latency/throughput: this BentoML service vs `mlflow models serve` on the same champion.

Trains a small champion on the synthetic CRM, exports it, starts both servers on 127.0.0.1 (one
worker process each unless ``--workers``), and prints single-lead p50/p95/p99 latency and
throughput at concurrency 1, 8 and 32, with and without reasons, the ratios against MLflow, and the
servers' CPU time per request (summed over the server's process tree: less sensitive to other load
on the machine than wall-clock figures). Bounded request counts. Also prints batch scoring speed of
the core and the in-process cost of one lead. By default the service serves the champion pair that
``make demo`` deploys (sales readiness + time to close: every answer carries ``p_close_30d/60d/90d``
and ``median_days``); ``--no-time-to-close`` serves the sales-readiness model alone.

The load generator runs on the same machine (one keep-alive ``http.client`` connection per client
thread, the cheapest Python client) and competes with the servers for the cores: the figures are a
lower bound of what a dedicated host gives. The machine's load average is printed with them.

``--large-request`` also times ``GET /livez`` while the service takes large requests (16 leads of
10,000 events each, about 11 MB of JSON): how long a health check waits behind one.

Usage: .venv/bin/python benchmarks/serving.py [--requests 400] [--leads 3000] [--workers 1] [--no-time-to-close]
       [--large-request]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from features.build import features_from_payloads, scoring_matrix  # noqa: E402
from serving.core import ModelInfo, ScoringCore  # noqa: E402
from serving.schemas import LeadIn  # noqa: E402
from tests.serving_fixtures import (  # noqa: E402
    AS_OF,
    export_champion,
    export_time_to_close,
    free_port,
    payloads_from_crm,
    start_server,
    train_small_champion,
    train_small_time_to_close,
)
from training.pyfunc import to_signature_frame  # noqa: E402

HEADERS = {"content-type": "application/json"}


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += process_tree(int(child))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes (those still alive)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Poster:
    """POSTs one body to one URL over a keep-alive connection per client thread."""

    def __init__(self, url: str, path: str, body: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port, self.path, self.body = int(port), path, body.encode()
        self.local = threading.local()

    def __call__(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request("POST", self.path, self.body, HEADERS)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.path}: HTTP {response.status}: {data[:300]!r}")


def measure(send: Callable[[], None], n_requests: int, concurrency: int, server_pid: int) -> dict[str, float]:
    """Latency percentiles (ms), requests/s and server CPU ms per request of n_requests calls."""
    latencies: list[float] = []

    def one(_: int) -> None:
        t = time.perf_counter()
        send()
        latencies.append(time.perf_counter() - t)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: send(), range(min(20 * concurrency, n_requests))))  # warm every connection
        pids = process_tree(server_pid)
        cpu0 = cpu_seconds(pids)
        started = time.perf_counter()
        list(pool.map(one, range(n_requests)))
        wall = time.perf_counter() - started
        cpu1 = cpu_seconds(pids)
    ms = np.array(latencies) * 1000
    return {"p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99),
            "rps": n_requests / wall, "cpu_ms": 1000 * (cpu1 - cpu0) / n_requests}


def large_body(lead: dict, n_leads: int = 16, n_events: int = 10_000) -> bytes:
    """A request of ``n_leads`` copies of ``lead`` (distinct ids) with ``n_events`` events each, before AS_OF."""
    start = AS_OF - np.timedelta64(300, "D")
    stamps = [(start + np.timedelta64(i * 25, "m")).isoformat() for i in range(n_events)]
    kinds = ["page_view", "email_open", "email_click", "pricing_page_view", "demo_request"]
    events = [{"occurred_at": t, "event_type": kinds[i % len(kinds)]} for i, t in enumerate(stamps)]
    leads = [{**lead, "lead_id": 10_000 + i, "created_at": (start - np.timedelta64(1, "D")).isoformat(),
              "events": events} for i in range(n_leads)]
    return json.dumps({"leads": leads, "as_of": AS_OF.isoformat(), "top_k": 3}).encode()


def livez_during_large_requests(url: str, body: bytes, repeats: int = 5, period: float = 0.002) -> None:
    """``GET /livez`` every ``period`` s over one keep-alive connection while ``repeats`` large requests are
    scored one after the other; prints the large requests' time and the health checks' latencies."""
    host, port = url.removeprefix("http://").split(":")
    probe = http.client.HTTPConnection(host, int(port), timeout=60)
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            t = time.perf_counter()
            probe.request("GET", "/livez")
            response = probe.getresponse()
            response.read()
            latencies.append(time.perf_counter() - t)
            time.sleep(period)

    big = http.client.HTTPConnection(host, int(port), timeout=120)
    walls = []
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            big.request("POST", "/score", body, HEADERS)
            response = big.getresponse()
            data = response.read()
            walls.append(time.perf_counter() - t)
            if response.status != 200:
                raise RuntimeError(f"/score: HTTP {response.status}: {data[:300]!r}")
    finally:
        done.set()
        poller.join()
        probe.close()
        big.close()
    ms = np.array(latencies) * 1000
    print(f"\nlarge request ({len(body) / 1e6:.1f} MB): {repeats} x, each {min(walls):.2f} to {max(walls):.2f} s; "
          f"GET /livez meanwhile ({len(ms)} checks): p50 {np.percentile(ms, 50):.1f} ms, p99 "
          f"{np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms")


def mlflow_pyfunc_folder(model: Any, features: Any, folder: Path) -> Path:
    """``model`` as the pyfunc ``mlflow models serve`` takes: logged to an MLflow store in ``folder``, with its
    artifacts there too (MLflow's default experiment keeps them in ``./mlruns`` of the working folder), and
    downloaded to ``folder/pyfunc``."""
    import mlflow

    from training.pyfunc import log_pyfunc_model
    from training.tracking import ensure_experiment, quiet_mlflow_noise

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = ensure_experiment(mlflow.MlflowClient(uri), "serving-benchmark", (folder / "artifacts").as_uri())
    with quiet_mlflow_noise(), mlflow.start_run(experiment_id=experiment):
        info = log_pyfunc_model(model, features.head(50))
    return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(folder / "pyfunc")))


def start_mlflow(model_uri: str, log: Path, workers: int, wait: float = 120) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(HERE.parent),
                                 "PATH": f"{mlflow_cli.parent}:{os.environ.get('PATH', '')}"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server not ready")


def in_process_figures(champion, core: ScoringCore, lead: dict) -> None:
    """Batch speed of the core and the cost of one lead without HTTP."""
    ids, matrix = scoring_matrix(champion.crm, core.spec, AS_OF, eligible_only=False)
    reps = max(1, 20000 // len(ids))
    big, big_ids = np.tile(matrix, (reps, 1)), np.tile(ids, reps)
    for k in (3, 0):
        t = time.perf_counter()
        core.score_matrix(big_ids, big, k)
        print(f"core batch: {len(big)} leads top_k={k}: {len(big) / (time.perf_counter() - t):,.0f} leads/s")
    at = AS_OF.to_pydatetime()
    payload = LeadIn.model_validate(lead).payload()  # what the endpoint hands to the feature code
    row = features_from_payloads([payload], core.spec, at)
    for label, fn in (
        ("features of one lead (features_from_payloads)", lambda: features_from_payloads([payload], core.spec, at)),
        ("score + 3 reasons of one lead (score_matrix)", lambda: core.score_matrix([1], row, 3)),
        ("score of one lead, no reasons", lambda: core.score_matrix([1], row, 0)),
    ):
        best = min(_timed(fn, 200) for _ in range(5))
        print(f"{label}: {best * 1000:.3f} ms (best of 5 x 200, CPU time)")


def _timed(fn: Callable[[], object], n: int) -> float:
    t = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="measured requests per row")
    parser.add_argument("--leads", type=int, default=3000, help="synthetic CRM size of the champion")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of BOTH servers")
    parser.add_argument("--time-to-close", action=argparse.BooleanOptionalAction, default=True,
                        help="serve the time-to-close champion beside (default: yes)")
    parser.add_argument("--large-request", action="store_true",
                        help="also time GET /livez while large requests (16 leads x 10,000 events) are scored")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    champion = train_small_champion(n_leads=args.leads, seed=1, max_rounds=400)
    model = champion.model
    dump = model.booster_.dump_model()["tree_info"]
    leaves = max(t["num_leaves"] for t in dump)
    print(f"champion: {model.booster_.num_trees()} trees (<= {leaves} leaves), {len(model.feature_columns_)} features")
    closing = train_small_time_to_close(n_leads=args.leads, seed=1) if args.time_to_close else None
    if closing is not None:
        print(f"time-to-close champion: {closing.booster_.num_trees()} trees, {closing.config.max_periods} periods")
    core = ScoringCore(model, ModelInfo("lead-conversion", "1"),
                       closing=None if closing is None else (closing, ModelInfo("lead-time-to-close", "1")))
    lead = payloads_from_crm(champion.crm, [int(champion.crm.leads["lead_id"].iloc[0])], AS_OF)[0]
    print(f"the lead: {len(lead['attributes'])} attributes, {len(lead['events'])} events")
    in_process_figures(champion, core, lead)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        export_champion(model, tmp_path / "models", version="1")
        if closing is not None:
            export_time_to_close(closing, tmp_path / "models", version="1")
        env = {"LEADSCORE_MODEL_DIR": str(tmp_path / "models"), "LEADSCORE_RELOAD_SECONDS": "0"}
        if args.workers != 1:
            env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {"lead_scoring": {"workers": args.workers}}})
        bento = start_server(env, tmp_path / "bento.log")
        mlflow_proc = None
        try:
            from training.tracking import quiet_artifact_downloads

            quiet_artifact_downloads()  # the figures, not MLflow's routine lines and bars
            local = mlflow_pyfunc_folder(model, champion.features, tmp_path)
            mlflow_proc, mlflow_url = start_mlflow(str(local), tmp_path / "mlflow.log", args.workers)
            frame = to_signature_frame(champion.features.head(1), model)
            senders = {
                "bentoml+reasons": (Poster(bento.url, "/score", json.dumps(
                    {"leads": [lead], "as_of": AS_OF.isoformat(), "top_k": 3})), bento.process.pid),
                "bentoml": (Poster(bento.url, "/score", json.dumps(
                    {"leads": [lead], "as_of": AS_OF.isoformat(), "top_k": 0})), bento.process.pid),
                "mlflow (no reasons)": (Poster(mlflow_url, "/invocations", json.dumps(
                    {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})), mlflow_proc.pid),
            }
            for send, _ in senders.values():
                send()  # fails loudly on a non-200 answer
            rows = {}
            for concurrency in (1, 8, 32):
                for name, (send, pid) in senders.items():
                    rows[(name, concurrency)] = measure(send, args.requests, concurrency, pid)
            print(f"\nworkers per server: {args.workers}; {args.requests} requests per row; "
                  f"load average {os.getloadavg()[0]:.1f} at the end")
            print(f"{'server':22s} {'conc':>4s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'req/s':>8s} "
                  f"{'CPU ms/req':>10s}")
            for (name, conc), r in rows.items():
                print(f"{name:22s} {conc:4d} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f} "
                      f"{r['cpu_ms']:10.2f}")
            for conc in (1, 8, 32):
                base = rows[("mlflow (no reasons)", conc)]
                print(f"concurrency {conc:2d}: throughput bentoml+reasons/mlflow "
                      f"{rows[('bentoml+reasons', conc)]['rps'] / base['rps']:.1f}x, bentoml/mlflow "
                      f"{rows[('bentoml', conc)]['rps'] / base['rps']:.1f}x; server CPU per request mlflow/"
                      f"bentoml+reasons {base['cpu_ms'] / rows[('bentoml+reasons', conc)]['cpu_ms']:.1f}x")
            one = rows[("bentoml+reasons", 1)]
            print(f"target p99 <= 10 ms for one lead with reasons: {one['p99']:.2f} ms "
                  f"({'met' if one['p99'] <= 10 else 'NOT met'}); target throughput >= 5x mlflow: "
                  f"{min(rows[('bentoml+reasons', c)]['rps'] / rows[('mlflow (no reasons)', c)]['rps'] for c in (8, 32)):.1f}x"
                  " (worst of concurrency 8, 32)")
            if args.large_request:
                livez_during_large_requests(bento.url, large_body(lead))
        finally:
            bento.stop()
            if mlflow_proc is not None:
                mlflow_proc.terminate()
                mlflow_proc.wait(15)


if __name__ == "__main__":
    main()
