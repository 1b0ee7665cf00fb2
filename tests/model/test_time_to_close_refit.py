"""``time_to_close.refit``: the registered time-to-close model is the backtest's fit on every snapshot, outcomes
followed to the data end; the run's figures stay the backtest model's."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest

from features.build import TrainingSet, build_training_set
from leadscore.synth import SynthConfig, generate
from training.config import AS_OF
from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import (
    TimeToCloseResult,
    censor_at,
    held_out_leads,
    refit_note,
    train_and_evaluate_time_to_close,
)
from training.time_to_close import p_close_column

# one Cox penalizer: the peers are not what these tests are about
CONFIG = TimeToCloseConfig(make_plots=False, cox_penalizers=(0.01,))
SCORED = ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d", "calibration_max_gap_90d")


@pytest.fixture(scope="module")
def training_set() -> TrainingSet:
    return build_training_set(generate(SynthConfig(n_leads=1500, seed=3)).to_crm())


def _array_bytes(value: object) -> int | None:
    """Bytes of the arrays ``value`` holds (an array, a frame, a series, a dict of arrays); None for other values."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(deep=False).sum())
    if isinstance(value, pd.Series):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(v.nbytes for v in value.values() if isinstance(v, np.ndarray))
    return None


@pytest.fixture(scope="module")
def refit_run(training_set: TrainingSet) -> tuple[TimeToCloseResult, dict[str, int]]:
    """The default run, and the bytes of the arrays each local of ``train_and_evaluate_time_to_close`` held when it
    said it starts the refit (read from its frame by the progress callback it calls)."""
    held: dict[str, int] = {}

    def say(message: str) -> None:
        if message.startswith("refitting for deployment"):
            caller = sys._getframe(1)
            assert caller.f_code is train_and_evaluate_time_to_close.__code__
            held.update({k: n for k, v in caller.f_locals.items() if (n := _array_bytes(v)) is not None})

    return train_and_evaluate_time_to_close(training_set, CONFIG, say), held


@pytest.fixture(scope="module")
def refit(refit_run) -> TimeToCloseResult:
    return refit_run[0]


def _test_features(result: TimeToCloseResult) -> pd.DataFrame:
    return result.evaluation_rows[result.model.feature_columns_]


def test_the_run_reports_the_backtest_and_registers_a_fit_on_every_snapshot(training_set, refit) -> None:
    backtest = refit.backtest_model
    assert backtest is not None and refit.model is not backtest
    frame = training_set.frame
    train, valid = held_out_leads(frame["lead_id"], np.arange(len(frame)), CONFIG.validation_fraction, CONFIG.seed)
    # every snapshot but the held-out leads', those after the test slice too (the backtest: those before the cut)
    assert refit.model.n_snapshots_ == len(train) == refit.split["refit"]["snapshots"]
    assert (frame[AS_OF].iloc[train] > pd.Timestamp(refit.split["test_as_of"].split("..")[1])).any()
    assert backtest.n_snapshots_ == refit.split["n_train"] < refit.model.n_snapshots_
    assert refit.split["refit"]["trees"] == refit.model.best_iteration_ == refit.metrics["refit_best_iteration"]
    # the run's predictions and figures are the backtest model's, not the registered model's
    X = _test_features(refit)
    horizon = p_close_column(90)
    np.testing.assert_array_equal(refit.predictions[horizon], backtest.predict_summary(X)[horizon])
    assert np.abs(refit.model.predict_summary(X)[horizon] - refit.predictions[horizon]).max() > 1e-4
    assert "registered model refit for deployment" in refit.notes[-1]
    assert "Refit for deployment (`time_to_close.refit`)" in refit.model_card


def test_the_refit_learns_outcomes_after_the_cut_that_the_backtest_never_sees(training_set, refit) -> None:
    """Fitting rows with their outcomes censored at the test cut (what the backtest sees of them): the backtest and
    every figure of the run are the same, bit for bit; the registered model, which had followed them to the data
    end, is not."""
    frame = training_set.frame.copy()
    cut = pd.Timestamp(refit.split["censored_at"])
    before = (frame[AS_OF] < cut).to_numpy()
    d, e = censor_at(frame.loc[before, AS_OF], frame.loc[before, "days_observed"].to_numpy(dtype=float),
                     frame.loc[before, "event"].to_numpy().astype(bool), cut)
    assert (e != frame.loc[before, "event"].to_numpy().astype(bool)).sum() > 10  # closes after the cut, forgotten
    frame.loc[before, "days_observed"] = d
    frame.loc[before, "event"] = e.astype(frame["event"].dtype)
    forgot = train_and_evaluate_time_to_close(dataclasses.replace(training_set, frame=frame), CONFIG)
    assert {k: forgot.metrics[k] for k in SCORED} == {k: refit.metrics[k] for k in SCORED}
    X = _test_features(refit)
    pd.testing.assert_frame_equal(forgot.backtest_model.predict_summary(X), refit.backtest_model.predict_summary(X))
    assert forgot.split["refit"]["closes"] < refit.split["refit"]["closes"]
    horizon = p_close_column(90)
    assert np.abs(forgot.model.predict_summary(X)[horizon] - refit.model.predict_summary(X)[horizon]).max() > 1e-4


def test_refit_false_registers_the_backtest_model(training_set, refit) -> None:
    """The backtest model of a refit run is the model ``refit: false`` registers, with the same figures."""
    plain = train_and_evaluate_time_to_close(training_set, CONFIG.model_copy(update={"refit": False}))
    assert plain.backtest_model is None and "refit" not in plain.split
    assert not any("refit for deployment" in n for n in plain.notes)
    X = _test_features(refit)
    pd.testing.assert_frame_equal(plain.model.predict_summary(X), refit.backtest_model.predict_summary(X))
    assert {k: plain.metrics[k] for k in SCORED} == {k: refit.metrics[k] for k in SCORED}


def test_a_refit_that_runs_to_the_round_cap_says_so(refit) -> None:
    """At 200,000 leads the refit's boosting ran all 600 rounds (max_rounds) while its note read like an early stop."""
    capped = refit.model.config.model_copy(update={"booster": refit.model.config.booster.model_copy(
        update={"max_rounds": refit.model.best_iteration_})})
    model = type(refit.model)(capped)
    model.best_iteration_ = refit.model.best_iteration_
    said = refit_note(refit.split["refit"], refit.split["censored_at"], model)
    assert (f"{model.best_iteration_} trees (all {model.best_iteration_}: early stopping did not stop it, "
            "time_to_close.booster.max_rounds may be too low)") in said
    assert "early stopping did not stop it" not in refit_note(refit.split["refit"], refit.split["censored_at"],
                                                              refit.model)


def test_the_backtest_s_frames_are_freed_before_the_refit(training_set, refit_run) -> None:
    """The refit copies the features of every snapshot: what the backtest's evaluation held beside the frame (its
    slices, the test features, hazards, the four scorers' curves and the last of them left in the loop's variable:
    1.3 times the frame at 20k leads, 1.4 GB at 200k) must be let go by then. Besides the frame, the outcomes the
    refit reads and what the run returns, the run's locals may hold the small per-row arrays only (before: the test
    features alone were 0.3 times the frame)."""
    _, held = refit_run
    kept = {"frame", "durations", "events", "evaluation_rows", "predictions", "test_keys", "calibration",
            "comparison", "brier_curves"}
    assert "frame" in held and "evaluation_rows" in held  # the run's locals were read
    others = {k: n for k, n in held.items() if k not in kept}
    assert sum(others.values()) <= held["frame"] // 20, sorted(others.items(), key=lambda kv: -kv[1])[:5]
