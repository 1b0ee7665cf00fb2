"""Which rows a time-to-close version refit for deployment is graded on with its run's backtest model
(:func:`training.survival_tracking.backtest_graded`): every row it was fitted on, snapshot or outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from training.config import AS_OF
from training.survival_tracking import backtest_graded


def _version(**tags: str) -> ModelVersion:
    return ModelVersion("lead-time-to-close", "3", 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()])


REFIT = _version(refit="true", backtest_cut="2026-01-01", data_end="2026-06-30")


def _rows(*dates: str) -> pd.DataFrame:
    return pd.DataFrame({AS_OF: pd.to_datetime(list(dates), format="ISO8601")})


def test_rows_before_the_backtest_cut_go_to_the_backtest_model() -> None:
    """The refit followed the outcomes of the snapshots before the cut to its data end (a close after the cut is
    an event to it, censored to the backtest): graded with the refit, such a row is graded on an outcome it was
    fitted on. The backtest model saw them censored at the cut, as a ``refit: false`` version would have."""
    graded = backtest_graded(REFIT, _rows("2025-06-01", "2025-12-31 23:00", "2026-01-01", "2026-06-30 18:00"))
    np.testing.assert_array_equal(graded, [True, True, True, True])


def test_rows_after_the_data_end_are_the_refit_s_own() -> None:
    graded = backtest_graded(REFIT, _rows("2026-06-30", "2026-07-01", "2026-09-01"))
    np.testing.assert_array_equal(graded, [True, False, False])


def test_a_version_that_was_not_refit_grades_every_row_itself() -> None:
    assert backtest_graded(_version(refit="false"), _rows("2025-06-01")) is None
    assert backtest_graded(_version(), _rows("2025-06-01")) is None
