"""Which rows a version refit for deployment (time to close, sales readiness) is graded on with its run's backtest
model (:func:`training.registry.backtest_graded`): every row dated up to its data end, whose outcomes it learnt from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from training.config import AS_OF
from training.registry import RegistryError, backtest_graded, refit_tags


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


def test_a_data_end_with_a_time_of_day_bounds_the_rows_to_the_instant() -> None:
    """Tags written now keep the instant (``refit_tags``); as-of dates with a time of day on the data end's own day
    are graded by the backtest model up to that instant, by the refit after it."""
    tags = refit_tags(True, pd.Timestamp("2026-01-01 08:30"), pd.Timestamp("2026-06-30 12:00"))
    assert tags == {"refit": "true", "backtest_cut": "2026-01-01T08:30:00", "data_end": "2026-06-30T12:00:00"}
    graded = backtest_graded(_version(**tags), _rows("2026-06-30 11:59", "2026-06-30 12:00", "2026-06-30 12:01"))
    np.testing.assert_array_equal(graded, [True, True, False])
    midnight = _version(**refit_tags(True, pd.Timestamp("2026-01-01"), pd.Timestamp("2026-06-30")))
    np.testing.assert_array_equal(backtest_graded(midnight, _rows("2026-06-30", "2026-06-30 06:00")), [True, False])
    assert refit_tags(False, pd.Timestamp("2026-01-01"), pd.Timestamp("2026-06-30")) == {"refit": "false"}


def test_a_sales_readiness_version_tagged_before_data_end_reads_its_fitted_until() -> None:
    """Refit versions registered before the ``data_end`` tag: a refit's ``fitted_until`` is its data end."""
    older = _version(refit="true", fitted_until="2026-06-30T00:00:00")
    np.testing.assert_array_equal(backtest_graded(older, _rows("2026-06-30", "2026-06-30 06:00")), [True, False])
    with pytest.raises(RegistryError, match="lacks the version tag 'data_end'"):
        backtest_graded(_version(refit="true"), _rows("2026-06-30"))


@pytest.mark.parametrize("tag", ["NaT", "not a date"])
def test_a_data_end_that_reads_as_no_instant_is_refused(tag: str) -> None:
    """A ``data_end`` that is no instant (``NaT``, as ``pd.Timestamp(NaT).isoformat()`` writes it) compared false
    with every row: all of them went to the refit, graded on the outcomes it learnt from."""
    with pytest.raises(RegistryError, match="data_end"):
        backtest_graded(_version(refit="true", data_end=tag), _rows("2026-06-30"))
