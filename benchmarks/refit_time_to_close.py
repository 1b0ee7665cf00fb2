"""Benchmark: does refitting the time-to-close model for deployment (``time_to_close.refit``) serve better curves?

A backtest one period back: the snapshots dated before a data set's latest test slice, their outcomes censored
at that slice's first date (the "history", what was known then), go through
``train_and_evaluate_time_to_close`` twice: with ``refit`` off (the registered model is the backtest model,
fitted on the history's snapshots before its own test cut, outcomes censored there) and on (the same fit on every
snapshot of the history, outcomes followed to its end). Both models then score the data set's latest test slice,
which neither saw, with outcomes followed to the end of the data: the period a deployed model serves.

Printed per data set: Harrell's and Uno's C, the integrated Brier score and the mean P(close within 90 days)
against the observed (Kaplan-Meier) rate of that period, for both models; then the mean differences (refit minus
backtest) over the synthetic seeds.

    .venv/bin/python benchmarks/refit_time_to_close.py [--leads 5000] [--seed 3 7] [--skip-olist]
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

from features.build import TrainingSet, build_training_set  # noqa: E402
from features.loading import load_data  # noqa: E402
from leadscore.project import load_project  # noqa: E402
from leadscore.synth import SynthConfig, generate  # noqa: E402
from training.config import AS_OF  # noqa: E402
from training.survival_config import TimeToCloseConfig  # noqa: E402
from training.survival_evaluation import (  # noqa: E402
    EvaluationSettings,
    censor_at,
    observed_rates,
    score_survival,
    survival_split,
    train_and_evaluate_time_to_close,
)

DAYS_OBSERVED, EVENT = "days_observed", "event"


def measure(training_set: TrainingSet, config: TimeToCloseConfig) -> pd.DataFrame:
    """Both models' figures on the period after their history (pure library calls)."""
    config = config.model_copy(update={"make_plots": False})
    frame = training_set.frame
    latest = survival_split(frame[AS_OF], frame["lead_id"], training_set.data_end, config)
    served = frame.iloc[latest.test].reset_index(drop=True)
    time, event = served[DAYS_OBSERVED].to_numpy(dtype=float), served[EVENT].to_numpy().astype(bool)
    settings = EvaluationSettings.for_rows(time, event, config)
    horizon = max(settings.horizons)
    observed = observed_rates(time, event, [horizon])[f"observed_close_{horizon}d"]
    known = np.flatnonzero((frame[AS_OF] < latest.test_start).to_numpy())
    history = frame.iloc[known].reset_index(drop=True).copy()
    d, e = censor_at(history[AS_OF], history[DAYS_OBSERVED].to_numpy(dtype=float),
                     history[EVENT].to_numpy().astype(bool), latest.test_start)
    history[DAYS_OBSERVED], history[EVENT] = d, e.astype(frame[EVENT].dtype)
    past = replace(training_set, frame=history, data_end=latest.test_start)
    rows = {}
    for name, refit in (("backtest model", False), ("refit model", True)):
        model = train_and_evaluate_time_to_close(past, config.model_copy(update={"refit": refit})).model
        scored = score_survival(time, event, model.predict_survival(served, settings.days), settings).metrics
        rows[name] = {"harrell_c": scored["harrell_c"], "uno_c": scored["uno_c"], "ibs": scored["ibs"],
                      f"mean_p_close_{horizon}d": scored[f"mean_p_close_{horizon}d"],
                      f"observed_{horizon}d": observed, "trees": model.best_iteration_,
                      "snapshots": model.n_snapshots_}
    print(f"served period: {len(served):,} snapshots as of {served[AS_OF].min():%Y-%m-%d}..{served[AS_OF].max():%Y-%m-%d}"
          f" ({int(event.sum()):,} closes); history before {latest.test_start:%Y-%m-%d}")
    table = pd.DataFrame(rows).T
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--seed", type=int, nargs="*", default=[3, 7])
    parser.add_argument("--olist", type=Path, default=HERE.parent / "configs" / "olist.yaml")
    parser.add_argument("--skip-olist", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_olist:
        project = load_project(args.olist)
        data, _ = load_data(project.data)
        print(f"\nOlist ({args.olist.name})")
        try:
            measure(build_training_set(data, project.features), project.time_to_close)
        except ValueError as exc:  # the history may be too short to hold a backtest of its own
            print(f"no backtest one period back: {exc}")
    differences = []
    for seed in args.seed:
        print(f"\nsynthetic CRM, {args.leads:,} leads, seed {seed}")
        table = measure(build_training_set(generate(SynthConfig(n_leads=args.leads, seed=seed)).to_crm()),
                        TimeToCloseConfig())
        columns = [c for c in table.columns if c.startswith(("harrell", "uno", "ibs", "mean_p_close"))]
        horizon = next(c for c in columns if c.startswith("mean_p_close")).removeprefix("mean_p_close_")
        error = (table[f"mean_p_close_{horizon}"] / table[f"observed_{horizon}"] - 1).abs()
        differences.append({**(table.loc["refit model", columns] - table.loc["backtest model", columns]),
                            "relative_level_error_backtest": error["backtest model"],
                            "relative_level_error_refit": error["refit model"]})
    if differences:
        frame = pd.DataFrame(differences, index=args.seed)
        print(f"\nrefit minus backtest on the served period, {len(frame)} seed(s) (level error: |mean predicted / "
              "observed - 1|):")
        print(frame.to_string(float_format=lambda v: f"{v:+.4f}"))
        print(f"mean Harrell {frame['harrell_c'].mean():+.4f}, Uno {frame['uno_c'].mean():+.4f} (refit not worse on "
              f"{int((frame['uno_c'] >= 0).sum())} of {len(frame)}), IBS {frame['ibs'].mean():+.5f}; level error "
              f"{frame['relative_level_error_backtest'].mean():.1%} -> {frame['relative_level_error_refit'].mean():.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
