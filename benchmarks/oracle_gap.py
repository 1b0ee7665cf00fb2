"""Benchmark: sales-readiness model vs the synthetic oracle vs baselines on the same test snapshots.

Generates a synthetic CRM, builds the point-in-time training set (monthly as-of dates, 90-day
horizon), runs ``train_and_evaluate`` with the default training config and the packaged default
hand-tuned points rules, then scores the *same* test snapshots with the generator's true probability
(``true_probability``). Prints AUC / ECE per scorer, the gap to the oracle, the top-decile lift and
capture (share of the conversions in the top 10%) of the model and of the points, and the seconds of
the whole run (generation, features, training with its baselines; no plots, no bootstrap).

Acceptance target (issue): model AUC within 0.02 of the oracle AUC, ECE <= 0.02, far above the
points baseline.

    .venv/bin/python benchmarks/oracle_gap.py [--leads 20000] [--seed 0] [--seeds 1] [--no-realism]

``--no-realism`` generates without the engaged non-buyers and email link scanners
(``SynthConfig(realism=False)``), the generator before they were added.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.build import build_training_set  # noqa: E402
from features.spec import FeatureConfig  # noqa: E402
from leadscore.synth import SynthConfig, generate, true_probability  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.evaluation import probability_metrics, top_fraction_lift_capture  # noqa: E402
from training.sales_readiness import LOGISTIC_NAME, MODEL_NAME, train_and_evaluate  # noqa: E402

HORIZON_DAYS = 90
POINTS_NAME = "points: default_b2b_points"


@dataclass
class OracleGap:
    """Figures of one run: AUC per scorer, ECE of the calibrated model and of the oracle, sizes."""

    leads: int
    seed: int
    test_rows: int
    test_positives: int
    train_rows: int
    auc: dict[str, float]
    lift: dict[str, tuple[float, float]]  # top-decile lift and capture per scorer
    ece_model: float
    ece_oracle: float
    best_iteration: int
    seconds: float

    @property
    def gap(self) -> float:
        return self.auc["oracle"] - self.auc[MODEL_NAME]


def measure(n_leads: int, seed: int = 0, config: TrainingConfig | None = None,
            realism: bool | None = None) -> OracleGap:
    """Generate, build snapshots, train, and compare on the test snapshots (pure library calls).

    ``realism`` None keeps the generator's default (``SynthConfig.realism``).
    """
    began = time.perf_counter()
    synth = SynthConfig(n_leads=n_leads, seed=seed)
    if realism is not None:
        synth = synth.model_copy(update={"realism": realism})
    crm = generate(synth)
    training_set = build_training_set(crm.to_crm(), FeatureConfig(horizon_days=HORIZON_DAYS))
    config = config or TrainingConfig(make_plots=False, bootstrap_samples=0)
    result = train_and_evaluate(training_set, config, events=crm.events)  # default points rules
    test = result.predictions
    y = test["label"].to_numpy()
    oracle = true_probability(crm.truth, test["lead_id"].to_numpy(), test["as_of"].to_numpy(), HORIZON_DAYS)
    scores = {MODEL_NAME: test["probability"].to_numpy(), "oracle": oracle,
              POINTS_NAME: test[f"baseline:{POINTS_NAME}"].to_numpy(),
              LOGISTIC_NAME: test[f"baseline:{LOGISTIC_NAME}"].to_numpy()}
    auc = {name: float(roc_auc_score(y, s)) for name, s in scores.items()}
    lift = {name: top_fraction_lift_capture(y, s) for name, s in scores.items()}
    return OracleGap(
        leads=n_leads, seed=seed, test_rows=len(y), test_positives=int(y.sum()),
        train_rows=int(result.split.get("n_train", -1)) if isinstance(result.split, dict) else -1,
        auc=auc, lift=lift, ece_model=float(result.metrics["ece"]),
        ece_oracle=float(probability_metrics(y, oracle)["ece"]),
        best_iteration=int(result.model.best_iteration_), seconds=time.perf_counter() - began,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds seed..seed+seeds-1")
    parser.add_argument("--realism", action=argparse.BooleanOptionalAction, default=None,
                        help="engaged non-buyers and link scanners (default: the generator's default)")
    args = parser.parse_args()
    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        gap = measure(args.leads, seed, realism=args.realism)
        rows.append({"leads": gap.leads, "seed": seed, "test_rows": gap.test_rows, "test_pos": gap.test_positives,
                     "oracle": gap.auc["oracle"], "model": gap.auc[MODEL_NAME], "gap": gap.gap,
                     "points": gap.auc[POINTS_NAME], "logistic": gap.auc[LOGISTIC_NAME],
                     "lift_model": gap.lift[MODEL_NAME][0], "lift_points": gap.lift[POINTS_NAME][0],
                     "capture_model": gap.lift[MODEL_NAME][1], "capture_points": gap.lift[POINTS_NAME][1],
                     "ece_model": gap.ece_model, "ece_oracle": gap.ece_oracle, "trees": gap.best_iteration,
                     "seconds": round(gap.seconds, 1)})
    table = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 200):
        print(table.to_string(index=False))
        if len(table) > 1:
            print("mean:", table.drop(columns=["seed"]).mean().round(3).to_dict())
    print(f"target: gap <= 0.02, ece_model <= 0.02; mean gap {np.mean(table['gap']):.3f}")


if __name__ == "__main__":
    main()
