"""Figures of a time-to-close run (matplotlib ``Figure`` objects built without pyplot, saved by callers)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _figure(width: float = 6.5, height: float = 4.5, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def survival_curves_figure(
    days: np.ndarray,
    curves: np.ndarray,
    labels: list[str],
    reference: np.ndarray | None = None,
    horizons: tuple[int, ...] = (),
    title: str = "Predicted survival (still open) for sample leads",
) -> Figure:
    """One curve per sample lead (P(still open at day t)); the dashed line is the Kaplan-Meier curve."""
    fig, (ax,) = _figure()
    for curve, label in zip(curves, labels, strict=True):
        ax.plot(days, curve, label=label, linewidth=1.4)
    if reference is not None:
        ax.plot(days, reference, color="black", linestyle="--", linewidth=1.2, label="Kaplan-Meier (all leads)")
    for h in horizons:
        ax.axvline(h, color="grey", linestyle=":", linewidth=0.8)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=0.8)
    ax.set(xlabel="days after the scoring date", ylabel="P(still open)", title=title, ylim=(0, 1.02),
           xlim=(0, float(days.max())))
    ax.legend(loc="lower left", fontsize=7)
    return fig


def calibration_figure(calibration: pd.DataFrame, title: str = "P(close within h days): predicted vs observed") -> Figure:
    """Per horizon: mean predicted vs Kaplan-Meier-corrected observed rate per decile, per scorer.

    ``calibration`` holds columns scorer, horizon_days, mean_predicted, observed, n.
    """
    horizons = sorted(calibration["horizon_days"].unique())
    fig, axes = _figure(4.0 * max(len(horizons), 1), 4.2, max(len(horizons), 1))
    for ax, h in zip(axes, horizons, strict=False):
        part = calibration[calibration["horizon_days"] == h]
        hi = float(np.nanmax(part[["mean_predicted", "observed"]].to_numpy(), initial=0.0)) * 1.05 + 1e-3
        ax.plot([0, hi], [0, hi], color="grey", linestyle=":", linewidth=1, label="perfect")
        for scorer, rows in part.groupby("scorer", sort=False):
            ax.plot(rows["mean_predicted"], rows["observed"], marker="o", markersize=3.5, label=str(scorer))
        ax.set(xlabel="mean predicted", ylabel="observed (Kaplan-Meier)", title=f"{h} days",
               xlim=(0, hi), ylim=(0, hi))
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title)
    return fig


def concordance_figure(comparison: pd.DataFrame, title: str = "Time-to-close model vs peers (test snapshots)") -> Figure:
    """C-index (Harrell, Uno) and integrated Brier score per scorer, side by side."""
    fig, (left, right) = _figure(10.0, 4.2, 2)
    names = [str(n) for n in comparison.index]
    x = np.arange(len(names))
    for offset, col, label in ((-0.2, "harrell_c", "Harrell's C"), (0.2, "uno_c", "Uno's C")):
        if col in comparison.columns:
            values = comparison[col].astype(float).to_numpy()
            bars = left.bar(x + offset, np.nan_to_num(values), width=0.4, label=label)
            left.bar_label(bars, labels=[f"{v:.3f}" if np.isfinite(v) else "-" for v in values], fontsize=7)
    left.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    left.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    left.set(ylabel="concordance (higher is better)", ylim=(0.4, 1.0), title="C-index")
    left.legend(fontsize=8)
    if "ibs" in comparison.columns:
        values = comparison["ibs"].astype(float).to_numpy()
        bars = right.bar(x, np.nan_to_num(values), color="tab:orange")
        right.bar_label(bars, labels=[f"{v:.4f}" if np.isfinite(v) else "-" for v in values], fontsize=7)
    right.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    right.set(ylabel="integrated Brier score (lower is better)", title="Integrated Brier score (IPCW)")
    fig.suptitle(title)
    return fig


def brier_curve_figure(days: np.ndarray, curves: Mapping[str, np.ndarray],
                       title: str = "IPCW Brier score over time (test snapshots)") -> Figure:
    """Brier score at each evaluation day, per scorer."""
    fig, (ax,) = _figure()
    for name, values in curves.items():
        ax.plot(days, values, label=name)
    ax.set(xlabel="days after the scoring date", ylabel="Brier score (lower is better)", title=title)
    ax.legend(fontsize=8)
    return fig
