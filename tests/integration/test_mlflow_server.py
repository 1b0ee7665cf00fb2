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
from tests.integration.test_secrets_masked import assert_run_through_server_keeps_credentials_out
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


def test_through_server_train_promote_then_credentials_kept_out_then_a_refit_graded(
        mlflow_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The whole flow through the server; then, on the same server, a run through a URL with a password
    (``tests/integration/test_secrets_masked.py``): one server start for both."""
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

    capfd.readouterr()  # what the flow above printed is not the credentialed run's output
    (tmp_path / "credentials").mkdir()
    assert_run_through_server_keeps_credentials_out(mlflow_server, tmp_path / "credentials", capfd)
    # the same server (one server and database start for the module's checks)
    assert_refit_time_to_close_version_is_graded_through_server(mlflow_server, tmp_path / "refit")


def assert_refit_time_to_close_version_is_graded_through_server(mlflow_server: str, tmp_path: Path) -> None:
    """The backtest model of a time-to-close run refit for deployment is a directory of artifacts
    (``backtest_model/``): through a server's proxied artifacts it downloads whole, and grades the version on its
    run's rows with the run's figures; once those artifacts are gone the grading fails with one RegistryError
    naming the run, not a file error from inside the download or the model loader. ``tmp_path``: a folder of
    its own beside the server's ``artifacts/``."""
    import shutil

    from features.contract import DataConfig, SourceConfig
    from leadscore.project import ProjectConfig
    from leadscore.synth import SynthConfig, write_synthetic
    from training.registry import RegistryError
    from training.survival_config import TimeToCloseConfig
    from training.survival_tracking import MODEL_NAME as TTC_NAME
    from training.survival_tracking import load_backtest_model, rows_metrics_time_to_close
    from training.tracking import TEST_SET_ARTIFACT, load_run_frame
    from training.workflow import train_time_to_close_project

    tmp_path.mkdir()
    write_synthetic(SynthConfig(n_leads=1500, seed=3), str(tmp_path / "crm"), "parquet", overwrite=True)
    source = SourceConfig(kind="parquet", **{t: str(tmp_path / "crm" / f"{t}.parquet")
                                             for t in ("leads", "events", "outcomes")})
    project = ProjectConfig(name="ttc-server", data=DataConfig(source=source),
                            time_to_close=TimeToCloseConfig(make_plots=False, cox_penalizers=(0.01,)))
    target = tracking_target(mlflow_server, tmp_path)
    run = train_time_to_close_project(project, target)
    client = connect(target)
    version = client.get_model_version(TTC_NAME, run.model_version)
    assert version.tags["refit"] == "true"
    backtest = load_backtest_model(client, version)
    assert backtest.best_iteration_ == run.result.backtest_model.best_iteration_
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    logged = client.get_run(run.run_id).data.metrics
    graded = rows_metrics_time_to_close(client, TTC_NAME, run.model_version, rows, run.run_id)
    assert {k: graded[k] for k in ("harrell_c", "uno_c", "ibs")} == {k: logged[k] for k in ("harrell_c", "uno_c", "ibs")}
    # the sales-readiness runs refit for deployment on the same server keep one too
    stored = [p for p in (tmp_path.parent / "artifacts").rglob("backtest_model") if p.is_dir() and run.run_id in p.parts]
    assert len(stored) == 1, stored
    shutil.rmtree(stored[0])
    with pytest.raises(RegistryError, match=rf"run {run.run_id} holds no backtest_model/"):
        load_backtest_model(client, version)
