"""The linear base of the hazard model keeps the shape of the baseline hazard under any penalty.

Issue 5: the ridge penalty used to apply to one coefficient per period, so at the chosen C the
baseline hazard came out flat and the revenue forecast put too much close probability in its
later months. The level and the log-time slope of the baseline are now free; the features and the
per-period departures are penalised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from training.survival_linear import fit_linear_hazard, fit_partly_penalised_logistic, period_basis
from training.time_to_close import expand_periods

PERIODS = 20
LEVEL, SLOPE, EFFECT = -3.0, -0.8, 0.7  # logit h_k(a) = LEVEL + SLOPE log(1 + k) + EFFECT a


def _snapshots(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features (a real effect ``a``, noise ``b``) and durations drawn from the discrete hazard above."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.standard_normal(n), "b": rng.standard_normal(n)})
    hazard = expit(LEVEL + SLOPE * np.log1p(np.arange(PERIODS))[None, :] + EFFECT * X["a"].to_numpy()[:, None])
    closes = rng.random((n, PERIODS)) < hazard
    closed = closes.any(axis=1)
    period = np.argmax(closes, axis=1)
    durations = np.where(closed, (period + 0.5) * 7.0, PERIODS * 7.0)
    return X, durations, closed


def test_baseline_hazard_keeps_its_shape_under_a_strong_penalty() -> None:
    X, d, e = _snapshots(4000, seed=1)
    Xv, dv, ev = _snapshots(1000, seed=2)
    rows = expand_periods(d, e, 7.0, PERIODS, censored_period_weight=0.5)
    valid = expand_periods(dv, ev, 7.0, PERIODS, censored_period_weight=0.5)
    linear = fit_linear_hazard(X, rows, PERIODS, Xv, valid, c_grid=(1e-3,))
    assert linear.c == 1e-3
    true_drop = -SLOPE * np.log1p(PERIODS - 1)  # logit h_0 - logit h_19 = 2.4
    fitted_drop = linear.period[0] - linear.period[-1]
    assert abs(fitted_drop - true_drop) < 0.4, linear.period
    # the level is free too: the mean hazard of the first period matches the data
    first = rows.period == 0
    observed = np.average(rows.label[first], weights=rows.weight[first])
    predicted = expit(linear.snapshot_margin(X) + linear.period[0]).mean()
    assert abs(predicted / observed - 1) < 0.15, (predicted, observed)
    # the feature effect is still shrunk (penalised), the noise feature near zero
    a, b = (linear.coef[linear.design.columns_.index(c)] for c in ("a", "b"))
    assert 0 < a < EFFECT and abs(b) < 0.1


def test_only_the_free_columns_escape_the_penalty() -> None:
    """With a vanishing C the penalised columns are zero and the free ones are the unpenalised fit."""
    rng = np.random.default_rng(0)
    period = rng.integers(0, 8, 5000)
    basis = period_basis(8)[period]
    noise = rng.standard_normal((5000, 1))
    y = (rng.random(5000) < expit(-2.0 - 0.5 * basis[:, 1] + 0.8 * noise[:, 0])).astype(float)
    G = np.hstack([noise, basis])
    theta = fit_partly_penalised_logistic(G, y, np.ones(5000), 1e-9, 2)
    assert abs(theta[0]) < 1e-3
    alone = fit_partly_penalised_logistic(basis, y, np.ones(5000), 1.0, 2)
    np.testing.assert_allclose(theta[1:], alone, atol=1e-4)
    free = fit_partly_penalised_logistic(G, y, np.ones(5000), 1e9, 2)
    assert 0.6 < free[0] < 1.0 and -2.4 < free[1] < -1.6
