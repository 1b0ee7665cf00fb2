"""Recalibration of the sales-readiness probabilities at the forecast date (Platt on logit(p))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.schema import CONVERTED_AT, CREATED_AT
from features.spec import FeatureConfig, FeatureSpec
from tests.unit.test_forecast import _crm, _pipeline_inputs  # the forecast tests' small CRM and inputs
from training.forecast import (
    ForecastConfig,
    fit_recalibration,
    forecast_pipeline,
    recalibration_dates,
    recalibration_snapshots,
)
from training.forecast_config import RecalibrationConfig


def _overconfident(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true p, model p = 2 x true p, observed 0/1 outcome)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.005, 0.2, n)
    return truth, 2.0 * truth, (rng.random(n) < truth).astype(float)


def test_probabilities_twice_too_high_are_pulled_down_to_the_observed_rate() -> None:
    truth, p, y = _overconfident()
    recal = fit_recalibration(p, y, pd.date_range("2025-06-01", periods=3, freq="MS"), min_positives=20)
    assert recal.fitted and recal.rows == y.size and recal.positives == int(y.sum())
    mapped = recal.apply(p)
    assert p.sum() > 1.8 * y.sum()
    assert mapped.sum() == pytest.approx(y.sum(), rel=1e-3)  # logistic regression with an intercept
    assert np.mean(np.abs(mapped - truth)) < 0.25 * np.mean(np.abs(p - truth))
    assert recal.describe()["dates"] == ["2025-06-01", "2025-07-01", "2025-08-01"]
    assert "recalibrated" in recal.to_text() and f"{recal.positives:,} positives" in recal.to_text()


def test_the_map_is_monotone_and_keeps_the_ranking() -> None:
    _, p, y = _overconfident(seed=1)
    recal = fit_recalibration(p, y)
    grid = np.linspace(0.0, 1.0, 201)
    mapped = recal.apply(grid)
    assert recal.slope > 0
    assert np.all(np.diff(mapped) > 0)
    assert np.all((mapped > 0) & (mapped < 1))
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(recal.apply(p)[order]) >= 0)


def test_too_few_positives_skips_and_leaves_the_probabilities_alone() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.01, 0.3, 500)
    rank = np.argsort(np.argsort(-p))  # 0 = highest p
    y = (rank < 19).astype(float)  # a perfect ranking, but 19 positives only
    recal = fit_recalibration(p, y, min_positives=20)
    assert not recal.fitted and recal.positives == 19
    assert "19 positives < 20" in recal.reason and "skipped" in recal.to_text()
    np.testing.assert_array_equal(recal.apply(p), p)
    assert fit_recalibration(p, (rank < 20).astype(float), min_positives=20).fitted
    # no snapshot at all (a forecast date within H of the first lead): no "model mean nan" in the note
    empty = fit_recalibration(np.empty(0), np.empty(0), pd.date_range("2024-03-05", periods=2, freq="30D"))
    assert empty.to_text() == ("sales-readiness recalibration skipped: 0 positives < 20 needed; 2 snapshot dates "
                               "2024-03-05..2024-04-04: 0 rows, 0 positives")


def test_too_few_negatives_skips_too_as_the_setting_says() -> None:
    """min_positives bounds the negatives as well (a slice of nearly all converters says nothing about slope);
    its description says so (it promised positives only)."""
    from training.forecast_config import RecalibrationConfig

    p = np.random.default_rng(4).uniform(0.5, 0.99, 200)
    y = np.ones(200)
    y[np.argsort(p)[:19]] = 0.0  # 181 positives, 19 negatives
    recal = fit_recalibration(p, y, min_positives=20)
    assert not recal.fitted and "19 negatives < 20" in recal.reason
    assert "negative" in RecalibrationConfig.model_fields["min_positives"].description


def test_a_model_that_ranks_backwards_is_not_used() -> None:
    truth, p, y = _overconfident(seed=3)
    recal = fit_recalibration(1.0 - p, y)
    assert not recal.fitted and "not positive" in recal.reason
    np.testing.assert_array_equal(recal.apply(p), p)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="0/1"):
        fit_recalibration(np.array([0.1, 0.2]), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_recalibration(np.array([0.1, 1.2]), np.array([0.0, 1.0]))


def test_snapshot_dates_end_h_days_before_the_forecast_date() -> None:
    dates = recalibration_dates("2025-12-01", 90.0, window_days=90.0, step_days=30.0)
    assert list(dates) == [pd.Timestamp("2025-12-01") - pd.Timedelta(days=d) for d in (180, 150, 120, 90)]
    weekly = recalibration_dates("2025-12-01 10:00", 90.0, window_days=28.0, step_days=7.0)
    assert len(weekly) == 5 and weekly[-1] == pd.Timestamp("2025-09-02 10:00")


@pytest.mark.parametrize("horizon", [90.0, 30.0])
def test_snapshots_hold_the_leads_open_at_each_date_with_their_outcome_known_at_the_forecast_date(
    horizon: float,
) -> None:
    crm = _crm()
    spec = FeatureSpec(FeatureConfig(horizon_days=90.0)).fit(crm)
    at = pd.Timestamp("2025-10-01")
    dates = recalibration_dates(at, horizon, 60.0, 30.0)
    feats, y = recalibration_snapshots(crm, spec, at, horizon, dates)
    assert list(feats.columns) == spec.columns_
    expected = []
    for t in dates:
        open_at_t = crm.leads[CREATED_AT].lt(t) & crm.outcomes[CONVERTED_AT].gt(t)
        within = crm.outcomes[CONVERTED_AT].le(t + pd.Timedelta(days=horizon))
        expected.append(within[open_at_t].to_numpy(dtype=float))
    assert len(y) == sum(len(e) for e in expected)
    assert y.sum() == sum(e.sum() for e in expected)  # the readiness horizon, not the feature config's
    assert 0 < y.sum() < len(y)
    with pytest.raises(ValueError, match="not known yet"):
        recalibration_snapshots(crm, spec, at, horizon, pd.DatetimeIndex([at - pd.Timedelta(days=horizon - 1)]))


def test_the_snapshots_are_the_training_frame_rows_at_those_dates_bit_for_bit() -> None:
    """The recalibration reads only the events' lead, instant and type of the CRM cut at the forecast date, and
    its features are the frame over the feature matrix (no copy): the same rows, features and labels as the
    training frame of the whole cut CRM at those dates (the readiness horizon being the feature config's)."""
    from features.build import training_frame
    from features.snapshots import LABEL, crm_known_at

    crm = _crm()
    spec = FeatureSpec(FeatureConfig(horizon_days=90.0)).fit(crm)
    at = pd.Timestamp("2025-10-01")
    dates = recalibration_dates(at, 90.0, 60.0, 30.0)
    feats, y = recalibration_snapshots(crm, spec, at, 90.0, dates)
    frame = training_frame(crm_known_at(crm, at), spec, dates, at)
    pd.testing.assert_frame_equal(feats, frame[spec.columns_], check_exact=True)
    np.testing.assert_array_equal(y, frame[LABEL].to_numpy())


def test_the_forecast_uses_the_recalibrated_probability_within_the_horizon() -> None:
    leads, feats, hazards, p, value = _pipeline_inputs()
    _, model_p, y = _overconfident(seed=4)
    recal = fit_recalibration(model_p, y)
    result = forecast_pipeline(leads, feats, hazards, 7.0, p, 90.0, value, "2026-01-01", ForecastConfig(), recal)
    within_h = result.leads[[f"p_close_2026-0{m}" for m in (1, 2, 3)]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(within_h, recal.apply(p), rtol=1e-9)
    assert within_h[0] < 0.2
    assert result.recalibration is recal and recal.to_text() in result.notes
    plain = forecast_pipeline(leads, feats, hazards, 7.0, p, 90.0, value, "2026-01-01", ForecastConfig())
    assert plain.recalibration is None and plain.months["expected_deals"].sum() > result.months["expected_deals"].sum()


def test_recalibration_is_on_by_default_and_can_be_switched_off() -> None:
    assert ForecastConfig().recalibration.enabled
    off = ForecastConfig.model_validate({"recalibration": {"enabled": False, "window_days": 60}})
    assert not off.recalibration.enabled and off.recalibration.window_days == 60
    with pytest.raises(ValidationError) as misspelt:
        ForecastConfig.model_validate({"recalibration": {"enable": False}})
    assert [(e["loc"], e["type"]) for e in misspelt.value.errors()] == [(("recalibration", "enable"), "extra_forbidden")]
    with pytest.raises(ValidationError) as zero_step:
        RecalibrationConfig(step_days=0)
    assert [(e["loc"], e["type"]) for e in zero_step.value.errors()] == [(("step_days",), "greater_than")]
