"""``training.refit``: the registered model of a time-ordered run is the backtest's booster refit on the training
and validation slices and calibrated on the test slice; the run's figures stay the backtest model's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.training_frames import FrameSet, snapshot_frame
from training.calibration import fit_calibrator
from training.config import TrainingConfig
from training.sales_readiness import train_and_evaluate

CONFIG = TrainingConfig(bootstrap_samples=0, make_plots=False)
LABEL = "converted_within_h"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frame = snapshot_frame(3000, 40, seed=5)
    return frame[frame[LABEL].notna()].drop(columns="true_probability").reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(frame):
    """(backtest run, refit run) on the same frame."""
    return (train_and_evaluate(FrameSet(frame), CONFIG.model_copy(update={"refit": False})),
            train_and_evaluate(FrameSet(frame), CONFIG))


def _test_rows(frame: pd.DataFrame, run) -> pd.DataFrame:
    keys = run.predictions[["lead_id", "as_of"]]
    return keys.merge(frame, on=["lead_id", "as_of"], how="left", validate="one_to_one")


def test_the_run_reports_the_backtest_and_registers_the_refit(frame, runs) -> None:
    backtest, refit = runs
    pd.testing.assert_frame_equal(refit.predictions, backtest.predictions)
    own = {k: v for k, v in refit.metrics.items() if k != "refit_calibration_base_rate"}
    assert pd.Series(own).equals(pd.Series(backtest.metrics))  # NaN where both are NaN
    split = refit.split
    assert refit.model.n_train_ == split["n_train"] + split["n_valid"] > backtest.model.n_train_ == split["n_train"]
    assert refit.model.best_iteration_ == backtest.model.best_iteration_ == split["refit"]["trees"]
    test = _test_rows(frame, refit)
    y_test = test[LABEL].to_numpy(dtype=float)
    assert split["refit"]["calibration_rows"] == len(test) and split["refit"]["calibration_conversions"] == y_test.sum()
    assert refit.metrics["refit_calibration_base_rate"] == y_test.mean()
    expected = fit_calibrator(CONFIG.calibration, refit.model.predict_raw(test), y_test)
    assert refit.model.calibrator_.to_dict() == expected.to_dict()  # calibrated on the test slice
    assert backtest.model.calibrator_.to_dict() != expected.to_dict()
    assert "refit for deployment" in refit.model_card and "refit for deployment" not in backtest.model_card
    assert any("registered model refit for deployment" in note for note in refit.notes)


def test_the_refit_booster_reads_no_test_label(frame, runs) -> None:
    _, refit = runs
    flipped = frame.copy()
    in_test = (flipped["as_of"] >= refit.predictions["as_of"].min()).to_numpy()
    flipped.loc[in_test, LABEL] = 1.0 - flipped.loc[in_test, LABEL]
    other = train_and_evaluate(FrameSet(flipped), CONFIG)
    test = _test_rows(frame, refit)
    np.testing.assert_array_equal(other.model.predict_raw(test), refit.model.predict_raw(test))
    assert other.model.calibrator_.to_dict() != refit.model.calibrator_.to_dict()  # its calibrator read them
