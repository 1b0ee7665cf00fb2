"""Flat data through `leadscore train / evaluate / models promote` on a real MLflow store: a bare data
config is a project, the flat model is graded on rows it was not fitted on, and bad training settings
fail before any fitting with the field named."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from leadscore.cli import app
from training.registry import TEST_SET_ARTIFACT, score_rows
from training.tracking import connect, load_run_frame, tracking_target

MODEL = "lead-conversion"


def _flat_leads(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """One row per lead: a few numeric and categorical columns, and a noisy label driven by them."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    minutes = rng.gamma(2.0, 5.0, n)
    source = rng.choice(["ads", "organic", "referral", "event"], n)
    # thresholds and an interaction: what trees find and a linear model does not
    logit = -2.0 + 1.8 * (visits >= 4) + 2.0 * ((minutes > 12) & (source == "referral")) - 1.2 * (source == "ads")
    converted = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"Lead ID": [f"L{i:05d}" for i in range(n)], "Visits": visits, "Minutes": minutes.round(1),
                         "Source": source, "Extra": rng.normal(0, 1, n).round(3), "Converted": converted.astype(int)})


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("flat-registry")
    _flat_leads().to_csv(folder / "leads.csv", index=False)
    data = {"mode": "flat", "source": {"kind": "csv", "path": "leads.csv"}, "id_column": "Lead ID",
            "label_column": "Converted"}
    config = folder / "leads_data.yaml"  # a bare data config, no project sections
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": "", "COLUMNS": "200"})

    trained = invoke("train", "-c", str(config))
    assert trained.exit_code == 0, trained.output
    return invoke, config, trained.output


def test_a_bare_data_config_trains_and_prints_the_mql_cut_off(flat) -> None:
    _, config, output = flat
    words = " ".join(output.split())  # rich wraps titles and lines at the console's width
    assert "model vs baselines" in words and "logistic" in words  # a table cell may wrap "regression"
    assert "MQL cut-off for a capacity of" in words
    client = connect(tracking_target(None, config.parent))
    version = client.get_model_version(MODEL, "1")
    assert version.tags["data_mode"] == "flat" and version.tags["out_of_fold"] == "true"
    assert client.get_experiment_by_name("leads_data") is not None  # the project is named after the file


def test_a_flat_model_is_graded_out_of_fold_not_on_its_training_rows(flat) -> None:
    invoke, config, _ = flat
    client = connect(tracking_target(None, config.parent))
    version = client.get_model_version(MODEL, "1")
    cross_validated = client.get_run(version.run_id).data.metrics["roc_auc"]
    rows = load_run_frame(client, version.run_id, TEST_SET_ARTIFACT)
    in_sample = roc_auc_score(rows["label"], score_rows(client, MODEL, "1", rows))
    assert in_sample > cross_validated + 0.005  # the final model was refit on these rows
    evaluated = invoke("evaluate", "-c", str(config), "-m", "challenger")
    assert evaluated.exit_code == 0, evaluated.output
    line = next(part for part in evaluated.output.splitlines() if part.strip().startswith("│ roc_auc "))
    assert float(line.split("│")[2]) == pytest.approx(cross_validated, abs=5e-4)
    promoted = invoke("models", "promote", "-c", str(config))
    assert promoted.exit_code in (0, 4), promoted.output  # promoted or refused: the table shows the same figure
    line = next(part for part in promoted.output.splitlines() if part.strip().startswith("│ roc_auc "))
    assert float(line.split("│")[2]) == pytest.approx(cross_validated, abs=5e-4)


def test_evaluate_logs_into_the_run_mlflow_run_created(flat) -> None:
    invoke, config, _ = flat
    client = connect(tracking_target(None, config.parent))
    run = client.create_run(client.get_experiment_by_name("leads_data").experiment_id, run_name="evaluate")
    result = CliRunner().invoke(app, ["evaluate", "-c", str(config), "-m", "1"],
                                env={"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": run.info.run_id, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    logged = client.get_run(run.info.run_id).data
    cross_validated = client.get_run(client.get_model_version(MODEL, "1").run_id).data.metrics["roc_auc"]
    assert logged.metrics["roc_auc"] == pytest.approx(cross_validated, abs=1e-9)
    assert logged.params["evaluated_model"] == f"{MODEL} v1" and logged.tags["leadscore.entry_point"] == "evaluate"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evaluate")] == ["evaluate/evaluation.json"]
    # a run id left in a shell (the run has ended) is not written to: a warning, and the command's result stands
    client.set_terminated(run.info.run_id)
    again = CliRunner().invoke(app, ["evaluate", "-c", str(config), "-m", "1"],
                               env={"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": run.info.run_id, "COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    words = " ".join(again.output.split())
    assert "not logged into MLflow run" in words and "finished, not running" in words


def test_a_negative_promotion_margin_is_refused(flat) -> None:
    invoke, config, _ = flat
    result = invoke("models", "promote", "-c", str(config), "--min-delta", "-1")
    assert result.exit_code == 2 and "min-delta" in result.output


def test_unknown_segment_columns_fail_before_fitting(flat, tmp_path: Path) -> None:
    invoke, config, _ = flat
    project = tmp_path / "leadscore.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["source"]["path"] = str(config.parent / "leads.csv")
    project.write_text(yaml.safe_dump({"name": "segments", "data": data,
                                       "training": {"segment_columns": ["Source", "Region"]}}), encoding="utf-8")
    result = invoke("train", "-c", str(project))
    assert result.exit_code == 1, result.output
    assert "training.segment_columns: ['Region'] not in the flat frame" in result.output
    assert "Traceback" not in result.output
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({**data, "source": {"kind": "csv", "path": "nope.csv"}}), encoding="utf-8")
    unreadable = invoke("train", "-c", str(missing))
    assert unreadable.exit_code != 0 and "nope.csv" in unreadable.output and "Traceback" not in unreadable.output


def test_flat_rows_with_a_timestamp_are_tested_on_the_latest_leads(tmp_path: Path) -> None:
    leads = _flat_leads(1200, seed=1)
    leads["Signed up"] = (pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(leads)) * 6, unit="h")).astype(str)
    leads.sample(frac=1.0, random_state=0).to_csv(tmp_path / "leads.csv", index=False)  # file order is not time
    config = tmp_path / "dated.yaml"
    config.write_text(yaml.safe_dump({"mode": "flat", "source": {"kind": "csv", "path": "leads.csv"},
                                      "id_column": "Lead ID", "label_column": "Converted",
                                      "timestamp_column": "Signed up"}), encoding="utf-8")
    env = {"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": "", "COLUMNS": "200"}
    trained = CliRunner().invoke(app, ["train", "-c", str(config)], env=env)
    assert trained.exit_code == 0, trained.output
    client = connect(tracking_target(None, tmp_path))
    version = client.get_model_version(MODEL, "1")
    split = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/evaluation/split.json")
    assert split["mode"].startswith("time-ordered by created_at") and version.tags["out_of_fold"] == "false"
    assert split["n_train"] + split["n_valid"] + split["n_test"] == len(leads)  # each lead in exactly one slice
    rows = load_run_frame(client, version.run_id, TEST_SET_ARTIFACT)
    ids = set(rows["lead_id"])
    latest = set(leads.sort_values("Signed up")["Lead ID"].tail(len(ids)))
    assert len(ids) == split["n_test"] and ids == latest  # the test slice is the latest leads, nothing earlier
    evaluated = CliRunner().invoke(app, ["evaluate", "-c", str(config), "-m", "1"], env=env)
    assert evaluated.exit_code == 0, evaluated.output
    line = next(part for part in evaluated.output.splitlines() if part.strip().startswith("│ roc_auc "))
    assert float(line.split("│")[2]) == pytest.approx(client.get_run(version.run_id).data.metrics["roc_auc"], abs=5e-4)
