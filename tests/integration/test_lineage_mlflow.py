"""What a logged run and its registered version say about where the model came from (real SQLite MLflow
store in a tmp dir): the resolved config, the data fingerprint, the split dates, the code and library
versions, the seed and the points rules the baselines were scored with."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import lightgbm
import pandas as pd
import pytest

from features.fingerprint import data_fingerprint
from tests.integration.mlflow_support import fitted, shared_project
from training.baselines import FitRule, PointsRules, points_rules_identity
from training.config import BoosterConfig
from training.lineage import code_version
from training.tracking import MODEL_CARD_ARTIFACT, POINTS_RULES_ARTIFACT, connect, tracking_target
from training.workflow import fit_training_set, track_and_register

pytestmark = pytest.mark.slow


def artifact_text(client, run_id: str, path: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()


def test_a_run_and_its_version_say_where_the_model_came_from(tmp_path: Path) -> None:
    project, training_set, data = shared_project()
    result = fitted("medium")
    target = tracking_target(None, tmp_path)
    run = track_and_register(target, project, training_set, result)
    client = connect(target)
    params = client.get_run(run.run_id).data.params
    tags = client.get_run(run.run_id).data.tags
    fingerprint = data_fingerprint(data)
    code = code_version()
    # the data: rows, dates and hash per table, the same as the tables the project reads
    assert params["data.fingerprint.leads.rows"] == str(len(data.leads))
    assert params["data.fingerprint.events.rows"] == str(len(data.events))
    assert params["data.fingerprint.outcomes.rows"] == str(len(data.outcomes))
    first_created = pd.Timestamp(data.leads["created_at"].min()).tz_localize("UTC").isoformat()
    assert params["data.fingerprint.leads.created_at_min"] == first_created
    assert params["data.fingerprint.hash"] == fingerprint["hash"] == tags["leadscore.data_hash"]
    # the whole data config (defaults too) and the split's dates
    assert params["data.source.kind"] == "parquet" and params["data.policy"] == "strict"
    assert params["data.source.events"] == project.data.source.events
    for key in ("train_as_of", "valid_as_of", "test_as_of", "n_train", "n_test"):
        assert params[f"split.{key}"] == str(result.split[key])
    # the code, the libraries and the seed
    assert params["code.leadscore_version"] == metadata.version("leadscore") == tags["leadscore.leadscore_version"]
    assert params["code.git_commit"] == code["git_commit"] == tags["leadscore.git_commit"]
    assert params["versions.lightgbm"] == lightgbm.__version__
    assert params["versions.pandas"] == pd.__version__
    assert params["training.seed"] == str(project.training.seed) == tags["leadscore.seed"]
    # the registered version carries the same, and a description in words
    version = client.get_model_version("lead-conversion", run.model_version)
    assert version.tags["data_hash"] == fingerprint["hash"]
    assert version.tags["git_commit"] == code["git_commit"]
    assert version.tags["leadscore_version"] == metadata.version("leadscore")
    assert version.tags["config_hash"] == params["config_hash"] and len(params["config_hash"]) == 16
    assert version.tags["seed"] == str(project.training.seed)
    assert version.description.startswith(f"project {project.name}; data: leads {len(data.leads):,} (")
    assert f"hash {fingerprint['hash']}" in version.description
    # the model card says it too, once
    card = artifact_text(client, run.run_id, MODEL_CARD_ARTIFACT, tmp_path)
    assert card.count("## Lineage") == 1 and fingerprint["hash"] in card and params["config_hash"] in card
    again = track_and_register(target, project, training_set, result)  # the same result logged twice
    assert artifact_text(client, again.run_id, MODEL_CARD_ARTIFACT, tmp_path / "again").count("## Lineage") == 1
    assert "## Lineage" not in result.model_card  # the caller's result is left as it was


def test_the_points_rules_the_baselines_used_are_recorded(tmp_path: Path) -> None:
    """``leadscore train --points-rules FILE`` hands the rules to the fit, not to the project config: the run
    recorded ``training.points_rules: None`` (the packaged default) whatever rules it was compared with."""
    project, training_set, data = shared_project()
    rules = PointsRules(name="acme-points", mql_threshold=20, fit=[FitRule(column="seniority", eq="vp", points=15)],
                        behaviour={"demo_request": 25.0, "pricing_page_view": 5.0}, missing_columns="skip")
    config = project.training.model_copy(update={"make_plots": False, "booster": BoosterConfig(max_rounds=20)})
    result = fit_training_set(training_set, data, config, points_rules=rules)
    target = tracking_target(None, tmp_path)
    run = track_and_register(target, project, training_set, result)
    client = connect(target)
    params = client.get_run(run.run_id).data.params
    assert params["baseline.points_rules.name"] == "acme-points"
    assert params["baseline.points_rules.hash"] == points_rules_identity(rules)["hash"]
    assert json.loads(artifact_text(client, run.run_id, POINTS_RULES_ARTIFACT, tmp_path)) == rules.model_dump(mode="json")
    default = track_and_register(target, project, training_set, fitted("medium"))
    assert client.get_run(default.run_id).data.params["baseline.points_rules.hash"] != points_rules_identity(rules)["hash"]
