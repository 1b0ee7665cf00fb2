"""`leadscore features build` records where its training set came from, as `train` does for a model: the data
fingerprint per table, the configuration hash, the code version and the seed, in the MLflow run it logs into
(`mlflow run . -e features` hands it one) and in the Parquet file it writes (real SQLite CRM and MLflow store)."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import pyarrow.parquet as pq
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.fingerprint import data_fingerprint
from features.loading import load_data
from leadscore.cli import app
from leadscore.project import load_project, project_yaml, sqlite_project
from leadscore.synth import SynthConfig, write_synthetic
from training.lineage import code_version, config_hash


def test_features_build_logs_and_writes_the_lineage_a_training_run_records(tmp_path: Path) -> None:
    config = sqlite_project(tmp_path)
    write_synthetic(SynthConfig(n_leads=300, seed=2), config.data.source.url, "sql", overwrite=True)
    project_file = tmp_path / "leadscore.yaml"
    project_file.write_text(project_yaml(config), encoding="utf-8")
    project = load_project(project_file)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("features", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id  # as `mlflow run` makes it
    out = tmp_path / "training_set.parquet"

    result = CliRunner().invoke(app, ["features", "build", "-c", str(project_file), "--out", str(out),
                                      "--run-id", run_id],
                                env={"MLFLOW_TRACKING_URI": uri, "COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output

    data, _ = load_data(project.data)
    fingerprint = data_fingerprint(data)  # what `train` names as its data
    code = code_version()
    run = client.get_run(run_id).data
    params, tags = run.params, run.tags
    # the data: rows, dates and hash per table, named as a training run names them
    for table in ("leads", "events", "outcomes"):
        for key in ("rows", "columns", "hash"):
            assert params[f"data.fingerprint.{table}.{key}"] == fingerprint[f"{table}.{key}"]
    assert params["data.fingerprint.leads.created_at_min"] == fingerprint["leads.created_at_min"]
    assert params["data.fingerprint.hash"] == fingerprint["hash"] == tags["leadscore.data_hash"]
    # the configuration the set was built with (its sections as params, and their hash), the code and the seed
    from training.lineage import features_sections

    configuration = config_hash(features_sections(project))
    assert params["config_hash"] == configuration and len(configuration) == 16
    assert params["features.horizon_days"] == str(project.features.horizon_days)
    assert params["data.source.kind"] == "sql"
    assert params["code.git_commit"] == code["git_commit"] == tags["leadscore.git_commit"]
    assert params["code.leadscore_version"] == code["leadscore_version"] == tags["leadscore.leadscore_version"]
    assert params["versions.lightgbm"] == lightgbm.__version__
    assert tags["leadscore.seed"] == str(project.training.seed)
    assert tags["leadscore.entry_point"] == "features"
    written_set = pq.read_metadata(out)  # the rows and leads of the file written, logged as the run's counts
    assert run.metrics["training_set_rows"] == written_set.num_rows > 0
    assert run.metrics["training_set_leads"] == len(pq.read_table(out, columns=["lead_id"]).column(0).unique())
    # the file carries the same, for a training set used without the run
    from features.readers import read_training_set_lineage

    written = read_training_set_lineage(out)
    assert written["data_fingerprint"] == fingerprint
    assert written["config_hash"] == configuration and written["seed"] == str(project.training.seed)
    assert written["code"] == code and written["versions"]["lightgbm"] == lightgbm.__version__
    assert written["project"] == project.name
    assert f"data hash {fingerprint['hash']}, configuration hash {configuration}" in result.output


def test_the_configuration_hash_follows_what_shapes_the_training_set(tmp_path: Path) -> None:
    from training.lineage import features_sections

    config = sqlite_project(tmp_path)
    base = config_hash(features_sections(config))
    longer = config.model_copy(update={"features": config.features.model_copy(update={"horizon_days": 60})})
    assert config_hash(features_sections(longer)) != base
    seeded = config.model_copy(update={"training": config.training.model_copy(update={"seed": 99})})
    assert config_hash(features_sections(seeded)) == base  # the seed is recorded beside it, shapes nothing here


def test_without_a_tracking_uri_the_run_is_looked_up_in_the_projects_store(tmp_path: Path, monkeypatch) -> None:
    """MLFLOW_RUN_ID without MLFLOW_TRACKING_URI: the run is that of the project's store (`<-c folder>/mlflow.db`,
    where `train` would log), never MLflow's default store, which opened (and created) ./mlflow.db in the folder
    the command ran from."""
    project_dir, working = tmp_path / "project", tmp_path / "working"
    working.mkdir()
    config = sqlite_project(project_dir)
    project_dir.mkdir()
    write_synthetic(SynthConfig(n_leads=300, seed=2), config.data.source.url, "sql", overwrite=True)
    project_file = project_dir / "leadscore.yaml"
    project_file.write_text(project_yaml(config), encoding="utf-8")
    client = MlflowClient(tracking_uri=f"sqlite:///{project_dir / 'mlflow.db'}")
    experiment = client.create_experiment("features", artifact_location=str(project_dir / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    monkeypatch.chdir(working)
    result = CliRunner().invoke(app, ["features", "build", "-c", str(project_file), "--out", str(tmp_path / "set.parquet")],
                                env={"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": run_id, "COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert client.get_run(run_id).data.metrics["training_set_rows"] > 0
    assert list(working.iterdir()) == []
