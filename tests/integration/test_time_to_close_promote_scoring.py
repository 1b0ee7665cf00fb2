"""``models promote`` re-scores a time-to-close version on its evaluation rows through the registered pyfunc
without MLflow's per-value schema check (on a 200k-lead CRM: 556,078 rows x 68 columns of ``AnyType``, one
Python call per value, most of a 12-minute promote) and a block of rows at a time; the metrics are those the
training run logged for the same rows."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import training.survival_tracking as survival_tracking
from features.contract import DataConfig, SourceConfig
from leadscore.project import ProjectConfig
from leadscore.synth import SynthConfig, write_synthetic
from tests.integration.mlflow_support import count_pyfunc_scoring
from training.config import AS_OF
from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import DURATION, EVENT, score_survival
from training.survival_pyfunc import TimeToClosePyfunc
from training.survival_tracking import (
    MODEL_NAME,
    load_backtest_model,
    load_settings,
    rows_metrics_time_to_close,
)
from training.tracking import TEST_SET_ARTIFACT, connect, load_run_frame, tracking_target
from training.workflow import evaluate_registered, train_time_to_close_project

pytestmark = pytest.mark.slow
COMPARED = ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d")


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
    return connect(target), run, project, target


def test_rescoring_skips_the_schema_check_and_goes_by_blocks(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    client, run, *_ = trained
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    checked, scored = count_pyfunc_scoring(monkeypatch, TimeToClosePyfunc)
    monkeypatch.setattr(survival_tracking, "SCORE_ROWS", 1000)
    metrics = rows_metrics_time_to_close(client, MODEL_NAME, run.model_version, rows, run.run_id)
    assert sum(checked) == 0
    assert sum(scored) == len(rows) and max(scored) <= 1000 < len(rows)
    logged = client.get_run(run.run_id).data.metrics
    assert {k: metrics[k] for k in ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d")} == {
        k: logged[k] for k in ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d")}


def test_a_refit_version_is_graded_by_its_backtest_up_to_the_data_end(trained) -> None:
    """A version refit for deployment (``time_to_close.refit``, the default) was fitted on every snapshot up to its
    data end, outcomes followed to that end: on rows dated up to it, it is graded with its run's backtest model (the
    run's own rows: the run's figures; rows before the backtest's cut too, whose closes after the cut the refit was
    fitted on and the backtest never saw), on later rows with itself, and a mix of both goes row by row."""
    client, run, *_ = trained
    version = client.get_model_version(MODEL_NAME, run.model_version)
    assert version.tags["refit"] == "true"
    # fitted on outcomes up to the data end: a forecast made before it is in-sample
    assert version.tags["fitted_until"].startswith(version.tags["data_end"])
    assert version.tags["fitted_until"] > version.tags["eval_as_of_max"]
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    settings = load_settings(client, run.run_id)
    registered = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{run.model_version}").unwrap_python_model().model_
    backtest = load_backtest_model(client, version)
    own, old = (m.predict_survival(rows, settings.days) for m in (registered, backtest))
    assert np.abs(own - old).max() > 1e-4  # the refit differs on these rows: grading it could tell

    def graded(part: pd.DataFrame, survival: np.ndarray) -> dict[str, float]:
        return score_survival(part[DURATION].to_numpy(dtype=float), part[EVENT].to_numpy(), survival, settings).metrics

    logged = client.get_run(run.run_id).data.metrics
    on_own_rows = rows_metrics_time_to_close(client, MODEL_NAME, run.model_version, rows, run.run_id)
    assert {k: on_own_rows[k] for k in COMPARED} == {k: logged[k] for k in COMPARED} == {
        k: graded(rows, old)[k] for k in COMPARED}
    # the same rows dated a day to a month before the cut (a later run with a larger test_fraction reaches there):
    # graded with the refit they were graded on outcomes it was fitted on (it was, before the fix)
    cut = pd.Timestamp(version.tags["backtest_cut"])
    earlier = rows.assign(**{AS_OF: rows[AS_OF] - (rows[AS_OF].max() - cut + pd.Timedelta(days=1))})
    assert earlier[AS_OF].max() < cut
    on_earlier_rows = rows_metrics_time_to_close(client, MODEL_NAME, run.model_version, earlier, run.run_id)
    assert {k: on_earlier_rows[k] for k in COMPARED} == {k: logged[k] for k in COMPARED}
    end = pd.Timestamp(version.tags["data_end"])
    later = rows.assign(**{AS_OF: rows[AS_OF] + (end.normalize() - rows[AS_OF].min() + pd.Timedelta(days=1))})
    on_later_rows = rows_metrics_time_to_close(client, MODEL_NAME, run.model_version, later, run.run_id)
    assert {k: on_later_rows[k] for k in COMPARED} == pytest.approx({k: graded(rows, own)[k] for k in COMPARED},
                                                                     rel=1e-12)
    mixed_at = np.arange(len(rows)) % 3 == 0
    mixed = pd.concat([later[mixed_at], rows[~mixed_at]]).sort_index()
    on_mixed = rows_metrics_time_to_close(client, MODEL_NAME, run.model_version, mixed, run.run_id)
    expected = graded(rows, np.where(mixed_at[:, None], own, old))
    assert {k: on_mixed[k] for k in COMPARED} == pytest.approx({k: expected[k] for k in COMPARED}, rel=1e-12)


def test_evaluate_grades_a_refit_version_on_its_own_rows_with_its_backtest(trained) -> None:
    """`leadscore evaluate` of a refit version on the project's latest rows (its run's test rows) reports the run's
    figures, and says which rows its backtest model graded."""
    client, run, project, target = trained
    said: list[str] = []
    report = evaluate_registered(project, target, run.model_version, MODEL_NAME, progress=said.append)
    logged = client.get_run(run.run_id).data.metrics
    assert {k: report.metrics[k] for k in COMPARED} == pytest.approx({k: logged[k] for k in COMPARED}, rel=1e-12)
    n_rows = int(client.get_model_version(MODEL_NAME, run.model_version).tags["eval_rows"])
    assert f"{n_rows:,} of {n_rows:,} rows are dated" in " ".join(said) and "backtest model" in " ".join(said)


def test_rows_all_graded_by_the_backtest_are_not_copied(trained) -> None:
    """A refit version graded on its own run's rows (the common case: every row dated up to its data end) hands
    the rows themselves to the scorer: selecting them by a mask of all True copied every evaluation row and
    column once more (at 200k leads a few hundred MB beside the copy the scorer drops its keys from)."""
    client, run, *_ = trained
    version = client.get_model_version(MODEL_NAME, run.model_version)
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    given: list[tuple[bool, bool]] = []

    def score(part: pd.DataFrame, backtest) -> np.ndarray:
        given.append((part is rows, backtest is not None))
        return np.zeros((len(part), 2))

    survival = survival_tracking.out_of_sample_survival(client, version, rows, score)
    assert given == [(True, True)] and survival.shape == (len(rows), 2)
