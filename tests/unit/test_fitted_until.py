"""The end of the outcomes a registered or exported champion was fitted on, which the forecast's in-sample
warning reads (:func:`leadscore.forecast_models.fitted_until`)."""

from __future__ import annotations

from datetime import datetime

from leadscore.forecast_models import fitted_until

TEST_SLICE = {"eval_as_of_min": "2026-01-01T00:00:00", "eval_as_of_max": "2026-03-31T00:00:00"}


def test_the_recorded_end_wins() -> None:
    tags = {**TEST_SLICE, "refit": "true", "fitted_until": "2026-06-30T00:00:00"}
    assert fitted_until(tags, tags) == datetime(2026, 6, 30)


def test_a_version_without_the_record_ends_where_its_test_slice_starts() -> None:
    tags = {**TEST_SLICE, "refit": "false"}
    assert fitted_until(tags, tags) == datetime(2026, 1, 1)


def test_a_refit_version_registered_before_the_record_reaches_at_least_its_test_slice_s_end() -> None:
    """A sales-readiness version refit for deployment (tag ``refit``) registered before ``fitted_until`` existed was
    calibrated on its test slice: its outcomes reach at least the slice's last as-of date. The start of the slice
    (what it read) let a forecast dated inside the slice pass as out of sample."""
    tags = {**TEST_SLICE, "refit": "true"}
    assert fitted_until(tags, tags) == datetime(2026, 3, 31)
