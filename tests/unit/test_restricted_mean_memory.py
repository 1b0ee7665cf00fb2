"""The expected days open within tau (the C-indices' risk) is computed a block of rows at a time (the curves
were copied with a column of ones and integrated whole: 603 MiB traced for 556,078 test snapshots x 47 days, per
scorer), with the whole-matrix values, bit for bit; ``score_survival`` no longer copies the curves when every
evaluation day lies within tau."""

from __future__ import annotations

import numpy as np
import pytest

import training.time_to_close as time_to_close
from tests.allocation import allocation_peak
from training.survival_evaluation import EvaluationSettings, score_survival
from training.time_to_close import restricted_mean_days


def _curves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = np.array([7.0, 14.0, 30.0, 45.5, 60.0, 90.0, 120.0, 180.0])
    return np.sort(rng.random((n, days.size)), axis=1)[:, ::-1].copy(), days


@pytest.mark.parametrize("block", [1000, None])
def test_values_are_the_whole_matrix_ones(block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if block is not None:
        monkeypatch.setattr(time_to_close, "CURVE_ROWS", block)
    survival, days = _curves(30_001, seed=3)
    whole = np.trapezoid(np.hstack([np.ones((len(survival), 1)), survival]), np.concatenate([[0.0], days]), axis=1)
    assert restricted_mean_days(survival, days).tobytes() == whole.tobytes()


def test_the_curves_are_not_copied_whole() -> None:
    survival, days = _curves(300_000, seed=4)
    _, peak = allocation_peak(restricted_mean_days, survival, days)
    assert peak < 0.5 * survival.nbytes  # the whole-matrix integration: 3 times that
    days = np.unique(np.r_[np.linspace(4.0, 180.0, 45), 30.0, 90.0])  # 47 days, as on the 200k-lead CRM
    survival = np.sort(np.random.default_rng(6).random((300_000, days.size)), axis=1)[:, ::-1].copy()
    rng = np.random.default_rng(5)
    time = np.round(rng.exponential(80.0, len(survival)))
    event = rng.random(len(survival)) < 0.4
    settings = EvaluationSettings(tau=180, days=days.tolist(), horizons=[30, 90], bins=10)
    _, peak = allocation_peak(score_survival, time, event, survival, settings)
    assert peak < survival.nbytes
