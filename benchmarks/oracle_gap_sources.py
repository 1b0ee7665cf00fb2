"""Where does the gap between the sales-readiness model and the synthetic oracle come from?

The oracle (``leadscore.synth.true_probability``) knows each lead's latent state: its persona
(buyer or an engaged non-buyer), its base conversion hazard (firmographic fit plus a little noise
no attribute shows), its episode rate and the intent of the buying episodes already started.
This benchmark trains the same LightGBM model on the same time-ordered split with the pipeline's
observable features plus one latent variable at a time, read from the generator's truth table
(NOT available in real data; the point is to see which missing information costs the AUC):

- ``+ intent``: the current intent and engagement level at ``as_of`` (what events reveal);
- ``+ persona`` / ``+ base hazard`` / ``+ episode rate``: who the lead is (lead-level);
- ``+ P(non-buyer | observables)``: a persona classifier trained on the training slice from the
  observable features only, its out-of-sample probability added as a feature: how much of the
  persona the observables carry, given a dense label to learn it from;
- ``+ longer windows``: the pipeline's own features with 365-day counts (a point-in-time change
  the pipeline could make);
- ``latent only``: the model on the latent variables alone (the learning loss with perfect inputs).

    .venv/bin/python benchmarks/oracle_gap_sources.py [--leads 20000] [--seed 0]
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
from sklearn.metrics import roc_auc_score  # noqa: E402

from features.build import build_training_set  # noqa: E402
from features.spec import FeatureConfig  # noqa: E402
from leadscore.synth import KAPPA, SynthConfig, generate, true_probability  # noqa: E402
from training.config import BoosterConfig  # noqa: E402
from training.evaluation import time_ordered_split  # noqa: E402
from training.model import SalesReadinessModel  # noqa: E402
from training.sales_readiness import feature_columns_of  # noqa: E402

HORIZON_DAYS = 90


def latent_state(frame: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per snapshot row: intent and engagement at the start of the as_of day (episodes started
    before that day), log base hazard, log episode rate, persona (from the truth table)."""
    params = truth.sort_values(["lead_id", "episode_start"]).drop_duplicates("lead_id").set_index("lead_id")
    lead = frame["lead_id"].to_numpy()
    day = frame["as_of"].to_numpy().astype("datetime64[D]").astype(np.int64)
    episodes = truth.loc[truth["episode_start"].notna(), ["lead_id", "episode_start", "episode_amplitude"]]
    episodes = episodes.assign(ep_day=episodes["episode_start"].to_numpy().astype("datetime64[D]").astype(np.int64))
    joined = pd.DataFrame({"row": np.arange(len(frame)), "lead_id": lead, "day": day}).merge(episodes, on="lead_id")
    joined = joined[joined["ep_day"] < joined["day"]]
    rho = 2.0 ** (-1.0 / params.loc[joined["lead_id"], "half_life_days"].to_numpy())
    lag = (joined["day"] - joined["ep_day"]).to_numpy()
    amp = joined["episode_amplitude"].to_numpy()
    rows = joined["row"].to_numpy()
    slow, fast = amp * rho**lag, amp * (rho * KAPPA) ** lag
    return pd.DataFrame({
        "engaged": np.bincount(rows, slow, len(frame)),
        "intent": np.bincount(rows, slow - fast, len(frame)),
        "log_base_hazard": np.log(params.loc[lead, "base_hazard"].to_numpy()),
        "log_episode_rate": np.log(params.loc[lead, "episode_rate"].to_numpy()),
        "persona": pd.Categorical(params.loc[lead, "persona"].to_numpy()),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    began = time.perf_counter()
    crm = generate(SynthConfig(n_leads=args.leads, seed=args.seed))

    def prepared(windows: tuple[int, ...]):
        ts = build_training_set(crm.to_crm(), FeatureConfig(horizon_days=HORIZON_DAYS, windows=windows))
        frame = ts.frame[ts.frame["converted_within_h"].notna()].reset_index(drop=True)
        return ts, frame, time_ordered_split(frame["as_of"], HORIZON_DAYS, 0.2, 0.2)

    ts, frame, split = prepared((7, 30, 90))
    y = frame["converted_within_h"].to_numpy()
    y_te = y[split.test]
    X = frame[feature_columns_of(frame, ts.spec)]
    latent = latent_state(frame, crm.truth)
    oracle = true_probability(crm.truth, frame["lead_id"].to_numpy()[split.test],
                              frame["as_of"].to_numpy()[split.test], HORIZON_DAYS)

    def auc_of(features: pd.DataFrame, label: np.ndarray = y, spec=None) -> tuple[float, SalesReadinessModel]:
        model = SalesReadinessModel(BoosterConfig(), seed=42).fit(
            features.iloc[split.train], label[split.train], features.iloc[split.valid], label[split.valid], spec=spec)
        return float(roc_auc_score(label[split.test], model.predict_proba(features.iloc[split.test]))), model

    rows = {"oracle (true probability)": float(roc_auc_score(y_te, oracle))}
    rows["model: observable features"] = auc_of(X, spec=ts.spec)[0]
    for name, extra in [("+ intent, engagement (latent)", ["intent", "engaged"]),
                        ("+ persona (latent)", ["persona"]),
                        ("+ base hazard (latent)", ["log_base_hazard"]),
                        ("+ episode rate (latent)", ["log_episode_rate"]),
                        ("+ all latent", ["persona", "log_base_hazard", "log_episode_rate", "intent", "engaged"])]:
        rows[name] = auc_of(pd.concat([X, latent[extra]], axis=1))[0]
    non_buyer = (latent["persona"].astype(str) != "buyer").to_numpy(dtype=float)
    detect_auc, persona_model = auc_of(X, non_buyer, ts.spec)
    rows["+ P(non-buyer | observables)"] = auc_of(X.assign(p_non_buyer=persona_model.predict_proba(X)))[0]
    rows["latent only (no observable feature)"] = auc_of(
        latent[["log_base_hazard", "log_episode_rate", "intent", "engaged"]])[0]
    ts365, frame365, split365 = prepared((7, 30, 90, 365))
    assert np.array_equal(split365.test, split.test)
    rows["observable + 365-day counts"] = auc_of(frame365[feature_columns_of(frame365, ts365.spec)], spec=ts365.spec)[0]

    table = pd.Series(rows, name="test_auc").to_frame()
    table["vs_model"] = table["test_auc"] - rows["model: observable features"]
    table["gap_to_oracle"] = rows["oracle (true probability)"] - table["test_auc"]
    print(f"{args.leads} leads (seed {args.seed}); test: {len(y_te)} snapshots, {int(y_te.sum())} positive; "
          f"non-buyers in test: {non_buyer[split.test].mean():.1%}, detected from observables with AUC "
          f"{detect_auc:.3f}")
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200):
        print(table.to_string())
    print(f"total {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
