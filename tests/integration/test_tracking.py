"""MLflow tracking of a training run on a real SQLite tracking store: params, metrics, artifacts,
the pyfunc model (probabilities equal to SalesReadinessModel) and `mlflow models predict`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.integration.mlflow_support import fitted, shared_project
from training.pyfunc import from_signature_frame, load_sales_readiness, to_signature_frame
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


def _scoring_frame(result, training_set, rows: int = 3) -> pd.DataFrame:
    features = training_set.frame[result.model.feature_columns_].iloc[:rows]
    return to_signature_frame(features, result.model).reset_index(drop=True)


def _refusal(pyfunc, frame: pd.DataFrame, **kwargs) -> MlflowException:
    with pytest.raises(MlflowException) as raised:
        pyfunc.predict(frame, **kwargs)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400 from `mlflow models serve`, not a 500
    return raised.value


_NUMERIC_BAD = {"text": "abc", "long text": "x" * 100_000, "list": [1, 2], "object": {"a": 1}, "inf": float("inf"),
                "-inf": float("-inf"), "inf as text": "inf", "overflowing text": "1e400", "NaN as text": "NaN"}


@pytest.mark.parametrize("value", list(_NUMERIC_BAD.values()), ids=list(_NUMERIC_BAD))
def test_pyfunc_refuses_a_bad_numeric_value_naming_column_and_row(logged, value) -> None:
    """What `mlflow models serve` answers 400 with: the column and the rows, as the endpoint and the data
    contract refuse them (no finite number, no score)."""
    _, target, _, run, result, training_set = logged
    mlflow.set_tracking_uri(target.uri)
    pyfunc = mlflow.pyfunc.load_model(run.model_uri)
    frame = _scoring_frame(result, training_set)
    column = next(c for c in result.model.feature_columns_ if c not in result.model.categories_)
    frame[column] = frame[column].astype(object)
    frame.at[1, column] = value
    message = _refusal(pyfunc, frame).message
    assert f"{column!r}" in message and "rows [1]" in message and "np." not in message


def test_pyfunc_refuses_nested_values_in_a_categorical_and_names_every_bad_column(logged) -> None:
    _, target, _, run, result, training_set = logged
    mlflow.set_tracking_uri(target.uri)
    pyfunc = mlflow.pyfunc.load_model(run.model_uri)
    frame = _scoring_frame(result, training_set)
    category = next(iter(result.model.categories_))
    numeric = [c for c in result.model.feature_columns_ if c not in result.model.categories_][-1]
    frame[category] = [{"a": 1}, "fine", [1]]
    frame[numeric] = frame[numeric].astype(object)
    frame.at[2, numeric] = "abc"
    message = _refusal(pyfunc, frame).message
    assert f"{category!r}" in message and "rows [0, 2]" in message
    assert f"{numeric!r}" in message and "rows [2]" in message


def test_pyfunc_scores_tolerable_input_as_the_canonical_frame(logged) -> None:
    """Columns in another order, extra columns, numbers as text or booleans, JSON nulls and NaN (missing),
    unseen categories and empty frames score, and reordering changes nothing."""
    _, target, _, run, result, training_set = logged
    mlflow.set_tracking_uri(target.uri)
    pyfunc = mlflow.pyfunc.load_model(run.model_uri)
    frame = _scoring_frame(result, training_set)
    expected = pyfunc.predict(frame)
    shuffled = frame[list(np.random.default_rng(0).permutation(frame.columns))].assign(lead_id=["a", "b", "c"])
    np.testing.assert_array_equal(pyfunc.predict(shuffled), expected)
    numeric = [c for c in result.model.feature_columns_ if c not in result.model.categories_]
    as_text = frame.astype({numeric[0]: object})
    as_text[numeric[0]] = [f" {v!r} " if pd.notna(v) else None for v in frame[numeric[0]]]
    np.testing.assert_array_equal(pyfunc.predict(as_text), expected)
    odd = frame.astype({numeric[1]: object})
    odd[numeric[1]] = [None, float("nan"), True]
    canonical = frame.copy()
    canonical[numeric[1]] = [np.nan, np.nan, 1.0]
    np.testing.assert_array_equal(pyfunc.predict(odd), pyfunc.predict(canonical))
    huge = frame.copy()
    huge[numeric[2]] = 1e308
    assert np.isfinite(pyfunc.predict(huge)).all()
    assert len(pyfunc.predict(frame.iloc[:0])) == 0


def test_pyfunc_input_without_a_feature_column_names_it(logged) -> None:
    _, _, _, _, result, training_set = logged
    frame = _scoring_frame(result, training_set).drop(columns=["lead_age_days"])
    with pytest.raises(MlflowException, match="lead_age_days") as raised:
        from_signature_frame(frame, result.model)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("rows", [2, 3])
@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_column_sent_twice_is_refused_not_scored(logged, kind: str, rows: int) -> None:
    """`mlflow models serve`'s request handler (in process): a ``dataframe_split`` naming a feature column twice is
    a 400 (MLflow's schema check runs before the model's code and hands it each column once: it refuses the
    duplicate, or puts the column's name in its place when there are as many copies as rows, which the model
    refuses as no number). The message does not say "twice": the model never sees the duplicate."""
    from mlflow.pyfunc import scoring_server

    _, target, _, run, result, training_set = logged
    mlflow.set_tracking_uri(target.uri)
    model = mlflow.pyfunc.load_model(run.model_uri)
    frame = _scoring_frame(result, training_set, rows)
    column = next(c for c in result.model.feature_columns_ if (c in result.model.categories_) == (kind == "categorical"))
    split = json.loads(frame.to_json(orient="split"))
    duplicated = {"columns": [*split["columns"], column],
                  "data": [[*row, row[split["columns"].index(column)]] for row in split["data"]]}
    with pytest.raises(MlflowException) as raised:
        scoring_server.invocations(json.dumps({"dataframe_split": duplicated}), "application/json", model,
                                   model.metadata.get_input_schema())
    assert raised.value.get_http_status_code() == 400, raised.value.message
    if kind == "numeric" and rows == 2:  # two copies, two rows: the name in every row, refused by the model
        assert f"column {column!r}: not a finite number in rows [0, 1] (e.g. {column!r})" in raised.value.message


def test_mlflow_models_serve_answers_bad_values_with_400_naming_them(logged, tmp_path: Path) -> None:
    """`mlflow models serve` of the logged model: a valid batch scores as in process; text and infinity in
    numeric columns are a 400 whose message names the columns and rows."""
    _, target, _, run, result, training_set = logged
    mlflow.set_tracking_uri(target.uri)
    frame = _scoring_frame(result, training_set)
    expected = mlflow.pyfunc.load_model(run.model_uri).predict(frame)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": target.uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # uvicorn
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", run.model_uri, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        good = httpx.post(f"{url}/invocations", json={"dataframe_records": rows}, timeout=60)
        assert good.status_code == 200, good.text
        np.testing.assert_allclose(good.json()["predictions"], expected, rtol=1e-12)
        numeric = [c for c in result.model.feature_columns_ if c not in result.model.categories_]
        rows[1][numeric[0]] = "abc"
        rows[2][numeric[1]] = float("inf")
        body = json.dumps({"dataframe_records": rows}, allow_nan=True)  # Infinity: JSON as Python writes it
        assert "Infinity" in body
        bad = httpx.post(f"{url}/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=60)
        assert bad.status_code == 400, bad.text
        message = bad.json()["message"]
        assert f"{numeric[0]!r}" in message and "rows [1]" in message
        assert f"{numeric[1]!r}" in message and "rows [2]" in message
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
