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


def test_one_row_path_is_exact(booster_and_rows) -> None:
    """One row goes through LightGBM's single-row C API: bit-identical to Booster.predict and to shap."""
    booster, rows = booster_and_rows
    explainer = TreeShapExplainer(booster, num_iteration=40)
    assert explainer._row_contrib is not None  # the fast path is in use with the pinned LightGBM
    reference = shap.TreeExplainer(booster, model_output="raw")
    for i in (0, 5, 25, 45, 399):  # missing category, unseen category code, NaN numeric, plain rows
        row = rows[i : i + 1]
        ours = explainer.contributions(row)
        np.testing.assert_array_equal(ours, booster.predict(row, pred_contrib=True, num_iteration=40))
        np.testing.assert_array_equal(explainer.margin(row), booster.predict(row, raw_score=True, num_iteration=40))
        shap_row = np.asarray(reference.shap_values(row, tree_limit=40))
        if shap_row.ndim == 3:
            shap_row = shap_row[-1]
        np.testing.assert_allclose(ours[:, :-1], shap_row, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"expects \(n, 4\)"):
        explainer.contributions(rows[:1, :3])
    explainer.close()
    np.testing.assert_array_equal(explainer.margin(rows[:1]), booster.predict(rows[:1], raw_score=True,
                                                                               num_iteration=40))


def test_one_row_path_ignores_other_predictions_on_the_booster(booster_and_rows) -> None:
    """LightGBM keeps the iteration range of a booster's predictors per booster and every
    Booster.predict call rewrites it: the one-row path must not be affected (it has its own copy)."""
    booster, rows = booster_and_rows
    first = TreeShapExplainer(booster, num_iteration=30)
    other = TreeShapExplainer(booster, num_iteration=10)
    row = rows[3:4]
    for _ in range(2):
        np.testing.assert_array_equal(first.contributions(row),
                                      booster.predict(row, pred_contrib=True, num_iteration=30))
        np.testing.assert_array_equal(other.contributions(row),
                                      booster.predict(row, pred_contrib=True, num_iteration=10))
        booster.predict(rows[:50], pred_contrib=True, num_iteration=5)  # someone else predicts
        np.testing.assert_array_equal(first.margin(row), booster.predict(row, raw_score=True, num_iteration=30))


def _small_tree_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Features with a native categorical, NaNs, exact zeros; labels depending on all of them."""
    X = np.column_stack([
        rng.integers(0, 12, n).astype(float),  # categorical codes
        rng.normal(size=n),
        rng.exponential(2.0, n),
        np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n)),  # many exact zeros
    ])
    X[rng.random(n) < 0.1, 0] = np.nan
    X[rng.random(n) < 0.1, 1] = np.nan
    logit = -2 + 0.9 * (np.nan_to_num(X[:, 0]) % 3 == 1) + np.nan_to_num(X[:, 1]) + 0.3 * X[:, 2] + X[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y


@pytest.mark.parametrize(("depth", "leaves", "zero_as_missing"), [(2, 3, False), (2, 3, True), (3, 7, False), (1, 2, False)])
def test_small_trees_go_through_tables_equal_to_shap(depth: int, leaves: int, zero_as_missing: bool) -> None:
    """The default shape (depth 2, 3 leaves) and other small trees: per-tree tables, values of shap/LightGBM."""
    rng = np.random.default_rng(depth * 10 + leaves)
    X, y = _small_tree_rows(rng, 3000)
    params = {"objective": "binary", "num_leaves": leaves, "max_depth": depth, "learning_rate": 0.1,
              "min_data_in_leaf": 20, "verbosity": -1, "num_threads": 1, "max_cat_to_onehot": 2,
              "min_data_per_group": 10, "cat_smooth": 1.0, "zero_as_missing": zero_as_missing}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=80)
    rows = X[:300].copy()
    rows[:10, 0] = np.nan  # missing category
    rows[10:20, 0] = 17.0  # unseen category code
    rows[20:25, 0] = -1.0  # negative code
    rows[25:30, 0] = 2.7  # fractional code (LightGBM truncates)
    rows[30:40, 2] = np.nan  # NaN in a column without NaN in training (missing type None)
    rows[40:45, 3] = 1e-40  # read as 0 by LightGBM
    rows[45:50, 1] = 0.0
    rows[50:60, 3] = np.nan  # also missing type None (or Zero), on a column split at negative thresholds too
    explainer = TreeShapExplainer(booster, num_iteration=60)
    assert explainer.tables is not None
    assert explainer.tables.categorical.any() and explainer.tables.numerical.any()  # both kinds of split
    if zero_as_missing:
        assert explainer.tables.missing_zero.any()
    else:
        assert explainer.tables.missing_nan.any()
    ours = explainer.contributions(rows)
    np.testing.assert_allclose(ours, booster.predict(rows, pred_contrib=True, num_iteration=60), atol=1e-9, rtol=0)
    reference = shap.TreeExplainer(booster, model_output="raw")
    values = np.asarray(reference.shap_values(rows, tree_limit=60))
    if values.ndim == 3:
        values = values[-1]
    np.testing.assert_allclose(ours[:, :-1], values, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.sum(axis=1), explainer.margin(rows), atol=1e-9, rtol=0)


def test_tables_give_a_lead_the_same_values_alone_and_in_any_batch() -> None:
    rng = np.random.default_rng(7)
    X, y = _small_tree_rows(rng, 2000)
    params = {"objective": "binary", "num_leaves": 3, "max_depth": 2, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=150)
    rows = X[:500]
    whole = TreeShapExplainer(booster).contributions(rows)
    chunked = TreeShapExplainer(booster, threads=2, chunk_rows=37)
    try:
        np.testing.assert_array_equal(chunked.contributions(rows), whole)
    finally:
        chunked.close()
    single = TreeShapExplainer(booster)
    for i in (0, 3, 250, 499):  # one row (few-rows sums) == its row in a large batch (tree-by-tree sums)
        np.testing.assert_array_equal(single.contributions(rows[i : i + 1])[0], whole[i])
    np.testing.assert_array_equal(single.contributions(rows[:7]), whole[:7])


def test_larger_trees_fall_back_to_lightgbm(booster_and_rows) -> None:
    booster, _ = booster_and_rows  # depth 4, 15 leaves: more splits per tree than the tables take
    assert TreeShapExplainer(booster).tables is None


def test_leaf_shapley_is_efficient_and_symmetric() -> None:
    from serving.explain import leaf_shapley

    zero, one = [0.3, 0.6, 0.5], [1, 0, 1]
    phi = leaf_shapley(2.0, zero, one)
    assert phi.sum() == pytest.approx(2.0 * (np.prod(one) - np.prod(zero)), abs=1e-12)  # all - none
    twin = leaf_shapley(1.0, [0.4, 0.4], [1, 1])
    assert twin[0] == pytest.approx(twin[1]) and twin.sum() == pytest.approx(1 - 0.16)
    assert leaf_shapley(1.5, [0.25], [1])[0] == pytest.approx(1.5 * 0.75)
