"""``leadscore evaluate`` copies its evaluation rows out of the snapshot frame once: the labelled rows, their
re-indexed copy, the test slice and its columns were four copies of most of the frame (with the CRM tables
held, a 200k-lead CRM's evaluate peaked at 5.5 GiB where training peaks at 3.1 GiB)."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pytest

from tests.allocation import allocation_peak
from tests.serving_fixtures import train_small_champion, train_small_time_to_close
from training.config import AS_OF, TrainingConfig
from training.evaluation import time_ordered_split
from training.tracking import LABEL_COLUMN
from training.workflow import latest_evaluation_rows


@pytest.fixture(scope="module")
def training_set():
    return train_small_champion().training_set


def frame_bytes(frame: pd.DataFrame) -> int:
    return int(frame.memory_usage(deep=True, index=False).sum())


def test_latest_evaluation_rows_are_the_test_slice_copied_once(training_set) -> None:
    """The rows are those of the labelled rows' test slice (keys, features, label), bit for bit; allocation
    peak 1.1x their size (11x with the copies: the labelled rows are most of the frame)."""
    config = TrainingConfig()
    frame = training_set.frame
    labelled = frame[frame[config.label].notna()].reset_index(drop=True)
    split = time_ordered_split(labelled[AS_OF], 90, config.test_fraction, config.validation_fraction)
    test = labelled.iloc[split.test].reset_index(drop=True)
    expected = test[["lead_id", AS_OF, *training_set.spec.columns_]].copy()
    expected[LABEL_COLUMN] = test[config.label].to_numpy(dtype=float)
    del labelled, test
    gc.collect()
    rows, peak = allocation_peak(latest_evaluation_rows, training_set, config, 90)
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
    assert isinstance(rows.index, pd.RangeIndex) and 0 < len(rows) < len(frame)
    assert peak < 1.6 * frame_bytes(rows), (peak, frame_bytes(rows), frame_bytes(frame))


def test_time_to_close_evaluation_rows_are_the_test_slice_copied_once(training_set) -> None:
    """A time-to-close version's rows (keys, features, duration, event) are those training identified, bit for
    bit; allocation peak 1.1x their size (9.9x when the whole frame re-indexed, the slice and its features were
    copied)."""
    from training.survival_evaluation import DURATION, EVENT, survival_split
    from training.workflow import time_to_close_evaluation_rows

    model = train_small_time_to_close()
    frame = training_set.frame
    whole = frame.reset_index(drop=True)
    split = survival_split(whole[AS_OF], whole["lead_id"], training_set.data_end, model.config)
    test = whole.iloc[split.test].reset_index(drop=True)
    expected = pd.concat([test[["lead_id", AS_OF]], test[model.feature_columns_],
                          pd.DataFrame({DURATION: test["days_observed"].to_numpy(dtype=float),
                                        EVENT: test["event"].to_numpy().astype(int)})], axis=1)
    del whole, test
    gc.collect()
    rows, peak = allocation_peak(time_to_close_evaluation_rows, training_set, model)
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
    assert 0 < len(rows) < len(frame) and rows[EVENT].to_numpy().any()
    assert peak < 1.6 * frame_bytes(rows), (peak, frame_bytes(rows), frame_bytes(frame))
    survival = model.predict_survival(rows, np.array([30.0, 60.0]))  # extra columns: features read by name
    assert survival.tobytes() == model.predict_survival(expected[model.feature_columns_],
                                                        np.array([30.0, 60.0])).tobytes()


def test_evaluate_builds_the_features_of_its_rows_only(training_set) -> None:
    """``leadscore evaluate`` on CRM data finds the latest test slice on every snapshot's as_of and label and
    builds the features of those rows only: the same rows (and identity) as the slice of the whole training set,
    bit for bit, at 0.52x its allocation peak here (at 200k leads the training set is 1.85M rows, 1.04 GB of
    features, for 556,078 evaluation rows). Small lead blocks keep the event kernels' share of both peaks small."""
    from features.build import build_training_set
    from features.spec import FeatureConfig, FeatureSpec
    from tests.serving_fixtures import train_small_champion
    from training.tracking import evaluation_identity
    from training.workflow import crm_evaluation_rows

    crm = train_small_champion().crm
    spec = FeatureSpec(FeatureConfig(block_leads=100)).fit(crm)
    config = TrainingConfig()

    def from_the_training_set() -> pd.DataFrame:
        return latest_evaluation_rows(build_training_set(crm, spec=spec), config, 90)

    expected, whole_peak = allocation_peak(from_the_training_set)
    gc.collect()
    rows, peak = allocation_peak(crm_evaluation_rows, crm, spec, config, 90)
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
    assert evaluation_identity(rows) == evaluation_identity(expected) and len(rows) > 0
    assert peak < 0.75 * whole_peak, (peak, whole_peak)


def test_evaluate_builds_the_features_of_a_time_to_close_versions_rows_only() -> None:
    """The same for a time-to-close version: its test slice found on every snapshot's lead and as_of, the rows
    (keys, its features, duration, event) those of the whole training set bit for bit, at 0.57x its allocation
    peak here."""
    from features.build import build_training_set
    from tests.serving_fixtures import train_small_champion, train_small_time_to_close
    from training.survival_tracking import evaluation_identity
    from training.workflow import crm_time_to_close_rows, time_to_close_evaluation_rows

    crm, model = train_small_champion().crm, train_small_time_to_close()

    def from_the_training_set() -> pd.DataFrame:
        return time_to_close_evaluation_rows(build_training_set(crm, spec=model.spec_), model)

    expected, whole_peak = allocation_peak(from_the_training_set)
    gc.collect()
    rows, peak = allocation_peak(crm_time_to_close_rows, crm, model)
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)
    assert evaluation_identity(rows) == evaluation_identity(expected) and len(rows) > 0
    assert peak < 0.75 * whole_peak, (peak, whole_peak)
