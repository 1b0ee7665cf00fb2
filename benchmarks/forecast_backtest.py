"""Revenue forecast backtest on synthetic CRMs: forecast made at a past date from models trained on
what was known then, against the revenue those open leads actually closed, month by month.

Prints, per seed, the month table (expected vs actual deals and revenue, the interval, inside or
not) and a summary line; deal counts and deal values are shown apart so that an error can be
traced to the close probabilities or to the deal-value model. The line above the table says what the
recalibration of the sales-readiness probabilities fitted (``--no-recalibration`` turns it off).
The ``oracle`` deals are what the generator's latent state expects of the same open leads
(``leadscore.synth.true_probability`` at the month ends): the actual count scatters around it by
chance alone, so a forecast far from the oracle is biased, one far from the actual count only
perhaps unlucky. A table by lead age at the forecast date shows where forecast and oracle part.

Usage: .venv/bin/python benchmarks/forecast_backtest.py [--leads 5000] [--seed 3 7] [--as-of 2025-12-01]
       [--no-recalibration]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features.schema import CREATED_AT, LEAD_ID  # noqa: E402
from leadscore.project import sqlite_project  # noqa: E402
from leadscore.synth import SynthConfig, SyntheticCRM, generate, true_probability  # noqa: E402
from training.forecast import (  # noqa: E402
    ACTUAL_DEALS,
    ACTUAL_REVENUE,
    EXPECTED_DEALS,
    EXPECTED_REVENUE,
    INSIDE,
    MONTH,
    OBSERVED,
    ForecastBacktest,
    ForecastConfig,
    RecalibrationConfig,
    backtest_forecast,
)

AGE_BANDS = [0, 30, 90, 180, 365, np.inf]


def oracle_close_probabilities(synthetic: SyntheticCRM, result: ForecastBacktest) -> np.ndarray:
    """(open leads, months): P(close in each forecast month) from the generator's latent state."""
    ids = result.forecast.leads[LEAD_ID].to_numpy()
    ends = result.forecast.months["end_day"].to_numpy()
    if not np.allclose(ends, np.round(ends)):
        raise ValueError(f"oracle deals: month ends {ends} are not whole days after the forecast date")
    by_end = np.column_stack([true_probability(synthetic.truth, ids, result.forecast.as_of, int(round(d)))
                              for d in ends])
    if np.isnan(by_end).any():
        raise ValueError(f"oracle deals: {int(np.isnan(by_end).any(axis=1).sum())} open lead(s) created after the "
                         "forecast date")
    return np.diff(np.column_stack([np.zeros(len(ids)), by_end]), axis=1)


def deals_by_age(synthetic: SyntheticCRM, result: ForecastBacktest, oracle: np.ndarray) -> pd.DataFrame:
    """Forecast vs oracle deals over the whole window per lead-age band at the forecast date."""
    leads = result.forecast.leads
    created = synthetic.leads.drop_duplicates(LEAD_ID).set_index(LEAD_ID).loc[leads[LEAD_ID], CREATED_AT]
    age = (result.forecast.as_of - pd.to_datetime(created)).dt.days.to_numpy()
    band = pd.cut(age, AGE_BANDS, right=False)
    frame = pd.DataFrame({"lead age (days)": band, "open leads": 1, "forecast deals": leads["p_close_in_window"].to_numpy(),
                          "oracle deals": oracle.sum(axis=1)})
    table = frame.groupby("lead age (days)", observed=True).sum()
    return table.assign(ratio=table["forecast deals"] / table["oracle deals"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--seed", type=int, nargs="+", default=[3, 7])
    parser.add_argument("--as-of", default="2025-12-01", help="forecast date (the synthetic history ends 2026-06-30)")
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--no-recalibration", action="store_true",
                        help="use the readiness model's own calibration (forecast config recalibration.enabled off)")
    args = parser.parse_args()
    config = ForecastConfig(months=args.months, interval=0.9,
                            recalibration=RecalibrationConfig(enabled=not args.no_recalibration))
    with tempfile.TemporaryDirectory() as tmp:
        project = sqlite_project(Path(tmp))  # only its feature and model settings are used
        for seed in args.seed:
            synthetic = generate(SynthConfig(n_leads=args.leads, seed=seed))
            result = backtest_forecast(synthetic.to_crm(), args.as_of, project, config)
            oracle = oracle_close_probabilities(synthetic, result)
            table = result.table.assign(oracle_deals=oracle.sum(axis=0))
            print(f"\n== seed {seed}, {args.leads:,} leads ==")
            recalibration = result.forecast.recalibration
            print(recalibration.to_text() if recalibration is not None else "no recalibration")
            print(result.to_text())
            print("deals per month, forecast / oracle / closed: " + ", ".join(
                f"{m} {f:.1f} / {o:.1f} / {a}" for m, f, o, a in
                zip(table[MONTH], table[EXPECTED_DEALS], table["oracle_deals"], table[ACTUAL_DEALS], strict=True)))
            with pd.option_context("display.width", 160, "display.float_format", "{:.2f}".format):
                print(deals_by_age(synthetic, result, oracle).to_string())
            seen = table[table[OBSERVED]]  # months that end before the data end
            deals, closed = seen[EXPECTED_DEALS].sum(), seen[ACTUAL_DEALS].sum()
            print(f"deals: expected {deals:.1f}, closed {closed}; revenue per deal: expected "
                  f"{seen[EXPECTED_REVENUE].sum() / max(deals, 1e-9):,.0f}, actual "
                  f"{seen[ACTUAL_REVENUE].sum() / max(closed, 1):,.0f}")
            print(f"summary seed {seed}: deals {deals:.1f} (oracle {seen['oracle_deals'].sum():.1f}) vs {closed}; "
                  f"revenue {seen[EXPECTED_REVENUE].sum():,.0f} "
                  f"vs {seen[ACTUAL_REVENUE].sum():,.0f}; inside {int(seen[INSIDE].sum())}/{len(seen)} observed months")


if __name__ == "__main__":
    main()
