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


def test_entry_points_name_cli_commands_and_the_features_entry_runs(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert set(spec["entry_points"]) == {"features", "train", "evaluate", "rescore", "forecast", "forecast_backtest"}
    assert all(e["command"].startswith("leadscore ") for e in spec["entry_points"].values())

    config = sqlite_project(tmp_path)
    write_synthetic(SynthConfig(n_leads=600, seed=2), config.data.source.url, "sql", overwrite=True)
    (tmp_path / "leadscore.yaml").write_text(project_yaml(config), encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "training_set.parquet"
    venv_bin = str(Path(sys.executable).parent)  # `leadscore` lives next to this interpreter
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_REGISTRY_URI", None)
    result = subprocess.run(
        [str(Path(venv_bin) / "mlflow"), "run", str(ROOT), "-e", "features", "--env-manager", "local",
         "--experiment-name", "mlproject-test", "-P", f"config={tmp_path / 'leadscore.yaml'}", "-P", f"out={out}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_parquet(out)
    assert {"lead_id", "as_of", "converted_within_h"} <= set(frame.columns) and len(frame) > 500
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mlproject-test").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    # the command logged what it built into the run `mlflow run` created
    assert runs[0].data.metrics["training_set_rows"] == len(frame)
    assert runs[0].data.tags["leadscore.entry_point"] == "features"
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "features")] == \
        ["features/training_set.spec.json"]
