"""`GET /metrics` of a `leadscore serve` counts that server's requests, whatever other servers run beside it.

BentoML keeps its Prometheus files in one folder per user (``$BENTOML_HOME/prometheus_multiproc_dir``), reads
every file there for ``/metrics`` and empties the folder at every server start: a second server started on the
same machine wiped the first one's counts, and each answered with the other's.
"""

from __future__ import annotations

import re

import httpx

from tests.serving_fixtures import export_champion, start_server, train_small_champion

MODEL_REQUESTS = re.compile(r'^bentoml_service_request_total\{[^}]*endpoint="/model"[^}]*\} (\S+)$', re.M)


def model_requests(server) -> float:
    """``GET /model`` requests a server's ``/metrics`` counts (all answer codes)."""
    metrics = httpx.get(f"{server.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    return sum(float(count) for count in MODEL_REQUESTS.findall(metrics.text))


def test_each_server_counts_its_own_requests_after_another_starts(tmp_path) -> None:
    models = tmp_path / "models"
    export_champion(train_small_champion(n_leads=800, seed=4).model, models, version="1")
    # both servers get one BentoML home, as two servers of one user get ~/bentoml by default
    env = {"LEADSCORE_MODEL_DIR": str(models), "LEADSCORE_RELOAD_SECONDS": "0",
           "BENTOML_HOME": str(tmp_path / "bentoml")}
    first = start_server(env, tmp_path / "first.log")
    try:
        for _ in range(3):
            assert httpx.get(f"{first.url}/model", timeout=10).status_code == 200
        assert model_requests(first) == 3
        second = start_server(env, tmp_path / "second.log")
        try:
            assert httpx.get(f"{second.url}/model", timeout=10).status_code == 200
            assert model_requests(first) == 3  # the second start left the first server's counts alone
            assert model_requests(second) == 1  # and the second counts its own request only
        finally:
            second.stop()
    finally:
        first.stop()
