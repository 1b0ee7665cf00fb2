"""Which folder holds a project's MLflow store (``<folder>/mlflow.db``): every command that takes the project
file (``-c``) uses that file's folder, also when ``LEADSCORE_PROJECT_DIR`` names another one; `rescore`'s
``--project-dir`` beats both. The real CLI (typer's runner) on a tiny real project and SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.project import project_yaml, sqlite_project
from leadscore.synth import SynthConfig, write_synthetic
from serving import score_store
from tests.integration.mlflow_support import cli_message
from training.config import TrainingConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the project file, another folder that LEADSCORE_PROJECT_DIR names)."""
    project = tmp_path_factory.mktemp("project")
    config = sqlite_project(project).model_copy(
        update={"training": TrainingConfig(bootstrap_samples=20, shap_sample=200, make_plots=False)})
    write_synthetic(SynthConfig(n_leads=800, seed=3, events_per_lead=10), config.data.source.url, "sql", overwrite=True)
    path = project / "leadscore.yaml"
    path.write_text(project_yaml(config), encoding="utf-8")
    return path, tmp_path_factory.mktemp("elsewhere")


def _invoke(*args: str, elsewhere: Path, **env: str):
    return CliRunner().invoke(app, list(args), env={"LEADSCORE_PROJECT_DIR": str(elsewhere), "MLFLOW_TRACKING_URI": "",
                                                    "MLFLOW_RUN_ID": "", "LEADSCORE_MODEL_DIR": "", "COLUMNS": "200",
                                                    **env})


def test_train_evaluate_and_rescore_use_the_project_files_folder(folders: tuple[Path, Path]) -> None:
    config, elsewhere = folders
    trained = _invoke("train", "-c", str(config), elsewhere=elsewhere)
    assert trained.exit_code == 0, cli_message(trained)
    assert (config.parent / "mlflow.db").is_file() and "1 (alias challenger)" in trained.output
    evaluated = _invoke("evaluate", "-c", str(config), "--model", "challenger", elsewhere=elsewhere)
    assert evaluated.exit_code == 0, cli_message(evaluated)
    rescored = _invoke("rescore", "-c", str(config), "--partition-leads", "400", elsewhere=elsewhere,
                       LEADSCORE_MODEL_ALIAS="challenger")
    assert rescored.exit_code == 0, cli_message(rescored)
    engine = sa.create_engine(f"sqlite:///{config.parent / 'crm.db'}")
    try:
        scores = score_store.read_scores(engine)
    finally:
        engine.dispose()
    assert len(scores) > 100 and set(scores["model_version"].astype(str)) == {"1"}
    assert list(elsewhere.iterdir()) == []  # no store was opened (and created) in LEADSCORE_PROJECT_DIR


def test_rescores_project_dir_option_beats_the_project_files_folder(folders: tuple[Path, Path]) -> None:
    config, elsewhere = folders
    flagged = _invoke("rescore", "-c", str(config), "--project-dir", str(elsewhere), elsewhere=Path("/nonexistent"))
    assert flagged.exit_code == 1 and f"{elsewhere / 'mlflow.db'}" in cli_message(flagged).replace(" ", "")
