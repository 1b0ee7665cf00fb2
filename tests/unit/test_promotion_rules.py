"""The pure promotion rule: beat the best baseline, then the champion on the same rows."""

from __future__ import annotations

import pandas as pd
import pytest

from training.registry import best_baseline, better, decide_promotion


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
                                   ("points", baseline), "roc_auc")
    assert ok is expected
    assert len(reasons) == 2
