"""The hazard booster's trees as arrays give ``Booster.predict``'s raw margins at every period, bit for bit:
numerical splits of every missing type, missing values, zeros and magnitudes LightGBM reads as zero,
categorical splits with unseen and negative codes, trees with no split."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from training.period_margins import PeriodTrees

PERIODS = 9


def _snapshots(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 6, n).astype(float),
                         rng.exponential(size=n)]).astype(np.float32)
    x[rng.random(n) < 0.15, 0] = np.nan
    x[rng.random(n) < 0.2, 1] = 0.0
    x[rng.random(n) < 0.1, 3] = np.nan
    return x


def _booster(zero_as_missing: bool, seed: int, num_leaves: int = 15, rounds: int = 40, depth: int = 4) -> lgb.Booster:
    x = _snapshots(3000, seed)
    rng = np.random.default_rng(seed + 1)
    period = rng.integers(0, PERIODS, len(x))
    logit = (-2.0 + 0.8 * np.nan_to_num(x[:, 0]) - 0.15 * period + 0.5 * (x[:, 2] == 3) + 0.3 * (period == 0)
             + 0.4 * (x[:, 1] == 0))
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(float)
    rows = np.column_stack([x, period]).astype(np.float32)
    params = {"objective": "binary", "num_leaves": num_leaves, "max_depth": depth, "learning_rate": 0.2,
              "min_data_in_leaf": 20, "min_data_per_group": 10, "cat_smooth": 1.0, "max_cat_to_onehot": 2,
              "zero_as_missing": zero_as_missing, "verbosity": -1, "seed": seed, "deterministic": True,
              "num_threads": 1}
    data = lgb.Dataset(rows, label=y, categorical_feature=[2], params=params)
    return lgb.train(params, data, num_boost_round=rounds)


def _stacked_predict(booster: lgb.Booster, base: np.ndarray, num_iteration: int) -> np.ndarray:
    out = np.empty((len(base), PERIODS))
    block = np.empty((len(base), base.shape[1] + 1), dtype=np.float32)
    block[:, :-1] = base
    for k in range(PERIODS):
        block[:, -1] = k
        out[:, k] = booster.predict(block, raw_score=True, num_iteration=num_iteration)
    return out


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_margins_are_booster_predict_bit_for_bit(zero_as_missing: bool) -> None:
    booster = _booster(zero_as_missing, seed=4)
    base = _snapshots(5000, seed=9)
    base[:50, 2] = 17.0  # a category the booster never saw
    base[50:60, 2] = -1.0
    base[60:70, 1] = 1e-36  # read as 0 by LightGBM
    base[70:80, 1] = -1e-38
    num_iteration = booster.current_iteration() - 3
    trees = PeriodTrees.from_booster(booster, num_iteration, PERIODS)
    assert trees is not None
    assert any(splits.size for splits in trees.period_splits), "the booster should split on the period"
    assert any(c is not None for tree in trees.trees for c in tree.categories), "and on the categorical column"
    expected = _stacked_predict(booster, base, num_iteration)
    assert trees.margins(base).tobytes() == expected.tobytes()


def test_trees_without_a_split_and_large_trees() -> None:
    """A stump-free booster (every tree one leaf: nothing to learn) and trees beyond the pattern tables."""
    x = _snapshots(500, seed=2)
    rows = np.column_stack([x, np.zeros(len(x))]).astype(np.float32)
    params = {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 1000, "num_threads": 1}
    flat = lgb.train(params, lgb.Dataset(rows, label=np.r_[np.ones(50), np.zeros(450)], params=params),
                     num_boost_round=3)
    trees = PeriodTrees.from_booster(flat, flat.current_iteration(), PERIODS)
    assert trees is not None
    assert trees.margins(x).tobytes() == _stacked_predict(flat, x, flat.current_iteration()).tobytes()
    big = _booster(False, seed=6, num_leaves=63, rounds=8, depth=8)
    trees = PeriodTrees.from_booster(big, big.current_iteration(), PERIODS)
    assert trees is not None and any(table is None for table in trees.tables)
    base = _snapshots(4000, seed=3)
    assert trees.margins(base).tobytes() == _stacked_predict(big, base, big.current_iteration()).tobytes()
