"""`train`, `evaluate` and `models ...` through typer's CliRunner on a real SQLite tracking store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leadscore.cli import app
from tests.integration.mlflow_support import SMALL_TRAINING, write_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory):
    # the backtest models are registered (training.refit: false): a refit champion would take the probabilities
    # of the challenger's rows (its own run's test rows) from its run, and the champion that cannot score them
    # (below) would never be asked to
    config = write_project(tmp_path_factory.mktemp("cli"), name="cli-test",
                           training=SMALL_TRAINING.model_copy(update={"refit": False}))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": ""})

    return invoke, config


def test_train_promote_evaluate_export_list(cli) -> None:
    invoke, config = cli
    trained = invoke("train", "-c", str(config))
    assert trained.exit_code == 0, trained.output
    assert "lightgbm" in trained.output and "logistic" in trained.output
    assert "default_b2b_points" in trained.output  # the packaged points rules, no flag needed
    assert "Leakage alarm" in trained.output and "alias challenger" in trained.output
    said = " ".join(trained.output.split())
    # calibration in the large and at the top, not only ECE
    assert re.search(r"calibration: mean predicted 0\.\d{4} vs observed rate 0\.\d{4} \(predicted/observed \d\.\d\d", said)
    assert re.search(r"top 10% by score: predicted 0\.\d{4} vs observed 0\.\d{4}", said)
    assert "split: train " in said and "{'n_train'" not in said
    assert (config.parent / "mlflow.db").is_file() and (config.parent / "mlartifacts").is_dir()

    promoted = invoke("models", "promote", "-c", str(config))
    assert promoted.exit_code in (0, 4), promoted.output
    assert ("PROMOTED" in promoted.output) == (promoted.exit_code == 0)
    listed = invoke("models", "list", "-c", str(config))
    assert listed.exit_code == 0 and "challenger" in listed.output
    assert re.search(r"│\s+0\.\d{4} │ (yes|no)\s+│", listed.output), listed.output  # AUC to 4 decimals, flag yes/no
    assert "uno_c" not in listed.output and "ibs" not in listed.output  # time-to-close columns do not apply
    if promoted.exit_code != 0:
        pytest.fail(f"first model did not beat the baselines:\n{promoted.output}")
    assert "champion" in listed.output

    evaluated = invoke("evaluate", "-c", str(config), "--model", "champion")
    assert evaluated.exit_code == 0, evaluated.output
    assert "roc_auc" in evaluated.output and "eval_data_hash" in evaluated.output
    assert re.search(r"│ n_positive\s+│\s+[\d,]+ │", evaluated.output), evaluated.output  # a count, not 108.0000
    assert re.search(r"│ roc_auc\s+│\s+0\.\d{4} │", evaluated.output)
    assert "calibration: mean predicted" in evaluated.output and "top 10% by score: predicted" in " ".join(evaluated.output.split())
    from mlflow import MlflowClient  # the rate of the champion's calibration rows, as its run logged it

    client = MlflowClient(f"sqlite:///{config.parent / 'mlflow.db'}")
    run_id = client.get_model_version_by_alias("lead-conversion", "champion").run_id
    rate = client.get_run(run_id).data.metrics["calibration_base_rate"]
    assert 0 < rate < 1
    assert re.search(rf"│ calibration_base_rate\s+│\s+{rate:.4f} │", evaluated.output), evaluated.output

    exported = invoke("models", "export", "-c", str(config), "--out", str(config.parent / "models"))
    assert exported.exit_code == 0, exported.output
    info = json.loads((config.parent / "models" / "lead-conversion" / "champion.json").read_text())
    assert info["version"] == "1"

    rolled = invoke("models", "rollback", "-c", str(config))
    assert rolled.exit_code == 1 and "nothing to roll back" in rolled.output
    unknown = invoke("evaluate", "-c", str(config), "--model", "99")
    assert unknown.exit_code == 1 and "model 'lead-conversion' has no version 99" in unknown.output, unknown.output

    # the next model drops an attribute: the champion cannot score the challenger's rows, a clear refusal
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["data"].setdefault("attributes", {})["ignore"] = ["industry"]
    document["training"]["make_plots"] = False  # this run is only refused at promotion: its figures go unread
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert invoke("train", "-c", str(config)).exit_code == 0
    refused = invoke("models", "promote", "-c", str(config))
    message = " ".join(refused.output.split())
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), message
    assert "champion version 1 cannot score the challenger's evaluation rows" in message
    listed = invoke("models", "list", "-c", str(config))
    assert listed.exit_code == 0
    assert [line.split()[1] for line in listed.output.splitlines() if "champion" in line][:1] == ["1"], listed.output


def test_missing_project_file_is_a_clear_error(cli, tmp_path: Path) -> None:
    invoke, _ = cli
    result = invoke("train", "-c", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "project file not found" in result.output
    # the models commands read only the store beside the project file: a mistyped -c must not open a new,
    # empty one there ("no versions registered yet"), nor pass a misspelt key over
    for command in ("list", "promote", "rollback", "export"):
        result = invoke("models", command, "-c", str(tmp_path / "sub" / "leadscore.yml"))
        assert result.exit_code == 2 and "project file not found" in result.output, result.output
    assert not (tmp_path / "sub").exists()
    (tmp_path / "typo.yaml").write_text(cli[1].read_text(encoding="utf-8") + "traning: {}\n", encoding="utf-8")
    result = invoke("models", "list", "-c", str(tmp_path / "typo.yaml"))
    assert result.exit_code == 2 and "unknown section(s) ['traning']" in result.output, result.output
    assert not (tmp_path / "mlflow.db").exists()
    result = invoke("train", "-c", str(cli[1]), "--points-rules", str(tmp_path / "rules.yaml"))
    assert result.exit_code == 2 and "--points-rules: points rules file not found" in result.output
    # the project's own key: the error names it and the project file (the path alone would leave the user guessing)
    project = tmp_path / "leadscore.yaml"
    document = yaml.safe_load(cli[1].read_text(encoding="utf-8"))
    project.write_text(yaml.safe_dump({**document, "training": {"points_rules": "my_points.yaml"}}), encoding="utf-8")
    result = invoke("train", "-c", str(project))
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "registered" not in said, said
    assert f"training.points_rules of project file {project}: points rules file not found: " \
           f"{tmp_path / 'my_points.yaml'}" in said, said
    (tmp_path / "my_points.yaml").write_text("", encoding="utf-8")
    result = invoke("train", "-c", str(project))
    assert result.exit_code == 2 and f"{tmp_path / 'my_points.yaml'} is empty" in " ".join(result.output.split())
    (tmp_path / "rules.yaml").write_text(
        "name: strict-rules\nmissing_columns: error\nfit: [{column: favourite_colour, in: [red], points: 15}]\n"
        "behaviour: {demo_request: 10}\n", encoding="utf-8")
    result = invoke("train", "-c", str(cli[1]), "--points-rules", str(tmp_path / "rules.yaml"))
    assert result.exit_code == 1 and "registered" not in result.output  # refused before any fit
    assert "points rules 'strict-rules': column(s) ['favourite_colour'] not in the data" in " ".join(result.output.split())
    (tmp_path / "rules.yaml").write_text(  # a misspelt event type would score every lead 0 points
        "name: strict-rules\nmissing_columns: error\nbehaviour: {demo_requets: 10, webinar: 3}\n", encoding="utf-8")
    result = invoke("train", "-c", str(cli[1]), "--points-rules", str(tmp_path / "rules.yaml"))
    assert result.exit_code == 1 and "registered" not in result.output
    assert ("points rules 'strict-rules': behaviour event type(s) ['demo_requets'] are neither in the events table "
            "nor conventional types") in " ".join(result.output.split())
