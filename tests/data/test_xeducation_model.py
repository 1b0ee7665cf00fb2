"""The sales-readiness model on the real X Education export, through the flat config only."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.flat import load_flat
from leadscore.project import load_project
from training.config import BoosterConfig, TrainingConfig
from training.sales_readiness import train_and_evaluate_flat

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "xeducation.yaml"
FAST = TrainingConfig(booster=BoosterConfig(learning_rate=0.1, max_rounds=200), bootstrap_samples=0,
                      make_plots=False, cv_folds=4,
                      points_rules=ROOT / "configs" / "points_rules_xeducation.yaml")  # the flat export's own rules


def _run(*unignore: str):
    config = load_project(CONFIG).data
    if unignore:
        config = config.unignore(*unignore)
    flat, _ = load_flat(config)
    return train_and_evaluate_flat(flat, FAST)


_CACHE: dict[str, object] = {}


def _honest_result():
    if "honest" not in _CACHE:
        _CACHE["honest"] = _run()
    return _CACHE["honest"]


@pytest.mark.usefixtures("real_data_dir")
@pytest.mark.xfail(strict=True, reason="target not reached: cross-validated AUC 0.873 < 0.88 without the "
                   "post-contact columns. Tried (3 fold seeds): booster shape, leaf size, L2, feature fraction, "
                   "path smoothing, categorical smoothing, linear trees, 'Select' kept apart from blank, an "
                   "answered-fields count, a LightGBM + logistic blend, a nested 20-trial Optuna search: "
                   "0.870-0.876; Platt calibration 0.875; a three-model blend 0.877; the learning curve "
                   "adds about 0.002 per doubling of the rows; see the README's measured figures")
def test_honest_model_reaches_the_published_target() -> None:
    assert _honest_result().metrics["roc_auc"] >= 0.88


@pytest.mark.usefixtures("real_data_dir")
def test_honest_model_is_accurate_and_beats_the_company_score() -> None:
    result = _honest_result()
    assert result.metrics["ece"] <= 0.03
    assert "points: xeducation_points" in result.comparison.index  # training.points_rules of the config
    activity = result.comparison.loc["score: Asymmetrique Activity Score"]
    assert 0.5 < activity["coverage"] < 0.6  # the company score exists for ~54% of leads
    assert 0.55 <= activity["roc_auc_covered_only"] <= 0.67  # ~0.60 where it exists
    assert result.metrics["roc_auc"] > result.comparison.drop(index="lightgbm (calibrated)")["roc_auc"].max()
    assert not result.leakage.flagged


@pytest.mark.usefixtures("real_data_dir")
def test_leakage_alarm_names_tags_and_lead_quality() -> None:
    result = _run("Tags", "Lead Quality")
    assert {"Tags", "Lead Quality"} <= set(result.leakage.flagged_features)
    assert result.metrics["roc_auc"] > 0.93
