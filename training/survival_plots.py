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


def off_scale(values: np.ndarray, factor: float = 5.0) -> np.ndarray:
    """Mask of the values more than ``factor`` times the largest value below them (finite, positive
    values; the smallest is never off scale): a peer far worse than the rest, drawn apart so the
    others stay readable."""
    v = np.asarray(values, dtype=float)
    mask = np.zeros(len(v), dtype=bool)
    usable = np.isfinite(v) & (v > 0)
    if usable.sum() < 2:
        return mask
    ordered = np.sort(v[usable])
    jumps = np.flatnonzero(ordered[1:] / ordered[:-1] > factor)
    if jumps.size:
        mask[usable] = v[usable] > ordered[jumps[0]]
    return mask


def survival_curves_figure(
    days: np.ndarray,
    curves: np.ndarray,
    labels: list[str],
    reference: np.ndarray | None = None,
    horizons: tuple[int, ...] = (),
    title: str = "Predicted survival (still open) for sample leads",
) -> Figure:
    """One curve per sample lead (P(still open at day t)); the dashed line is the Kaplan-Meier curve.

    The y axis is zoomed on the curves (most leads stay open, so they sit just below 1); its lower
    end is stated in the axis label.
    """
    fig, (ax,) = _figure()
    for curve, label in zip(curves, labels, strict=True):
        ax.plot(days, curve, label=label, linewidth=1.4)
    values = np.asarray(curves, dtype=float).ravel()
    if reference is not None:
        ax.plot(days, reference, color="black", linestyle="--", linewidth=1.2, label="Kaplan-Meier (all leads)")
        values = np.concatenate([values, np.asarray(reference, dtype=float).ravel()])
    low = float(np.nanmin(values, initial=1.0))
    pad = max(0.06 * (1.0 - low), 0.002)
    bottom = max(0.0, low - pad)
    for h in horizons:
        ax.axvline(h, color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(f"{h} d", (h, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=7, color="grey")
    if bottom < 0.5:
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=0.8)
    ylabel = "P(still open)" if bottom == 0 else f"P(still open) (axis from {bottom:.3g})"
    ax.set(xlabel="days after the scoring date", ylabel=ylabel, title=title, ylim=(bottom, 1.0 + pad / 2),
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
    """C-index (Harrell, Uno) and integrated Brier score per scorer, side by side.

    A scorer whose integrated Brier score is far above the others' (:func:`off_scale`) gets a cut,
    hatched bar labelled with its value, so the close scores of the others stay readable.
    """
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
    right_title = "Integrated Brier score (IPCW)"
    if "ibs" in comparison.columns:
        values = comparison["ibs"].astype(float).to_numpy()
        far = off_scale(values)
        near = values[~far & np.isfinite(values)]
        top = float(near.max(initial=0.0)) * 1.3 or 1.0
        heights = np.where(far, top * 0.92, np.nan_to_num(values))
        bars = right.bar(x, heights, color=["lightgrey" if f else "tab:orange" for f in far])
        for bar, f in zip(bars, far, strict=True):
            if f:
                bar.set_hatch("//")
        right.bar_label(bars, labels=[("-" if not np.isfinite(v) else f"{v:.4f}" + (" (off scale)" if f else ""))
                                      for v, f in zip(values, far, strict=True)], fontsize=7)
        right.set_ylim(0, top)
        if far.any():
            right_title += ", zoomed"
    right.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    right.set(ylabel="integrated Brier score (lower is better)", title=right_title)
    fig.suptitle(title)
    return fig


def brier_curve_figure(days: np.ndarray, curves: Mapping[str, np.ndarray],
                       title: str = "IPCW Brier score over time (test snapshots)") -> Figure:
    """Brier score at each evaluation day, per scorer.

    Scorers far worse than the others (:func:`off_scale` on each curve's maximum) go to a panel of
    their own on the right, where a grey band shows the left panel's range; the left panel is zoomed
    on the rest. Each scorer keeps its colour in both panels.
    """
    names = list(curves)
    colours = {name: f"C{k}" for k, name in enumerate(names)}
    peaks = np.array([np.nanmax(np.asarray(curves[n], dtype=float), initial=np.nan) for n in names])
    far = off_scale(peaks)
    fig, axes = _figure(11.0 if far.any() else 6.5, 4.5, 2 if far.any() else 1)
    ax = axes[0]
    for name, f in zip(names, far, strict=True):
        if not f:
            ax.plot(days, curves[name], label=name, color=colours[name])
    ax.set(xlabel="days after the scoring date", ylabel="Brier score (lower is better)")
    ax.legend(fontsize=8, loc="upper left")
    if not far.any():
        ax.set_title(title)
        return fig
    near_top = float(np.nanmax(peaks[~far], initial=0.0))
    ax.set(ylim=(0, near_top * 1.15 or 1.0), title="model and close peers (zoomed)")
    side = axes[1]
    side.axhspan(0, near_top * 1.15, color="grey", alpha=0.2, label="range of the left panel")
    for name, f in zip(names, far, strict=True):
        if f:
            side.plot(days, curves[name], label=name, color=colours[name])
    side.set(xlabel="days after the scoring date", ylabel="Brier score (lower is better)", ylim=(0, None),
             title="off-scale peer (own axis)")
    side.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    return fig
