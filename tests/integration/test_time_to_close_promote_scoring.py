"""``models promote`` re-scores a time-to-close version on its evaluation rows through the registered pyfunc
without MLflow's per-value schema check (on a 200k-lead CRM: 556,078 rows x 68 columns of ``AnyType``, one
Python call per value, most of a 12-minute promote) and a block of rows at a time; the metrics are those the
training run logged for the same rows."""

from __future__ import annotations

from pathlib import Path

import pytest

import training.survival_tracking as survival_tracking
from features.contract import DataConfig, SourceConfig
from leadscore.project import ProjectConfig
from leadscore.synth import SynthConfig, write_synthetic
from tests.integration.mlflow_support import count_pyfunc_scoring
from training.survival_config import TimeToCloseConfig
from training.survival_pyfunc import TimeToClosePyfunc
from training.survival_tracking import MODEL_NAME, rows_metrics_time_to_close
from training.tracking import TEST_SET_ARTIFACT, connect, load_run_frame, tracking_target
from training.workflow import train_time_to_close_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    directory: Path = tmp_path_factory.mktemp("ttc-promote")
    write_synthetic(SynthConfig(n_leads=1500, seed=3), str(directory / "crm"), "parquet", overwrite=True)
    source = SourceConfig(kind="parquet", leads=str(directory / "crm" / "leads.parquet"),
                          events=str(directory / "crm" / "events.parquet"),
                          outcomes=str(directory / "crm" / "outcomes.parquet"))
    # the test re-scores the registered model, never its peers: one Cox penalizer instead of the grid of five
    project = ProjectConfig(name="ttc-promote", data=DataConfig(source=source),
                            time_to_close=TimeToCloseConfig(make_plots=False, cox_penalizers=(0.01,)))
    target = tracking_target(None, directory)
    run = train_time_to_close_project(project, target)
    return connect(target), run


def test_rescoring_skips_the_schema_check_and_goes_by_blocks(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    client, run = trained
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    checked, scored = count_pyfunc_scoring(monkeypatch, TimeToClosePyfunc)
    monkeypatch.setattr(survival_tracking, "SCORE_ROWS", 1000)
    metrics = rows_metrics_time_to_close(client, MODEL_NAME, run.model_version, rows, run.run_id)
    assert sum(checked) == 0
    assert sum(scored) == len(rows) and max(scored) <= 1000 < len(rows)
    logged = client.get_run(run.run_id).data.metrics
    assert {k: metrics[k] for k in ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d")} == {
        k: logged[k] for k in ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d")}
