"""Behaviour of the fitted sales-readiness model on small synthetic snapshot frames."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training_frames import FrameSet, events_for, feature_columns, snapshot_frame
from training.baselines import PointsRules
from training.config import BoosterConfig, TrainingConfig
from training.evaluation import time_ordered_split
from training.model import SalesReadinessModel
from training.sales_readiness import train_and_evaluate

FAST = BoosterConfig(max_rounds=60, early_stopping_rounds=10, learning_rate=0.1)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    frame = snapshot_frame(1200, 30, seed=5)
    frame = frame[frame["converted_within_h"].notna()].reset_index(drop=True)
    return frame, frame.pop("true_probability").to_numpy()


@pytest.fixture(scope="module")
def model(data: tuple[pd.DataFrame, np.ndarray]) -> SalesReadinessModel:
    frame, _ = data
    split = time_ordered_split(frame["as_of"], 14)
    X = frame[feature_columns(frame)]
    y = frame["converted_within_h"].to_numpy()
    return SalesReadinessModel(FAST, horizon_days=14).fit(
        X.iloc[split.train], y[split.train], X.iloc[split.valid], y[split.valid])


def test_demo_request_scores_higher_than_unsubscribe(data, model) -> None:
    frame, _ = data
    lead = frame[feature_columns(frame)].iloc[[0]]
    with_demo = lead.assign(demo_request_count_30d=2.0, ever_unsubscribed=0.0)
    with_unsub = lead.assign(demo_request_count_30d=0.0, ever_unsubscribed=1.0)
    assert model.predict_proba(with_demo)[0] > model.predict_proba(with_unsub)[0]


def test_column_order_does_not_change_scores(data, model) -> None:
    frame, _ = data
    X = frame[feature_columns(frame)].iloc[:200]
    shuffled = X[list(reversed(X.columns))].assign(extra_column=1.0)
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(shuffled))


def test_unseen_categories_and_plain_strings_score_without_error(data, model) -> None:
    frame, _ = data
    X = frame[feature_columns(frame)].iloc[:50].copy()
    as_text = X.astype({c: object for c in ("seniority", "industry", "lead_source")})
    np.testing.assert_allclose(model.predict_proba(as_text), model.predict_proba(X))
    as_text["industry"] = "space_mining"
    as_text.loc[as_text.index[0], "seniority"] = None
    p = model.predict_proba(as_text)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    # an unseen category is scored as a missing value, not as some category of the training vocabulary
    missing = X.copy()
    missing["industry"] = pd.Series(np.nan, index=X.index).astype(X["industry"].dtype)
    missing.loc[missing.index[0], "seniority"] = np.nan
    np.testing.assert_array_equal(p, model.predict_proba(missing))
    assert not np.array_equal(p, model.predict_proba(X))  # the industry the leads had mattered: a real check


def test_missing_column_and_non_numeric_values_are_named(data, model) -> None:
    frame, _ = data
    X = frame[feature_columns(frame)].iloc[:5]
    with pytest.raises(KeyError, match="employees"):
        model.predict_proba(X.drop(columns="employees"))
    with pytest.raises(ValueError, match="employees"):
        model.predict_proba(X.assign(employees="many"))


def test_save_load_round_trip(tmp_path: Path, data, model) -> None:
    frame, _ = data
    X = frame[feature_columns(frame)].iloc[:300]
    loaded = SalesReadinessModel.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_allclose(loaded.predict_contributions(X), model.predict_contributions(X))
    assert loaded.horizon_days == 14 and loaded.best_iteration_ == model.best_iteration_


def test_load_refuses_another_kind_of_model_and_broken_metadata(tmp_path: Path, model) -> None:
    """``serve`` / ``rescore --model-dir`` on a folder holding the time-to-close model said only ``'booster_config'``."""
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    no_booster_config = {k: v for k, v in meta.items() if k != "booster_config"}
    for broken, needle in (({**meta, "kind": "time_to_close", "config": {}}, "not a sales_readiness model"),
                           (no_booster_config, re.escape("lacks ['booster_config']"))):
        (folder / "model.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=needle) as info:
            SalesReadinessModel.load(folder)
        assert str(folder) in str(info.value)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json is not JSON"):
        SalesReadinessModel.load(folder)
    # a Platt calibrator saved with a negative slope (before fits held it at 0) would reverse the ranking
    (folder / "model.json").write_text(json.dumps({**meta, "calibrator": {"kind": "platt", "slope": -0.8,
                                                                          "intercept": -2.0}}))
    with pytest.raises(ValueError, match="Platt slope -0.8 is negative") as info:
        SalesReadinessModel.load(folder)
    assert str(folder) in str(info.value)


def test_contributions_add_up_to_the_margin(data, model) -> None:
    frame, _ = data
    X = frame[feature_columns(frame)].iloc[:100]
    np.testing.assert_allclose(model.predict_contributions(X).sum(axis=1), model.predict_raw(X), atol=1e-6)


def test_train_and_evaluate_end_to_end(data) -> None:
    frame, truth = data
    fs = FrameSet(frame)
    rules = PointsRules(name="tiny", mql_threshold=30, behaviour={"demo_request": 30, "pricing_page_view": 10},
                        fit=[{"column": "seniority", "in": ["VP", "C-level"], "points": 15}])
    config = TrainingConfig(booster=FAST, segment_columns=["industry"], bootstrap_samples=20,
                            capacity_per_week=15, shap_sample=200)
    result = train_and_evaluate(fs, config, points_rules=rules, events=events_for(frame))
    assert list(result.comparison.index) == ["lightgbm (calibrated)", "points: tiny", "logistic regression"]
    test_rows = result.predictions
    oracle = pd.Series(truth, index=pd.MultiIndex.from_frame(frame[["lead_id", "as_of"]]))
    from sklearn.metrics import roc_auc_score

    oracle_auc = roc_auc_score(test_rows["label"], oracle.loc[list(zip(test_rows.lead_id, test_rows.as_of,
                                                                          strict=True))])
    assert result.metrics["roc_auc"] > oracle_auc - 0.08
    assert result.metrics["ece"] < 0.05
    assert result.metrics["roc_auc"] > result.metrics["baseline_points_tiny_roc_auc"]
    assert test_rows["as_of"].min() >= frame["as_of"].min() + pd.Timedelta(days=14)
    assert result.recommended_threshold is not None
    assert result.recommended_threshold["leads_per_week"] <= 15
    assert set(result.figures) >= {"roc", "pr", "reliability", "gain", "shap_summary", "baselines", "thresholds"}
    assert "Leakage alarm" in result.model_card and not result.leakage.flagged
    assert set(result.segments["segment"]) == set(frame["industry"].astype(str))
