"""Below the size the defaults are made for (~100 conversions): training refuses with the counts when a
slice holds one class, and says so when the model learns nothing or learns from few conversions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.schema import FlatData
from tests.training_frames import FrameSet, snapshot_frame
from training.config import BoosterConfig, TrainingConfig
from training.evaluation import time_ordered_split
from training.sales_readiness import train_and_evaluate, train_and_evaluate_flat

CONFIG = TrainingConfig(booster=BoosterConfig(max_rounds=30, early_stopping_rounds=10), bootstrap_samples=0,
                        make_plots=False)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frame = snapshot_frame(600, 30, seed=11)
    return frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)


def test_a_slice_without_conversions_is_refused_with_the_counts(frame) -> None:
    result = train_and_evaluate(FrameSet(frame), CONFIG)
    valid_dates = result.split["valid_as_of"].split("..")
    quiet = frame.copy()
    in_valid = quiet["as_of"].between(pd.Timestamp(valid_dates[0]), pd.Timestamp(valid_dates[1]))
    quiet.loc[in_valid, "converted_within_h"] = 0.0
    with pytest.raises(ValueError, match=r"validation slice \([\d,]+ snapshots, as of .*\) holds no conversion") as err:
        train_and_evaluate(FrameSet(quiet), CONFIG)
    assert "0 in validation" in str(err.value) and "in training" in str(err.value)


def test_a_model_without_a_split_and_few_conversions_are_named_in_the_notes(frame) -> None:
    split = time_ordered_split(frame["as_of"], 14)
    rare = frame.copy()
    label = np.zeros(len(rare))
    for rows, conversions in ((split.train, 3), (split.valid, 5), (split.test, 10)):
        label[rows[::len(rows) // conversions][:conversions]] = 1.0  # 3 in training: no leaf can hold 3 x n / 3
    rare["converted_within_h"] = label
    said: list[str] = []
    result = train_and_evaluate(FrameSet(rare), CONFIG, progress=said.append)
    assert any("made no split" in note for note in result.notes)
    assert any("few conversions" in note and "3 in training" in note for note in result.notes)
    assert any("made no split" in line for line in said)
    assert result.predictions["probability"].nunique() == 1


def _flat(n: int, positives: int) -> FlatData:
    rng = np.random.default_rng(0)
    label = np.zeros(n, dtype=int)
    label[rng.choice(n, positives, replace=False)] = 1
    frame = pd.DataFrame({"lead_id": np.arange(n), "label": label, "source": rng.choice(["web", "event"], n),
                          "visits": rng.poisson(3, n).astype(float)})
    return FlatData(frame=frame, categorical_features=["source"], numeric_features=["visits"],
                    families={"source": "fit", "visits": "engagement"})


def test_a_flat_export_with_too_few_conversions_for_its_folds_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match=r"6 of its 200 rows convert.*cv_folds 5 needs at least 10"):
        train_and_evaluate_flat(_flat(200, 6), CONFIG)


def test_a_flat_export_with_few_conversions_trains_and_says_so() -> None:
    result = train_and_evaluate_flat(_flat(300, 12), CONFIG)
    assert any("few conversions" in note for note in result.notes)


def test_a_run_says_how_it_fitted_trees_early_stopping_and_calibration(frame) -> None:
    """`leadscore train` named no calibration method, tree count or early stopping: below the ~100 conversions
    the defaults are made for, auto calibration is Platt, and the run now says so with the counts it used."""
    said: list[str] = []
    result = train_and_evaluate(FrameSet(frame), CONFIG, progress=said.append)
    model = result.model
    fitted = [line for line in said if line.startswith("LightGBM: ")]
    assert len(fitted) == 1 and fitted[0] in result.notes
    n_valid = result.split["n_valid"]
    valid_positives = int(frame.loc[frame["as_of"].between(*map(pd.Timestamp, result.split["valid_as_of"].split(
        ".."))), "converted_within_h"].sum())
    assert f"{model.best_iteration_} of at most 30 trees" in fitted[0]
    assert f"{model.calibrator_.kind} calibration on the {n_valid:,} validation snapshots" in fitted[0]
    assert f"{valid_positives:,} converting" in fitted[0]
    assert "auto: isotonic from 1,000 rows and 100 conversions" in fitted[0]


def test_a_flat_run_says_its_folds_rounds_and_calibration() -> None:
    said: list[str] = []
    result = train_and_evaluate_flat(_flat(300, 12), CONFIG, progress=said.append)
    fitted = [line for line in said if line.startswith("LightGBM: ")]
    assert len(fitted) == 1 and fitted[0] in result.notes
    iterations = ", ".join(str(i) for i in result.split["best_iterations"])
    assert f"5-fold cross-validation (best iterations per fold: {iterations}" in fitted[0]
    assert f"final model {result.split['final_rounds']} rounds on all 300 rows" in fitted[0]
    assert "platt calibration cross-fitted on the out-of-fold margins (300 rows, 12 converting" in fitted[0]


def test_a_flat_export_whose_timestamps_are_one_instant_is_refused_naming_the_setting() -> None:
    """A flat timestamp_column holding one date for every lead ended in the snapshot split's words ("no
    snapshot has as_of + 0d <= test start ..., too short for horizon 0d"), none of which a flat export has."""
    flat = _flat(300, 40)
    flat.frame["created_at"] = pd.Timestamp("2024-01-01")
    with pytest.raises(ValueError, match=r"flat data: timestamp_column holds 1 distinct instant\(s\) \(2024-01-01\) "
                                         r"in 300 rows.*leave timestamp_column unset"):
        train_and_evaluate_flat(flat, CONFIG)
