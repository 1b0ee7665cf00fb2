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
same rows. On the synthetic CRM an ``oracle`` row scores the generator's true survival curves
(``leadscore.synth.true_probability`` at every evaluation day, from the latent state no CRM
records) on the same test rows: the best ranking any model of the snapshots could reach, so the
model's and Cox's distance to it shows how much room the features leave.

    .venv/bin/python benchmarks/time_to_close.py                       # Olist + 5,000 synthetic leads
    .venv/bin/python benchmarks/time_to_close.py --leads 20000 --seed 3 --skip-olist
    .venv/bin/python benchmarks/time_to_close.py --skip-olist --seed 3 7 11 19   # margins over Cox per seed

With several seeds a last line summarises the model's margins over Cox (mean, minimum, seeds where
it is at least +0.01 on both C-indices) and the worst 90-day calibration gap: at 5,000 leads the
margin moves by about +-0.013 from one synthetic CRM to the next, so one seed proves little.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.build import build_training_set  # noqa: E402
from features.loading import load_data  # noqa: E402
from features.schema import LEAD_ID  # noqa: E402
from leadscore.project import load_project  # noqa: E402
from leadscore.synth import SynthConfig, SyntheticCRM, generate, true_probability  # noqa: E402
from training.config import AS_OF  # noqa: E402
from training.survival_config import TimeToCloseConfig  # noqa: E402
from training.survival_evaluation import (  # noqa: E402
    COX_NAME,
    DURATION,
    EVENT,
    KM_NAME,
    MODEL_NAME,
    TimeToCloseResult,
    score_survival,
    train_and_evaluate_time_to_close,
)

ORACLE_NAME = "oracle (generator's latent state)"


def true_survival(synthetic: SyntheticCRM, lead_ids: np.ndarray, as_of: np.ndarray, days: list[float]) -> np.ndarray:
    """(rows, len(days)): the generator's P(still open after each day), from its latent state."""
    return np.column_stack([1.0 - true_probability(synthetic.truth, lead_ids, as_of, int(day)) for day in days])


def oracle_metrics(synthetic: SyntheticCRM, result: TimeToCloseResult) -> dict[str, float]:
    """The generator's true survival curves on the run's test rows, scored as every peer is."""
    rows = result.predictions
    survival = true_survival(synthetic, rows[LEAD_ID].to_numpy(), rows[AS_OF].to_numpy(), result.settings.days)
    scored = score_survival(rows[DURATION].to_numpy(), rows[EVENT].to_numpy(), survival, result.settings)
    return scored.metrics


def run(name: str, training_set, config: TimeToCloseConfig, synthetic: SyntheticCRM | None = None
        ) -> TimeToCloseResult:
    """Fit and evaluate; print the comparison (with the oracle's row when ``synthetic`` is given)."""
    started = time.perf_counter()
    result = train_and_evaluate_time_to_close(training_set, config.model_copy(update={"make_plots": False}))
    seconds = time.perf_counter() - started
    if synthetic is not None:
        oracle = pd.DataFrame({ORACLE_NAME: oracle_metrics(synthetic, result)}).T
        result.comparison = pd.concat([result.comparison, oracle[result.comparison.columns.intersection(oracle.columns)]])
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
    for peer in (KM_NAME, COX_NAME, ORACLE_NAME):
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
    parser.add_argument("--seed", type=int, nargs="+", default=[3], help="one or more synthetic CRM seeds")
    parser.add_argument("--skip-olist", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if not args.skip_olist:
        project = load_project(args.olist)
        data, report = load_data(project.data)
        print(report.summary())
        run(f"Olist ({args.olist.name})", build_training_set(data, project.features), project.time_to_close)
    if not args.skip_synthetic:
        margins, headroom = [], []
        for seed in args.seed:
            synthetic = generate(SynthConfig(n_leads=args.leads, seed=seed))
            result = run(f"synthetic CRM ({args.leads:,} leads, seed {seed})", build_training_set(synthetic.to_crm()),
                         TimeToCloseConfig(), synthetic)
            margins.append(cox_margins(result.comparison))
            headroom.append(result.comparison.loc[ORACLE_NAME, ["harrell_c", "uno_c"]]
                            - result.comparison.loc[COX_NAME, ["harrell_c", "uno_c"]])
        if len(margins) > 1:
            print("\n" + summarise_margins(args.seed, margins))
            room = pd.DataFrame(headroom)
            print(f"oracle - Cox: Harrell mean {room['harrell_c'].mean():+.4f}, Uno mean {room['uno_c'].mean():+.4f} "
                  "(the room the latent state leaves above Cox)")


def cox_margins(comparison: pd.DataFrame) -> tuple[float, float, float]:
    """(Harrell margin, Uno margin) of the model over Cox and the model's worst calibration gap."""
    m, c = comparison.loc[MODEL_NAME], comparison.loc[COX_NAME]
    gap = [col for col in comparison.columns if col.startswith("calibration_max_gap_")][-1]
    return float(m.harrell_c - c.harrell_c), float(m.uno_c - c.uno_c), float(m[gap])


def summarise_margins(seeds: list[int], margins: list[tuple[float, float, float]]) -> str:
    """One line over seeds: mean and minimum margins, seeds clearly above Cox, worst calibration gap."""
    h, u, g = (np.array(x) for x in zip(*margins, strict=True))
    clear = [s for s, a, b in zip(seeds, h, u, strict=True) if a >= 0.01 and b >= 0.01]
    return (f"{len(seeds)} seeds: model - Cox Harrell mean {h.mean():+.4f} (min {h.min():+.4f}, sd {h.std(ddof=1):.4f}), "
            f"Uno mean {u.mean():+.4f} (min {u.min():+.4f}, sd {u.std(ddof=1):.4f}); >= +0.01 on both: "
            f"{len(clear)} of {len(seeds)} {clear}; worst calibration gap at the largest horizon {g.max():.4f}")


if __name__ == "__main__":
    main()
