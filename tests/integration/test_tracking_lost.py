"""A tracking server that answered when the command started and then stops answering: a one-line error
within seconds, saying what was left behind, and no version registered without its ``challenger`` alias.

MLflow retries each request 7 times with a doubling backoff (about 4 minutes per call): `leadscore
train` then hung for 8 minutes and ended in a 989-line traceback, `rescore` and the service's champion
check waited 4 minutes per call. The stub server answers ``/health`` (the start-up probe passes) and
drops every API call, as a server that went down after it; the CLI runs in-process (typer's runner).
"""

from __future__ import annotations

import http.server
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.project import sqlite_project
from tests.integration.mlflow_support import (
    cli_message,
    count_connections,
    local_http_server,
    sqlite_project_file,
)
from training.registry import (
    CHALLENGER,
    CHAMPION,
    _set_champion,
    alias_version,
    register_challenger,
    rollback,
)
from training.tracking import (
    HTTP_RETRY_DEFAULTS,
    LoggedRun,
    TrackingServerLost,
    TrackingServerUnreachable,
    connect,
    ensure_experiment,
    tracking_server_errors,
    tracking_target,
)
from training.workflow import track_and_register

pytestmark = pytest.mark.timeout(200)  # the old retries (4 minutes per call) fail here instead of hanging


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's retries without their sleeps (a user's setting, which :func:`bound_http_retries` keeps):
    the tests that do not measure the default bound take a second, not ten."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")


class GoneServer(str):
    """The gone server's base URL; ``dropped`` holds the request line of every API call it dropped."""

    dropped: list[str]


@pytest.fixture
def gone_server() -> Iterator[GoneServer]:
    """Answers ``GET /health`` with 200 OK; closes every other connection without an answer (and counts it)."""
    dropped: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _drop(self) -> None:
            if self.path == "/health":
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")
                return
            dropped.append(self.requestline)
            self.close_connection = True  # no status line: the client sees the connection drop

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _drop  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    with local_http_server(Handler) as uri:
        server = GoneServer(uri)
        server.dropped = dropped
        yield server


def _one_call_with_bounded_retries(server: GoneServer) -> None:
    """The command's first API call was lost and given up after its bounded retries (counted, not timed):
    ``1 + MLFLOW_HTTP_REQUEST_MAX_RETRIES`` tries of that one request (MLflow's own 7 retries, with their
    doubling backoff, took minutes per call)."""
    tries = 1 + int(HTTP_RETRY_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert len(server.dropped) == tries and len(set(server.dropped)) == 1, server.dropped


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return sqlite_project_file(tmp_path)



@pytest.mark.parametrize("command", [["models", "list"], ["models", "promote"], ["models", "rollback"],
                                     ["models", "export"], ["evaluate"]], ids=" ".join)
def test_models_commands_fail_in_seconds_with_one_line(command: list[str], config: Path, gone_server: str,
                                                       request: pytest.FixtureRequest) -> None:
    """With the default bound for `models list` (about 10 s), without the sleeps for the others."""
    if command != ["models", "list"]:
        request.getfixturevalue("no_backoff")
    result = CliRunner().invoke(app, [*command, "-c", str(config), "--tracking-uri", gone_server],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    text = cli_message(result)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), text  # an error line, no traceback
    assert f"error: lost the MLflow tracking server at {gone_server} during the command" in text, text
    assert "has no alias" not in text and "Traceback" not in text and "HTTPConnectionPool" not in text, text
    _one_call_with_bounded_retries(gone_server)


def test_train_logging_lost_says_nothing_was_registered(tmp_path: Path, gone_server: str, no_backoff: None) -> None:
    """The server goes between the probe and the first logging call (of the result, only what the run's lineage
    and model card take is read before it)."""
    project = sqlite_project(tmp_path)
    training_set = SimpleNamespace(frame=[], source_fingerprint={})
    result = SimpleNamespace(split={}, points_rules=None, model_card="")
    with pytest.raises(TrackingServerLost) as lost:
        track_and_register(tracking_target(gone_server, tmp_path), project, training_set, result)
    _one_call_with_bounded_retries(gone_server)
    message = str(lost.value)
    assert message.startswith(f"lost the MLflow tracking server at {gone_server} during the command: ")
    assert message.endswith("the run was not completed and no model version was registered"), message
    assert isinstance(lost.value, TrackingServerUnreachable | ValueError)  # the CLI's one-line error path


def test_service_champion_check_fails_fast(gone_server: str, no_backoff: None) -> None:
    """The service's periodic check (and POST /reload) against a dead or lost server: seconds, not minutes
    (it held the reload lock for 4 minutes: POST /reload answered BentoML's 504 after 30 s)."""
    from serving.loader import registry_fingerprint

    with pytest.raises(TrackingServerLost, match=f"^lost the MLflow tracking server at {re.escape(gone_server)} "):
        registry_fingerprint(gone_server, "lead-conversion", "champion")
    _one_call_with_bounded_retries(gone_server)
    with pytest.raises(TrackingServerUnreachable, match="cannot reach the MLflow tracking server"):
        registry_fingerprint("http://127.0.0.1:9", "lead-conversion", "champion")


def test_rescore_with_a_dead_server_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rescore` had no start-up probe: 4 minutes of retries, then urllib3's message."""
    from leadscore.synth import SynthConfig, write_synthetic

    db = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=50, seed=1, events_per_lead=2), db, "sql", overwrite=True)
    tries = count_connections(monkeypatch, 9)
    result = CliRunner().invoke(app, ["rescore", "--db", db, "--tracking-uri", "http://127.0.0.1:9"],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    text = cli_message(result)
    assert result.exit_code == 1, text
    assert "cannot reach the MLflow tracking server at http://127.0.0.1:9: Connection refused" in text, text
    assert len(tries) == 1, tries  # the probe's one try, no retries (counted, not timed)


def test_bounded_retries_respect_the_users_setting(monkeypatch: pytest.MonkeyPatch, gone_server: str,
                                                   tmp_path: Path) -> None:
    from training.tracking import connect

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    connect(tracking_target(gone_server, tmp_path))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == HTTP_RETRY_DEFAULTS["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]


def test_other_errors_pass_through(gone_server: str) -> None:
    with pytest.raises(KeyError), tracking_server_errors(gone_server):
        raise KeyError("x")
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"), tracking_server_errors(gone_server):
        raise MlflowException("model not found", error_code=1)


class _Model(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ARG002
        return model_input


def _lost(*args, **kwargs) -> None:
    """What MLflow raises for a request to a server that went away."""
    try:
        raise requests.exceptions.ConnectionError("Connection refused")
    except requests.exceptions.ConnectionError as exc:
        raise MlflowException("API request to /api/2.0/mlflow/... failed") from exc


def _tiny_run(tmp_path: Path) -> tuple[MlflowClient, LoggedRun]:
    """A SQLite store with one run holding a trivial pyfunc model, in an experiment that keeps its artifacts
    beside the store as `train`'s do (MLflow's Default experiment would put them in ./mlruns of the working
    folder, the repository)."""
    target = tracking_target(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    client = connect(target)
    experiment_id = ensure_experiment(client, "lost", target.artifact_location)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        # its requirements named: MLflow would infer them in a Python subprocess (~2 s)
        info = mlflow.pyfunc.log_model(name="model", python_model=_Model(), pip_requirements=["mlflow"])
    logged = LoggedRun(run.info.run_id, run.info.experiment_id, info.model_uri, {"eval_rows": "1"})
    return client, logged


def test_alias_failure_withdraws_the_new_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry goes away between creating the version and pointing ``challenger`` at it: the version is
    deleted (the challenger stays where it was), and the error says so."""
    client, logged = _tiny_run(tmp_path)
    first = register_challenger(client, logged, {"roc_auc": 0.7}, name="m")
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", _lost)
    with pytest.raises(MlflowException) as failed:
        register_challenger(client, logged, {"roc_auc": 0.7}, name="m")
    assert failed.value.__notes__ == ["version 2 of 'm' was registered but never became challenger; it was deleted"]
    assert [v.version for v in client.search_model_versions("name = 'm'")] == [first.version]
    assert alias_version(client, "m", CHALLENGER).version == first.version
    # the same error through a server URI: one line with the note
    with pytest.raises(TrackingServerLost, match="registered but never became challenger; it was deleted"), \
            tracking_server_errors("http://127.0.0.1:1", "run r was logged"):
        raise failed.value


def test_rollback_lost_after_moving_the_alias_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lost between its writes, a rollback does not claim that nothing changed: the note names the version
    the champion may already point at (here it does)."""
    client, logged = _tiny_run(tmp_path)
    for _ in range(2):
        register_challenger(client, logged, {"roc_auc": 0.7}, name="m")
    _set_champion(client, "m", "1", ["1"])
    _set_champion(client, "m", "2", ["1", "2"])
    monkeypatch.setattr(MlflowClient, "set_model_version_tag", _lost)
    with pytest.raises(TrackingServerLost) as lost, tracking_server_errors("http://127.0.0.1:1"):
        rollback(client, "m")
    assert str(lost.value).endswith("the champion of 'm' may already be version 1: check `leadscore models list` "
                                    "once the registry answers"), str(lost.value)
    assert str(alias_version(client, "m", CHAMPION).version) == "1"


def test_a_read_lost_after_the_alias_was_set_keeps_the_complete_registration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry goes away after ``challenger`` points at the new version, while it is read back: the
    registration is complete, so the version stays challenger and the error says so (it was deleted, which
    took the challenger alias with it, and the error said it "never became challenger")."""
    from training.workflow import registering_lost

    client, logged = _tiny_run(tmp_path)
    register_challenger(client, logged, {"roc_auc": 0.7}, name="m")
    monkeypatch.setattr(MlflowClient, "get_model_version", _lost)
    with pytest.raises(TrackingServerLost) as lost, tracking_server_errors("http://127.0.0.1:1",
                                                                           registering_lost(logged.run_id)):
        register_challenger(client, logged, {"roc_auc": 0.7}, name="m")
    monkeypatch.undo()
    assert str(lost.value).endswith(f"run {logged.run_id} was logged; version 2 of 'm' was registered and is "
                                    "challenger"), str(lost.value)
    assert str(alias_version(client, "m", CHALLENGER).version) == "2"
    # a registration lost before any version was made says so
    monkeypatch.setattr(mlflow, "register_model", _lost)
    with pytest.raises(TrackingServerLost) as before, tracking_server_errors("http://127.0.0.1:1",
                                                                             registering_lost(logged.run_id)):
        register_challenger(client, logged, {"roc_auc": 0.7}, name="m")
    assert str(before.value).endswith(f"run {logged.run_id} was logged; no version of 'm' became challenger")
