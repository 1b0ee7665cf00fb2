"""MLflow tracking of a training run on a real SQLite tracking store: params, metrics, artifacts,
the pyfunc model (probabilities equal to SalesReadinessModel) and `mlflow models predict`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.integration.mlflow_support import fitted, shared_project
from training.pyfunc import load_sales_readiness, to_signature_frame
from training.tracking import (
    COMPARISON_ARTIFACT,
    MODEL_CARD_ARTIFACT,
    TEST_SET_ARTIFACT,
    data_hash,
    evaluation_rows,
    load_run_frame,
    log_training_run,
    tracking_target,
)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):
    project, training_set, _ = shared_project()
    result = fitted("good")
    directory = tmp_path_factory.mktemp("tracking")
    target = tracking_target(None, directory)
    run = log_training_run(target, project.name, result, training_set.frame,
                           {"training": project.training.model_dump(mode="json")}, {"purpose": "test"})
    client = MlflowClient(target.uri)
    return directory, target, client, run, result, training_set


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_embedded_default_keeps_store_and_artifacts_in_the_project_dir(logged) -> None:
    directory, target, client, run, _, _ = logged
    assert target.uri == f"sqlite:///{(directory / 'mlflow.db').resolve()}"
    assert (directory / "mlflow.db").is_file()
    experiment = client.get_experiment(run.experiment_id)
    assert experiment.name == "mlflow-test"
    assert Path(experiment.artifact_location.removeprefix("file://")) == (directory / "mlartifacts").resolve()
    assert any((directory / "mlartifacts").rglob("model_card.md"))


def test_run_has_params_metrics_and_artifacts(logged) -> None:
    _, _, client, run, result, _ = logged
    data = client.get_run(run.run_id).data
    assert data.params["training.bootstrap_samples"] == "20"
    assert data.params["model.best_iteration"] == str(result.model.best_iteration_)
    finite = {k: v for k, v in result.metrics.items() if np.isfinite(v)}
    assert set(finite) <= set(data.metrics)
    for key, value in finite.items():
        assert data.metrics[key] == pytest.approx(value)
    assert any(k.startswith("baseline_") for k in data.metrics)
    assert data.tags["purpose"] == "test"
    assert data.tags["leadscore.eval_data_hash"] == run.identity["eval_data_hash"]
    paths = _artifact_paths(client, run.run_id)
    assert {MODEL_CARD_ARTIFACT, COMPARISON_ARTIFACT, TEST_SET_ARTIFACT, "leakage/leakage.json",
            "feature_spec.json"} <= paths
    assert {f"plots/{name}.png" for name in result.figures} <= paths
    assert {"plots/roc.png", "plots/pr.png", "plots/reliability.png", "plots/shap_summary.png"} <= paths


def test_comparison_and_evaluation_rows_round_trip(logged) -> None:
    _, _, client, run, result, training_set = logged
    comparison = load_run_frame(client, run.run_id, COMPARISON_ARTIFACT)
    assert list(comparison.index) == list(result.comparison.index)
    np.testing.assert_allclose(comparison["roc_auc"].to_numpy(), result.comparison["roc_auc"].to_numpy())
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    expected = evaluation_rows(result, training_set.frame)
    assert len(rows) == len(result.predictions) == int(run.identity["eval_rows"])
    np.testing.assert_array_equal(rows["label"].to_numpy(), result.predictions["label"].to_numpy())
    assert data_hash(rows) == run.identity["eval_data_hash"] == data_hash(expected)
    assert rows["as_of"].min() == pd.Timestamp(run.identity["eval_as_of_min"])


def test_pyfunc_returns_the_calibrated_probabilities(logged) -> None:
    _, target, _, run, result, training_set = logged
    mlflow.set_tracking_uri(target.uri)
    pyfunc = mlflow.pyfunc.load_model(run.model_uri)
    features = training_set.frame[result.model.feature_columns_].iloc[:300]
    typed = to_signature_frame(features, result.model)
    assert all(typed[c].dtype == object for c in result.model.categories_)
    predicted = np.asarray(pyfunc.predict(typed), dtype=float)
    np.testing.assert_allclose(predicted, result.model.predict_proba(features), rtol=0, atol=1e-12)
    assert ((predicted > 0) & (predicted < 1)).all() and len(np.unique(predicted)) > 2
    column = next(iter(result.model.categories_))
    odd = typed.iloc[:2].copy()
    odd[column] = ["a value never seen in training", None]
    expected = features.iloc[:2].copy()
    expected[column] = pd.Categorical([None, None], categories=features[column].cat.categories)
    np.testing.assert_allclose(pyfunc.predict(odd), result.model.predict_proba(expected))
    spec = pyfunc.metadata.get_input_schema()
    assert [c.name for c in spec.inputs] == result.model.feature_columns_
    assert {c.type.name for c in spec.inputs if c.name in result.model.categories_} == {"string"}


def test_mlflow_models_predict_cli(logged, tmp_path: Path) -> None:
    """A plain CSV of raw leads: whole numbers read as int64 columns, columns in another order."""
    _, target, _, run, result, training_set = logged
    features = training_set.frame[result.model.feature_columns_].iloc[:4].copy()
    numeric = [c for c in result.model.feature_columns_ if c not in result.model.categories_]
    features[numeric] = features[numeric].fillna(0).round()
    raw = to_signature_frame(features, result.model)[list(reversed(result.model.feature_columns_))]
    raw = raw.astype({c: "int64" for c in numeric})  # written as 3, not 3.0
    raw.to_csv(tmp_path / "input.csv", index=False)
    assert any(pd.api.types.is_integer_dtype(t) for t in pd.read_csv(tmp_path / "input.csv").dtypes)
    out = tmp_path / "out.json"
    env = {**os.environ, "MLFLOW_TRACKING_URI": target.uri}
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "predict", "-m", run.model_uri, "-i", str(tmp_path / "input.csv"),
         "-t", "csv", "-o", str(out), "--env-manager", "local"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads(out.read_text())["predictions"]
    np.testing.assert_allclose(predictions, result.model.predict_proba(features), rtol=1e-9)


def test_saved_model_inside_the_pyfunc_keeps_the_feature_spec(logged, tmp_path: Path) -> None:
    _, target, _, run, result, _ = logged
    mlflow.set_tracking_uri(target.uri)
    local = mlflow.artifacts.download_artifacts(artifact_uri=run.model_uri, dst_path=str(tmp_path))
    inner = load_sales_readiness(local)
    assert inner.feature_columns_ == result.model.feature_columns_
    assert inner.spec_ == result.model.spec_


def test_an_ended_run_left_in_mlflow_run_id_is_not_written_to(tmp_path: Path, monkeypatch) -> None:
    """The check `train` (either target) makes on MLFLOW_RUN_ID before fitting: only a running run is
    logged into (the command's wiring is the one line in leadscore/cli_models.py that calls it)."""
    from mlflow import MlflowClient

    from leadscore.run_logging import running_run_id

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("ended-run")
    running = client.create_run(experiment).info.run_id
    ended = client.create_run(experiment).info.run_id
    client.set_terminated(ended)
    said: list[str] = []
    assert running_run_id(running, client, said.append) == running and said == []
    monkeypatch.setenv("MLFLOW_RUN_ID", ended)
    assert running_run_id(ended, client, said.append) is None
    assert "finished, not running" in said[0] and "MLFLOW_RUN_ID" not in os.environ  # mlflow would reuse it
    assert running_run_id("deadbeef" * 4, client, said.append) is None and "not found" in said[1]


def test_a_model_name_holds_one_kind_of_model(tmp_path: Path) -> None:
    """`train --target time-to-close --model-name lead-conversion` is refused before any fit (the champion
    of a sales-readiness name must never be a time-to-close model)."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from leadscore.cli import app
    from leadscore.project import project_yaml, sqlite_project
    from training.registry import registered_kind

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run(client.create_experiment("kinds"), tags={"leadscore.kind": "sales_readiness"})
    client.create_registered_model("lead-conversion")
    client.create_model_version("lead-conversion", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert registered_kind(client, "lead-conversion") == "sales_readiness"
    assert registered_kind(client, "no-such-model") is None
    config = tmp_path / "leadscore.yaml"
    config.write_text(project_yaml(sqlite_project(tmp_path)), encoding="utf-8")  # its data is never read
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--tracking-uri", uri, "--target", "time-to-close",
                                      "--model-name", "lead-conversion"], env={"COLUMNS": "200", "MLFLOW_RUN_ID": ""})
    assert result.exit_code == 2, result.output
    assert "its versions are sales-readiness models" in " ".join(result.output.split())
