"""`leadscore serve` runs the server in the package folder: every path it hands over is absolute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadscore.cli_serve import SERVICE, serve_command


def test_relative_folders_and_sqlite_files_resolve_against_the_callers_folder(tmp_path: Path) -> None:
    environ = {"LEADSCORE_MODEL_DIR": "exports", "MLFLOW_TRACKING_URI": "sqlite:///store/mlflow.db"}
    argv, env = serve_command(port=3100, environ=environ, cwd=tmp_path)
    assert argv[-5:] == [SERVICE, "--host", "127.0.0.1", "--port", "3100"]
    assert env["LEADSCORE_PROJECT_DIR"] == str(tmp_path / ".demo")  # the default, from the caller's folder
    assert env["LEADSCORE_MODEL_DIR"] == str(tmp_path / "exports")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def test_options_win_over_the_environment_and_other_uris_pass_unchanged(tmp_path: Path) -> None:
    environ = {"LEADSCORE_PROJECT_DIR": "/elsewhere", "MLFLOW_TRACKING_URI": "sqlite:////abs/mlflow.db",
               "BENTOML_CONFIG_OVERRIDES": json.dumps({"api_server": {"timeout": 5}})}
    _, env = serve_command(project_dir=Path("proj"), tracking_uri="http://127.0.0.1:5000", workers=3,
                           access_log=True, environ=environ, cwd=tmp_path)
    assert env["LEADSCORE_PROJECT_DIR"] == str(tmp_path / "proj")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert "LEADSCORE_MODEL_DIR" not in env
    overrides = json.loads(env["BENTOML_CONFIG_OVERRIDES"])
    assert overrides["api_server"] == {"timeout": 5}  # the caller's own overrides are kept
    assert overrides["services"]["lead_scoring"] == {"workers": 3, "logging": {"access": {"enabled": True}}}
    _, env = serve_command(environ={"MLFLOW_TRACKING_URI": "sqlite:////abs/mlflow.db"}, cwd=tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////abs/mlflow.db"


def test_other_local_store_uris_resolve_too_and_a_bad_sqlite_url_is_a_clear_error(tmp_path: Path) -> None:
    import pytest
    import typer

    _, env = serve_command(environ={"MLFLOW_TRACKING_URI": "file:mlruns", "MLFLOW_REGISTRY_URI": "sqlite:///reg.db"},
                           cwd=tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path / "mlruns").as_uri()
    assert env["MLFLOW_REGISTRY_URI"] == f"sqlite:///{tmp_path / 'reg.db'}"
    for absolute in ("file:///abs/mlruns", "file:/abs/mlruns", "file://localhost/abs/mlruns"):
        assert serve_command(environ={"MLFLOW_TRACKING_URI": absolute}, cwd=tmp_path)[1]["MLFLOW_TRACKING_URI"] == absolute
    spaced = serve_command(environ={"MLFLOW_TRACKING_URI": "file:my%20runs"}, cwd=tmp_path)[1]["MLFLOW_TRACKING_URI"]
    assert spaced == (tmp_path / "my runs").as_uri()
    _, env = serve_command(environ={"MLFLOW_TRACKING_URI": "mlruns"}, cwd=tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == str(tmp_path / "mlruns")
    _, env = serve_command(environ={"MLFLOW_TRACKING_URI": "databricks"}, cwd=tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == "databricks"
    with pytest.raises(typer.BadParameter, match="not a SQLite URL"):
        serve_command(environ={"MLFLOW_TRACKING_URI": "sqlite:mlflow.db"}, cwd=tmp_path)


def test_each_host_and_port_gets_a_bentoml_home_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """BentoML empties ``<home>/prometheus_multiproc_dir`` at every start and reads all of it for ``/metrics``."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    _, env = serve_command(port=3000, environ={}, cwd=tmp_path)
    assert env["BENTOML_HOME"] == str(tmp_path / "user" / "bentoml" / "leadscore-serve" / "127.0.0.1-3000")
    _, env = serve_command(host="::1", port=3001, environ={"BENTOML_HOME": "homes"}, cwd=tmp_path)
    assert env["BENTOML_HOME"] == str(tmp_path / "homes" / "leadscore-serve" / "__1-3001")  # relative: the caller's


def test_a_busy_port_is_found_before_the_server_starts() -> None:
    import socket

    from leadscore.cli_serve import port_problem

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_problem("127.0.0.1", port) == f"port {port} on 127.0.0.1 is in use (another server? choose another with --port)"
    assert port_problem("127.0.0.1", port) is None  # closed: free again
    assert "cannot be resolved" in port_problem("no-such-host.invalid", port)


def test_serve_rescore_and_forecast_take_the_exported_folder_by_either_option_name(tmp_path: Path) -> None:
    """``forecast`` named it ``--models-dir``, ``serve`` and ``rescore`` ``--model-dir``: each takes both."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300", "NO_COLOR": "1"})
        assert result.exit_code in (1, 2) and "No such option" not in result.output, result.output
        return " ".join(result.output.split())

    missing = tmp_path / "nowhere"
    assert f"{missing}: no such folder" in run("serve", "--models-dir", str(missing))
    assert "--tracking-uri with --models-dir" in run("rescore", "--db", f"sqlite:///{tmp_path / 'crm.db'}",
                                                    "--models-dir", str(tmp_path), "--tracking-uri", "sqlite:///x.db")
    assert "project file not found" in run("forecast", "-c", str(tmp_path / "none.yaml"), "--model-dir", str(tmp_path))


def test_forecast_refuses_a_tracking_uri_beside_the_exported_folder_as_rescore_does(tmp_path: Path) -> None:
    """``--model-dir`` reads the exported champions: a ``--tracking-uri`` beside it would be ignored, so it
    is refused in one line (exit 2) naming the spelling given, before the project is read;
    ``MLFLOW_TRACKING_URI`` in the environment (as `mlflow run` sets it) is not."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    config, models = str(tmp_path / "none.yaml"), str(tmp_path / "models")
    for option in ("--model-dir", "--models-dir"):
        result = CliRunner().invoke(app, ["forecast", "-c", config, option, models, "--tracking-uri", "sqlite:///x.db"],
                                    env={"COLUMNS": "300", "NO_COLOR": "1"})
        assert result.exit_code == 2, result.output
        assert " ".join(result.stderr.split()) == (
            f"error: --tracking-uri with {option} {models}: the exported models would be used and the "
            "registry ignored; give one of them"), result.stderr
    Path(models).mkdir()
    from_env = CliRunner().invoke(app, ["forecast", "-c", config, "--model-dir", models],
                                  env={"COLUMNS": "300", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": "sqlite:///x.db"})
    assert from_env.exit_code == 2 and "project file not found" in from_env.output, from_env.output


@pytest.mark.parametrize("option", ["--model-dir", "--models-dir"])
def test_forecast_names_the_exported_folder_option_as_given_and_shows_the_one_serve_and_rescore_show(
        tmp_path: Path, option: str) -> None:
    """forecast showed ``--models-dir`` (serve, rescore and the README: ``--model-dir``) and its messages named
    ``--models-dir`` whichever spelling was typed; two spellings with different values were not refused."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from leadscore.forecast_models import load_forecast_models

    env = {"COLUMNS": "300", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": None}

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["forecast", *args], env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, " ".join(result.output.split())

    shown = run("--help")[1]
    assert "--model-dir" in shown and "--models-dir" not in shown, shown
    models, config = tmp_path / "models", str(tmp_path / "none.yaml")
    code, text = run("-c", config, "--model-dir", str(models), "--models-dir", str(tmp_path))
    assert code == 2 and f"--model-dir {models} and --models-dir {tmp_path}: two spellings" in text, text
    code, text = run("-c", config, "--backtest", "--as-of", "2025-01-01", option, str(models))
    assert code == 2 and f"error: {option}: not used with --backtest" in text, text  # before the project is read
    code, text = run("-c", config, option, str(models))
    assert code == 2 and text == f"error: {option} {models}: no such folder", text  # as serve and rescore
    models.mkdir()
    with pytest.raises(FileNotFoundError, match=f"^{option}: no champion.json in {models}"):
        load_forecast_models(None, Path(config), None, models, option=option)


def test_serve_refuses_a_tracking_uri_beside_the_exported_folder(tmp_path: Path) -> None:
    """As rescore and forecast: the exported folder would be served and the URI ignored."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--tracking-uri", "sqlite:///x.db",
                                      "--port", "1"], env={"COLUMNS": "300", "NO_COLOR": "1", "LEADSCORE_MODEL_DIR": ""})
    assert result.exit_code == 2, result.output
    assert f"--tracking-uri with --model-dir {tmp_path}: the exported models would be served" in " ".join(
        result.stderr.split())


def test_the_help_states_the_reload_period_the_server_uses_by_default() -> None:
    from typer.testing import CliRunner

    from leadscore.cli import app
    from serving.loader import ServingSettings

    shown = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    default = ServingSettings.model_fields["reload_seconds"].default
    assert f"default {default:g}, env LEADSCORE_RELOAD_SECONDS" in shown, shown


def test_the_body_limit_option_reaches_the_server_and_its_help_states_the_default() -> None:
    from typer.testing import CliRunner

    from leadscore.cli import app
    from serving.loader import ServingSettings

    shown = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"(default {ServingSettings().max_body_mb}, env LEADSCORE_MAX_BODY_MB)" in shown, shown
    _, env = serve_command(max_body_mb=8, environ={"LEADSCORE_MAX_BODY_MB": "50"})
    assert env["LEADSCORE_MAX_BODY_MB"] == "8"  # the option wins over the environment
    assert ServingSettings.from_env({"LEADSCORE_MAX_BODY_MB": "8"}, endpoint=True).max_body_bytes == 8 << 20
    assert "LEADSCORE_MAX_BODY_MB" not in serve_command(environ={})[1]  # unset: the server's default


def test_the_request_timeout_reaches_bentoml_and_its_help_states_the_default() -> None:
    """BentoML's request timeout was fixed at 30 s in the service: the largest request the limits allow
    (10 s of CPU) got a 504 on a busy machine. Its default is now 120 s, and LEADSCORE_REQUEST_TIMEOUT_SECONDS
    or --request-timeout reach BentoML (which reads it before the service reads its settings), other traffic
    settings the caller gave kept."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from serving.loader import ServingSettings
    from serving.service import LeadScoringService

    default = ServingSettings().request_timeout_seconds
    assert LeadScoringService.config["traffic"]["timeout"] == default == 120
    shown = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"(default {default:g}, env LEADSCORE_REQUEST_TIMEOUT_SECONDS)" in shown, shown
    given = json.dumps({"services": {"lead_scoring": {"traffic": {"max_concurrency": 8}}}})
    _, env = serve_command(environ={"LEADSCORE_REQUEST_TIMEOUT_SECONDS": "300", "BENTOML_CONFIG_OVERRIDES": given})
    assert json.loads(env["BENTOML_CONFIG_OVERRIDES"])["services"]["lead_scoring"]["traffic"] == {
        "max_concurrency": 8, "timeout": 300.0}
    assert env["LEADSCORE_REQUEST_TIMEOUT_SECONDS"] == "300"
    _, env = serve_command(request_timeout=45, environ={"LEADSCORE_REQUEST_TIMEOUT_SECONDS": "300"})
    assert json.loads(env["BENTOML_CONFIG_OVERRIDES"])["services"]["lead_scoring"]["traffic"] == {"timeout": 45.0}
    assert ServingSettings.from_env(env, endpoint=True).request_timeout_seconds == 45
    assert "BENTOML_CONFIG_OVERRIDES" not in serve_command(environ={})[1]  # unset: the service's default


@pytest.mark.parametrize(("variable", "value", "needle"), [
    ("LEADSCORE_MAX_BATCH", "20000", "LEADSCORE_MAX_BATCH=20000: Input should be less than or equal to 10000"),
    ("LEADSCORE_TOP_K", "many", "LEADSCORE_TOP_K=many: Input should be a valid integer"),
    ("LEADSCORE_TOP_K", "30", "LEADSCORE_TOP_K=30: the endpoint gives at most 20 reasons per lead"),
    ("LEADSCORE_GRADE_CUTOFFS", "5,10,20", "LEADSCORE_GRADE_CUTOFFS=5,10,20: Value error, grade_cutoffs must be"),
    ("LEADSCORE_RELOAD_SECONDS", "-1", "LEADSCORE_RELOAD_SECONDS=-1: Input should be greater than or equal to 0"),
    ("LEADSCORE_MAX_BODY_MB", "0", "LEADSCORE_MAX_BODY_MB=0: Input should be greater than or equal to 1"),
    ("LEADSCORE_MAX_BODY_MB", "1.5", "LEADSCORE_MAX_BODY_MB=1.5: Input should be a valid integer"),
    ("LEADSCORE_MAX_BODY_MB", "4096", "LEADSCORE_MAX_BODY_MB=4096: Input should be less than or equal to 1024"),
    ("LEADSCORE_RECEIVE_TIMEOUT_SECONDS", "0", "LEADSCORE_RECEIVE_TIMEOUT_SECONDS=0: Input should be greater than 0"),
    ("LEADSCORE_RECEIVE_TIMEOUT_SECONDS", "120", "LEADSCORE_RECEIVE_TIMEOUT_SECONDS=120 must be below "
     "LEADSCORE_REQUEST_TIMEOUT_SECONDS=120: the request timeout counts from the request's headers"),
    ("LEADSCORE_REQUEST_TIMEOUT_SECONDS", "0", "LEADSCORE_REQUEST_TIMEOUT_SECONDS=0: Input should be greater than or equal to 1"),
    ("LEADSCORE_REQUEST_TIMEOUT_SECONDS", "5", "LEADSCORE_RECEIVE_TIMEOUT_SECONDS=10 must be below "
     "LEADSCORE_REQUEST_TIMEOUT_SECONDS=5"),
    ("LEADSCORE_RECEIVE_TIMEOUT_SECONDS", "soon", "LEADSCORE_RECEIVE_TIMEOUT_SECONDS=soon: Input should be a valid number"),
])
def test_serve_refuses_a_bad_setting_before_the_server_starts(tmp_path: Path, monkeypatch, variable, value,
                                                              needle) -> None:
    """The server would read it at start-up, fail, and restart its worker forever while nothing answers."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    def started(*args: object) -> None:
        raise AssertionError("the server was started")

    monkeypatch.setattr("os.execve", started)
    monkeypatch.setattr("os.chdir", lambda path: None)
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--port", "1"],
                                env={"COLUMNS": "300", "NO_COLOR": "1", variable: value})
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.stderr.split()), result.stderr


def test_an_api_key_no_http_header_can_carry_is_refused_without_showing_the_keys(tmp_path: Path, monkeypatch) -> None:
    """A key with non-ASCII characters ("ключ") was accepted, and then every request sending it got 401: the
    header's UTF-8 bytes arrive read as Latin-1. Refused at start-up, naming the key's position, not its value."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    monkeypatch.setattr("os.execve", lambda *args: (_ for _ in ()).throw(AssertionError("the server was started")))
    monkeypatch.setattr("os.chdir", lambda path: None)
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--port", "1"],
                                env={"COLUMNS": "300", "NO_COLOR": "1", "LEADSCORE_API_KEYS": "s3cret-one, ключ"})
    assert result.exit_code == 2, result.output
    shown = " ".join(result.stderr.split())
    assert "error: LEADSCORE_API_KEYS: Value error, key 2 of 2 has characters an HTTP header cannot carry" in shown, \
        result.stderr
    assert "s3cret-one" not in shown and "ключ" not in shown



@pytest.mark.parametrize("value", [",", " , ", " "])
def test_api_keys_set_to_no_key_are_refused_not_read_as_no_authentication(value: str, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """``LEADSCORE_API_KEYS`` set to blanks and commas only (a deployment template whose secret came out
    empty) turned authentication off: the service started and answered anyone. Refused at start-up."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from serving.loader import ServingSettings, SettingsError

    with pytest.raises(SettingsError, match="LEADSCORE_API_KEYS"):
        ServingSettings.from_env({"LEADSCORE_MODEL_DIR": str(tmp_path), "LEADSCORE_API_KEYS": value}, endpoint=True)
    monkeypatch.setattr("os.execve", lambda *args: (_ for _ in ()).throw(AssertionError("the server was started")))
    monkeypatch.setattr("os.chdir", lambda path: None)
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--port", "1"],
                                env={"COLUMNS": "300", "NO_COLOR": "1", "LEADSCORE_API_KEYS": value})
    assert result.exit_code == 2, result.output
    assert "LEADSCORE_API_KEYS" in result.stderr, result.stderr

def test_rescore_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    """rescore reads the same settings (LEADSCORE_TOP_K, grade cut-offs ...): one line, no traceback."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    result = CliRunner().invoke(app, ["rescore", "--db", f"sqlite:///{tmp_path / 'crm.db'}"],
                                env={"COLUMNS": "300", "NO_COLOR": "1", "LEADSCORE_TOP_K": "many"})
    assert result.exit_code == 2, result.output
    assert " ".join(result.stderr.split()) == ("error: LEADSCORE_TOP_K=many: Input should be a valid integer, "
                                               "unable to parse string as an integer"), result.stderr


def test_a_bad_reload_seconds_option_is_named_as_the_option(tmp_path: Path, monkeypatch) -> None:
    """``--reload-seconds -1`` was reported as ``LEADSCORE_RELOAD_SECONDS=-1.0``, a variable nobody set."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    monkeypatch.setattr("os.execve", lambda *args: (_ for _ in ()).throw(AssertionError("the server was started")))
    monkeypatch.setattr("os.chdir", lambda path: None)
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--port", "1", "--reload-seconds", "-1"],
                                env={"COLUMNS": "300", "NO_COLOR": "1", "LEADSCORE_RELOAD_SECONDS": ""})
    shown = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert "--reload-seconds" in shown and "LEADSCORE_RELOAD_SECONDS" not in shown, shown


def test_a_request_timeout_option_below_the_receive_timeout_is_named_as_the_option(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    from typer.testing import CliRunner

    from leadscore.cli import app

    monkeypatch.setattr("os.execve", lambda *args: (_ for _ in ()).throw(AssertionError("the server was started")))
    monkeypatch.setattr("os.chdir", lambda path: None)
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--port", "1", "--request-timeout", "5"],
                                env={"COLUMNS": "300", "NO_COLOR": "1", "LEADSCORE_REQUEST_TIMEOUT_SECONDS": "",
                                     "LEADSCORE_RECEIVE_TIMEOUT_SECONDS": ""})
    shown = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert "LEADSCORE_RECEIVE_TIMEOUT_SECONDS=10 must be below --request-timeout 5:" in shown, shown


@pytest.mark.parametrize("project", [None, "elsewhere"])
def test_serve_without_a_store_to_serve_from_is_refused(tmp_path: Path, monkeypatch, project) -> None:
    """Started where no `.demo/mlflow.db` is (or --project-dir without one), and with no exported folder or
    tracking URI, the server came up and checked an empty registry every few seconds, answering 503."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    monkeypatch.setattr("os.execve", lambda *args: (_ for _ in ()).throw(AssertionError("the server was started")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.chdir", lambda path: None)
    (tmp_path / "elsewhere").mkdir()
    args = ["serve", "--port", "1"] + (["--project-dir", project] if project else [])
    env = {"COLUMNS": "300", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": None, "LEADSCORE_MODEL_DIR": None,
           "LEADSCORE_PROJECT_DIR": None}
    result = CliRunner().invoke(app, args, env=env)
    shown = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    store = tmp_path / (project or ".demo") / "mlflow.db"
    assert f"no MLflow store {store.resolve()}" in shown, shown
    assert ("--project-dir" if project else "default project folder .demo") in shown, shown
    assert not store.exists()
