"""The pure promotion rule: beat the best baseline, then the champion on the same rows."""

from __future__ import annotations

import pandas as pd
import pytest

from training.registry import (
    MIN_EVAL_POSITIVES,
    baselines_to_beat,
    best_baseline,
    better,
    decide_promotion,
    promotion_rules,
    versus,
)


def test_figures_that_differ_read_differently() -> None:
    assert versus(0.81234, 0.79) == "0.8123 vs 0.7900"
    assert versus(0.0113, 0.0113) == "0.0113 vs 0.0113"  # equal values: four decimals
    assert versus(0.011312, 0.011274) == "0.01131 vs 0.01127"  # the reason reads as the decision
    assert versus(1e-9, 2e-9) == "0.000000001 vs 0.000000002"
    assert versus(1e-13, 2e-13) == "1e-13 vs 2e-13"


def test_direction_of_metrics() -> None:
    assert better("roc_auc", 0.8, 0.7) and not better("roc_auc", 0.7, 0.7)
    assert better("log_loss", 0.2, 0.3) and not better("log_loss", 0.3, 0.2)
    assert not better("roc_auc", 0.71, 0.70, min_delta=0.02)
    with pytest.raises(ValueError, match="no known direction"):
        better("n_rows", 1, 2)


def test_best_baseline_skips_the_model_row_and_missing_values() -> None:
    comparison = pd.DataFrame(
        {"roc_auc": [0.9, 0.7, 0.75], "log_loss": [0.2, float("nan"), 0.4]},
        index=pd.Index(["lightgbm (calibrated)", "points: x", "logistic regression"], name="scorer"),
    )
    assert best_baseline(comparison, "roc_auc") == ("logistic regression", 0.75)
    assert best_baseline(comparison, "log_loss") == ("logistic regression", 0.4)
    assert best_baseline(comparison, "brier") is None


def test_a_baseline_without_the_deciding_metric_is_still_beaten_on_the_ranking_metric() -> None:
    comparison = pd.DataFrame(
        {"roc_auc": [0.74, 0.76, 0.70], "log_loss": [0.2, float("nan"), 0.4]},
        index=pd.Index(["lightgbm (calibrated)", "points: x", "logistic regression"], name="scorer"),
    )
    # a points score has no log loss: it is not dropped, it must be beaten on roc_auc
    checks = baselines_to_beat(comparison, "log_loss", "roc_auc")
    assert checks == [("logistic regression", "log_loss", 0.4), ("points: x", "roc_auc", 0.76)]
    ok, reasons = decide_promotion({"log_loss": 0.2, "roc_auc": 0.74}, None, checks, "log_loss")
    assert not ok and any("does NOT beat the best baseline (points: x) on roc_auc" in r for r in reasons)
    assert baselines_to_beat(comparison, "roc_auc", "roc_auc") == [("points: x", "roc_auc", 0.76)]


def test_only_metrics_that_can_decide_are_offered() -> None:
    rules = promotion_rules(None)
    assert rules.default_metric in rules.deciding_metrics
    assert "ece" not in rules.deciding_metrics  # a constant score has a perfect calibration error
    for metric in rules.deciding_metrics:  # every one has a direction, and it is the right one
        assert better(metric, 0.5, 0.4) == (metric not in ("log_loss", "brier", "ibs"))
    survival = promotion_rules("time_to_close")
    assert survival.default_metric == "uno_c" and set(survival.deciding_metrics) == {"uno_c", "harrell_c", "ibs"}
    assert survival.positive_column == "event" and rules.positive_column == "label"
    for metric in survival.deciding_metrics:
        assert better(metric, 0.5, 0.4) == (metric != "ibs")


@pytest.mark.parametrize(
    ("challenger", "champion", "baseline", "expected"),
    [
        (0.80, None, 0.70, True),   # first champion: baselines only
        (0.65, None, 0.70, False),
        (0.80, 0.78, 0.70, True),
        (0.77, 0.78, 0.70, False),  # worse than the champion on the same rows
        (0.80, 0.60, 0.85, False),  # beats the champion but not the baselines
    ],
)
def test_decide_promotion(challenger, champion, baseline, expected) -> None:
    ok, reasons = decide_promotion({"roc_auc": challenger}, None if champion is None else {"roc_auc": champion},
                                   [("points", "roc_auc", baseline)], "roc_auc")
    assert ok is expected
    # one reason per check, each saying which way it went, with the challenger's figure first
    baseline_reason, champion_reason = reasons
    verdict = "beats" if challenger > baseline else "does NOT beat"
    assert baseline_reason == f"{verdict} the best baseline (points) on roc_auc: {challenger:.4f} vs {baseline:.4f}"
    if champion is None:
        assert champion_reason.startswith("no champion yet"), champion_reason
    else:
        verdict = "beats" if challenger > champion else "does NOT beat"
        assert champion_reason == (f"{verdict} the champion on the same evaluation rows on roc_auc: "
                                   f"{challenger:.4f} vs {champion:.4f} (required margin 0)")


def test_too_few_positives_in_the_evaluation_rows_promote_nothing() -> None:
    checks = [("points", "roc_auc", 0.60)]
    ok, reasons = decide_promotion({"roc_auc": 0.77}, None, checks, "roc_auc", positives=MIN_EVAL_POSITIVES - 15)
    assert not ok and f"only {MIN_EVAL_POSITIVES - 15} lead(s) convert" in reasons[0]
    ok, _ = decide_promotion({"roc_auc": 0.77}, None, checks, "roc_auc", positives=MIN_EVAL_POSITIVES)
    assert ok


def test_rows_metrics_take_the_projects_ece_bins() -> None:
    """`leadscore evaluate` measures ECE with training.ece_bins / ece_binning, as the training run did."""
    import numpy as np

    from training.evaluation import expected_calibration_error
    from training.registry import rows_metrics

    rng = np.random.default_rng(3)
    p = rng.random(2000) * 0.4
    rows = pd.DataFrame({"label": (rng.random(2000) < 0.2 + 0.5 * (p - 0.2)).astype(int)})  # gaps change sign
    y = rows["label"].to_numpy(dtype=float)
    default, wide = rows_metrics(rows, p), rows_metrics(rows, p, 20, "equal_width")
    assert default["ece"] == pytest.approx(expected_calibration_error(y, p, 10, "equal_mass"))
    assert wide["ece"] == pytest.approx(expected_calibration_error(y, p, 20, "equal_width"))
    assert wide["ece"] != pytest.approx(default["ece"])


@pytest.mark.parametrize("margin", [float("inf"), float("nan"), -0.01])
def test_promote_refuses_a_margin_no_challenger_could_clear(margin: float) -> None:
    """The library call checks the margin before reading the registry (the client is never touched)."""
    from training.registry import RegistryError, promote

    with pytest.raises(RegistryError, match="min_delta must be a finite number >= 0"):
        promote(None, "lead-conversion", min_delta=margin)  # type: ignore[arg-type]
