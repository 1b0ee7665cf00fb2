"""The explanation path equals shap.TreeExplainer (raw margin) and adds up to the margin."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import shap

from serving.explain import TreeShapExplainer


@pytest.fixture(scope="module")
def booster_and_rows() -> tuple[lgb.Booster, np.ndarray]:
    """Depth-4 booster with a native categorical, NaNs and unseen codes in the rows to explain."""
    rng = np.random.default_rng(0)
    n = 3000
    X = np.column_stack([
        rng.integers(0, 6, n).astype(float),  # categorical codes
        rng.normal(size=n),
        rng.exponential(2.0, n),
        rng.integers(0, 3, n).astype(float),
    ])
    X[rng.random(n) < 0.1, 1] = np.nan
    logit = -2 + 0.8 * (X[:, 0] % 2) + np.nan_to_num(X[:, 1]) + 0.3 * X[:, 2] - 0.5 * X[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    params = {"objective": "binary", "num_leaves": 15, "max_depth": 4, "learning_rate": 0.1,
              "min_data_in_leaf": 20, "verbosity": -1, "num_threads": 1, "max_cat_to_onehot": 2,
              "min_data_per_group": 10, "cat_smooth": 1.0}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=60)
    rows = X[:400].copy()
    rows[:20, 0] = np.nan  # missing category
    rows[20:40, 0] = 17.0  # unseen category code
    rows[40:60, 2] = np.nan
    return booster, rows


def test_contributions_equal_shap_tree_explainer(booster_and_rows) -> None:
    booster, rows = booster_and_rows
    ours = TreeShapExplainer(booster).contributions(rows)
    explainer = shap.TreeExplainer(booster, model_output="raw")
    reference = np.asarray(explainer.shap_values(rows))
    if reference.ndim == 3:  # some shap versions return one array per class
        reference = reference[-1]
    np.testing.assert_allclose(ours[:, :-1], reference, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours[:, -1], np.ravel(explainer.expected_value)[-1], atol=1e-6, rtol=0)


def test_contributions_add_up_to_the_margin(booster_and_rows) -> None:
    booster, rows = booster_and_rows
    explainer = TreeShapExplainer(booster)
    np.testing.assert_allclose(explainer.contributions(rows).sum(axis=1), explainer.margin(rows), atol=1e-9)


def test_parallel_chunks_equal_one_call(booster_and_rows) -> None:
    booster, rows = booster_and_rows
    single = TreeShapExplainer(booster).contributions(rows)
    chunked = TreeShapExplainer(booster, threads=2, chunk_rows=37)
    try:
        np.testing.assert_array_equal(chunked.contributions(rows), single)
        np.testing.assert_array_equal(chunked.margin(rows), TreeShapExplainer(booster).margin(rows))
    finally:
        chunked.close()


def test_shape_and_settings_are_checked(booster_and_rows) -> None:
    booster, rows = booster_and_rows
    with pytest.raises(ValueError, match=r"expects \(n, 4\)"):
        TreeShapExplainer(booster).contributions(rows[:, :3])
    with pytest.raises(ValueError, match="threads"):
        TreeShapExplainer(booster, threads=0)
    assert TreeShapExplainer(booster).contributions(rows[:0]).shape == (0, 5)
