"""`leadscore forecast` from the two champions: exported folders and a real MLflow registry (the CLI
runs in-process through typer's runner: the subprocess start-up is covered by tests/integration/test_cli.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.project import project_yaml, sqlite_project
from leadscore.synth import SynthConfig, write_synthetic
from tests.serving_fixtures import (
    TIME_TO_CLOSE_NAME,
    ChampionRegistry,
    export_champion,
    export_time_to_close,
    train_small_champion,
    train_small_time_to_close,
)

N_LEADS, SEED = 800, 4
AS_OF = "2026-03-01"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project file over a synthetic CRM (same generator as the champions, another seed)."""
    folder = tmp_path_factory.mktemp("forecast-project")
    config = sqlite_project(folder)
    write_synthetic(SynthConfig(n_leads=1500, seed=9), config.data.source.url, "sql", overwrite=True)
    path = folder / "leadscore.yaml"
    path.write_text(project_yaml(config), encoding="utf-8")
    return path


def run_cli(*args: str):
    """``leadscore *args`` in this process; ``stdout`` / ``stderr`` / ``returncode`` like subprocess."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    result.returncode = result.exit_code
    return result


def _check_outputs(out: Path, stdout: str) -> pd.DataFrame:
    months = pd.read_csv(out / "forecast_months.csv")
    assert len(months) == 6 and months["month"].iloc[0] == "2026-03"
    assert (months["expected_revenue"] > 0).all() and (months["low"] <= months["expected_revenue"]).all()
    assert (months["expected_revenue"] <= months["high"]).all()
    leads = pd.read_csv(out / "forecast_leads.csv")
    assert leads["lead_id"].is_unique and len(leads) > 100
    assert months["expected_revenue"].sum() == pytest.approx(leads["expected_revenue"].sum(), rel=1e-6)
    assert (out / "forecast.png").stat().st_size > 10_000
    assert "revenue forecast as of 2026-03-01" in stdout
    # the recalibration of the sales-readiness probabilities says what it fitted (this CRM has enough
    # closed snapshots before the forecast date for it to fit)
    assert "sales-readiness probabilities recalibrated (Platt: slope" in stdout, stdout
    return months


def test_forecast_from_exported_champions(project: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    export_champion(train_small_champion(N_LEADS, SEED).model, models, version="1")
    export_time_to_close(train_small_time_to_close(N_LEADS, SEED), models, version="2")
    result = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--as-of", AS_OF,
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    _check_outputs(tmp_path / "out", result.stdout)
    assert "exportedchampions" in "".join(result.stdout.split())  # the title wraps at the table width
    # no --as-of: the forecast is made at the end of the data (the synthetic history ends 2026-06-30),
    # whose last hours start the months with July
    default = run_cli("forecast", "-c", str(project), "--models-dir", str(models))
    assert default.returncode == 0, default.stderr
    assert "revenue forecast as of 2026-06-30" in default.stdout and "2026-07" in default.stdout
    assert "low / high: 90% interval (analytic)" in " ".join(default.stdout.split())
    # the option takes what the project file takes (it refused 0.3, the file took it); outside (0, 1) by name
    narrow = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--interval", "0.3")
    assert narrow.returncode == 0 and "low / high: 30% interval" in " ".join(narrow.stdout.split()), narrow.stderr
    wrong = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--interval", "1.5")
    assert wrong.returncode == 2 and "--interval: must be above 0 and below 1, got 1.5" in wrong.stderr, wrong.stderr
    # after the data end the open leads would include those closed since: refused, by name
    late = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--as-of", "2030-01-01")
    assert late.returncode == 1 and "after the end of the data (2026-06-30" in late.stderr
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    refused = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--out", str(not_a_folder))
    assert refused.returncode == 2 and "is not a folder" in refused.stderr


def test_exported_folders_that_cannot_forecast_are_refused_by_name(project: Path, tmp_path: Path) -> None:
    """A sales-readiness folder without its calibrator, or holding the time-to-close model, is refused in one
    line naming the folder (it was a traceback, and a bare ``'booster_config'``)."""
    models = tmp_path / "models"
    readiness = export_champion(train_small_champion(N_LEADS, SEED).model, models, version="1")
    closing = export_time_to_close(train_small_time_to_close(N_LEADS, SEED), models, version="2")
    meta_path = readiness / "model" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "calibrator": None}))
    uncalibrated = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--as-of", AS_OF)
    assert uncalibrated.returncode == 1, uncalibrated.output
    assert "has no calibrator" in uncalibrated.stderr and str(readiness / "model") in uncalibrated.stderr
    shutil.rmtree(readiness)
    shutil.copytree(closing, readiness)  # lead-conversion/ now holds the time-to-close model
    swapped = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--as-of", AS_OF)
    assert swapped.returncode == 1, swapped.output
    assert f"{readiness} holds the champion of 'lead-time-to-close', not the sales_readiness model" in swapped.stderr


def test_forecast_from_registered_champions_names_their_versions(project: Path, tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path / "registry")
    champion = train_small_champion(N_LEADS, SEED)
    readiness = registry.register(champion.model, champion.features, mql_cutoff=5, trained_at="2026-06-01")
    closing = registry.register_time_to_close(train_small_time_to_close(N_LEADS, SEED), champion.features,
                                              trained_at="2026-06-01")
    missing = run_cli("forecast", "-c", str(project), "--tracking-uri", registry.uri, "--as-of", AS_OF)
    assert missing.returncode == 1 and "no registered model 'lead-conversion'" in missing.stderr  # no alias yet
    assert "(leadscore train / leadscore models promote)" in missing.stderr, missing.stderr
    registry.promote(readiness)
    # the error names the commands that make the other champion, not the plain ones
    missing = run_cli("forecast", "-c", str(project), "--tracking-uri", registry.uri, "--as-of", AS_OF)
    assert missing.returncode == 1 and f"no registered model '{TIME_TO_CLOSE_NAME}'" in missing.stderr
    assert (f"(leadscore train --target time-to-close / leadscore models promote --model-name {TIME_TO_CLOSE_NAME})"
            in missing.stderr), missing.stderr
    registry.promote(closing, TIME_TO_CLOSE_NAME)
    result = run_cli("forecast", "-c", str(project), "--tracking-uri", registry.uri, "--as-of", AS_OF,
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    _check_outputs(tmp_path / "out", result.stdout)
    assert f"lead-conversion v{readiness}" in result.stdout and f"{TIME_TO_CLOSE_NAME} v{closing}" in result.stdout


def test_backtest_needs_a_past_date_and_crm_data(project: Path, tmp_path: Path) -> None:
    no_date = run_cli("forecast", "-c", str(project), "--backtest")
    assert no_date.returncode == 2 and "--backtest needs --as-of" in no_date.output, no_date.output
    too_early = run_cli("forecast", "-c", str(project), "--backtest", "--as-of", "2020-01-01")
    assert too_early.returncode == 1, too_early.output  # was "leads: no created_at values to derive the first as-of date"
    assert ("backtest date 2020-01-01 00:00: no lead was created before it (the first lead is created 2024-"
            in " ".join(too_early.stderr.split())), too_early.stderr
    too_late = run_cli("forecast", "-c", str(project), "--backtest", "--as-of", "2026-07-15")
    assert too_late.returncode == 1 and "is not before the end of the data" in too_late.output, too_late.output
    flat = tmp_path / "flat.yaml"
    flat.write_text("data:\n  mode: flat\n  source: {path: x.csv}\n  id_column: Id\n  label_column: y\n")
    refused = run_cli("forecast", "-c", str(flat), "--backtest", "--as-of", AS_OF)
    assert refused.returncode == 2 and "forecasting needs the CRM data mode" in refused.output, refused.output


def test_backtest_refuses_the_champion_options_it_would_not_use(project: Path, tmp_path: Path) -> None:
    """The backtest trains its own two models: --models-dir / --tracking-uri on the command line are refused
    (one line, exit 2) before any work; MLFLOW_TRACKING_URI in the environment (as `mlflow run` sets it) is not."""
    for extra, named in ((["--models-dir", str(tmp_path / "models")], "--models-dir"),
                         (["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], "--tracking-uri")):
        refused = run_cli("forecast", "-c", str(project), "--backtest", "--as-of", AS_OF, "--out",
                          str(tmp_path / "out"), *extra)
        assert refused.returncode == 2, refused.output
        assert refused.stderr.strip().splitlines() == [
            f"error: {named}: not used with --backtest, which trains both models on the data known at --as-of; "
            "drop it"], refused.stderr
    assert not (tmp_path / "out").exists()
    from_env = CliRunner().invoke(app, ["forecast", "-c", str(project), "--backtest"],
                                  env={"COLUMNS": "200", "NO_COLOR": "1",
                                       "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert from_env.exit_code == 2 and "--backtest needs --as-of" in from_env.output, from_env.output


def test_models_dir_of_the_wrong_models_is_refused_by_name(project: Path, tmp_path: Path) -> None:
    """--models-dir at one model's folder (both names resolved to it: the readiness loader died on a KeyError,
    "error: 'booster_config'"), a folder missing one champion, and two champions of different feature settings
    (the readiness model was scored with the hazard model's features: half-lives of 7 days for a model trained
    on 14, silently) are refused with what to do."""
    from features.build import build_training_set
    from features.snapshots import DAYS_OBSERVED, EVENT_OBSERVED
    from features.spec import FeatureConfig
    from training.config import BoosterConfig
    from training.sales_readiness import feature_columns_of
    from training.survival_config import TimeToCloseConfig
    from training.time_to_close import TimeToCloseModel

    champion = train_small_champion(N_LEADS, SEED)
    models = tmp_path / "models"
    export_champion(champion.model, models, version="1")
    only_one = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--as-of", AS_OF)
    assert only_one.returncode == 1, only_one.output
    assert f"export the '{TIME_TO_CLOSE_NAME}' champion there (leadscore models export --out {models} --model-name " \
           f"{TIME_TO_CLOSE_NAME})" in " ".join(only_one.stderr.split()), only_one.stderr
    export_time_to_close(train_small_time_to_close(N_LEADS, SEED), models, version="2")
    one_folder = run_cli("forecast", "-c", str(project), "--models-dir", str(models / TIME_TO_CLOSE_NAME), "--as-of",
                         AS_OF)
    assert one_folder.returncode == 1, one_folder.output
    assert (f"holds the champion of '{TIME_TO_CLOSE_NAME}', not the sales_readiness model 'lead-conversion': point "
            f"--models-dir at the folder holding lead-conversion/ and {TIME_TO_CLOSE_NAME}/"
            in " ".join(one_folder.stderr.split())), one_folder.stderr

    ts = build_training_set(champion.crm, FeatureConfig(half_life_days=7.0))
    X = ts.frame[feature_columns_of(ts.frame, ts.spec)]
    config = TimeToCloseConfig(booster=BoosterConfig(max_rounds=5, early_stopping_rounds=5, num_threads=1),
                               linear_base=False)
    other = TimeToCloseModel(config).fit(X, ts.frame[DAYS_OBSERVED].to_numpy(dtype=float),
                                         ts.frame[EVENT_OBSERVED].to_numpy().astype(bool), spec=ts.spec,
                                         num_boost_round=5)
    export_time_to_close(other, models, version="3")
    mixed = run_cli("forecast", "-c", str(project), "--models-dir", str(models), "--as-of", AS_OF)
    assert mixed.returncode == 1, mixed.output
    assert ("the sales-readiness and time-to-close models were trained with different feature settings "
            "(half_life_days 14.0 vs 7.0)" in " ".join(mixed.stderr.split())), mixed.stderr


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    export_champion(train_small_champion(N_LEADS, SEED).model, models, version="1")
    export_time_to_close(train_small_time_to_close(N_LEADS, SEED), models, version="2")
    return models


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_work(project: Path, exported: Path,
                                                                         tmp_path: Path) -> None:
    """--out under a file (or anywhere it cannot be made) is refused at once, naming the option, in one line,
    exit 2: it was a NotADirectoryError traceback after the whole forecast had been computed."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out in (a_file / "out", a_file / "deeper" / "out"):
        refused = run_cli("forecast", "-c", str(project), "--models-dir", str(exported), "--as-of", AS_OF,
                          "--out", str(out))
        assert refused.returncode == 2, refused.output
        assert isinstance(refused.exception, SystemExit), refused.exception  # no traceback
        assert refused.stderr.strip().splitlines() == [
            f"error: --out {out}: cannot be created: {a_file} is not a folder"], refused.stderr
        assert "loading and validating data" not in refused.stderr  # refused before the data is read
    # a location no one can write in, even root (whom permission bits do not stop): /proc takes no new entry
    proc = run_cli("forecast", "-c", str(project), "--models-dir", str(exported), "--as-of", AS_OF,
                   "--out", "/proc/leadscore-forecast")
    assert proc.returncode == 2 and isinstance(proc.exception, SystemExit), proc.output
    assert "error: --out /proc/leadscore-forecast: cannot be created: /proc is not writable" in proc.stderr


def test_an_output_name_taken_by_a_folder_is_refused_and_nothing_is_written(project: Path, exported: Path,
                                                                           tmp_path: Path) -> None:
    """forecast.png a folder in --out: refused in one line naming the file, nothing written (the CSV files were
    written, then an IsADirectoryError traceback)."""
    out = tmp_path / "out"
    (out / "forecast.png").mkdir(parents=True)
    failed = run_cli("forecast", "-c", str(project), "--models-dir", str(exported), "--as-of", AS_OF,
                     "--out", str(out))
    assert failed.returncode == 2, failed.output
    assert isinstance(failed.exception, SystemExit), failed.exception
    assert f"error: --out {out}: {out / 'forecast.png'} exists and is not a file" in failed.stderr, failed.stderr
    assert sorted(p.name for p in out.iterdir()) == ["forecast.png"]


def test_an_interrupted_write_leaves_the_earlier_forecast_whole(tmp_path: Path) -> None:
    """Ctrl-C (or SIGTERM, which the program turns into Ctrl-C) while the files are written: the earlier
    forecast's files stay as they were and no temporary file is left."""
    from leadscore.cli_forecast import _write

    out = tmp_path / "out"
    months = pd.DataFrame({"month": ["2026-03"], "expected_revenue": [1.0]})
    leads = pd.DataFrame({"lead_id": [1], "expected_revenue": [1.0]})

    class Figure:
        def __init__(self, interrupt: bool) -> None:
            self.interrupt = interrupt

        def savefig(self, path, **_) -> None:
            if self.interrupt:
                raise KeyboardInterrupt
            Path(path).write_bytes(b"png")

    _write(out, months, leads, Figure(False))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["forecast.png", "forecast_leads.csv", "forecast_months.csv"]
    with pytest.raises(KeyboardInterrupt):
        _write(out, months.assign(expected_revenue=2.0), leads.assign(expected_revenue=2.0), Figure(True))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.fixture()
def quarantining(project: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """The project's CRM with one deal won before its lead was created, under the quarantine policy; the
    project file, the quarantine folder and the note the commands should print."""
    import sqlite3

    folder = tmp_path / "dirty"
    folder.mkdir()
    shutil.copy(project.parent / "crm.db", folder / "crm.db")
    with sqlite3.connect(folder / "crm.db") as db:
        lead, created = db.execute("SELECT lead_id, created_at FROM leads WHERE lead_id NOT IN "
                                   "(SELECT lead_id FROM outcomes WHERE converted_at IS NOT NULL) "
                                   "ORDER BY lead_id LIMIT 1").fetchone()
        db.execute("DELETE FROM outcomes WHERE lead_id = ?", (lead,))
        db.execute("INSERT INTO outcomes (lead_id, converted_at, amount) VALUES (?, '2024-01-01 00:00:00', 100.0)",
                   (lead,))
        events = db.execute("SELECT COUNT(*) FROM events WHERE lead_id = ?", (lead,)).fetchone()[0]
    config = folder / "leadscore.yaml"
    # `train` on it is read for its notes, not its figures, the Cox peer's grid nor the refits for deployment
    # (forecasts read data: only)
    config.write_text(f"name: dirty\ndata:\n  mode: crm\n  source: {{kind: sql, url: 'sqlite:///crm.db'}}\n"
                      f"  policy: quarantine\n  quarantine_dir: {folder / 'quarantine'}\n"
                      "training: {make_plots: false, refit: false}\n"
                      "time_to_close: {make_plots: false, cox_penalizers: [0.01], refit: false}\n",
                      encoding="utf-8")
    note = (f"the data contract quarantined rows (quarantine policy): leads 1, events {events}, outcomes 1; they "
            f"are left out (rows and reasons in {folder / 'quarantine'})")  # the lead takes its events with it
    return config, folder / "quarantine", note


def test_a_forecast_says_what_the_quarantine_left_out(quarantining: tuple[Path, Path, str], exported: Path) -> None:
    """Under the quarantine policy the forecast leaves the quarantined leads out of the pipeline: it says so,
    with the counts and the folder (it said nothing: a lead left out of the open pipeline silently)."""
    config, _, note = quarantining
    result = run_cli("forecast", "-c", str(config), "--models-dir", str(exported), "--as-of", AS_OF)
    assert result.returncode == 0, result.output
    assert f"note: {note}" in result.stdout.splitlines(), result.stdout  # one line, however narrow the terminal


@pytest.mark.parametrize("target", ["time-to-close", "sales-readiness"])
def test_training_says_what_the_quarantine_left_out(quarantining: tuple[Path, Path, str], tmp_path: Path,
                                                    target: str) -> None:
    """`train` (both targets) prints the quarantine's counts with its notes and logs them in notes.txt
    and the model card (the quarantined rows were left out of the training set without a word)."""
    import mlflow

    config, _, note = quarantining
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("train", "-c", str(config), "--target", target, "--tracking-uri", uri)
    assert result.returncode == 0, result.output
    shown = f"{'- ' if target == 'time-to-close' else 'note: '}{note}"
    assert shown in result.stdout.splitlines(), result.stdout  # one line, however narrow the terminal
    run_id = re.search(r"run id\W+(\w+)", result.stdout).group(1)
    notes = mlflow.MlflowClient(uri).download_artifacts(run_id, "notes.txt", str(tmp_path))
    assert note in Path(notes).read_text()
    card = Path(mlflow.MlflowClient(uri).download_artifacts(run_id, "model_card.md", str(tmp_path))).read_text()
    assert "## Notes\n" in card and f"- {note}" in card, card


def test_deals_without_any_amount_are_counted_in_the_refusal(project: Path, exported: Path, tmp_path: Path) -> None:
    """Every closed deal without an amount: the refusal counts them and names the column (it said "no closed
    deal with an amount above 0", as if no deal had closed)."""
    import sqlite3

    shutil.copy(project.parent / "crm.db", tmp_path / "crm.db")
    with sqlite3.connect(tmp_path / "crm.db") as db:
        db.execute("UPDATE outcomes SET amount = NULL")
        closed = db.execute("SELECT COUNT(DISTINCT lead_id) FROM outcomes WHERE converted_at IS NOT NULL "
                            "AND converted_at <= ?", (AS_OF,)).fetchone()[0]
    config = tmp_path / "leadscore.yaml"
    config.write_text("name: unpriced\ndata:\n  mode: crm\n  source: {kind: sql, url: 'sqlite:///crm.db'}\n")
    refused = run_cli("forecast", "-c", str(config), "--models-dir", str(exported), "--as-of", AS_OF)
    assert refused.returncode == 1 and isinstance(refused.exception, SystemExit), refused.output
    assert closed > 50
    assert (f"error: outcomes.amount: no closed deal with an amount above 0 before the forecast date ({closed:,} "
            "without an amount)" in " ".join(refused.stderr.split())), refused.stderr


def test_a_lead_attribute_the_champions_read_that_the_data_lacks_is_named(project: Path, exported: Path,
                                                                         tmp_path: Path) -> None:
    """A lead attribute the champions were trained on, dropped from the leads table since: one line naming the
    column, as a rescore names it (it ended in the bare KeyError text "error: 'industry'")."""
    import sqlite3

    shutil.copy(project.parent / "crm.db", tmp_path / "crm.db")
    with sqlite3.connect(tmp_path / "crm.db") as db:
        db.execute("ALTER TABLE leads DROP COLUMN industry")
    config = tmp_path / "leadscore.yaml"
    config.write_text("name: dropped\ndata:\n  mode: crm\n  source: {kind: sql, url: 'sqlite:///crm.db'}\n")
    refused = run_cli("forecast", "-c", str(config), "--models-dir", str(exported), "--as-of", AS_OF)
    assert refused.returncode == 1 and isinstance(refused.exception, SystemExit), refused.output
    error = " ".join(refused.stderr.split())
    assert "error: leads.industry: missing_column" in error, refused.stderr
    assert "lead-conversion v1" in error, refused.stderr


def test_a_forecast_before_the_champions_test_slice_warns_that_it_is_in_sample(project: Path, tmp_path: Path) -> None:
    """A past --as-of with today's champions printed a forecast like any other, though the models were fitted
    on outcomes after that date (recorded as fitted_until in the version's tags and in an exported champion.json:
    the data end for a model refit for deployment, which learnt from its test slice; versions before it, the start
    of their test slice, eval_as_of_min): numbers in-sample that look like a real forecast. A warning now names
    the date and the backtest that answers the question."""
    champion = train_small_champion(N_LEADS, SEED)
    models = tmp_path / "models"
    folders = [export_champion(champion.model, models, version="1"),
               export_time_to_close(train_small_time_to_close(N_LEADS, SEED), models, version="2")]

    def record(folder: Path, eval_start: str | None, until: str | None = None) -> None:
        meta = json.loads((folder / "champion.json").read_text())
        meta.pop("evaluation", None)
        meta.pop("fitted_until", None)
        if eval_start is not None:
            meta["evaluation"] = {"eval_rows": "100", "eval_as_of_min": eval_start, "eval_as_of_max": "2026-06-01T00:00:00"}
        if until is not None:
            meta["fitted_until"] = until
        (folder / "champion.json").write_text(json.dumps(meta))

    def warnings(*args: str) -> list[str]:
        result = run_cli("forecast", "-c", str(project), "--as-of", AS_OF, *args)
        assert result.returncode == 0, result.output
        return [line for line in result.stderr.splitlines() if line.startswith("warning:")]

    record(folders[0], "2026-04-01T00:00:00")
    record(folders[1], "2026-05-01T00:00:00")
    assert warnings("--model-dir", str(models)) == [
        "warning: the champions were fitted on outcomes after the forecast date 2026-03-01 (lead-conversion v1 on "
        "outcomes up to 2026-04-01, lead-time-to-close v2 up to 2026-05-01): this "
        "forecast is in-sample, not what one made on 2026-03-01 would have said; `leadscore forecast --backtest "
        "--as-of 2026-03-01` trains both models on what was known then and compares with what closed"]
    record(folders[1], "2026-02-01T00:00:00")  # fitted on outcomes known before the date: only the other one
    assert warnings("--model-dir", str(models)) == [
        "warning: the champions were fitted on outcomes after the forecast date 2026-03-01 (lead-conversion v1 on "
        "outcomes up to 2026-04-01): this forecast is in-sample, not what one made on "
        "2026-03-01 would have said; `leadscore forecast --backtest --as-of 2026-03-01` trains both models on what "
        "was known then and compares with what closed"]
    record(folders[0], "2026-03-01T00:00:00")
    assert warnings("--model-dir", str(models)) == []  # outcomes known at the forecast date: a real forecast
    # refit for deployment: its test slice starts before the date, but it learnt from outcomes up to the data end
    record(folders[1], "2026-02-01T00:00:00", until="2026-06-30T00:00:00")
    assert warnings("--model-dir", str(models)) == [
        "warning: the champions were fitted on outcomes after the forecast date 2026-03-01 (lead-time-to-close v2 on "
        "outcomes up to 2026-06-30): this forecast is in-sample, not what one made on 2026-03-01 would have said; "
        "`leadscore forecast --backtest --as-of 2026-03-01` trains both models on what was known then and compares "
        "with what closed"]
    record(folders[1], "2026-02-01T00:00:00")
    record(folders[0], None)
    assert warnings("--model-dir", str(models)) == []  # exported before it was recorded: nothing to say

    registry = ChampionRegistry(tmp_path / "registry")  # the registry's versions carry it as a tag
    readiness = registry.register(champion.model, champion.features, mql_cutoff=5, trained_at="2026-06-01")
    closing = registry.register_time_to_close(train_small_time_to_close(N_LEADS, SEED), champion.features,
                                              trained_at="2026-06-01")
    registry.promote(readiness)
    registry.promote(closing, TIME_TO_CLOSE_NAME)
    registry.client.set_model_version_tag(TIME_TO_CLOSE_NAME, closing, "eval_as_of_min", "2026-04-01T00:00:00")
    assert warnings("--tracking-uri", registry.uri) == [
        f"warning: the champions were fitted on outcomes after the forecast date 2026-03-01 ({TIME_TO_CLOSE_NAME} "
        f"v{closing} on outcomes up to 2026-04-01): this forecast is in-sample, not what "
        "one made on 2026-03-01 would have said; `leadscore forecast --backtest --as-of 2026-03-01` trains both "
        "models on what was known then and compares with what closed"]
    # fitted_until, when tagged, says it (a refit version: the data end), before the start of its test slice
    registry.client.set_model_version_tag(TIME_TO_CLOSE_NAME, closing, "fitted_until", "2026-06-30T00:00:00")
    assert f"v{closing} on outcomes up to 2026-06-30)" in warnings("--tracking-uri", registry.uri)[0]
    registry.client.set_model_version_tag(TIME_TO_CLOSE_NAME, closing, "fitted_until", "2026-02-01T00:00:00")
    assert warnings("--tracking-uri", registry.uri) == []


def test_a_forecast_reads_the_missing_markers_of_the_champions_contract(project: Path, tmp_path: Path) -> None:
    """The champion's project read "Select" as missing (its FeatureSpec keeps the markers). A project file
    that does not list them (or a bare data config) read "Select" in the CRM through its own markers only
    (`rescore --db` adds the model's): the forecast now adds them too, and equals the forecast of a project
    file that lists them."""
    import sqlite3

    markers = ("", "Select")
    champion = train_small_champion(N_LEADS, SEED, missing_values=markers)
    numeric = champion.crm.numeric_attributes[0]
    models = tmp_path / "models"
    export_champion(champion.model, models, version="1")
    export_time_to_close(train_small_time_to_close(N_LEADS, SEED), models, version="2")
    shutil.copy(project.parent / "crm.db", tmp_path / "crm.db")
    with sqlite3.connect(tmp_path / "crm.db") as db:
        marked = db.execute(f"UPDATE leads SET {numeric} = 'Select' WHERE lead_id % 5 = 0").rowcount
    assert marked > 100
    results = {}
    for name, listed in (("bare", ""), ("listed", "  missing_values: ['', 'Select']\n")):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"name: {name}\ndata:\n  mode: crm\n  source: {{kind: sql, url: 'sqlite:///crm.db'}}\n"
                          f"{listed}", encoding="utf-8")
        result = run_cli("forecast", "-c", str(config), "--models-dir", str(models), "--as-of", AS_OF,
                         "--out", str(tmp_path / name))
        assert result.returncode == 0, result.output
        results[name] = {file: (tmp_path / name / file).read_bytes() for file in ("forecast_months.csv",
                                                                                 "forecast_leads.csv")}
    assert results["bare"] == results["listed"]


def test_a_forecast_logs_into_the_run_of_the_projects_store(project: Path, exported: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_RUN_ID without MLFLOW_TRACKING_URI: the run is that of the project's store (`<-c folder>/mlflow.db`),
    not of MLflow's default store, which opened (and created) ./mlflow.db in the folder the command ran from."""
    from mlflow import MlflowClient

    own = tmp_path / "own"
    own.mkdir()
    config = own / "leadscore.yaml"
    config.write_text(project.read_text(encoding="utf-8"), encoding="utf-8")  # the same CRM (an absolute URL)
    client = MlflowClient(tracking_uri=f"sqlite:///{own / 'mlflow.db'}")
    experiment = client.create_experiment("forecast", artifact_location=str(own / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    result = CliRunner().invoke(app, ["forecast", "-c", str(config), "--model-dir", str(exported), "--as-of", AS_OF,
                                      "--out", str(tmp_path / "out")],
                                env={"COLUMNS": "200", "NO_COLOR": "1", "MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": run_id})
    assert result.exit_code == 0, result.output
    assert "not logged" not in result.output
    logged = client.get_run(run_id).data.metrics["forecast_expected_revenue"]  # the months' total, as written
    assert logged == pytest.approx(pd.read_csv(tmp_path / "out" / "forecast_months.csv")["expected_revenue"].sum(),
                                   rel=1e-9) and logged > 0
    assert "forecast/forecast_months.csv" in {a.path for a in client.list_artifacts(run_id, "forecast")}
    assert list(working.iterdir()) == []
