"""What the leakage alarm says when the evaluation rows are too few to compute single-feature AUCs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.config import LeakageThresholds
from training.leakage import MIN_CLASS_ROWS, leakage_report, single_feature_auc


def _frame(n: int, positives: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, positives, replace=False)] = 1
    return pd.DataFrame({"visits": rng.poisson(3, n) + 2 * y, "plan": rng.choice(["a", "b"], n)}), y


def test_too_few_positives_is_said_not_reported_as_clear_with_nan_aucs() -> None:
    frame, y = _frame(300, MIN_CLASS_ROWS - 5)
    single = single_feature_auc(frame.iloc[:150], y[:150], frame.iloc[150:], y[150:])
    assert single["single_auc"].isna().all()
    text = leakage_report(single, pd.Series({"visits": 1.0, "plan": 0.5}), 0.7, {"points": 0.6},
                          LeakageThresholds()).to_text()
    assert text.splitlines()[0] == "Leakage alarm: clear on the model's AUC only"
    assert f"not computed (the evaluation rows need at least {MIN_CLASS_ROWS} positives" in text
    assert "nan" not in text


def test_enough_positives_lists_the_top_single_feature_aucs() -> None:
    frame, y = _frame(600, 120)
    single = single_feature_auc(frame.iloc[:300], y[:300], frame.iloc[300:], y[300:])
    text = leakage_report(single, pd.Series({"visits": 1.0, "plan": 0.5}), 0.7, {"points": 0.6},
                          LeakageThresholds()).to_text()
    assert text.splitlines()[0] == "Leakage alarm: clear"
    assert "Top single-feature AUCs: visits 0." in text and "nan" not in text
