"""The logistic regression baseline builds its design matrix a slice of rows at a time: the same fit and the
same scores, bit for bit, as scikit-learn's one-pass pipeline (ColumnTransformer -> LogisticRegression)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.allocation import allocation_peak
from tests.training_frames import feature_columns, snapshot_frame
from training.baselines import MISSING, LogisticBaseline


def _labelled(n_leads: int) -> tuple[pd.DataFrame, np.ndarray]:
    frame = snapshot_frame(n_leads, 30, seed=5)
    frame = frame[frame["converted_within_h"].notna()].reset_index(drop=True)
    X = frame[feature_columns(frame)].copy()  # with a wide categorical, the design is sparse (as at scale)
    X["job_title"] = pd.Categorical(np.random.default_rng(1).choice([f"title {i}" for i in range(60)], len(X)))
    return X, frame["converted_within_h"].to_numpy()


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    """5,250 labelled rows: the memory test's frame (x8), where the design outweighs fixed allocations."""
    return _labelled(1200)


@pytest.fixture(scope="module")
def few() -> tuple[pd.DataFrame, np.ndarray]:
    """1,285 labelled rows: 184 slices of 7 rows and 14 of 97 (the last one short), a job title below
    ``min_frequency`` and pooled; the equivalence does not depend on the row count, each slice costs
    a few transformer calls."""
    return _labelled(300)


def prepare(model: LogisticBaseline, X: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's input: categoricals as text (missing as a level of its own), numerics as floats."""
    out = pd.DataFrame(index=X.index)
    if model.categorical_:
        cats = X[model.categorical_]
        out = cats.astype(object).where(cats.notna(), MISSING).astype(str)
    for c in model.numeric_:
        out[c] = pd.to_numeric(X[c], errors="coerce").astype(float)
    return out


def one_pass(model: LogisticBaseline, X: pd.DataFrame, y: np.ndarray, sparse_threshold: float = 0.3) -> Pipeline:
    """The reference: scikit-learn's pipeline on the whole frame, as the baseline was first written."""
    prepared = prepare(model, X)
    transformers = []
    if model.categorical_:
        transformers.append(("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10),
                             model.categorical_))
    if model.numeric_:
        transformers.append(("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                                keep_empty_features=True), StandardScaler()),
                             model.numeric_))
    return Pipeline([("prep", ColumnTransformer(transformers, sparse_threshold=sparse_threshold)),
                     ("lr", LogisticRegression(C=1.0, max_iter=2000))]).fit(prepared, y)


@pytest.mark.parametrize("rows", [None, 7, 97])
@pytest.mark.parametrize("kind", ["sparse", "dense", "numeric only", "categorical only"])
def test_design_in_slices_is_the_one_pass_fit_and_scores(few, rows, kind, monkeypatch) -> None:
    X, y = few
    if kind == "numeric only":
        X = X[[c for c in X.columns if X[c].dtype.kind == "f"]]
    elif kind == "categorical only":
        X = X[[c for c in X.columns if X[c].dtype.kind != "f"]]
    threshold = 0.0 if kind == "dense" else 0.3
    monkeypatch.setattr(LogisticBaseline, "SPARSE_THRESHOLD", threshold)
    if rows is not None:
        monkeypatch.setattr(LogisticBaseline, "DESIGN_ROWS", rows)
    model = LogisticBaseline().fit(X, y)
    reference = one_pass(model, X, y, threshold)
    assert model.sparse_ == reference.named_steps["prep"].sparse_output_ == (kind in ("sparse", "categorical only"))
    assert model.lr_.coef_.tobytes() == reference.named_steps["lr"].coef_.tobytes()
    assert model.lr_.intercept_.tobytes() == reference.named_steps["lr"].intercept_.tobytes()
    scored = X.iloc[::-1]  # an order it was not fitted in, with unseen rows' categories pooled alike
    expected = reference.predict_proba(prepare(model, scored))[:, 1]
    assert model.predict_proba(scored).tobytes() == expected.tobytes()


def test_fitting_holds_one_design_matrix_not_its_intermediates(data, monkeypatch) -> None:
    """The one-pass pipeline holds the numeric block, its sparse copy and the stacked matrix at once
    (nearly four times the design matrix); built a slice at a time, the fit's peak stays near twice the matrix."""
    X, y = data
    X = pd.concat([X] * 8, ignore_index=True)
    y = np.tile(y, 8)
    model = LogisticBaseline()
    monkeypatch.setattr(LogisticBaseline, "DESIGN_ROWS", 2_000)
    _, peak = allocation_peak(model.fit, X, y)
    design = model._design(X)
    size = design.data.nbytes + design.indices.nbytes + design.indptr.nbytes
    assert peak < 2.8 * size  # one pass: 3.8 times; in slices: 2.1 times (the numeric block while fitting)
