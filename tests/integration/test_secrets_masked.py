"""Passwords in database and tracking URLs are never shown: not in a command's errors or summaries,
not in MLflow's own lines, not in the service's load errors (``GET /model``), not in a run.

The commands run as real processes (their whole output, MLflow's prints included, is what a CRM team's
CI log keeps); databases are the machine's PostgreSQL (trust auth: any password is accepted, and the
URL still carries it), tracking servers a real ``mlflow server`` or a port nothing listens on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from features.urls import masked_url
from tests.integration.mlflow_support import fitted, shared_project, sqlite_project_file

PASSWORD = "Pw-of-the-CRM-9f3c"
LEADSCORE = [sys.executable, "-m", "leadscore.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run([*LEADSCORE, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": "", **(env or {})})
    return done.returncode, done.stdout + done.stderr


def _holds_password(text: str) -> bool:
    """Whether ``text`` shows the password, also when the terminal's line wrapping split it."""
    return PASSWORD in "".join(text.split())


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://crm:pw@db:5432/crm", "postgresql+psycopg://crm:***@db:5432/crm"),
    ("https://user:tok:en@mlflow.example/path", "https://user:***@mlflow.example/path"),
    ("crm:pw@db/crm", "crm:***@db/crm"),  # not a URL at all: an error is about to name it
    ("postgres:/crm:p@w@db", "postgres:/crm:***@db"),
    ("postgresql+psycopg://crm@db/crm", "postgresql+psycopg://crm@db/crm"),
    ("sqlite:////srv/a@b/crm.db", "sqlite:////srv/a@b/crm.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


@pytest.mark.postgres
def test_tracking_server_password_not_printed_when_unreachable(tmp_path: Path) -> None:
    """Every command that contacts a tracking server names it when it does not answer, masked."""
    from leadscore.synth import SynthConfig, write_synthetic

    config = sqlite_project_file(tmp_path)
    write_synthetic(SynthConfig(n_leads=50, seed=0), f"sqlite:///{tmp_path / 'crm.db'}", "sql")  # rescore reads it first
    uri = f"http://tracker:{PASSWORD}@127.0.0.1:{_free_port()}"
    for command in (["train"], ["models", "list"], ["models", "promote"], ["evaluate"], ["forecast"], ["rescore"]):
        code, output = _run(*command, "-c", str(config), "--tracking-uri", uri, cwd=tmp_path)
        assert code != 0, output
        assert not _holds_password(output), (command, output)
        assert "tracker:***@127.0.0.1" in " ".join(output.split()), (command, output)
    code, output = _run("rescore", "-c", str(config), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert code != 0 and not _holds_password(output), output


def test_folder_tracking_uri_password_not_printed(tmp_path: Path) -> None:
    config = sqlite_project_file(tmp_path)
    code, output = _run("models", "list", "-c", str(config), "--tracking-uri", f"file://tracker:{PASSWORD}@/srv/mlruns",
                        cwd=tmp_path)
    assert code != 0 and "retired file store" in output, output
    assert not _holds_password(output), output


def test_source_url_that_is_no_url_not_printed(tmp_path: Path) -> None:
    """A project file whose ``source.url`` lacks its scheme is refused, without showing its password."""
    config = tmp_path / "leadscore.yaml"
    config.write_text(f"name: p\ndata:\n  source:\n    kind: sql\n    url: crm:{PASSWORD}@127.0.0.1/crm\n",
                      encoding="utf-8")
    code, output = _run("validate", "-c", str(config), cwd=tmp_path)
    assert code != 0 and "source.url" in output, output
    assert not _holds_password(output), output


def test_rescore_db_that_is_no_url_not_printed(tmp_path: Path) -> None:
    code, output = _run("rescore", "--db", f"postgres:/crm:{PASSWORD}@db", "--model-dir", str(tmp_path), cwd=tmp_path)
    assert code != 0 and "database URL" in output, output
    assert not _holds_password(output), output


@pytest.mark.postgres
def test_synth_does_not_print_the_password(postgres_url: str, tmp_path: Path) -> None:
    """`synth --out` into PostgreSQL: its summary names the database, masked; so does a failed connection."""
    url = sa.engine.make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    code, output = _run("synth", "--out", url, "--leads", "50", cwd=tmp_path)
    assert code == 0, output
    assert not _holds_password(output), output
    closed = sa.engine.make_url(url).set(port=_free_port()).render_as_string(hide_password=False)
    code, output = _run("synth", "--out", closed, "--leads", "50", cwd=tmp_path)
    assert code != 0 and "connection" in output, output
    assert not _holds_password(output), output


@pytest.mark.postgres
def test_served_load_error_does_not_show_the_password(tmp_path: Path) -> None:
    """The service keeps a load failure's text for ``GET /model`` (and logs it): masked."""
    from serving.loader import ChampionHolder, ServingSettings
    from training.tracking import TrackingServerUnreachable

    port = _free_port()
    uri = f"http://tracker:{PASSWORD}@127.0.0.1:{port}"
    holder = ChampionHolder(ServingSettings.from_env({"MLFLOW_TRACKING_URI": uri}, endpoint=True))
    with pytest.raises(TrackingServerUnreachable) as raised:  # the failure named, its server masked
        holder.reload()
    assert str(raised.value) == f"cannot reach the MLflow tracking server at http://tracker:***@127.0.0.1:{port}: " \
                                "Connection refused"
    assert holder.last_error is not None and "tracker:***@" in holder.last_error
    assert PASSWORD not in holder.last_error


def assert_run_through_server_keeps_credentials_out(mlflow_server: str, tmp_path: Path,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """Training against ``http://user:password@server``: neither MLflow's "View run" lines nor the printed
    run summary show the password, and the run's params, tags and artifacts do not hold it.

    Run by ``tests/integration/test_mlflow_server.py`` on its real ``mlflow server`` (one server start,
    PostgreSQL database and all, for both checks)."""
    from mlflow import MlflowClient

    from leadscore.cli_models import print_train_run
    from training.tracking import tracking_target
    from training.workflow import track_and_register

    project, training_set, _ = shared_project()
    uri = mlflow_server.replace("http://", f"http://tracker:{PASSWORD}@")
    run = track_and_register(tracking_target(uri, tmp_path), project, training_set, fitted("medium"))
    print_train_run(run)
    output = capfd.readouterr()
    assert not _holds_password(output.out + output.err), output
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    logged = client.get_run(run.run_id)
    assert PASSWORD not in json.dumps({**logged.data.params, **logged.data.tags})
    files = client.download_artifacts(run.run_id, "", str(tmp_path / "artifacts"))
    for path in Path(files).rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
