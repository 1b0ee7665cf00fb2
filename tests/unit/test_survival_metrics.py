"""Survival metrics against hand-computed tiny examples and lifelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from training.survival_metrics import (
    brier_scores,
    calibration_table,
    censoring_survival,
    evaluation_days,
    evaluation_horizon,
    harrell_c,
    integrated_brier_score,
    kaplan_meier,
    step_at,
    uno_c,
)

# A closes at 1, B censored at 2, C closes at 3, D censored at 4 (higher risk = closes sooner).
TIME = np.array([1.0, 2.0, 3.0, 4.0])
EVENT = np.array([1, 0, 1, 0])
RISK = np.array([0.9, 0.9, 0.7, 0.8])  # A ties B; C vs D is discordant


def test_censoring_distribution_by_hand() -> None:
    g_times, g_values = censoring_survival(TIME, EVENT)
    # censorings at 2 (3 at risk) and 4 (1 at risk)
    np.testing.assert_allclose(g_times, [2.0, 4.0])
    np.testing.assert_allclose(g_values, [2 / 3, 0.0])
    np.testing.assert_allclose(step_at(g_times, g_values, [1.0, 2.0, 3.0], left=True), [1.0, 1.0, 2 / 3])


def test_harrell_and_uno_by_hand() -> None:
    # comparable pairs: (A,B) tie in risk -> 1/2, (A,C) and (A,D) concordant, (C,D) discordant
    assert harrell_c(TIME, EVENT, RISK) == pytest.approx(2.5 / 4)
    # Uno: pairs of A weigh 1 / G(1-)^2 = 1, the pair of C weighs 1 / G(3-)^2 = 9/4
    assert uno_c(TIME, EVENT, RISK, tau=5.0) == pytest.approx(2.5 / (3 + 9 / 4))
    # truncation at tau = 2 keeps only A's pairs
    assert uno_c(TIME, EVENT, RISK, tau=2.0) == pytest.approx(2.5 / 3)
    assert harrell_c(TIME, EVENT, RISK, tau=2.0) == pytest.approx(2.5 / 3)


@pytest.mark.parametrize("ties", [False, True])
def test_harrell_matches_lifelines(ties: bool) -> None:
    rng = np.random.default_rng(4)
    time = rng.exponential(10, 3000)
    event = rng.random(3000) < 0.6
    risk = rng.normal(size=3000) - 0.05 * time
    if ties:
        time, risk = np.round(time), np.round(risk, 1)
    assert harrell_c(time, event, risk) == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)


def test_uno_equals_harrell_without_censoring_before_tau() -> None:
    rng = np.random.default_rng(5)
    time = rng.exponential(10, 500)
    risk = -time + rng.normal(scale=5, size=500)
    event = np.ones(500)
    assert uno_c(time, event, risk, tau=1e9) == pytest.approx(harrell_c(time, event, risk))
    assert uno_c(time, event, -risk, tau=1e9) == pytest.approx(1 - harrell_c(time, event, risk))


def test_brier_and_integrated_brier_by_hand() -> None:
    days = np.array([2.0, 3.0])
    survival = np.array([[0.2, 0.1], [0.5, 0.4], [0.6, 0.5], [0.9, 0.8]])
    # t=2: A closed (0.2^2 / G(1-)=1), B censored by then (0), C and D open ((1-S)^2 / G(2)=2/3)
    bs2 = (0.04 + 0.16 * 1.5 + 0.01 * 1.5) / 4
    # t=3: A (0.1^2), C closed at 3 (0.5^2 / G(3-)=2/3), D open ((1-0.8)^2 / G(3)=2/3)
    bs3 = (0.01 + 0.25 * 1.5 + 0.04 * 1.5) / 4
    np.testing.assert_allclose(brier_scores(TIME, EVENT, survival, days), [bs2, bs3])
    expected = (2 * bs2 / 2 + (bs2 + bs3) / 2) / 3  # trapezoid from BS(0) = 0 over [0, 3]
    assert integrated_brier_score(TIME, EVENT, survival, days) == pytest.approx(expected)


def test_kaplan_meier_matches_lifelines() -> None:
    rng = np.random.default_rng(6)
    time = np.round(rng.exponential(10, 400), 1)
    event = rng.random(400) < 0.6
    times, values = kaplan_meier(time, event)
    query = np.array([0.5, 3.0, 10.0, 25.0])
    expected = KaplanMeierFitter().fit(time, event).survival_function_at_times(query).to_numpy()
    np.testing.assert_allclose(step_at(times, values, query), expected)


def test_calibration_corrects_for_censoring() -> None:
    # one bin: censored at 1, closes at 2, censored at 5 and 6; horizon 3
    table = calibration_table(np.array([1.0, 2.0, 5.0, 6.0]), np.array([0, 1, 0, 0]), np.full(4, 0.3), 3.0, bins=1)
    row = table.iloc[0]
    assert row["observed"] == pytest.approx(1 / 3)  # Kaplan-Meier, not the naive 1/4
    assert row["gap"] == pytest.approx(0.3 - 1 / 3)
    assert row["closed_within"] == 1 and row["n"] == 4


def test_calibration_bins_are_equal_mass_and_ordered() -> None:
    rng = np.random.default_rng(7)
    p = rng.random(1000)
    time = rng.exponential(5, 1000) + 100
    table = calibration_table(time, np.zeros(1000), p, 50.0, bins=10)
    assert table["n"].tolist() == [100] * 10
    assert table["mean_predicted"].is_monotonic_increasing
    assert (table["observed"] == 0).all()


def test_calibration_without_follow_up_is_nan() -> None:
    table = calibration_table(np.array([1.0, 2.0]), np.array([0, 0]), np.array([0.1, 0.2]), 30.0, bins=1)
    assert np.isnan(table["observed"].iloc[0])


def test_evaluation_horizon_stops_where_few_rows_stay_observed() -> None:
    time = np.arange(1.0, 101.0)  # one censoring per day
    event = np.zeros(100)
    # G(t) = (100 - t) / 100: 0.10 at day 90, 0.09 at day 91
    assert evaluation_horizon(time, event, 1000, 0.095) == 90
    assert evaluation_horizon(time, event, 1000, 0.505) == 49
    assert evaluation_horizon(time, event, 30, 0.095) == 30
    days = evaluation_days(90, (30, 60, 90))
    assert days[-1] == 90 and {30.0, 60.0} <= set(days) and (np.diff(days) > 0).all()


def test_bad_input_names_rows() -> None:
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        harrell_c(np.array([1.0, -2.0]), np.array([1, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="event must be 0/1"):
        kaplan_meier(pd.Series([1.0, 2.0]), pd.Series([1, 2]))
