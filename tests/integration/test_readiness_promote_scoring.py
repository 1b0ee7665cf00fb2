"""``models promote`` and ``evaluate`` re-score sales-readiness versions through the registered pyfunc without
MLflow's per-value schema check (on a 200k-lead CRM: 556,078 rows x 68 columns of ``AnyType``, one Python call
per value, most of a promote) and a block of rows at a time; the metrics are those the training run logged for
the same rows, and the decision is the rule's."""

from __future__ import annotations

import dataclasses
import gc
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

import training.pyfunc as pyfunc
from features.build import TrainingSet
from features.schema import CRMData
from tests.integration.mlflow_support import count_pyfunc_scoring, fitted, shared_project
from training.pyfunc import SalesReadinessPyfunc, pyfunc_probabilities
from training.registry import (
    CHAMPION,
    MODEL_NAME,
    PREDICTIONS_ARTIFACT,
    RegistryError,
    alias_version,
    champion_info,
    out_of_sample_probabilities,
    promote,
    promotion_rules,
    rows_metrics,
    run_ece_bins,
)
from training.tracking import TEST_SET_ARTIFACT, connect, load_run_frame, tracking_target
from training.workflow import evaluate_registered, track_and_register

BLOCK = 1000
COMPARED = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_capture")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A champion (``medium``) and a challenger (``good``) of the shared project in a fresh SQLite store; both the
    backtest models (``training.refit: false``): a refit version takes its test rows' probabilities from its run."""
    project, training_set, _ = shared_project()
    target = tracking_target(None, tmp_path_factory.mktemp("readiness-promote"))
    champion = track_and_register(target, project, training_set, fitted("medium", refit=False))
    client = connect(target)
    assert promote(client).promoted
    # promote and evaluate re-score the versions; the run's figures are never read: not logged here (the figures
    # of "good" are checked in test_tracking.py)
    challenger = track_and_register(target, project, training_set, dataclasses.replace(fitted("good", refit=False),
                                                                                     figures={}))
    return project, target, client, champion, challenger


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """(rows given to MLflow's schema check, rows given to the pyfunc's predict) per call; blocks of BLOCK rows."""
    counts = count_pyfunc_scoring(monkeypatch, SalesReadinessPyfunc)
    monkeypatch.setattr(pyfunc, "SCORE_ROWS", BLOCK, raising=False)  # raising: absent before the blocks
    return counts


def test_promote_rescores_both_versions_by_blocks_without_the_schema_check(registry, counted) -> None:
    _, _, client, champion, challenger = registry
    checked, scored = counted
    tags = client.get_model_version(MODEL_NAME, champion.model_version).tags
    assert tags["fitted_until"] == tags["eval_as_of_min"]  # no refit: outcomes known where its test slice starts
    rows = load_run_frame(client, challenger.run_id, TEST_SET_ARTIFACT)
    decision = promote(client)
    assert sum(checked) == 0
    assert sum(scored) == 2 * len(rows) and max(scored) <= BLOCK < len(rows)  # challenger and champion
    assert decision.promoted, decision.explain()
    assert decision.champion_version == champion.model_version
    assert str(alias_version(client, MODEL_NAME, CHAMPION).version) == challenger.model_version
    logged = client.get_run(challenger.run_id).data.metrics
    column = f"challenger v{challenger.model_version}"
    assert {m: decision.table.loc[m, column] for m in COMPARED} == {m: logged[m] for m in COMPARED}


def test_evaluate_scores_by_blocks_without_the_schema_check(registry, counted) -> None:
    project, target, client, _, challenger = registry
    checked, scored = counted
    report = evaluate_registered(project, target, challenger.model_version)
    rows = int(report.evaluation["eval_rows"])
    assert sum(checked) == 0
    assert sum(scored) == rows and max(scored) <= BLOCK < rows
    logged = client.get_run(challenger.run_id).data.metrics
    assert {m: report.metrics[m] for m in COMPARED} == {m: logged[m] for m in COMPARED}


def _alive() -> tuple[int, int]:
    """How many CRMData and TrainingSet objects are alive (one collection, one walk of the heap for both)."""
    gc.collect()
    crm = frames = 0
    for o in gc.get_objects():
        crm += isinstance(o, CRMData)
        frames += isinstance(o, TrainingSet)
    return crm, frames


def test_evaluate_scores_without_the_crm_tables_or_the_frame(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluate`` scores with neither the CRM tables nor the snapshot frame held, only the evaluation rows
    copied out of the frame (a 200k-lead CRM's evaluate held the 10.5M events, the frame and copies of it while
    scoring: 5.5 GiB, where training peaks at 3.1 GiB)."""
    project, target, client, _, challenger = registry
    held: list[tuple[int, int]] = []
    predict = SalesReadinessPyfunc.predict

    def looking_predict(self, context, model_input, params=None):
        if not held:
            held.append(_alive())
        return predict(self, context, model_input, params)

    before = _alive()  # the session's shared project holds one of each
    monkeypatch.setattr(SalesReadinessPyfunc, "predict", looking_predict)
    report = evaluate_registered(project, target, challenger.model_version)
    assert held == [before]
    logged = client.get_run(challenger.run_id).data.metrics  # the same rows as the run's test slice
    assert {m: report.metrics[m] for m in COMPARED} == {m: logged[m] for m in COMPARED}


def test_a_refit_version_is_graded_by_its_backtest_up_to_the_data_end(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version refit for deployment was calibrated on its run's test rows, labelled by outcomes up to its data
    end: ``evaluate`` and ``promote`` grade it with its run's backtest model on every row dated up to that end (its
    run's own rows with the probabilities the run logged), and with itself on later rows."""
    project, training_set, _ = shared_project()
    result = fitted("medium")  # training.refit: true, the default
    assert "refit" in result.split
    target = tracking_target(None, tmp_path / "refit")
    run = track_and_register(target, project, training_set, result)
    client = connect(target)
    version = client.get_model_version(MODEL_NAME, run.model_version)
    assert version.tags["refit"] == "true"
    # its calibrator learnt from the test slice: a forecast made before the data end is in-sample
    assert version.tags["fitted_until"] == training_set.data_end.isoformat() > version.tags["eval_as_of_max"]
    assert champion_info(client, MODEL_NAME, version, CHAMPION)["fitted_until"] == version.tags["fitted_until"]
    # registered before the tag: an export records at least the end of the test slice it was calibrated on (it
    # recorded nothing, and the forecast read the slice's start)
    client.delete_model_version_tag(MODEL_NAME, run.model_version, "fitted_until")
    older = client.get_model_version(MODEL_NAME, run.model_version)
    assert champion_info(client, MODEL_NAME, older, CHAMPION)["fitted_until"] == version.tags["eval_as_of_max"]
    client.set_model_version_tag(MODEL_NAME, run.model_version, "fitted_until", version.tags["fitted_until"])
    rows = load_run_frame(client, run.run_id, TEST_SET_ARTIFACT)
    backtest = load_run_frame(client, run.run_id, PREDICTIONS_ARTIFACT)["probability"].to_numpy()
    served = result.model.predict_proba(rows)
    assert np.abs(served - backtest).max() > 1e-3  # the refit model differs on these rows: grading it could tell
    checked, scored = count_pyfunc_scoring(monkeypatch, SalesReadinessPyfunc)
    said: list[str] = []
    report = evaluate_registered(project, target, run.model_version, progress=said.append)
    assert scored == []
    logged = client.get_run(run.run_id).data.metrics
    assert {m: report.metrics[m] for m in COMPARED} == {m: logged[m] for m in COMPARED}
    # graded by the backtest model: its calibration rows (the validation slice) are the ones whose rate is said
    assert report.metrics["calibration_base_rate"] == logged["calibration_base_rate"]
    assert "refit_calibration_base_rate" not in report.metrics
    # the same leads a day later are not the run's rows, but their labels come from nearly the same outcomes, which
    # the refit's calibrator saw up to the data end: its run's backtest model grades them (the refit did, before)
    backtest_model = fitted("medium", refit=False).model  # the run's backtest model: the same fit
    later = rows.index % 2 == 1
    moved = rows.assign(as_of=np.where(later, rows["as_of"] + pd.Timedelta(days=1), rows["as_of"]))
    assert moved["as_of"].max() <= training_set.data_end
    old = backtest_model.predict_proba(moved)
    assert np.abs(old[later] - served[later]).max() > 1e-3  # the two models differ on these rows
    probability = out_of_sample_probabilities(
        client, version, moved, lambda part: pyfunc_probabilities(mlflow.pyfunc.load_model(
            f"models:/{MODEL_NAME}/{run.model_version}"), part[result.model.feature_columns_]))
    np.testing.assert_allclose(probability[later], old[later], rtol=1e-9)
    np.testing.assert_array_equal(probability[~later], backtest[~later])
    # promote grades it the same way
    metrics = promotion_rules(None).metrics_on_rows(client, MODEL_NAME, run.model_version, moved, run.run_id)
    assert metrics == pytest.approx(rows_metrics(moved, np.where(later, old, backtest),
                                                 *run_ece_bins(client, run.run_id)), rel=1e-12)
    # rows dated after the data end are the refit's own: it scores them, and a mix goes row by row
    end = pd.Timestamp(version.tags["data_end"])
    assert end == training_set.data_end and version.tags["backtest_cut"] == version.tags["eval_as_of_min"]
    after = moved.assign(as_of=np.where(later, moved["as_of"] + (end - rows["as_of"].min() + pd.Timedelta(days=1)),
                                        moved["as_of"]))
    refit_scored: list[int] = []

    def refit_score(part: pd.DataFrame) -> np.ndarray:
        refit_scored.append(len(part))
        return pyfunc_probabilities(mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{run.model_version}"),
                                    part[result.model.feature_columns_])

    probability = out_of_sample_probabilities(client, version, after, refit_score)
    assert refit_scored == [int(later.sum())]
    np.testing.assert_allclose(probability[later], served[later], rtol=1e-9)
    np.testing.assert_array_equal(probability[~later], backtest[~later])
    # evaluate says which rows the backtest model graded
    assert f"{len(rows):,} of {len(rows):,} rows are dated up to" in " ".join(said)
    # a run logged before the backtest model was (or whose backtest_model/ is gone): its own rows and later ones are
    # still graded, a row dated up to the data end that its run does not hold is refused, naming the run
    stored = [p for p in (tmp_path / "refit").rglob("backtest_model") if p.is_dir()]
    assert len(stored) == 1, stored
    shutil.rmtree(stored[0])
    assert evaluate_registered(project, target, run.model_version).metrics == report.metrics
    with pytest.raises(RegistryError, match=rf"(?s)run {run.run_id} holds no backtest_model/.*cannot grade it on the "
                                            "rows dated up to its data end"):
        out_of_sample_probabilities(client, version, moved, refit_score)


def test_a_refit_champion_without_its_backtest_model_is_graded_by_itself_with_a_note(tmp_path) -> None:
    """A refit champion whose run holds no backtest_model/ (registered before runs logged it, or the artifact is
    gone) cannot be trained again, as a challenger can: the challenger's rows dated up to its data end that its run
    does not hold (a later split, more data) refused every promotion over it. The champion side grades them with
    the champion itself, which flatters it (its calibrator learnt their outcomes: the challenger's bar is higher,
    never lower), and the decision says so, as for a champion graded on rows it was fitted on."""
    project, training_set, _ = shared_project()
    target = tracking_target(None, tmp_path / "old-refit")
    client = connect(target)
    result = fitted("medium")  # training.refit: true
    held = result.predictions.iloc[: len(result.predictions) // 2]  # its run holds half of the later test rows
    champion = track_and_register(target, project, training_set, dataclasses.replace(result, predictions=held,
                                                                                     figures={}))
    assert promote(client).promoted
    stored = [p for p in (tmp_path / "old-refit").rglob("backtest_model") if p.is_dir()]
    assert len(stored) == 1, stored
    shutil.rmtree(stored[0])
    challenger = track_and_register(target, project, training_set, dataclasses.replace(fitted("good", refit=False),
                                                                                     figures={}))
    rows = load_run_frame(client, challenger.run_id, TEST_SET_ARTIFACT)
    version = client.get_model_version(MODEL_NAME, champion.model_version)
    assert (pd.to_datetime(rows["as_of"]) <= pd.Timestamp(version.tags["data_end"])).all()
    decision = promote(client)
    assert decision.champion_version == champion.model_version
    note = [r for r in decision.reasons if "backtest_model/" in r]
    assert len(note) == 1 and f"version {champion.model_version}" in note[0], decision.reasons
    logged = rows[["lead_id", "as_of"]].merge(held[["lead_id", "as_of", "probability"]], how="left")["probability"]
    known = logged.notna().to_numpy()
    assert 0 < known.sum() < len(rows)
    expected = np.where(known, logged.to_numpy(dtype=float), result.model.predict_proba(rows))
    champion_column = decision.table[f"champion v{champion.model_version}"]
    graded = rows_metrics(rows, expected, *run_ece_bins(client, challenger.run_id))
    assert {m: champion_column[m] for m in COMPARED} == pytest.approx({m: graded[m] for m in COMPARED}, rel=1e-9)
