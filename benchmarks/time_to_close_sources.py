"""Where does the room between Cox and the synthetic oracle come from, for time to close?

The oracle row of ``benchmarks/time_to_close.py`` ranks the test snapshots far above both the
hazard model and the Cox peer. This benchmark fits both again on the same split with the
pipeline's observable features plus latent variables read from the generator's truth table (NOT
available in real data; see ``benchmarks/oracle_gap_sources.py`` for the sales-readiness
counterpart):

- ``+ persona``: who the lead is (buyer or one of the engaged non-buyers);
- ``+ intent``: log(floor + current intent) and the engagement level at ``as_of``;
- ``+ all latent``: persona, log base hazard, log episode rate, intent and engagement;

and prints the oracle (the generator's true curves) on the same test rows. What Cox gains with the
hazard model is information the features do not carry; what only the hazard model gains is
structure (non-linearity, interactions) a linear model misses. Every variant, the observable one
included, takes its categories from its training rows (no FeatureSpec: the latent columns are not
in it), so the observable row can differ a little from ``benchmarks/time_to_close.py``.

    .venv/bin/python benchmarks/time_to_close_sources.py [--leads 5000] [--seed 3 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# benchmarks/features.py (another benchmark) would shadow the features package: import from the root.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.oracle_gap_sources import latent_state  # noqa: E402
from benchmarks.time_to_close import true_survival  # noqa: E402
from features.build import build_training_set  # noqa: E402
from features.schema import LEAD_ID  # noqa: E402
from leadscore.synth import INTENT_FLOOR, SynthConfig, generate  # noqa: E402
from training.config import AS_OF  # noqa: E402
from training.survival_baselines import CoxBaseline  # noqa: E402
from training.survival_config import TimeToCloseConfig  # noqa: E402
from training.survival_evaluation import (  # noqa: E402
    DAYS_OBSERVED,
    EVENT_OBSERVED,
    EvaluationSettings,
    censor_at,
    score_survival,
    survival_split,
)
from training.time_to_close import TimeToCloseModel, survival_at_days  # noqa: E402

VARIANTS = {
    "observable features": [],
    "+ persona": ["persona"],
    "+ intent": ["log_intent", "engaged"],
    "+ all latent": ["persona", "log_base_hazard", "log_episode_rate", "log_intent", "engaged"],
}


def concordances(time: np.ndarray, event: np.ndarray, survival: np.ndarray, settings: EvaluationSettings
                 ) -> tuple[float, float]:
    """(Harrell, Uno) of the curves ``survival``, ranked as the evaluation ranks every scorer."""
    metrics = score_survival(time, event, survival, settings, calibrate=False).metrics
    return metrics["harrell_c"], metrics["uno_c"]


def measure(n_leads: int, seed: int) -> tuple[pd.DataFrame, tuple[float, float]]:
    """Model and Cox C-indices on the test rows per variant of the feature set; the oracle's."""
    synthetic = generate(SynthConfig(n_leads=n_leads, seed=seed))
    training_set = build_training_set(synthetic.to_crm())
    config = TimeToCloseConfig()
    frame = training_set.frame.reset_index(drop=True)
    latent = latent_state(frame, synthetic.truth)
    latent["log_intent"] = np.log(INTENT_FLOOR + latent["intent"])
    split = survival_split(frame[AS_OF], frame[LEAD_ID], training_set.data_end, config)
    durations = frame[DAYS_OBSERVED].to_numpy(dtype=float)
    events = frame[EVENT_OBSERVED].to_numpy().astype(bool)
    fit = np.concatenate([split.train, split.valid])
    d_fit, e_fit = censor_at(frame[AS_OF].iloc[fit], durations[fit], events[fit], split.test_start)
    n = len(split.train)
    t_te, e_te = durations[split.test], events[split.test]
    settings = EvaluationSettings.for_rows(t_te, e_te, config)
    days = np.asarray(settings.days)
    rows = []
    for name, extra in VARIANTS.items():
        X = pd.concat([frame[training_set.spec.columns_], latent[extra]], axis=1)
        fit_args = (X.iloc[split.train], d_fit[:n], e_fit[:n], X.iloc[split.valid], d_fit[n:], e_fit[n:])
        model = TimeToCloseModel(config).fit(*fit_args)
        cox = CoxBaseline(config.cox_penalizers, config.cox_max_levels, config.cox_max_rows, config.seed).fit(*fit_args)
        X_te = X.iloc[split.test]
        m = concordances(t_te, e_te, survival_at_days(model.predict_hazard(X_te), config.period_days, days), settings)
        c = concordances(t_te, e_te, cox.predict_survival(X_te, days), settings)
        rows.append({"seed": seed, "features": name, "model_harrell": m[0], "model_uno": m[1], "cox_harrell": c[0],
                     "cox_uno": c[1], "margin_harrell": m[0] - c[0], "margin_uno": m[1] - c[1],
                     "trees": model.best_iteration_})
    test = frame.iloc[split.test]
    truth = true_survival(synthetic, test[LEAD_ID].to_numpy(), test[AS_OF].to_numpy(), settings.days)
    return pd.DataFrame(rows), concordances(t_te, e_te, truth, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--seed", type=int, nargs="+", default=[3, 7])
    args = parser.parse_args()
    tables, oracles = [], []
    for seed in args.seed:
        table, oracle = measure(args.leads, seed)
        tables.append(table)
        oracles.append(oracle)
        with pd.option_context("display.width", 200, "display.float_format", "{:+.4f}".format):
            print(f"\n== {args.leads:,} leads, seed {seed} ==")
            print(table.drop(columns="seed").set_index("features").to_string())
        print(f"oracle (the generator's true curves): Harrell {oracle[0]:.4f}, Uno {oracle[1]:.4f}")
    if len(tables) > 1:
        mean = pd.concat(tables).groupby("features", sort=False).mean(numeric_only=True).drop(columns="seed")
        with pd.option_context("display.width", 200, "display.float_format", "{:+.4f}".format):
            print(f"\n== mean over seeds {args.seed} ==")
            print(mean.to_string())
        harrell, uno = np.mean(oracles, axis=0)
        print(f"oracle: Harrell {harrell:.4f}, Uno {uno:.4f}")


if __name__ == "__main__":
    main()
