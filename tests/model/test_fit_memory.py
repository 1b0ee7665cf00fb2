"""``SalesReadinessModel`` lets its encoded matrices go as soon as LightGBM has binned them and predicts a
block of rows at a time, with the very booster and predictions of LightGBM on the whole encoded matrices."""

from __future__ import annotations

import weakref

import lightgbm as lgb
import pytest

import training.model as model_module
from tests.training_frames import labelled_time_slices
from training.config import BoosterConfig
from training.model import SalesReadinessModel, encode_features

BOOSTER = BoosterConfig(max_rounds=60, early_stopping_rounds=10, learning_rate=0.2)


@pytest.fixture(scope="module")
def slices():
    return labelled_time_slices(900, seed=11)


def test_the_booster_is_lightgbm_on_the_encoded_slices(slices) -> None:
    """The booster text (trees, bin thresholds, parameters) of ``fit`` is that of ``lgb.train`` on the float64
    matrices of both slices, kept whole (``free_raw_data=False``), and so are the scores of the test rows."""
    X, y, X_valid, y_valid, X_test = slices
    model = SalesReadinessModel(BOOSTER, calibration="platt", seed=3).fit(X, y, X_valid, y_valid)
    columns, categories = model.feature_columns_, model.categories_
    train = lgb.Dataset(encode_features(X, columns, categories), label=y, feature_name=columns,
                        categorical_feature=[j for j, c in enumerate(columns) if c in categories],
                        free_raw_data=False)
    valid = lgb.Dataset(encode_features(X_valid, columns, categories), label=y_valid, reference=train,
                        free_raw_data=False)
    booster = lgb.train(model.params_, train, num_boost_round=BOOSTER.max_rounds, valid_sets=[valid],
                        valid_names=["valid"], callbacks=[lgb.early_stopping(BOOSTER.early_stopping_rounds,
                                                                             verbose=False)])
    assert model.booster_.model_to_string() == booster.model_to_string()
    expected = booster.predict(encode_features(X_test, columns, categories), raw_score=True,
                               num_iteration=booster.best_iteration)
    assert model.predict_raw(X_test).tobytes() == expected.tobytes()


def test_the_encoded_slices_are_let_go_once_binned(slices, monkeypatch) -> None:
    """The training slice's float64 matrix is let go once binned, before the validation slice is encoded, and
    neither is held while the booster is fitted (the training one stayed held through the fit and the
    calibration: 280 MiB at 464,035 rows of a 200k-lead CRM, with the validation one's 155 MiB at its binning)."""
    X, y, X_valid, y_valid, _ = slices
    matrices: list[weakref.ref] = []
    held_when_encoding: list[list[bool]] = []

    def remembered(*args, **kwargs):
        held_when_encoding.append([ref() is not None for ref in matrices])
        encoded = encode(*args, **kwargs)
        matrices.append(weakref.ref(encoded))
        return encoded

    encode = model_module.encode_features
    monkeypatch.setattr(model_module, "encode_features", remembered)
    held_while_fitting: list[list[bool]] = []

    def look(env) -> None:
        if env.iteration == 0:
            held_while_fitting.append([ref() is not None for ref in matrices])

    SalesReadinessModel(BOOSTER, calibration="platt", seed=3).fit(X, y, X_valid, y_valid, callbacks=[look])
    assert held_while_fitting == [[False, False]]
    assert held_when_encoding[:2] == [[], [False]]  # the training slice was binned before the validation one came


def test_the_binned_slices_are_let_go_before_calibration(slices, monkeypatch) -> None:
    """The validation slice is scored for the calibrator once the training and validation sets (their bins)
    are gone."""
    X, y, X_valid, y_valid, _ = slices
    datasets: list[weakref.ref] = []
    held_at_calibration: list[bool] = []

    def remembered(self, *args, **kwargs):
        dataset = make(self, *args, **kwargs)
        datasets.append(weakref.ref(dataset))
        return dataset

    def calibrator(*args, **kwargs):
        held_at_calibration.extend(ref() is not None for ref in datasets)
        return fit(*args, **kwargs)

    make, fit = SalesReadinessModel._dataset, model_module.fit_calibrator
    monkeypatch.setattr(SalesReadinessModel, "_dataset", remembered)
    monkeypatch.setattr(model_module, "fit_calibrator", calibrator)
    SalesReadinessModel(BOOSTER, calibration="platt", seed=3).fit(X, y, X_valid, y_valid)
    assert held_at_calibration == [False]


def test_predictions_encode_a_block_of_rows_at_a_time(slices, monkeypatch, encoded_rows) -> None:
    X, y, X_valid, y_valid, X_test = slices
    model = SalesReadinessModel(BOOSTER, calibration="platt", seed=3).fit(X, y, X_valid, y_valid)
    whole = model.booster_.predict(model.encode(X_test), raw_score=True, num_iteration=model.best_iteration_)
    encoded_rows.clear()  # the fit's and the reference's encodes
    monkeypatch.setattr(model_module, "PREDICT_BLOCK_ROWS", 70)
    assert model.predict_raw(X_test).tobytes() == whole.tobytes()
    assert len(X_test) > 3 * 70
    assert encoded_rows == [min(70, len(X_test) - start) for start in range(0, len(X_test), 70)]
    assert model.predict_raw(X_test.iloc[:0]).shape == (0,)
