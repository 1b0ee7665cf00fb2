"""The `leadscore` command as a user runs it: real files and databases.

Commands run in this process through typer's runner (``run_cli``, ``_invoke``), except where the process is the
point: the demo (its whole output as a user sees it, MLflow's own prints and log lines included, which must not
show MLflow's routine lines) and the stop by SIGTERM / SIGINT (signals to a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.readers import read_training_set_spec

ROOT = Path(__file__).resolve().parents[2]
LEADSCORE = [sys.executable, "-m", "leadscore.cli"]


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``leadscore *args`` as a separate process, from the repository's folder."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*LEADSCORE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def run_cli(*args: str):
    """``leadscore *args`` in this process: ``returncode``, ``stdout`` and ``stderr`` as a process has them; an
    exception the command does not turn into an exit fails the test (a process would end with a traceback)."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    result.returncode = result.exit_code
    return result


def test_demo_synthesizes_validates_and_builds_features(tmp_path: Path) -> None:
    result = run_process("demo", "--dir", str(tmp_path / "demo"), "--leads", "1500", "--seed", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "validation (strict): ok" in out
    assert "conversion rate" in out and "median time to close" in out
    assert (tmp_path / "demo" / "crm.db").is_file()
    assert (tmp_path / "demo" / "leadscore.yaml").is_file()
    frame = pd.read_parquet(tmp_path / "demo" / "training_set.parquet")
    assert {"lead_id", "as_of", "converted_within_h", "censored"} <= set(frame.columns)
    assert frame["lead_id"].nunique() > 1000
    # the training set carries the spec it was built with, equal to the one written beside it
    spec = read_training_set_spec(tmp_path / "demo" / "training_set.parquet")
    beside = json.loads((tmp_path / "demo" / "training_set.spec.json").read_text(encoding="utf-8"))
    assert spec.to_dict() == beside and spec.columns_ == [c for c in frame.columns if c in spec.columns_]
    # both models were logged as pyfuncs into a new store, without MLflow's routine lines
    assert "registering the challenger" in result.stderr and "1 (alias challenger)" in out
    said = " ".join((out + result.stderr).split())
    assert "registered model refit for deployment" in said and "the backtest's" in said  # training.refit
    assert "snapshots of every date" in said and "outcomes followed to the data end" in said  # time_to_close.refit
    for noise in ("Passing a Python object as `python_model`", "Failed to resolve installed pip version",
                  "Creating initial MLflow database tables", "Downloading artifacts",
                  "Successfully registered model", "Created version '1'"):
        assert noise not in result.stderr, noise


def test_synth_to_parquet_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run_cli("synth", "--out", str(tmp_path / name), "--format", "parquet",
                         "--leads", "800", "--seed", "5")
        assert result.returncode == 0, result.stderr
    for table in ("leads", "events", "outcomes"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / f"{table}.parquet"),
            pd.read_parquet(tmp_path / "b" / f"{table}.parquet"),
        )


def test_synth_refuses_to_overwrite(tmp_path: Path) -> None:
    from leadscore.synth import SynthConfig, write_synthetic

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=300), url, "sql")  # the CRM a first `synth` wrote
    again = run_cli("synth", "--out", url, "--leads", "300")
    assert again.returncode == 1
    # one line naming the CLI option (not the library's overwrite=True); no progress bar left above it
    assert again.stderr.strip().splitlines() == [
        f"error: table 'leads' already exists in database {url}; add --overwrite to replace it"], again.stderr
    replaced = run_cli("synth", "--out", url, "--leads", "300", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert "stored scores dropped" not in replaced.stdout  # there were none


def test_synth_overwrite_drops_the_scores_of_the_replaced_data(tmp_path: Path) -> None:
    """Stored scores name lead ids of the data being replaced: an incremental rescore would take them for
    the new leads' scores. `synth --overwrite` drops them, and says so."""
    from datetime import datetime

    import sqlalchemy as sa

    from leadscore.synth import SynthConfig, write_synthetic
    from serving.score_store import LEAD_SCORES, create_score_tables, lead_scores

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=300), url, "sql")  # the CRM a first `synth` wrote
    engine = sa.create_engine(url)
    create_score_tables(engine)
    at = datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(lead_scores.insert(), [
            {"lead_id": i, "score": 50, "probability": 0.5, "grade": "A", "mql": True, "reasons": "[]",
             "model_name": "lead-conversion", "model_version": "1", "scored_at": at, "as_of": at, "run_id": "r"}
            for i in (1, 2)])
    again = run_cli("synth", "--out", url, "--leads", "300", "--seed", "9", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "stored scores dropped" in again.stdout and "2 (lead_scores" in again.stdout
    assert not sa.inspect(engine).has_table(LEAD_SCORES)
    engine.dispose()
    empty = run_cli("synth", "--out", " ", "--format", "csv", "--leads", "300")
    assert empty.returncode == 2 and "--out is empty" in empty.stderr


def test_validate_reports_contract_violations_by_table_column_and_rule(tmp_path: Path) -> None:
    pd.DataFrame({"Id": [1, 2, 2], "Created": ["2025-01-01", "2025-01-02", "2025-01-03"]}).to_csv(
        tmp_path / "leads.csv", index=False)
    pd.DataFrame({"lead_id": [1, 9], "occurred_at": ["2025-01-05", "2025-01-06"],
                  "event_type": ["email_open", "page_view"]}).to_csv(tmp_path / "events.csv", index=False)
    pd.DataFrame({"lead_id": [1], "converted_at": ["2025-02-01"]}).to_csv(tmp_path / "outcomes.csv", index=False)
    (tmp_path / "leadscore.yaml").write_text(
        "data:\n"
        "  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n"
        "  columns: {leads: {lead_id: Id, created_at: Created}}\n",
        encoding="utf-8",
    )
    result = run_cli("validate", "-c", str(tmp_path / "leadscore.yaml"))
    assert result.returncode == 1
    assert "leads.lead_id: duplicate_lead_id: 2 rows" in result.stderr
    assert "events.lead_id: unknown_lead: 1 row" in result.stderr
    assert "lead_id=9" in result.stderr


def test_validate_a_bad_project_file_names_the_section(tmp_path: Path) -> None:
    (tmp_path / "leadscore.yaml").write_text("data:\n  source: {kind: sql}\n", encoding="utf-8")
    result = run_cli("validate", "-c", str(tmp_path / "leadscore.yaml"))
    assert result.returncode == 2
    assert "source.url is required" in result.stderr


def test_config_and_output_mistakes_are_one_line_errors_and_write_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from leadscore.cli import app
    from leadscore.synth import SynthConfig, write_synthetic

    def run(*args: str):  # in-process: these fail before any heavy work
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, " ".join(result.output.split())

    write_synthetic(SynthConfig(n_leads=150, seed=1, events_per_lead=5), str(tmp_path), "csv")
    source = "  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n"
    project = tmp_path / "leadscore.yaml"
    project.write_text(f"data:\n{source}features: {{cadence: MX, horizon_days: -1}}\n", encoding="utf-8")
    code, output = run("validate", "-c", str(project))
    assert code == 2 and "features.cadence: cadence 'MX' is not a pandas frequency" in output
    assert f"projectfile{project}:features.cadence" in output.replace(" ", "")  # the file named (wrapping aside)
    assert "features.horizon_days: must be a positive number of days" in output

    project.write_text(f"data:\n{source}training: {{points_rules: my_points.yaml}}\n", encoding="utf-8")
    code, output = run("validate", "-c", str(project))  # found before the data is read, as train finds it
    assert code == 2 and f"training.points_rules of project file {project}:" in output and "my_points.yaml" in output

    project.write_text(f"data:\n{source}features: {{start: 2030-01-01}}\n", encoding="utf-8")  # after the data
    out = tmp_path / "out" / "training_set.parquet"
    code, output = run("features", "build", "-c", str(project), "--out", str(out))
    assert code == 1 and "no snapshot" in output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    (tmp_path / "a_folder.parquet").mkdir()
    code, output = run("features", "build", "-c", str(project), "--out", str(tmp_path / "a_folder.parquet"))
    assert code == 2 and "is a folder" in output

    code, output = run("serve", "--project-dir", str(tmp_path / "no" / "such"))
    assert code == 2 and "no such folder" in output and not (tmp_path / "no").exists()


@pytest.mark.usefixtures("real_data_dir")
def test_validate_flat_xeducation_with_only_a_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the path as a user in the repository's folder types it
    result = run_cli("validate", "-c", "configs/xeducation.yaml")
    assert result.returncode == 0, result.stderr
    assert "9,237" in result.stdout
    assert "Asymmetrique Activity Score" in result.stdout


def _invoke(*args: str) -> tuple[int, str]:
    """``leadscore *args`` in this process (refusals before any heavy work): exit code and output."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_synth_destination_and_format_mismatches_are_refused_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative URL taken for a folder would land here
    code, output = _invoke("synth", "--out", "csvdir2", "--leads", "50")
    assert code == 2 and "--out csvdir2: not a SQLAlchemy URL" in output and "--format csv" in output, output
    code, output = _invoke("synth", "--out", "sqlite:///x.db", "--format", "csv", "--leads", "50")
    assert code == 2 and "--out sqlite:///x.db: a database URL, but --format csv" in output, output
    assert list(tmp_path.iterdir()) == []  # neither a folder "sqlite:" nor a database was written
    code, output = _invoke("synth", "--out", "folder", "--format", "parquet", "--leads", "50")
    assert code == 0 and (tmp_path / "folder" / "leads.parquet").is_file(), output
    code, output = _invoke("synth", "--out", "sqlite://", "--leads", "50")  # in memory: nothing would be kept
    assert code == 1 and "in-memory SQLite database" in output, output


def test_demo_and_synth_bounds_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from leadscore.cli import synth

    for option, value in (("--leads", "0"), ("--seed", "-1")):
        code, output = _invoke("demo", "--dir", str(tmp_path / "demo"), option, value)
        assert code == 2 and option in output, output
        assert "Traceback" not in output and "ValidationError" not in output, output
    assert not (tmp_path / "demo").exists()
    # a SynthConfig error that slips past the options' bounds (the demo calls synth as a function)
    with pytest.raises(typer.Exit) as refused:
        synth(out=f"sqlite:///{tmp_path / 'crm.db'}", leads=0)
    assert refused.value.exit_code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --leads: must be at least 1, got 0"]
    assert not (tmp_path / "crm.db").exists()


def test_registration_lines_are_dropped_and_every_other_stderr_line_is_kept(
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from training.tracking import quiet_registration_lines

    with quiet_registration_lines():
        print("Successfully registered model 'lead-conversion'.", file=sys.stderr)
        print("a warning the user must see", file=sys.stderr)
        print("Created version '3' of model 'lead-conversion'.", file=sys.stderr)
    with pytest.raises(RuntimeError), quiet_registration_lines():  # kept lines come out on errors too
        print("the line before the failure", file=sys.stderr)
        raise RuntimeError("boom")
    assert capsys.readouterr().err == "a warning the user must see\nthe line before the failure\n"


def test_mlflow_noise_filter_drops_only_its_messages_and_only_inside_its_scope() -> None:
    import logging

    from training.tracking import MLFLOW_NOISE, quiet_mlflow_noise

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    loggers = [logging.getLogger(name) for name in MLFLOW_NOISE]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        noise = [(logger, prefix + " (details)") for logger in loggers for prefix in MLFLOW_NOISE[logger.name]]
        with quiet_mlflow_noise():
            for logger, message in noise:
                logger.warning(message)
            for logger in loggers:
                logger.warning("a real warning from %s", logger.name)
        assert seen == [f"a real warning from {logger.name}" for logger in loggers]
        seen.clear()
        logger, message = noise[0]
        logger.warning(message)  # outside the scope: shown
        assert seen == [message]
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_job_stopped_by_sigterm_cleans_up_as_after_ctrl_c(stop: str, tmp_path: Path) -> None:
    """SIGTERM (systemd, Kubernetes, kill) left hidden .partial files behind: its default action runs no
    cleanup. The program now treats it as Ctrl-C: the half-written folder is gone. Ctrl-C (SIGINT) itself
    cleaned up but ended with exit 130 and not a word: it now says what it did."""
    import signal
    import time

    from leadscore.cli import INTERRUPTED, TERMINATED

    out = tmp_path / "crm"
    # with Ctrl-C's default action, as from a terminal: a shell starts a background job (`pytest ... &`) with SIGINT
    # ignored, which its children inherit, and synth then ran its 400,000 leads to the end (120 s under load)
    process = subprocess.Popen([*LEADSCORE, "synth", "--out", str(out), "--format", "csv", "--leads", "400000"],
                               cwd=ROOT, env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if out.is_dir() and any(".partial" in p.name for p in out.iterdir()):
                break
            time.sleep(0.2)
        assert process.poll() is None, "synth ended before it could be stopped"
        assert any(".partial" in p.name for p in out.iterdir())
        process.send_signal(getattr(signal, stop))
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    said = " ".join(stderr.split())
    if stop == "SIGTERM":
        assert process.returncode == 128 + signal.SIGTERM and TERMINATED in said, stderr
        assert "rescore --resume" in TERMINATED  # what to do next, as after Ctrl-C
    else:
        assert process.returncode == 128 + signal.SIGINT and INTERRUPTED in said, stderr
    assert not out.exists() or not list(out.iterdir()), sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize("spelling", ["--model-dir", "--models-dir"])
def test_model_dir_refusals_name_the_spelling_given(spelling: str, tmp_path: Path) -> None:
    """`rescore` and `serve` accept --model-dir and --models-dir; their refusals said --model-dir whichever the
    user typed. They name the option on the command line, and a folder that does not exist is a usage error
    naming it (rescore ran and failed with "no champion.json in ...")."""
    models = tmp_path / "models"
    models.mkdir()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    for command in (["rescore", "--db", db], ["serve"]):
        code, output = _invoke(*command, spelling, str(models), "--tracking-uri", store)
        text = " ".join(output.replace("│", " ").split())
        assert code == 2 and f"--tracking-uri with {spelling} {models}:" in text, (command, output)
        code, output = _invoke(*command, spelling, str(tmp_path / "none"))
        text = " ".join(output.replace("│", " ").split())
        assert code == 2 and f"{spelling} {tmp_path / 'none'}: no such folder" in text, (command, output)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "crm.db").exists()
    code, output = _invoke("serve", "--model-dir", str(models), "--models-dir", str(tmp_path))  # which one?
    assert code == 2 and f"--model-dir {models} and --models-dir {tmp_path}: two spellings" in output, output
    for command in ("rescore", "serve"):  # one spelling in the help; the other still accepted
        code, output = _invoke(command, "--help")
        assert code == 0 and "--model-dir" in output and "--models-dir" not in output, output


def test_serve_refuses_a_port_out_of_range_and_a_negative_reload_period_by_option(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--port 99999 started a server announced on http://127.0.0.1:99999; --port -1 blamed the host ("host
    '127.0.0.1' cannot be resolved"); --reload-seconds -5 was named LEADSCORE_RELOAD_SECONDS=-5.0."""
    import leadscore.cli_serve

    def started(*args: object) -> None:
        raise AssertionError(f"the server would start: {args[1]}")

    monkeypatch.setattr(leadscore.cli_serve.os, "execve", started)
    for args, needle in ((["--port", "99999"], "--port"), (["--port", "-1"], "--port"), (["--port", "0"], "--port"),
                         (["--reload-seconds", "-5"], "--reload-seconds")):
        code, output = _invoke("serve", *args)
        assert code == 2 and needle in output and "LEADSCORE_RELOAD_SECONDS" not in output, (args, output)
        assert "cannot be resolved" not in output, output


def test_an_output_folder_that_is_a_file_or_cannot_be_made_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`models export --out` and `demo --dir` naming a file (or a folder under one, or one that cannot be
    created) ended in a Python traceback (FileExistsError / NotADirectoryError from mkdir)."""
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: l.csv, events: e.csv, outcomes: o.csv}\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for command, option in ((["models", "export", "-c", str(project)], "--out"), (["demo"], "--dir")):
        for target, what in ((a_file, "exists and is not a folder"),
                             (a_file / "sub", f"cannot be created: {a_file} is not a folder"),
                             (Path("/proc/leadscore-demo"), "cannot be created: /proc is not writable")):
            code, output = _invoke(*command, option, str(target))
            assert code == 2 and f"{option} {target}: {what}" in " ".join(output.split()), (command, output)
            assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store is opened


def test_rescore_run_errors_are_one_line_in_a_log_or_a_narrow_terminal(tmp_path: Path) -> None:
    """rescore's run failures (database, registry, contract, ...) were hard-wrapped at the console's width
    (80 columns when piped): one error became several lines in a log; the other commands' errors are not."""
    (tmp_path / "models").mkdir()
    missing = tmp_path / ("a-rather-long-folder-name-for-the-lead-database-" * 2) / "crm.db"
    code, output = _invoke("rescore", "--db", f"sqlite:///{missing}", "--model-dir", str(tmp_path / "models"))
    assert code == 1 and "SQLite database file not found" in output, output
    assert output.strip().splitlines() == [f"error: SQLite database file not found: {missing} (from "
                                           f"'sqlite:///{missing}')"], output


def test_rescore_names_a_folder_tracking_uri_and_a_registry_without_the_model_with_what_to_do(tmp_path: Path) -> None:
    """rescore --tracking-uri <folder> printed MLflow's six-line file-store notice (train and the models
    commands refuse it with the sqlite:/// URI to use); a store without the model said only "model
    registry: Registered Model with name=lead-conversion not found"."""
    from mlflow import MlflowClient

    from leadscore.synth import SynthConfig, write_synthetic

    db = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=150, seed=1, events_per_lead=5), db, "sql")
    code, output = _invoke("rescore", "--db", db, "--tracking-uri", str(tmp_path / "store"))
    assert code == 2 and output.strip().splitlines() == [
        f"error: tracking URI '{tmp_path / 'store'}': a folder is MLflow's retired file store; use "
        f"sqlite:///{tmp_path / 'store' / 'mlflow.db'} (a database in that folder) or an http(s):// server"], output
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=store).search_experiments()  # an empty store: no registered model
    code, output = _invoke("rescore", "--db", db, "--tracking-uri", store)
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert "lead-conversion" in output and "leadscore train" in output and "leadscore models promote" in output, output


def test_a_project_file_that_is_not_yaml_is_one_line_with_its_line_and_column(tmp_path: Path) -> None:
    """The YAML parser's message came out whole: nine lines with the file's text and carets."""
    project = tmp_path / "leadscore.yaml"
    project.write_text('data:\n  source: {kind: sql, url: "sqlite:///crm.db"\nfeatures: [\n', encoding="utf-8")
    for command in (["validate"], ["train"], ["rescore"], ["models", "list"]):
        code, output = _invoke(*command, "-c", str(project))
        text = " ".join(output.replace("│", " ").split())
        assert code == 2 and f"project file {project}: not valid YAML: line 3, column 1: expected ',' or '}}'" in text, \
            (command, output)
        assert "while parsing a flow mapping started at line 2, column 11" in text, output
        assert len(output.strip().splitlines()) == 1, output  # rescore's was a Typer usage box


def test_the_command_list_does_not_break_descriptions_where_the_docstring_does() -> None:
    """`leadscore --help` printed validate's and demo's descriptions with their docstring's line breaks
    ("... print a summary (and read the project's" / "points rules file ...") however wide the terminal."""
    code, output = _invoke("--help")
    assert code == 0, output
    rows = [line.strip("│ ").strip() for line in output.splitlines()]
    for name in ("validate", "demo"):
        row = next(r for r in rows if r.startswith(f"{name} "))
        following = rows[rows.index(row) + 1]
        assert following.split(" ")[0] in ("demo", "train"), (row, following)  # one line at 200 columns


def test_commands_that_read_the_registry_do_not_create_an_empty_store(tmp_path: Path) -> None:
    """evaluate and the models commands on a project never trained created an empty mlflow.db beside it
    and then reported an unknown model; they now name the missing store and what to do."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from leadscore.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(n_leads=150, seed=1, events_per_lead=5), str(tmp_path), "csv")
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n",
                       encoding="utf-8")
    store = tmp_path / "mlflow.db"
    for args in (["evaluate"], ["models", "list"], ["models", "promote"], ["models", "rollback"],
                 ["models", "export", "--out", str(tmp_path / "models")]):
        result = CliRunner().invoke(app, [*args, "-c", str(project)],
                                    env={"COLUMNS": "300", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": None})
        shown = " ".join(result.output.split())
        assert result.exit_code == 1, (args, result.output)
        assert f"no MLflow store {store}: nothing is trained or registered there yet" in shown, (args, shown)
        assert f"leadscore train -c {project}" in shown, (args, shown)
        assert not store.exists(), args


def test_train_refuses_a_project_without_snapshots_as_features_build_does(tmp_path: Path) -> None:
    """With ``features.start`` after the data, `features build` said "no snapshot: no lead is open at any as-of
    date", but `train` said "time split: no labelled snapshot (every 90-day label window is still open ...)" and
    `train --target time-to-close` "NaTType does not support strftime", each after creating mlflow.db beside the
    project. The training set is now built and refused in one place: the same message, and no store created."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from leadscore.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(n_leads=300, seed=1, events_per_lead=5), str(tmp_path), "csv")
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n"
                       "features: {start: 2030-01-01}\n", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["features", "build", "--out", str(tmp_path / "out" / "training_set.parquet")], ["train"],
                 ["train", "--target", "time-to-close"]):
        result = CliRunner().invoke(app, [*args, "-c", str(project)],
                                    env={"COLUMNS": "300", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": None})
        shown = " ".join(result.output.split())
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, shown)
        assert "error: no snapshot: no lead is open at any as-of date (check features.start" in shown, (args, shown)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, args  # no mlflow.db, no out/


def test_train_refuses_a_store_it_cannot_create_before_reading_the_data(tmp_path: Path) -> None:
    """A new SQLite store is created only when the run is logged: a folder where it cannot be made (a traceback
    from MLflow's mkdir before) is one line naming the store, exit 2, before the data is read."""
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: l.csv, events: e.csv, outcomes: o.csv}\n", encoding="utf-8")
    store = Path("/proc/leadscore/mlflow.db")
    code, output = _invoke("train", "-c", str(project), "--tracking-uri", f"sqlite:///{store}")
    assert code == 2, output
    assert output.strip().splitlines() == [
        f"error: MLflow store {store}: cannot be created: /proc is not writable (No such file or directory)"], output


def test_promote_names_an_unknown_metric_as_a_usage_error_before_opening_the_store(tmp_path: Path) -> None:
    """`models promote --metric nosuch` exited 1 with "metric 'nosuch' cannot decide the promotion of a
    sales_readiness model; ..." after opening the store and reading the challenger (or with "no challenger"
    when there was none), never naming --metric."""
    store = tmp_path / "mlflow.db"
    code, output = _invoke("models", "promote", "--tracking-uri", f"sqlite:///{store}", "--metric", "nosuch")
    assert code == 2, output
    assert output.strip().splitlines() == [
        "error: --metric nosuch: not a metric that can decide a promotion; use one of roc_auc, pr_auc, log_loss, "
        "brier, top_decile_lift, top_decile_capture (sales-readiness models) or uno_c, harrell_c, ibs "
        "(time-to-close models)"], output
    assert not store.exists()  # refused before the store is opened


def test_features_build_refuses_an_out_it_cannot_write_before_building(tmp_path: Path) -> None:
    """`features build --out /proc/x.parquet` built the whole training set, then said "could not write the
    training set: [Errno 2] Failed to open local file '/proc/.x.parquet.<pid>.tmp'" (a hidden temporary file,
    not --out; exit 1). The destination is tried first: one line naming the option, exit 2, no data read."""
    from leadscore.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(n_leads=150, seed=1, events_per_lead=5), str(tmp_path), "csv")
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n",
                       encoding="utf-8")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    for option, path, problem in (
            ("--out", Path("/proc/x.parquet"), "cannot be written: /proc is not writable (No such file or directory)"),
            ("--out", Path("/proc/sub/x.parquet"), "cannot be created: /proc is not writable (No such file or directory)"),
            ("--out", a_file / "x.parquet", f"cannot be created: {a_file} is not a folder"),
            ("--spec-out", a_file / "deeper" / "x.json", f"cannot be created: {a_file} is not a folder")):
        code, output = _invoke("features", "build", "-c", str(project), option, str(path))
        assert code == 2, output
        assert output.strip().splitlines() == [f"error: {option} {path}: {problem}"], output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even a probe file
    out = tmp_path / "new" / "folder" / "training_set.parquet"  # folders that can be made are made
    code, output = _invoke("features", "build", "-c", str(project), "--out", str(out))
    assert code == 0 and out.is_file() and out.with_suffix(".spec.json").is_file(), output


def test_features_build_names_its_out_when_the_disk_fills_while_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the training set is written (after the destination check passed): the error named
    the hidden temporary file (".training_set.parquet.<pid>.tmp"); now the files asked for, one line, exit 1,
    the earlier files as they were and no temporary file left."""
    import features.writers
    from leadscore.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(n_leads=150, seed=1, events_per_lead=5), str(tmp_path), "csv")
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n",
                       encoding="utf-8")
    out = tmp_path / "set" / "training_set.parquet"
    out.parent.mkdir()
    out.write_bytes(b"earlier")
    spec = out.with_suffix(".spec.json")
    spec.write_text("{}", encoding="utf-8")

    def full_disk(frame: object, spec_text: str, path: Path, lineage: object = None) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(features.writers, "write_training_set", full_disk)
    code, output = _invoke("features", "build", "-c", str(project), "--out", str(out))
    assert code == 1, output
    assert output.strip().splitlines()[-1] == (f"error: the training set {out} and its spec {spec} could not be "
                                               "written (No space left on device); no file was replaced"), output
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, spec.name]
    assert out.read_bytes() == b"earlier" and spec.read_text(encoding="utf-8") == "{}"


def test_a_points_rules_file_that_is_not_yaml_is_one_line_with_its_line_and_column(tmp_path: Path) -> None:
    """The points rules file's YAML error came out whole (the parser's seven lines, with the file's text,
    carets and "<unicode string>"), where the project file's is one line with its line and column."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("name: mine\nbehaviour: {demo_request: 20\nfit:\n  - {column: seniority, points: 5}\n",
                     encoding="utf-8")
    project = tmp_path / "leadscore.yaml"
    source = "data:\n  source: {kind: csv, leads: l.csv, events: e.csv, outcomes: o.csv}\n"
    project.write_text(source, encoding="utf-8")
    expected = (f"points rules file {rules}: not valid YAML: line 3, column 4: expected ',' or '}}', but got ':' "
                "(while parsing a flow mapping started at line 2, column 12)")
    code, output = _invoke("train", "-c", str(project), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                           "--points-rules", str(rules))
    assert code == 2 and output.strip().splitlines() == [f"error: --points-rules: {expected}"], output
    project.write_text(f"{source}training: {{points_rules: {rules.name}}}\n", encoding="utf-8")
    code, output = _invoke("validate", "-c", str(project))
    assert code == 2, output
    assert output.strip().splitlines() == [f"error: training.points_rules of project file {project}: {expected}"], output


def test_registry_commands_take_a_sqlite_store_uri_with_query_parameters(tmp_path: Path) -> None:
    """``sqlite:///<file>?timeout=20`` (SQLAlchemy's query parameters, which MLflow passes on) names an existing
    store: the missing-store check took the query for part of the file name and refused it."""
    from mlflow import MlflowClient

    store = tmp_path / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()  # an existing, empty store
    plain_code, plain = _invoke("models", "list", "--tracking-uri", f"sqlite:///{store}")
    code, output = _invoke("models", "list", "--tracking-uri", f"sqlite:///{store}?timeout=20")
    assert "no MLflow store" not in output and code == plain_code, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"], plain  # no second store beside it
    missing = tmp_path / "none.db"
    code, output = _invoke("models", "list", "--tracking-uri", f"sqlite:///{missing}?timeout=20")
    assert code == 1 and f"no MLflow store {missing}:" in " ".join(output.split()), output
    assert not missing.exists()


def test_validate_names_a_quarantine_dir_it_cannot_write_not_a_read_failure(tmp_path: Path) -> None:
    pd.DataFrame({"lead_id": [1, 2], "created_at": ["2025-01-01", "soon"]}).to_csv(tmp_path / "leads.csv", index=False)
    pd.DataFrame({"lead_id": [1], "occurred_at": ["2025-01-05"], "event_type": ["email_open"]}).to_csv(
        tmp_path / "events.csv", index=False)
    pd.DataFrame({"lead_id": [1], "converted_at": [None]}).to_csv(tmp_path / "outcomes.csv", index=False)
    (tmp_path / "q").write_text("a file where the folder should be")
    (tmp_path / "leadscore.yaml").write_text(
        "data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n"
        "  policy: quarantine\n  quarantine_dir: q\n", encoding="utf-8")
    code, output = _invoke("validate", "-c", str(tmp_path / "leadscore.yaml"))
    assert code == 1
    assert f"error: could not write the quarantine files: quarantine_dir {tmp_path / 'q'}: File exists" in output
    assert "could not read the data" not in output


def test_refusals_print_square_brackets_the_user_typed_as_typed(tmp_path: Path) -> None:
    """An error line is rich text: a path with "[/x]" in it ended the command with rich's MarkupError traceback
    (exit 1), and one with "[bold]" in it was named without that part. Every command's refusal shows the
    text as typed, on one line, with its exit code."""
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    for args, named in ((["rescore", "--db", db, "--out", str(tmp_path / "[/x].txt")], f"--out {tmp_path}/[/x].txt: "),
                        (["forecast", "--model-dir", str(tmp_path / "[bold]gone")], f"--model-dir {tmp_path}/[bold]gone: "),
                        (["synth", "--out", "[red]folder"], "--out [red]folder: not a SQLAlchemy URL"),
                        (["serve", "--model-dir", str(tmp_path / "[/]")], f"--model-dir {tmp_path}/[/]: no such folder")):
        code, output = _invoke(*args)
        assert code == 2 and f"error: {named}" in output, (args, output)
    assert list(tmp_path.iterdir()) == []


def test_result_lines_print_square_brackets_as_they_are(tmp_path: Path) -> None:
    """The lines naming what a command wrote are rich text too: `features build --out` to a folder holding
    "[bold]" in its name printed "training set -> .../x/training_set.parquet" (the folder's name dropped), and
    "[/x]" ended it with rich's MarkupError after the files were written."""
    from leadscore.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(n_leads=150, seed=1, events_per_lead=5), str(tmp_path), "csv")
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n",
                       encoding="utf-8")
    for name in ("[bold]x", "[/x]"):
        out = tmp_path / name / "training_set.parquet"
        code, output = _invoke("features", "build", "-c", str(project), "--out", str(out))
        flat = "".join(output.split())  # the line may wrap at the terminal's width
        assert code == 0 and "".join(f"training set -> {out}".split()) in flat, output
        assert out.is_file()


def test_progress_lines_print_square_brackets_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    """A progress line is rich text too: one holding "[/x]" raised rich's MarkupError."""
    from leadscore.cli_options import say

    say("reading [/x] and [bold]y")
    assert "- reading [/x] and [bold]y" in capsys.readouterr().err


def test_rescore_refuses_more_processes_than_it_takes_by_option(tmp_path: Path) -> None:
    """--processes 300 passed the option's check (x>=1) and ended in pydantic's ValidationError traceback from
    RescoreConfig (at most 256); now the option says its range and refuses it as a usage error."""
    (tmp_path / "models").mkdir()
    code, output = _invoke("rescore", "--db", f"sqlite:///{tmp_path / 'crm.db'}", "--model-dir",
                           str(tmp_path / "models"), "--processes", "300")
    assert code == 2 and "--processes" in output and "256" in output, output
    assert "Traceback" not in output and "ValidationError" not in output, output


def test_features_build_refuses_an_out_that_is_not_parquet_before_building(tmp_path: Path) -> None:
    """`features build --out ts.csv` wrote Parquet bytes into ts.csv (and the spec into ts.spec.json) without a
    word: a user opening it in a spreadsheet sees binary. Any suffix but .parquet is refused before any work."""
    project = tmp_path / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n",
                       encoding="utf-8")
    for name in ("ts.csv", "ts", "ts.PARQUET.gz"):
        code, output = _invoke("features", "build", "-c", str(project), "--out", str(tmp_path / name))
        assert code == 2, output
        assert output.strip().splitlines() == [
            f"error: --out {tmp_path / name}: the training set is written as Parquet: name it with the suffix "
            ".parquet"], output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leadscore.yaml"]
