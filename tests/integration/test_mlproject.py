"""The MLproject file runs through `mlflow run . -e <entry> --env-manager local` (the same CLI functions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from mlflow import MlflowClient

from leadscore.project import project_yaml, sqlite_project
from leadscore.synth import SynthConfig, write_synthetic

ROOT = Path(__file__).resolve().parents[2]


def mlflow_run(entry: str, *params: str, cwd: Path, tracking_uri: str) -> subprocess.CompletedProcess[str]:
    """``mlflow run <repo> -e entry --env-manager local -P ...`` with the venv's ``leadscore`` on the PATH."""
    venv_bin = str(Path(sys.executable).parent)  # `leadscore` lives next to this interpreter
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": tracking_uri}
    for name in ("MLFLOW_REGISTRY_URI", "LEADSCORE_MODEL_DIR", "LEADSCORE_PROJECT_DIR"):
        env.pop(name, None)
    command = [str(Path(venv_bin) / "mlflow"), "run", str(ROOT), "-e", entry, "--env-manager", "local",
               "--experiment-name", "mlproject-test"]
    for param in params:
        command += ["-P", param]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_entry_points_name_cli_commands_and_the_features_entry_runs(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert set(spec["entry_points"]) == {"features", "train", "evaluate", "rescore", "forecast", "forecast_backtest"}
    assert all(e["command"].startswith("leadscore ") for e in spec["entry_points"].values())

    config = sqlite_project(tmp_path)
    write_synthetic(SynthConfig(n_leads=600, seed=2), config.data.source.url, "sql", overwrite=True)
    (tmp_path / "leadscore.yaml").write_text(project_yaml(config), encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "training_set.parquet"
    result = mlflow_run("features", f"config={tmp_path / 'leadscore.yaml'}", f"out={out}", cwd=tmp_path, tracking_uri=uri)
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_parquet(out)
    assert {"lead_id", "as_of", "converted_within_h"} <= set(frame.columns) and len(frame) > 500
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mlproject-test").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    # the command logged what it built into the run `mlflow run` created
    assert runs[0].data.metrics["training_set_rows"] == len(frame)
    assert runs[0].data.tags["leadscore.entry_point"] == "features"
    # and where it came from, as a training run records it (tests/integration/test_features_lineage.py)
    assert runs[0].data.tags["leadscore.data_hash"] == runs[0].data.params["data.fingerprint.hash"]
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "features")] == \
        ["features/training_set.spec.json"]


def test_rescore_entry_point_scores_with_the_registry_champion_by_default(tmp_path: Path) -> None:
    """Without -P model_dir the champion comes from the registry `mlflow run` is pointed at (the README's flow)."""
    import sqlalchemy as sa

    from serving import score_store
    from tests.serving_fixtures import ChampionRegistry, train_small_champion

    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert spec["entry_points"]["rescore"]["parameters"]["model_dir"]["default"] == ""
    registry = ChampionRegistry(tmp_path / "registry")
    champion = train_small_champion(800, seed=4)
    version = registry.register(champion.model, champion.features, mql_cutoff=5, trained_at="2026-06-01")
    registry.promote(version)
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=600, seed=3, events_per_lead=10), db, "sql", overwrite=True)
    result = mlflow_run("rescore", f"db={db}", "partition_leads=400", cwd=tmp_path, tracking_uri=registry.uri)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "champion.json" not in result.stderr
    engine = sa.create_engine(db)
    try:
        scores = score_store.read_scores(engine)
    finally:
        engine.dispose()
    assert len(scores) > 100 and set(scores["model_version"].astype(str)) == {version}
