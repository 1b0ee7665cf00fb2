"""Train -> register -> promote -> export through a real `mlflow server` (PostgreSQL backend store,
proxied artifacts in a temporary directory)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mlflow_support import fitted, shared_project
from training.registry import CHAMPION, CHAMPION_FILE, MODEL_NAME, alias_version, export_champion
from training.tracking import connect, tracking_target
from training.workflow import promote_challenger, track_and_register

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
START_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_url,
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        start_new_session=True,  # its own process group: the server and its workers stop together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited ({process.returncode}): {(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {START_TIMEOUT}s: {(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def test_train_register_promote_through_server(mlflow_server: str, tmp_path: Path) -> None:
    project, training_set, _ = shared_project()
    target = tracking_target(mlflow_server, tmp_path)
    assert target.is_server and target.artifact_location is None
    records: list[logging.LogRecord] = []
    watch = logging.Handler()
    watch.emit = records.append  # type: ignore[method-assign]
    registry_log = logging.getLogger("mlflow.store.model_registry.abstract_store")
    registry_log.addHandler(watch)
    try:
        run = track_and_register(target, project, training_set, fitted("good"))
    finally:
        registry_log.removeHandler(watch)
    assert run.model_version == "1"
    assert not [r for r in records if "Waiting up to" in str(r.msg)]  # a routine line of every registration
    decision = promote_challenger(target)
    assert decision.promoted, decision.explain()
    client = connect(target)
    assert str(alias_version(client, MODEL_NAME, CHAMPION).version) == "1"
    assert client.get_experiment(run.experiment_id).artifact_location.startswith("mlflow-artifacts:")
    assert any((tmp_path / "artifacts").rglob("MLmodel"))  # stored by the server, not by the client
    path = export_champion(client, tmp_path / "models")
    assert json.loads((path / CHAMPION_FILE).read_text())["run_id"] == run.run_id
