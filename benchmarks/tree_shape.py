"""Tree shape vs accuracy vs exact-SHAP cost on the synthetic CRM: what depth and tree count cost.

Two tables on the same time-ordered split (train on earlier snapshots, early-stop + calibrate on
the validation slice, test on the latest):

1. per shape (max_depth, num_leaves, learning rate): trees kept by early stopping, test AUC and
   its difference to the default shape, calibrated log loss, fit seconds, exact TreeSHAP
   (LightGBM ``pred_contrib``, 1 thread) milliseconds per lead and that cost relative to the
   default shape;
2. per tree count: test AUC (ranking of the raw margin) of the first k trees of each shape, so
   the accuracy lost by capping the tree count (and the SHAP time saved, ~linear in trees) is
   read directly.

Usage (figures are noisy on a shared machine; the AUCs carry ~0.01 sampling noise at 20k leads):
    .venv/bin/python benchmarks/tree_shape.py [--leads 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# benchmarks/features.py (another benchmark) would shadow the features package: import from the root.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402

from features.build import build_training_set  # noqa: E402
from features.spec import FeatureConfig  # noqa: E402
from leadscore.synth import SynthConfig, generate  # noqa: E402
from training.config import BoosterConfig  # noqa: E402
from training.evaluation import time_ordered_split  # noqa: E402
from training.model import SalesReadinessModel  # noqa: E402
from training.sales_readiness import feature_columns_of  # noqa: E402

DEFAULT = BoosterConfig()
SHAPES = [  # (max_depth, num_leaves, learning_rate, max_rounds); the default shape first
    (DEFAULT.max_depth, DEFAULT.num_leaves, DEFAULT.learning_rate, DEFAULT.max_rounds),
    (1, 2, 0.1, 400),
    (3, 7, 0.1, 400),
    (4, 15, 0.05, 400),  # the default before the shape was re-measured
    (4, 15, 0.1, 400),
    (6, 31, 0.05, 600),
    (-1, 63, 0.05, 600),
]
TREE_COUNTS = [10, 25, 50, 100, 200, 400]


def _contrib_ms(model: SalesReadinessModel, encoded: np.ndarray) -> float:
    began = time.perf_counter()
    model.booster_.predict(encoded, pred_contrib=True, num_iteration=model.best_iteration_)
    return (time.perf_counter() - began) * 1000 / len(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    ts = build_training_set(generate(SynthConfig(n_leads=args.leads, seed=args.seed)).to_crm(), FeatureConfig())
    frame = ts.frame[ts.frame["converted_within_h"].notna()].reset_index(drop=True)
    split = time_ordered_split(frame["as_of"], int(ts.spec.config.horizon_days))
    X = frame[feature_columns_of(frame, ts.spec)]
    y = frame["converted_within_h"].to_numpy()
    y_te = y[split.test]
    print(f"data: {args.leads} leads (seed {args.seed}), {len(frame)} labelled snapshots: train {len(split.train)}, "
          f"valid {len(split.valid)}, test {len(split.test)} ({int(y_te.sum())} positive); built in "
          f"{time.perf_counter() - started:.0f}s")
    sample = X.iloc[split.test[:2000]]
    rows, by_trees = [], {}
    for depth, leaves, lr, rounds in SHAPES:
        cfg = DEFAULT.model_copy(update={"max_depth": depth, "num_leaves": leaves, "learning_rate": lr,
                                         "max_rounds": rounds, "num_threads": 1})
        began = time.perf_counter()
        model = SalesReadinessModel(cfg).fit(X.iloc[split.train], y[split.train], X.iloc[split.valid],
                                             y[split.valid], spec=ts.spec)
        fit_s = time.perf_counter() - began
        p = model.predict_proba(X.iloc[split.test])
        encoded = model.encode(sample)
        shape = f"depth {depth}, {leaves} leaves, lr {lr:g}"
        rows.append({"shape": shape, "trees": model.best_iteration_, "test_auc": roc_auc_score(y_te, p),
                     "log_loss": log_loss(y_te, np.clip(p, 1e-7, 1 - 1e-7)), "fit_s": fit_s,
                     "shap_ms_per_lead": min(_contrib_ms(model, encoded) for _ in range(3))})
        # the first k trees of the same (full-length, no early stopping) booster
        full = SalesReadinessModel(cfg).fit(X.iloc[split.train], y[split.train], num_boost_round=rounds)
        enc_test = full.encode(X.iloc[split.test])
        by_trees[shape] = {k: roc_auc_score(y_te, full.booster_.predict(enc_test, raw_score=True, num_iteration=k))
                           for k in TREE_COUNTS if k <= rounds}
    table = pd.DataFrame(rows).set_index("shape")
    table["auc_vs_default"] = table["test_auc"] - table["test_auc"].iloc[0]
    table["shap_cost_vs_default"] = table["shap_ms_per_lead"] / table["shap_ms_per_lead"].iloc[0]
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200):
        print("\n1. shape (early-stopped on the validation slice; first row = the default BoosterConfig)")
        print(table[["trees", "test_auc", "auc_vs_default", "log_loss", "fit_s", "shap_ms_per_lead",
                     "shap_cost_vs_default"]].to_string())
        print("\n2. test AUC of the first k trees (no early stopping; SHAP time grows ~linearly with k)")
        print(pd.DataFrame(by_trees).T.rename(columns=lambda k: f"{k} trees").to_string())
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
