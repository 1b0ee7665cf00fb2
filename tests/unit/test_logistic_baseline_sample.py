"""The logistic regression baseline: every row up to ``max_rows`` (the same fit as without a bound),
a stratified sample above it (said in a note), and scores computed in slices as in one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.training_frames import feature_columns, snapshot_frame
from training.baselines import LogisticBaseline, stratified_sample


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    frame = snapshot_frame(1500, 30, seed=11)
    frame = frame[frame["converted_within_h"].notna()].reset_index(drop=True)
    return frame[feature_columns(frame)], frame["converted_within_h"].to_numpy()


def test_at_or_below_max_rows_the_fit_is_the_unbounded_one(data) -> None:
    X, y = data
    unbounded = LogisticBaseline().fit(X, y)
    bounded = LogisticBaseline(max_rows=len(y), seed=3).fit(X, y)
    assert bounded.sample_note is None and bounded.n_fit_rows_ == len(y)
    assert bounded.predict_proba(X).tobytes() == unbounded.predict_proba(X).tobytes()


def test_above_max_rows_it_fits_a_stratified_sample_and_says_so(data) -> None:
    X, y = data
    model = LogisticBaseline(max_rows=1000, seed=3).fit(X, y)
    assert model.n_fit_rows_ == 1000 and model.n_rows_ == len(y)
    assert f"1,000 of its {len(y):,} training rows" in model.sample_note
    rows = stratified_sample(y.astype(int), 1000, 3)
    assert len(rows) == 1000 and len(np.unique(rows)) == 1000 and (np.diff(rows) > 0).all()
    assert abs(y[rows].mean() - y.mean()) <= 1 / 1000  # each class in its share
    # the same as fitting those rows without a bound, and reproducible from the seed
    on_rows = LogisticBaseline().fit(X.iloc[rows], y[rows]).predict_proba(X)
    assert model.predict_proba(X).tobytes() == on_rows.tobytes()
    again = LogisticBaseline(max_rows=1000, seed=3).fit(X, y).predict_proba(X)
    assert again.tobytes() == on_rows.tobytes()
    assert LogisticBaseline(max_rows=1000, seed=4).fit(X, y).predict_proba(X).tobytes() != on_rows.tobytes()


def test_scores_in_slices_are_the_one_pass_scores(data) -> None:
    """Within float rounding (BLAS sums a slice's rows along other paths than the whole matrix's: last-bit
    differences), and ranking the rows alike."""
    X, y = data
    model = LogisticBaseline().fit(X, y)
    whole = model.predict_proba(X)
    model.PREDICT_ROWS = 777
    sliced = model.predict_proba(X)
    assert len(X) > 3 * 777 and sliced.shape == whole.shape
    np.testing.assert_allclose(sliced, whole, rtol=1e-14, atol=0)
    assert roc_auc_score(y, sliced) == roc_auc_score(y, whole)


def test_stratified_sample_keeps_a_rare_class() -> None:
    y = np.zeros(10_000, dtype=int)
    y[[5, 17]] = 1
    rows = stratified_sample(y, 100, 0)
    assert len(rows) == 100 and y[rows].sum() == 1


def test_huge_finite_numbers_fit_and_score(data) -> None:
    """A numeric attribute holding finite numbers near float64's limit (1e308, a placeholder 10**26) is a
    valid input: the baseline fits and scores it (its scaler's sum of squares overflowed to NaN, and
    scikit-learn refused the design with "Input X contains NaN", ending `leadscore train`)."""
    X, y = data
    numeric = next(c for c in X.columns if pd.api.types.is_float_dtype(X[c]))
    X = X.copy()
    X.loc[X.index[:3], numeric] = [1e308, -1e300, 1e26]
    model = LogisticBaseline().fit(X, y)
    p = model.predict_proba(X)
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    assert roc_auc_score(y, p) > 0.6
