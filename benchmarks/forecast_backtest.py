"""Revenue forecast backtest on synthetic CRMs: forecast made at a past date from models trained on
what was known then, against the revenue those open leads actually closed, month by month.

Prints, per seed, the month table (expected vs actual deals and revenue, the interval, inside or
not) and a summary line; deal counts and deal values are shown apart so that an error can be
traced to the close probabilities or to the deal-value model. The line above the table says what the
recalibration of the sales-readiness probabilities fitted (``--no-recalibration`` turns it off).

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

from leadscore.project import sqlite_project  # noqa: E402
from leadscore.synth import SynthConfig, generate  # noqa: E402
from training.forecast import (  # noqa: E402
    ACTUAL_DEALS,
    ACTUAL_REVENUE,
    EXPECTED_DEALS,
    EXPECTED_REVENUE,
    INSIDE,
    ForecastConfig,
    RecalibrationConfig,
    backtest_forecast,
)


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
            crm = generate(SynthConfig(n_leads=args.leads, seed=seed)).to_crm()
            result = backtest_forecast(crm, args.as_of, project, config)
            table = result.table
            print(f"\n== seed {seed}, {args.leads:,} leads ==")
            recalibration = result.forecast.recalibration
            print(recalibration.to_text() if recalibration is not None else "no recalibration")
            print(result.to_text())
            deals, closed = table[EXPECTED_DEALS].sum(), table[ACTUAL_DEALS].sum()
            print(f"deals: expected {deals:.1f}, closed {closed}; revenue per deal: expected "
                  f"{table[EXPECTED_REVENUE].sum() / max(deals, 1e-9):,.0f}, actual "
                  f"{table[ACTUAL_REVENUE].sum() / max(closed, 1):,.0f}")
            print(f"summary seed {seed}: deals {deals:.1f} vs {closed}; revenue {table[EXPECTED_REVENUE].sum():,.0f} "
                  f"vs {table[ACTUAL_REVENUE].sum():,.0f}; inside {int(table[INSIDE].sum())}/{len(table)} months")


if __name__ == "__main__":
    main()
