"""Tree shape vs accuracy vs exact-SHAP cost on the synthetic CRM.

Prints, per (max_depth, num_leaves, max_rounds): trees kept, test AUC, log loss (calibrated) and
LightGBM ``pred_contrib`` time per lead (1 thread). Usage:
    .venv/bin/python benchmarks/tree_shape.py [n_leads]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# benchmarks/features.py (another benchmark) would shadow the features package: import from the root.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402

from features.build import build_training_set  # noqa: E402
from features.spec import FeatureConfig  # noqa: E402
from leadscore.synth import SynthConfig, generate  # noqa: E402
from training.config import BoosterConfig  # noqa: E402
from training.evaluation import time_ordered_split  # noqa: E402
from training.model import SalesReadinessModel  # noqa: E402
from training.sales_readiness import feature_columns_of  # noqa: E402

SHAPES = [  # (max_depth, num_leaves, learning_rate, max_rounds)
    (3, 7, 0.1, 150),
    (4, 15, 0.05, 400),
    (4, 15, 0.1, 200),
    (6, 31, 0.05, 300),
    (-1, 31, 0.05, 300),
]


def main(n_leads: int = 5000) -> None:
    started = time.perf_counter()
    ts = build_training_set(generate(SynthConfig(n_leads=n_leads, seed=1)).to_crm(), FeatureConfig())
    frame = ts.frame[ts.frame["converted_within_h"].notna()].reset_index(drop=True)
    split = time_ordered_split(frame["as_of"], int(ts.spec.config.horizon_days))
    X = frame[feature_columns_of(frame, ts.spec)]
    y = frame["converted_within_h"].to_numpy()
    print(f"data: {n_leads} leads, {len(frame)} labelled snapshots, built in {time.perf_counter() - started:.0f}s")
    print("depth leaves lr    trees  test_auc  test_logloss  contrib_ms_per_lead")
    sample = X.iloc[split.test[:2000]]
    for depth, leaves, lr, rounds in SHAPES:
        cfg = BoosterConfig(max_depth=depth, num_leaves=leaves, learning_rate=lr, max_rounds=rounds, num_threads=1)
        model = SalesReadinessModel(cfg).fit(X.iloc[split.train], y[split.train], X.iloc[split.valid],
                                             y[split.valid], spec=ts.spec)
        p = model.predict_proba(X.iloc[split.test])
        encoded = model.encode(sample)
        t = time.perf_counter()
        model.booster_.predict(encoded, pred_contrib=True, num_iteration=model.best_iteration_)
        ms = (time.perf_counter() - t) * 1000 / len(encoded)
        # the same shape forced to max_rounds trees (cost when early stopping does not cut)
        full = SalesReadinessModel(cfg).fit(X.iloc[split.train], y[split.train], num_boost_round=rounds)
        t = time.perf_counter()
        full.booster_.predict(encoded, pred_contrib=True)
        ms_full = (time.perf_counter() - t) * 1000 / len(encoded)
        print(f"{depth:5d} {leaves:6d} {lr:4.2f} {model.best_iteration_:6d}  {roc_auc_score(y[split.test], p):8.4f}  "
              f"{log_loss(y[split.test], np.clip(p, 1e-7, 1 - 1e-7)):12.4f}  {ms:8.4f} "
              f"(at {rounds} trees: {ms_full:.4f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
