"""Single-feature AUCs read the features by name from the evaluation rows' whole frame, one column at a
time: the table of scoring them all at once on a copy of the feature columns, without that copy or the
scores of every feature held together (a 556,078-row test slice of 77 features: 290 MiB and 342 MiB)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.allocation import allocation_peak
from training.leakage import _auc_row, _auc_table, feature_score, oof_single_feature_auc, single_feature_auc


# the former whole-frame implementation, the reference of the tables below
def feature_scores(X_train: pd.DataFrame, y_train: np.ndarray, X_eval: pd.DataFrame) -> dict[str, np.ndarray]:
    """One score per evaluation row and feature, every feature's at once: numeric value (missing lowest) or
    train target rate."""
    return {col: feature_score(X_train, y_train, X_eval[col]) for col in X_eval.columns}


def single_auc_table(scores: dict[str, np.ndarray], present: pd.DataFrame, y_eval: np.ndarray) -> pd.DataFrame:
    """``single_auc`` on all rows, ``covered_auc`` on rows where the feature is filled in, ``coverage``."""
    y_eval = np.asarray(y_eval, dtype=float)
    return _auc_table([_auc_row(col, score, present[col].to_numpy(dtype=bool), y_eval)
                       for col, score in scores.items()])


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray, list[str]]:
    rng = np.random.default_rng(4)
    n = 10_000  # equal tables at any size; peaks 0.25x the features here, 0.22x / 0.24x at 40,000 rows
    y = (rng.random(n) < 0.1).astype(float)
    frame = pd.DataFrame({"lead_id": np.arange(n), "owner_note": rng.choice(["x", "y", None], n)})
    for j in range(60):
        values = rng.normal(size=n) + (0.2 * j / 60) * y
        frame[f"num_{j}"] = np.where(rng.random(n) < 0.1, np.nan, values)
    frame["plan"] = pd.Categorical(rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]))
    frame.loc[y == 1, "plan"] = "c"
    frame["channel"] = rng.choice(["web", "mail", None], n).astype(object)
    features = [c for c in frame.columns if c not in ("lead_id", "owner_note")][::-1]
    return frame.iloc[:3_750], y[:3_750], frame.iloc[3_750:], y[3_750:], features


def test_the_table_of_the_named_columns_is_that_of_their_copy(rows) -> None:
    train, y_train, evaluation, y_eval, features = rows
    table = single_feature_auc(train, y_train, evaluation, y_eval, columns=features)
    copied = evaluation[features]
    expected = single_auc_table(feature_scores(train[features], y_train, copied), copied.notna(), y_eval)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert list(table.index) == features and table["single_auc"].notna().all()
    pd.testing.assert_frame_equal(single_feature_auc(train[features], y_train, copied, y_eval), expected,
                                  check_exact=True)


def test_the_columns_are_scored_one_at_a_time(rows) -> None:
    """Allocation peak below half the evaluation rows' features (2.3x with the copy and every
    feature's scores held at once)."""
    train, y_train, evaluation, y_eval, features = rows
    size = evaluation[features].memory_usage(index=False).sum()
    _, peak = allocation_peak(single_feature_auc, train, y_train, evaluation, y_eval, columns=features)
    assert peak < 0.5 * size, (peak, size)


def _oof_all_at_once(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray) -> pd.DataFrame:
    """The flat mode's former out-of-fold table: every feature scored per fold on copies of the columns."""
    scores = {c: np.empty(len(y)) for c in X.columns}
    for k in np.unique(folds):
        held = folds == k
        for col, values in feature_scores(X[~held], y[~held], X[held]).items():
            scores[col][held] = values
    return single_auc_table(scores, X.notna(), y)


@pytest.fixture(scope="module")
def flat(rows) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    train, y_train, evaluation, y_eval, features = rows
    frame = pd.concat([train, evaluation], ignore_index=True)
    folds = np.random.default_rng(5).integers(0, 5, len(frame))
    return frame, np.concatenate([y_train, y_eval]), folds, features


def test_out_of_fold_table_is_that_of_every_feature_at_once(flat) -> None:
    frame, y, folds, features = flat
    table = oof_single_feature_auc(frame, y, folds, columns=features)
    expected = _oof_all_at_once(frame[features], y, folds)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert list(table.index) == features and table["single_auc"].notna().all()
    pd.testing.assert_frame_equal(oof_single_feature_auc(frame[features], y, folds), expected, check_exact=True)


def test_out_of_fold_features_are_scored_one_at_a_time(flat) -> None:
    """Allocation peak below half the rows' features (0.25x here; 3.3x when every feature's scores and a
    copy of the training folds' features were held at once)."""
    frame, y, folds, features = flat
    size = frame[features].memory_usage(index=False).sum()
    _, peak = allocation_peak(oof_single_feature_auc, frame, y, folds, columns=features)
    assert peak < 0.5 * size, (peak, size)
