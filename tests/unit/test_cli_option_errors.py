"""A bad value given on the command line is named by its option (``--interval``), not by the config field or
environment variable it is copied into; the same value in a project file keeps naming the file and its field,
in the environment the variable. Exit 2, one line, no traceback. The CLI runs in-process (typer's runner)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadscore.cli import app

# without the variables the commands read (another test of this worker may have set them)
CLEAN_ENV = {"COLUMNS": "200", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": None, "LEADSCORE_PROJECT_DIR": None,
             "LEADSCORE_MODEL_DIR": None, "LEADSCORE_RELOAD_SECONDS": None, "LEADSCORE_MAX_BODY_MB": None,
             "LEADSCORE_REQUEST_TIMEOUT_SECONDS": None, "LEADSCORE_RECEIVE_TIMEOUT_SECONDS": None}


def run_cli(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **(env or {})})


def _refused(result, *named: str) -> str:
    """The one error line of a refused command (exit 2, no traceback) that names each of ``named``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    err = " ".join(result.stderr.split())
    assert "Traceback" not in err and "ValidationError" not in err, err
    for text in named:
        assert text in err, err
    return err


def _project(folder: Path, forecast: str = "") -> Path:
    """A CRM project file (the database need not exist: these refusals come before any data is read)."""
    path = folder / "leadscore.yaml"
    path.write_text(f"data:\n  source:\n    kind: sql\n    url: sqlite:///{folder / 'crm.db'}\n    leads: leads\n"
                    f"    events: events\n    outcomes: outcomes\n{forecast}", encoding="utf-8")
    return path


@pytest.mark.parametrize(("value", "shown"), [("1.5", "got 1.5"), ("0", "got 0"), ("nan", "got nan")])
def test_forecast_interval_out_of_range_names_the_option(tmp_path: Path, value: str, shown: str) -> None:
    err = _refused(run_cli("forecast", "-c", str(_project(tmp_path)), "--interval", value),
                   "--interval", "must be above 0 and below 1", shown)
    assert "forecast.interval" not in err


def test_forecast_interval_out_of_range_in_the_project_file_names_the_file_and_field(tmp_path: Path) -> None:
    config = _project(tmp_path, "forecast:\n  interval: 1.5\n")
    err = _refused(run_cli("forecast", "-c", str(config)), str(config), "forecast.interval")
    assert "--interval" not in err


def test_synth_infinite_events_per_lead_names_the_option(tmp_path: Path) -> None:
    """It was taken, and the generator failed with numpy's "lam value too large" (exit 1) after making --out."""
    _refused(run_cli("synth", "--out", str(tmp_path / "crm"), "--format", "csv", "--leads", "10",
                     "--events-per-lead", "inf"), "--events-per-lead", "got inf")
    assert not (tmp_path / "crm").exists()


def test_synth_bound_names_the_option_and_the_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SynthConfig bound the options do not check themselves (the demo calls synth as a function)."""
    import typer

    from leadscore.cli import synth

    with pytest.raises(typer.Exit) as refused:
        synth(out=f"sqlite:///{tmp_path / 'crm.db'}", leads=0)
    assert refused.value.exit_code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --leads: must be at least 1, got 0"]


@pytest.fixture
def busy_port() -> Iterator[str]:
    """A port in use: a `serve` that passed its checks fails there (exit 1) instead of becoming `bentoml serve`."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield str(busy.getsockname()[1])


def test_serve_infinite_reload_period_names_the_option(tmp_path: Path, busy_port: str) -> None:
    """An infinite period was taken; the server's champion check then failed in its thread (a wait that long
    overflows) and stopped for good."""
    err = _refused(run_cli("serve", "--model-dir", str(tmp_path), "--port", busy_port, "--reload-seconds", "inf"),
                   "--reload-seconds inf")
    assert "LEADSCORE_RELOAD_SECONDS" not in err


def test_serve_infinite_reload_period_in_the_environment_names_the_variable(tmp_path: Path, busy_port: str) -> None:
    err = _refused(run_cli("serve", "--model-dir", str(tmp_path), "--port", busy_port,
                           env={"LEADSCORE_RELOAD_SECONDS": "inf"}), "LEADSCORE_RELOAD_SECONDS=inf")
    assert "--reload-seconds" not in err


def test_serve_bad_tracking_uri_names_the_option(tmp_path: Path, busy_port: str) -> None:
    err = _refused(run_cli("serve", "--project-dir", str(tmp_path), "--port", busy_port,
                           "--tracking-uri", "sqlite:relative.db"), "--tracking-uri", "not a SQLite URL")
    assert "MLFLOW_TRACKING_URI" not in err
    err = _refused(run_cli("serve", "--project-dir", str(tmp_path), "--port", busy_port,
                           env={"MLFLOW_TRACKING_URI": "sqlite:relative.db"}), "MLFLOW_TRACKING_URI", "not a SQLite URL")
    assert "--tracking-uri" not in err



def test_serve_tracking_uri_of_no_store_scheme_names_the_option_or_the_variable(tmp_path: Path, busy_port: str) -> None:
    """It was handed to the service, which could never load a model from it."""
    err = _refused(run_cli("serve", "--project-dir", str(tmp_path), "--port", busy_port,
                           "--tracking-uri", "ftp://u:secret@host/x"), "--tracking-uri", "'ftp' is no MLflow tracking store")
    assert "MLFLOW_TRACKING_URI" not in err and "secret" not in err
    err = _refused(run_cli("serve", "--project-dir", str(tmp_path), "--port", busy_port,
                           env={"MLFLOW_TRACKING_URI": "ftp://host/x"}), "MLFLOW_TRACKING_URI", "'ftp'")
    assert "--tracking-uri" not in err


@pytest.mark.parametrize("value, shown", [("inf", "got inf"), ("nan", "--min-delta")])
def test_promote_margin_that_is_no_finite_number_names_the_option(tmp_path: Path, value: str, shown: str) -> None:
    """`--min-delta inf` passed typer's ``min=0``: no challenger could ever be promoted (typer itself refuses nan).
    Refused before any store is opened (none is made)."""
    config = _project(tmp_path)
    _refused(run_cli("models", "promote", "-c", str(config), "--min-delta", value), "--min-delta", shown)
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["forecast"], ["models", "list"], ["models", "promote"],
                                     ["models", "rollback"], ["models", "export"], ["rescore"]])
def test_tracking_uri_of_no_mlflow_store_scheme_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """`--tracking-uri ftp://...` reached MLflow, whose registry error came out as a traceback (exit 1)."""
    config = _project(tmp_path)
    err = _refused(run_cli(*command, "-c", str(config), "--tracking-uri", "ftp://tracker:secret@host/mlflow"),
                   "tracking URI 'ftp://tracker:***@host/mlflow'", "'ftp'", "http(s)://")
    assert "secret" not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("uri, refused", [
    ("postgresql+psycopg://u:p@db/mlflow", False), ("mysql://db/mlflow", False), ("sqlite:////srv/mlflow.db", False),
    ("https://mlflow.example", False), ("databricks://profile", False), ("file:///srv/mlruns", False),
    ("./mlruns", False), ("ftp://host/x", True), ("htps://mlflow.example", True), ("s3://bucket/mlruns", True),
])
def test_tracking_scheme_problem(uri: str, refused: bool) -> None:
    from features.urls import tracking_scheme_problem

    assert (tracking_scheme_problem(uri) is not None) is refused


AZUREML_URI = ("azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/"
               "Microsoft.MachineLearningServices/workspaces/w")


def test_tracking_store_of_an_installed_mlflow_plugin_is_no_scheme_problem(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow takes tracking stores from plugins too (entry point group ``mlflow.tracking_store``: azureml-mlflow's
    ``azureml://``): with such a distribution installed, its URIs reach MLflow; a scheme no plugin names is refused.
    The distribution is a real one on ``sys.path`` (its metadata and entry point), found as pip's are."""
    from features.urls import tracking_scheme_problem
    from training.tracking import tracking_target

    assert tracking_scheme_problem(AZUREML_URI) is not None  # no plugin installed: refused by name
    site = tmp_path / "site"
    dist = site / "azureml_store_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: azureml-store-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mlflow.tracking_store]\nazureml = azureml_store_plugin:Store\n")
    monkeypatch.syspath_prepend(str(site))
    assert tracking_scheme_problem(AZUREML_URI) is None
    assert tracking_target(AZUREML_URI, tmp_path).uri == AZUREML_URI
    assert tracking_scheme_problem("azure://eastus.api.azureml.ms/mlflow") is not None
    registry_only = site / "registry_plugin-1.0.dist-info"  # MLFLOW_REGISTRY_URI, which serve checks too
    registry_only.mkdir()
    (registry_only / "METADATA").write_text("Metadata-Version: 2.1\nName: registry-plugin\nVersion: 1.0\n")
    (registry_only / "entry_points.txt").write_text("[mlflow.model_registry_store]\nmyreg = registry_plugin:Store\n")
    assert tracking_scheme_problem("myreg://registry.example/api") is None


def test_tracking_scheme_is_the_uris_scheme() -> None:
    """MLflow reads the scheme as URL parsing does: OSS Unity Catalog's ``uc:http://host`` is its ``uc`` store, an
    upper-case scheme is the lower-case one."""
    from mlflow.utils.uri import get_uri_scheme

    from features.urls import tracking_scheme_problem

    for uri in ("uc:http://localhost:8080", "HTTPS://mlflow.example/path", "PostgreSQL+psycopg2://u:p@db/mlflow"):
        assert get_uri_scheme(uri) in ("uc", "https", "postgresql")
        assert tracking_scheme_problem(uri) is None, uri


def test_a_server_uri_of_an_upper_case_scheme_is_a_server(tmp_path: Path) -> None:
    """``HTTPS://host`` is let through (MLflow reads the scheme in any case and talks to the server): it is a server
    to leadscore too, whose experiments keep the server's artifact store, not this machine's project folder."""
    from training.tracking import tracking_target

    for uri in ("HTTPS://mlflow.example/mlflow", "Http://127.0.0.1:5000"):
        target = tracking_target(uri, tmp_path)
        assert target.is_server and target.artifact_location is None, target
