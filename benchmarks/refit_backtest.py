"""Benchmark: does refitting for deployment (``training.refit``) serve better scores than the backtest model?

A backtest one period back: every synthetic CRM's labelled snapshots before its latest test slice (the
"history") go through ``train_and_evaluate`` twice, with ``refit`` off (the registered model is the
backtest model: fitted on the history's training slice, calibrated on its validation slice) and on (the
same trees refit on the history's training and validation slices, calibrated on its test slice). Both
models then score the CRM's latest test slice, which neither saw: the period a deployed model serves.
Prints, per seed, the conversion rate of each slice and the two models' AUC, log loss, ECE and predicted /
observed rate on that period, then the mean differences (refit minus backtest) over the seeds.

    .venv/bin/python benchmarks/refit_backtest.py [--leads 5000] [--seed 0 1 2 3]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features.build import build_training_set  # noqa: E402
from features.spec import FeatureConfig  # noqa: E402
from leadscore.synth import SynthConfig, generate  # noqa: E402
from training.config import AS_OF, TrainingConfig  # noqa: E402
from training.evaluation import probability_metrics, time_ordered_split  # noqa: E402
from training.sales_readiness import train_and_evaluate  # noqa: E402

SCORED = ("roc_auc", "log_loss", "ece")


def measure(n_leads: int, seed: int) -> dict[str, dict[str, float]]:
    """The backtest model's and the refit model's figures on the period after their history (pure library calls)."""
    crm = generate(SynthConfig(n_leads=n_leads, seed=seed))
    training_set = build_training_set(crm.to_crm(), FeatureConfig())
    config = TrainingConfig(make_plots=False, bootstrap_samples=0)
    frame = training_set.frame[training_set.frame[config.label].notna()].reset_index(drop=True)
    latest = time_ordered_split(frame[AS_OF], int(training_set.spec.config.horizon_days), config.test_fraction,
                                config.validation_fraction)
    history = replace(training_set, frame=frame.iloc[np.sort(np.concatenate([latest.train, latest.valid]))]
                      .reset_index(drop=True))
    served = frame.iloc[latest.test].reset_index(drop=True)
    y = served[config.label].to_numpy(dtype=float)
    figures: dict[str, dict[str, float]] = {}
    for name, refit in (("backtest model", False), ("refit model", True)):
        result = train_and_evaluate(history, config.model_copy(update={"refit": refit}), events=crm.events)
        p = result.model.predict_proba(served)
        metrics = probability_metrics(y, p, config.ece_bins, config.ece_binning)
        figures[name] = {**{k: float(metrics[k]) for k in SCORED}, "predicted_observed": float(p.mean() / y.mean()),
                         "trees": float(result.model.best_iteration_), "fitted_rows": float(result.model.n_train_)}
        if refit:
            split = result.split
            figures["rates"] = {"history test slice": float(result.predictions["label"].mean()),
                                "history validation slice": float(split["calibration_base_rate"]),
                                "served period": float(y.mean()), "served rows": float(len(y))}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args(argv)
    differences = []
    for seed in args.seed:
        figures = measure(args.leads, seed)
        rates = figures.pop("rates")
        print(f"\n{args.leads:,} leads, seed {seed}: conversion rate of the history's validation slice "
              f"{rates['history validation slice']:.4f} (the backtest model's calibration rows), of its test slice "
              f"{rates['history test slice']:.4f} (the refit model's), of the served period "
              f"{rates['served period']:.4f} ({rates['served rows']:,.0f} snapshots)")
        table = pd.DataFrame(figures).T.astype({"trees": int, "fitted_rows": int})
        print(table.to_string(float_format=lambda v: f"{v:.5f}"))
        differences.append(table.loc["refit model", [*SCORED, "predicted_observed"]]
                           - table.loc["backtest model", [*SCORED, "predicted_observed"]])
    frame = pd.DataFrame(differences, index=args.seed)
    print(f"\nrefit minus backtest on the served period, {len(args.seed)} seed(s):")
    print(frame.to_string(float_format=lambda v: f"{v:+.4f}"))
    print(f"mean AUC {frame['roc_auc'].mean():+.4f} (refit not worse on {int((frame['roc_auc'] >= 0).sum())} of "
          f"{len(frame)}), mean log loss {frame['log_loss'].mean():+.5f}, mean ECE {frame['ece'].mean():+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
