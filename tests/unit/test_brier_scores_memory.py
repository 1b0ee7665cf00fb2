"""The IPCW Brier scores hold a block of rows of their terms at a time (three matrices of the size of the
survival curves were held: 650 MB for 556,078 test snapshots x 47 days, per scorer, in training and in every
``models promote``), with the scores of the whole-matrix formula, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import training.survival_metrics as survival_metrics
from tests.allocation import allocation_peak
from training.survival_metrics import brier_scores, censoring_survival, step_at


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(80.0, n))  # whole days: ties with each other and with the days
    event = rng.random(n) < 0.4
    days = np.array([7.0, 14.0, 30.0, 45.5, 60.0, 90.0, 120.0, 180.0])
    survival = np.sort(rng.random((n, days.size)), axis=1)[:, ::-1].copy()
    return time, event, survival, days


def _whole_matrix(time, event, survival, days) -> np.ndarray:
    g_times, g_values = censoring_survival(time, event)
    g_at_event = step_at(g_times, g_values, time, left=True)
    g_at_day = step_at(g_times, g_values, days)
    closed_by = event[:, None] & (time[:, None] <= days[None, :])
    still_open = time[:, None] > days[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(closed_by, survival**2 / g_at_event[:, None], 0.0)
        second = np.where(still_open, (1.0 - survival) ** 2 / g_at_day[None, :], 0.0)
    return (first + second).mean(axis=0)


@pytest.mark.parametrize("block", [1000, 4096, None])
def test_scores_are_the_whole_matrix_ones(block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if block is not None:
        monkeypatch.setattr(survival_metrics, "BRIER_ROWS", block)
    time, event, survival, days = _rows(30_001, seed=block or 0)
    assert brier_scores(time, event, survival, days).tobytes() == _whole_matrix(time, event, survival, days).tobytes()


def test_the_terms_are_held_a_block_at_a_time() -> None:
    time, event, survival, days = _rows(300_000, seed=5)
    censoring = censoring_survival(time, event)
    _, peak = allocation_peak(brier_scores, time, event, survival, days, censoring)
    assert peak < survival.nbytes  # the whole-matrix terms: 3.4 times that
