"""Serving latency/throughput: this BentoML service vs `mlflow models serve` on the same champion.

Trains a small champion on the synthetic CRM (or uses --model-dir, a saved SalesReadinessModel),
exports it, starts both servers on 127.0.0.1, and prints single-lead p50/p95/p99 latency and
throughput at concurrency 8 and 32, with and without reasons, plus the ratios. Bounded request
counts. Also prints batch scoring speed of the core (leads/s, top-3 reasons).
Usage: .venv/bin/python benchmarks/serving.py [--requests 400] [--leads 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from features.build import features_from_payloads, scoring_matrix  # noqa: E402
from serving.core import ModelInfo, ScoringCore  # noqa: E402
from tests.serving_fixtures import (  # noqa: E402
    AS_OF,
    export_champion,
    free_port,
    payloads_from_crm,
    start_server,
    train_small_champion,
)
from training.pyfunc import to_signature_frame  # noqa: E402


def measure(send, n_requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []

    def one(_: int) -> None:
        t = time.perf_counter()
        send()
        latencies.append(time.perf_counter() - t)

    for _ in range(min(20, n_requests)):
        send()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n_requests)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99),
            "rps": n_requests / wall}


def start_mlflow(model_uri: str, log: Path, wait: float = 120) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(HERE.parent),
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--leads", type=int, default=3000)
    args = parser.parse_args()
    champion = train_small_champion(n_leads=args.leads, seed=1, max_rounds=400)
    model = champion.model
    print(f"champion: {model.booster_.num_trees()} trees, {len(model.feature_columns_)} features")
    core = ScoringCore(model, ModelInfo("lead-conversion", "1"))
    ids, matrix = scoring_matrix(champion.crm, core.spec, AS_OF, eligible_only=False)
    reps = max(1, 20000 // len(ids))
    big = np.tile(matrix, (reps, 1))
    big_ids = np.tile(ids, reps)
    for k in (3, 0):
        t = time.perf_counter()
        core.score_matrix(big_ids, big, k)
        print(f"core batch: {len(big)} leads top_k={k}: {len(big) / (time.perf_counter() - t):,.0f} leads/s")
    lead = payloads_from_crm(champion.crm, [int(ids[0])], AS_OF)[0]
    t = time.perf_counter()
    for _ in range(200):
        core.score_matrix([1], features_from_payloads([lead], core.spec, AS_OF), 3)
    print(f"core one lead (features + score + reasons): {(time.perf_counter() - t) / 200 * 1000:.3f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        export_champion(model, tmp_path / "models", version="1")
        bento = start_server({"LEADSCORE_MODEL_DIR": str(tmp_path / "models"), "LEADSCORE_RELOAD_SECONDS": "0"},
                             tmp_path / "bento.log")
        mlflow_proc = None
        try:
            import mlflow

            from training.pyfunc import log_pyfunc_model
            mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
            with mlflow.start_run():
                info = log_pyfunc_model(model, champion.features.head(50))
            local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "pyfunc"))
            mlflow_proc, mlflow_url = start_mlflow(local, tmp_path / "mlflow.log")
            body_reasons = json.dumps({"leads": [lead], "as_of": AS_OF.isoformat(), "top_k": 3})
            body_bare = json.dumps({"leads": [lead], "as_of": AS_OF.isoformat(), "top_k": 0})
            frame = to_signature_frame(champion.features.head(1), model)
            mlflow_body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
            client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
            headers = {"content-type": "application/json"}
            assert client.post(f"{bento.url}/score", content=body_reasons, headers=headers).status_code == 200
            assert client.post(f"{mlflow_url}/invocations", content=mlflow_body, headers=headers).status_code == 200
            rows = {}
            for concurrency in (1, 8, 32):
                rows[("bentoml+reasons", concurrency)] = measure(
                    lambda: client.post(f"{bento.url}/score", content=body_reasons, headers=headers),
                    args.requests, concurrency)
                rows[("bentoml", concurrency)] = measure(
                    lambda: client.post(f"{bento.url}/score", content=body_bare, headers=headers),
                    args.requests, concurrency)
                rows[("mlflow (no reasons)", concurrency)] = measure(
                    lambda: client.post(f"{mlflow_url}/invocations", content=mlflow_body, headers=headers),
                    args.requests, concurrency)
            print(f"{'server':22s} {'conc':>4s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'req/s':>8s}")
            for (name, conc), r in rows.items():
                print(f"{name:22s} {conc:4d} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f}")
            for conc in (8, 32):
                base = rows[("mlflow (no reasons)", conc)]["rps"]
                print(f"throughput ratio at {conc}: bentoml+reasons/mlflow "
                      f"{rows[('bentoml+reasons', conc)]['rps'] / base:.2f}x, bentoml/mlflow "
                      f"{rows[('bentoml', conc)]['rps'] / base:.2f}x")
        finally:
            bento.stop()
            if mlflow_proc is not None:
                mlflow_proc.terminate()
                mlflow_proc.wait(15)


if __name__ == "__main__":
    main()
