"""Sales-readiness training holds the training frame plus about one copy of its features: the slices
are copied out of the frame where they are used and let go after (the labelled rows, their features and
the three slices were four more copies), with the very results of those copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import TrainingSet, build_training_set
from features.schema import CRMData
from features.spec import FeatureConfig
from leadscore.synth import SynthConfig, generate
from tests.allocation import allocation_peak
from training.baselines import LogisticBaseline
from training.config import TrainingConfig
from training.model import take_rows
from training.sales_readiness import TrainingResult, feature_columns_of, train_and_evaluate
from training.tracking import LABEL_COLUMN, evaluation_rows


@pytest.fixture(scope="module")
def sparse() -> tuple[CRMData, TrainingSet, TrainingConfig, TrainingResult]:
    """A CRM with few events, where the features dominate the memory, and its first training run."""
    crm = generate(SynthConfig(n_leads=3000, seed=5, events_per_lead=2.0)).to_crm()
    training_set = build_training_set(crm, FeatureConfig(block_leads=1000))
    config = TrainingConfig(make_plots=False, bootstrap_samples=0, logistic_max_rows=1000)
    return crm, training_set, config, train_and_evaluate(training_set, config, events=crm.events)


def test_training_allocation_peak_is_bounded_by_the_features(sparse) -> None:
    """Allocation peak of train_and_evaluate (numpy reports its buffers to tracemalloc): 2.2x the frame's
    float features, 4.5x when the labelled rows, their features and the slices were copies held through
    the fit."""
    crm, training_set, config, first = sparse
    result, peak = allocation_peak(train_and_evaluate, training_set, config, events=crm.events)
    features = training_set.frame.select_dtypes(np.float64).memory_usage(index=False).sum()
    assert peak < 3.0 * features, (peak, features)
    pd.testing.assert_frame_equal(result.predictions, first.predictions, check_exact=True)


def test_evaluation_rows_copy_only_the_test_rows(sparse) -> None:
    """The evaluation rows logged with a run are the frame's test rows, as merging the frame's key and
    feature columns on the keys gave them, without copying every row first: allocation peak 0.6x the
    frame's float features (the test rows are a third of the frame), 2.6x with that copy."""
    _, training_set, _, result = sparse
    frame = training_set.frame
    evaluation_rows(result, frame)
    rows, peak = allocation_peak(evaluation_rows, result, frame)
    features = frame.select_dtypes(np.float64).memory_usage(index=False).sum()
    assert peak < 0.8 * features, (peak, features)
    keys = ["lead_id", "as_of"]
    expected = result.predictions[keys].merge(frame[[*keys, *result.model.feature_columns_]], on=keys,
                                              how="left", validate="one_to_one")
    expected[LABEL_COLUMN] = result.predictions["label"].to_numpy(dtype=float)
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
    assert len(rows) == len(result.predictions) < len(frame)


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, list[str]]:
    crm = generate(SynthConfig(n_leads=800, seed=7)).to_crm()
    training_set = build_training_set(crm, FeatureConfig(), set_aside=["annual_revenue"])
    return training_set.frame, feature_columns_of(training_set.frame, training_set.spec)


def test_take_rows_is_the_columns_of_the_rows(frame) -> None:
    data, features = frame
    rows = np.flatnonzero(data["converted_within_h"].notna().to_numpy())[::3]
    taken = take_rows(data, rows, features)
    pd.testing.assert_frame_equal(taken, data[features].iloc[rows], check_exact=True)
    shuffled = features[::-1]
    pd.testing.assert_frame_equal(take_rows(data, rows, shuffled), data[shuffled].iloc[rows], check_exact=True)


@pytest.mark.parametrize("max_rows", [None, 500])
def test_logistic_fit_on_rows_of_a_wider_frame_is_the_fit_on_their_copy(frame, max_rows) -> None:
    data, features = frame
    rows = np.flatnonzero(data["converted_within_h"].notna().to_numpy())[::2]
    y = data["converted_within_h"].to_numpy()[rows]
    X = data[features].iloc[rows]
    copied = LogisticBaseline(max_rows=max_rows, seed=3).fit(X, y)
    on_rows = LogisticBaseline(max_rows=max_rows, seed=3).fit(data, y, rows=rows, columns=features)
    assert on_rows.categorical_ == copied.categorical_ and on_rows.numeric_ == copied.numeric_
    assert on_rows.n_fit_rows_ == copied.n_fit_rows_ == (len(rows) if max_rows is None else max_rows)
    assert on_rows.predict_proba(data).tobytes() == copied.predict_proba(data[features]).tobytes()


def test_rows_of_is_the_rows_reindexed_with_one_copy(sparse) -> None:
    """The test rows of a run: ``take(rows).reset_index(drop=True)`` without copying the rows a second time
    (allocation peak 1.07x the rows' float features here, 4.1x with reset_index)."""
    from training.model import rows_of

    _, training_set, _, _ = sparse
    frame = training_set.frame
    rows = np.flatnonzero(frame["converted_within_h"].notna().to_numpy())[::2]
    expected = frame.take(rows).reset_index(drop=True)
    taken, peak = allocation_peak(rows_of, frame, rows)
    pd.testing.assert_frame_equal(taken, expected, check_exact=True)
    assert isinstance(taken.index, pd.RangeIndex)
    size = expected.select_dtypes(np.float64).memory_usage(index=False).sum()
    assert peak < 1.2 * size, (peak, size)


def test_logistic_baseline_is_fitted_before_any_slice_is_copied_out(sparse, monkeypatch) -> None:
    """The logistic regression's fit (the run's peak on a large CRM: its design matrix) comes before the
    training, validation and test rows are copied out of the frame, so none of them is held beside it;
    the progress names it as it starts, and the results are those of the first run."""
    import training.sales_readiness as sales_readiness

    crm, training_set, config, first = sparse
    calls: list[str] = []

    def spy(name, fn):
        def called(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return called

    monkeypatch.setattr(sales_readiness, "take_rows", spy("take_rows", sales_readiness.take_rows))
    monkeypatch.setattr(sales_readiness, "rows_of", spy("rows_of", sales_readiness.rows_of))
    monkeypatch.setattr(LogisticBaseline, "fit", spy("logistic fit", LogisticBaseline.fit))
    said: list[str] = []
    result = train_and_evaluate(training_set, config, events=crm.events,
                                progress=lambda message: (said.append(message), calls.append(message)))
    assert calls.index("logistic fit") < calls.index("take_rows") < calls.index("rows_of"), calls
    assert calls.index("fitting the logistic regression baseline") < calls.index("logistic fit"), calls
    assert said.index("fitting the logistic regression baseline") < said.index("fitting LightGBM") < said.index(
        "baselines"), said
    pd.testing.assert_frame_equal(result.comparison, first.comparison, check_exact=True)
    pd.testing.assert_frame_equal(result.predictions, first.predictions, check_exact=True)
    assert result.notes == first.notes
