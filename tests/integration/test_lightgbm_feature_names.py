"""CRM names that LightGBM refuses in a feature name (``" , : [ ] { }``) train like any other.

An event type such as ``Email: Opened`` (a per-type engagement feature is named after it) or a leads
column such as ``Revenue [USD]`` made `leadscore train` end in LightGBM's traceback ("Do not support
special JSON characters in feature name"), for both targets. The features keep their names (the
model's columns, its reasons); LightGBM gets names without those characters.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.synth import SynthConfig, write_synthetic
from tests.integration.mlflow_support import cli_message

EVENT_TYPE = "Email: Opened"
COLUMN = 'Revenue [USD], "net" {a:b}'


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("json-names")
    write_synthetic(SynthConfig(n_leads=1500, seed=0), f"sqlite:///{directory / 'crm.db'}", "sql")
    with sqlite3.connect(directory / "crm.db") as conn:
        conn.execute("UPDATE events SET event_type = ? WHERE event_type = 'email_open'", (EVENT_TYPE,))
        conn.execute(f'ALTER TABLE leads RENAME COLUMN annual_revenue TO "{COLUMN.replace(chr(34), chr(34) * 2)}"')
    config = directory / "leadscore.yaml"
    # the refits for deployment fit the same names through the same code a second time: not paid for here
    config.write_text("name: json-names\ndata:\n  source:\n    kind: sql\n    url: sqlite:///crm.db\n"
                      "training: {refit: false}\ntime_to_close: {refit: false}\n", encoding="utf-8")
    return config


@pytest.mark.slow
@pytest.mark.parametrize("target", ["sales-readiness", "time-to-close"])
def test_names_lightgbm_refuses_train(project: Path, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`leadscore train` through typer's CliRunner in this process (the libraries it needs are already
    imported: a subprocess spent its first seconds importing them again); LightGBM's error would end the
    command with it as the uncaught exception."""
    monkeypatch.chdir(project.parent)
    done = CliRunner().invoke(app, ["train", "-c", str(project), "--target", target],
                              env={"MLFLOW_TRACKING_URI": "", "MLFLOW_RUN_ID": ""})
    assert done.exit_code == 0 and done.exception is None, cli_message(done)[-3000:]
    assert "Traceback" not in done.output and "LightGBMError" not in done.output


@pytest.mark.slow
def test_the_model_keeps_the_crm_names(project: Path) -> None:
    """The fitted model's columns and importances are named as in the CRM, not as LightGBM was told."""
    from leadscore.project import load_project
    from training.workflow import fit_training_set, load_training_set

    training_set, data, _ = load_training_set(load_project(project))
    result = fit_training_set(training_set, data, load_project(project).training.model_copy(
        update={"make_plots": False, "bootstrap_samples": 5, "shap_sample": 50}))
    columns = result.model.feature_columns_
    assert COLUMN in columns and any(EVENT_TYPE in c for c in columns), columns
    assert list(result.model.feature_importance("gain").index) == columns
