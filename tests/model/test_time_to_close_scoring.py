"""Scoring the time-to-close model walks each snapshot's trees once, not once per period (26 periods x 362
trees per snapshot on a 200k-lead CRM: most of the evaluation's time and of every ``models promote``), and
gives the hazards ``Booster.predict`` gives on the (snapshot, period) rows, bit for bit."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from features.build import build_training_set
from leadscore.synth import SynthConfig, generate
from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import TimeToCloseResult, train_and_evaluate_time_to_close
from training.time_to_close import TimeToCloseModel


@pytest.fixture(scope="module")
def result() -> TimeToCloseResult:
    crm = generate(SynthConfig(n_leads=1500, seed=3)).to_crm()
    # the tests read the model, not its peers: one Cox penalizer instead of the grid of five (the peers 3.8 s ->
    # 1.0 s of the 5.8 s run here; the same model and evaluation rows, bit for bit)
    config = TimeToCloseConfig(make_plots=False, cox_penalizers=(0.01,))
    return train_and_evaluate_time_to_close(build_training_set(crm), config)


@pytest.fixture(scope="module")
def features(result: TimeToCloseResult) -> pd.DataFrame:
    """The test snapshots, a few with a category the model never saw and with missing numbers."""
    model = result.model
    X = result.evaluation_rows[model.feature_columns_].copy()
    categorical = next(iter(model.categories_))
    X[categorical] = X[categorical].astype(object)
    X.iloc[:20, X.columns.get_loc(categorical)] = "never seen"
    numeric = next(c for c in model.feature_columns_ if c not in model.categories_)
    X.iloc[20:40, X.columns.get_loc(numeric)] = np.nan
    return X


def _booster_hazards(model: TimeToCloseModel, X: pd.DataFrame) -> np.ndarray:
    """The hazards as ``Booster.predict`` gives them on every (snapshot, period) row."""
    base = model.encode(X)
    block = np.empty((len(base), base.shape[1] + 1), dtype=np.float32)
    block[:, :-1] = base
    raw = np.empty((len(base), model.config.max_periods))
    for k in range(model.config.max_periods):
        block[:, -1] = k
        raw[:, k] = model.booster_.predict(block, raw_score=True, num_iteration=model.best_iteration_)
    if model.linear_ is not None:
        raw += model.linear_.margins(X)
    return expit(raw)


def test_hazards_are_those_of_the_booster_bit_for_bit(result: TimeToCloseResult, features: pd.DataFrame) -> None:
    model = result.model
    assert model.best_iteration_ > 1
    assert model.predict_hazard(features).tobytes() == _booster_hazards(model, features).tobytes()


def test_scoring_runs_no_booster_row_per_period(result: TimeToCloseResult, features: pd.DataFrame,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict_hazard`` handed LightGBM every snapshot once per period (26 calls of n rows per 100,000)."""
    rows: list[int] = []
    predict = lgb.Booster.predict

    def counting(self, data, *args, **kwargs):
        rows.append(len(data))
        return predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", counting)
    result.model.predict_hazard(features)
    assert sum(rows) == 0


def test_the_tree_arrays_are_built_once_per_booster(result: TimeToCloseResult, features: pd.DataFrame) -> None:
    model = result.model
    trees = model.period_trees()
    model.predict_hazard(features.iloc[:10])
    assert trees is not None and model.period_trees() is trees
