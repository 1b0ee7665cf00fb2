"""Evaluation figures. Each function returns a ``matplotlib.figure.Figure`` built without pyplot
(no global state, no GUI backend: saving uses Agg); callers save them with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from training.calibration import reliability_curve

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]  # name -> (y, score)


def _figure(width: float = 6.0, height: float = 4.5) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def roc_figure(curves: Curves, title: str = "ROC curve (test)") -> Figure:
    """ROC curves of the model and baselines on the same rows."""
    fig, ax = _figure()
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def pr_figure(curves: Curves, title: str = "Precision-recall (test)") -> Figure:
    """Precision-recall curves; the dotted line is the base rate."""
    fig, ax = _figure()
    base = None
    for name, (y, s) in curves.items():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=name)
        base = float(np.mean(y))
    if base is not None:
        ax.axhline(base, color="grey", linestyle=":", linewidth=1, label=f"base rate {base:.3f}")
    ax.set(xlabel="recall (share of conversions)", ylabel="precision", title=title, ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    return fig


def reliability_figure(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, binning: str = "equal_mass", title: str | None = None
) -> Figure:
    """Observed conversion rate vs mean predicted probability per bin, with bin sizes."""
    mean_p, rate, counts = reliability_curve(y, p, n_bins, binning)
    fig, ax = _figure()
    hi = float(max(mean_p.max(initial=0), rate.max(initial=0))) * 1.05 + 1e-3
    ax.plot([0, hi], [0, hi], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    ax.plot(mean_p, rate, marker="o", label="model")
    for x, r, n in zip(mean_p, rate, counts, strict=True):
        ax.annotate(f"{int(n)}", (x, r), textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed conversion rate",
           title=title or f"Reliability ({binning.replace('_', '-')} bins, n per bin shown)",
           xlim=(0, hi), ylim=(0, hi))
    ax.legend(loc="upper left", fontsize=8)
    return fig


def lift_gain_figure(curves: Curves, title: str = "Cumulative gain (test)") -> Figure:
    """Share of conversions captured vs share of leads contacted, best-scored first."""
    fig, ax = _figure()
    for name, (y, s) in curves.items():
        y = np.asarray(y, dtype=float)
        order = np.argsort(-np.asarray(s, dtype=float), kind="mergesort")
        gain = np.concatenate([[0.0], np.cumsum(y[order]) / max(y.sum(), 1)])
        share = np.linspace(0, 1, len(gain))
        top = gain[max(1, int(round(0.1 * len(y))))]
        ax.plot(share, gain, label=f"{name} (top 10%: {top:.0%})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
    ax.axvline(0.1, color="grey", linewidth=0.5)
    ax.set(xlabel="share of leads contacted (best first)", ylabel="share of conversions captured", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def score_distribution_figure(score: np.ndarray, y: np.ndarray, cutoff: int | None = None) -> Figure:
    """Histogram of the 0-100 score for converters and non-converters (densities)."""
    score = np.asarray(score, dtype=float)
    y = np.asarray(y, dtype=float)
    fig, ax = _figure()
    bins = np.arange(0, 102, 2)
    ax.hist(score[y == 0], bins=bins, alpha=0.6, density=True, label=f"did not convert (n={int((y == 0).sum())})")
    ax.hist(score[y == 1], bins=bins, alpha=0.6, density=True, label=f"converted (n={int((y == 1).sum())})")
    if cutoff is not None:
        ax.axvline(cutoff, color="black", linestyle="--", label=f"MQL cut-off {cutoff}")
    ax.set(xlabel="score (0-100 = 100 x P(convert within H))", ylabel="density", title="Score distribution (test)")
    ax.legend(fontsize=8)
    return fig


def threshold_figure(table: pd.DataFrame, recommended: Mapping[str, float] | None = None) -> Figure:
    """Leads per week (or share flagged) and capture/precision by cut-off."""
    fig, ax = _figure(7, 4.5)
    per_week = table["leads_per_week"].notna().all()
    volume = table["leads_per_week"] if per_week else table["share_flagged"]
    ax.plot(table["cutoff"], volume, color="tab:blue", label="leads per week" if per_week else "share flagged")
    ax.set(xlabel="score cut-off", ylabel="leads per week" if per_week else "share of leads flagged",
           title="MQL threshold: volume vs capture")
    ax2 = ax.twinx()
    ax2.plot(table["cutoff"], table["capture"], color="tab:green", label="capture (recall)")
    ax2.plot(table["cutoff"], table["precision"], color="tab:orange", label="precision")
    ax2.set(ylabel="capture / precision", ylim=(0, 1.02))
    if recommended is not None:
        ax.axvline(recommended["cutoff"], color="black", linestyle="--")
        ax.annotate(f"cut-off {int(recommended['cutoff'])}: capture {recommended['capture']:.0%}",
                    (recommended["cutoff"], float(volume.max()) * 0.9), xytext=(5, 0),
                    textcoords="offset points", fontsize=8)
    lines = ax.get_lines()[:1] + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    return fig


def shap_summary_figure(
    contributions: np.ndarray, features: np.ndarray, feature_names: list[str], max_display: int = 15
) -> Figure:
    """Beeswarm of exact TreeSHAP values (LightGBM ``pred_contrib``; bias column dropped if present).

    Colour = the feature's value rank within the sample (blue low, red high; grey = missing or
    categorical level order).
    """
    contributions = np.asarray(contributions, dtype=float)
    if contributions.shape[1] == len(feature_names) + 1:
        contributions = contributions[:, :-1]
    features = np.asarray(features, dtype=float)
    order = np.argsort(np.abs(contributions).mean(axis=0))[::-1][:max_display]
    fig, ax = _figure(7, 0.35 * len(order) + 1.5)
    rng = np.random.default_rng(0)
    sc = None
    for rank, j in enumerate(order[::-1]):
        vals = contributions[:, j]
        fv = features[:, j]
        colour = pd.Series(fv).rank(pct=True).to_numpy()
        jitter = rng.normal(0, 0.08, len(vals))
        missing = np.isnan(colour)
        ax.scatter(vals[missing], rank + jitter[missing], s=4, color="lightgrey", alpha=0.6)
        sc = ax.scatter(vals[~missing], rank + jitter[~missing], s=4, c=colour[~missing], cmap="coolwarm",
                        vmin=0, vmax=1, alpha=0.7)
    ax.set_yticks(range(len(order)), [feature_names[j] for j in order[::-1]], fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="SHAP value (contribution to log-odds)", title="What drives the score (test sample)")
    if sc is not None:
        bar = fig.colorbar(sc, ax=ax, pad=0.01)
        bar.set_label("feature value (rank)")
    return fig


def baseline_comparison_figure(comparison: pd.DataFrame, metrics: tuple[str, ...] = ("roc_auc", "pr_auc",
                                                                                     "top_decile_capture")) -> Figure:
    """Grouped bars: model vs baselines on the same test rows."""
    metrics = tuple(m for m in metrics if m in comparison.columns)
    fig, ax = _figure(7, 4.5)
    names = comparison.index.tolist()
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(names))
    for k, metric in enumerate(metrics):
        values = comparison[metric].to_numpy(dtype=float)
        bars = ax.bar(x + k * width - 0.4 + width / 2, np.nan_to_num(values), width, label=metric)
        ax.bar_label(bars, labels=[f"{v:.2f}" if np.isfinite(v) else "n/a" for v in values], fontsize=7)
    ax.set_xticks(x, names, rotation=15, fontsize=8)
    ax.set(ylabel="metric value", ylim=(0, 1.08), title="Model vs baselines (same test rows)")
    ax.legend(fontsize=8)
    return fig
