"""Benchmark: the time-to-close model vs Kaplan-Meier, Cox PH and the naive regression, side by side.

Two data sets, each through the same library path as ``leadscore train --target time-to-close``
(contract -> point-in-time snapshots -> ``train_and_evaluate_time_to_close``):

- the public Olist marketing funnel (``configs/olist.yaml``: MQL first contact -> won date, leads
  never won censored at the data end, dirty rows quarantined by the contract);
- the synthetic CRM (``leadscore.synth``), monthly snapshots.

Printed per data set: snapshots, test rows and closes, tau, then Harrell's and Uno's C, the
integrated Brier score (IPCW), the Brier score and the worst per-decile calibration gap at the
largest horizon for every scorer; the model's margins over Kaplan-Meier and Cox; fit time; and
the memory of the period expansion (index arrays) next to a dense float64 expansion of the
same rows.

    .venv/bin/python benchmarks/time_to_close.py                       # Olist + 5,000 synthetic leads
    .venv/bin/python benchmarks/time_to_close.py --leads 20000 --seed 3 --skip-olist
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.build import build_training_set  # noqa: E402
from features.loading import load_data  # noqa: E402
from leadscore.project import load_project  # noqa: E402
from leadscore.synth import SynthConfig, generate  # noqa: E402
from training.survival_config import TimeToCloseConfig  # noqa: E402
from training.survival_evaluation import (  # noqa: E402
    COX_NAME,
    KM_NAME,
    MODEL_NAME,
    TimeToCloseResult,
    train_and_evaluate_time_to_close,
)


def run(name: str, training_set, config: TimeToCloseConfig) -> TimeToCloseResult:
    """Fit and evaluate; print the comparison."""
    started = time.perf_counter()
    result = train_and_evaluate_time_to_close(training_set, config.model_copy(update={"make_plots": False}))
    seconds = time.perf_counter() - started
    h = max(result.settings.horizons)
    cols = ["harrell_c", "uno_c", "ibs", f"brier_{h}d", f"calibration_max_gap_{h}d"]
    table = result.comparison[[c for c in cols if c in result.comparison.columns]]
    model = result.model
    dense = model.n_period_rows_full_ * (len(model.feature_columns_) + 1) * 8
    index_bytes = model.n_period_rows_ * (8 + 2 + 4 + 4)
    print(f"\n== {name} ==")
    print(f"snapshots {len(training_set.frame):,}; split {result.split}")
    print(f"test rows {int(result.metrics['n_test']):,} ({int(result.metrics['n_test_events']):,} closes), "
          f"tau {result.settings.tau} days; observed P(close within {h}d) "
          f"{result.metrics[f'observed_close_{h}d']:.4f}")
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string())
    m = table.loc[MODEL_NAME]
    for peer in (KM_NAME, COX_NAME):
        if peer in table.index:
            p = table.loc[peer]
            print(f"model - {peer}: Harrell {m.harrell_c - p.harrell_c:+.4f}, Uno {m.uno_c - p.uno_c:+.4f}, "
                  f"IBS {m.ibs - p.ibs:+.5f} ({(p.ibs - m.ibs) / p.ibs:+.2%} better)")
    print(f"fit {model.fit_seconds_:.1f}s ({model.best_iteration_} trees), whole run {seconds:.1f}s; "
          f"period rows {model.n_period_rows_:,} kept of {model.n_period_rows_full_:,} (rate {model.sampling_rate_:.3g}); "
          f"index arrays {index_bytes / 2**20:.1f} MiB vs a dense float64 expansion "
          f"{dense / 2**20:.0f} MiB")
    for note in result.notes:
        print(f"note: {note}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--olist", type=Path, default=ROOT / "configs" / "olist.yaml")
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--skip-olist", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if not args.skip_olist:
        project = load_project(args.olist)
        data, report = load_data(project.data)
        print(report.summary())
        run(f"Olist ({args.olist.name})", build_training_set(data, project.features), project.time_to_close)
    if not args.skip_synthetic:
        crm = generate(SynthConfig(n_leads=args.leads, seed=args.seed)).to_crm()
        run(f"synthetic CRM ({args.leads:,} leads, seed {args.seed})", build_training_set(crm), TimeToCloseConfig())


if __name__ == "__main__":
    main()
