"""Evaluation figures. Each function returns a ``matplotlib.figure.Figure`` built without pyplot
(no global state, no GUI backend: saving uses Agg); callers save them with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from training.calibration import reliability_curve
from training.evaluation import top_k_sums

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]  # name -> (y, score)
CATEGORICAL_GREY = "dimgrey"
MISSING_GREY = "lightgrey"


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
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, binning: str = "equal_mass", title: str | None = None,
    log_span: float = 10.0,
) -> Figure:
    """Observed conversion rate vs mean predicted probability per bin, zoomed on the bins.

    Marker area grows with the rows in a bin (no count labels). The star is calibration in the large:
    the mean prediction vs the observed rate over all rows. Axes turn logarithmic when the bins'
    predictions span ``log_span`` times or more (rare conversions crowd a linear plot's origin); a bin
    without conversions then sits on the bottom edge as a hollow triangle.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    mean_p, rate, counts = reliability_curve(y, p, n_bins, binning)
    overall_p, overall_y = float(p.mean()), float(y.mean())
    fig, ax = _figure()
    positive = mean_p[mean_p > 0]
    log = positive.size > 1 and positive.max() / positive.min() >= log_span
    shown = np.concatenate([mean_p, rate, [overall_p, overall_y]])
    hi = float(shown.max(initial=0.0))
    if log:
        lo = float(shown[shown > 0].min()) / 1.6
        hi *= 1.3
        ax.set(xscale="log", yscale="log")
        subs = (1.0, 2.0, 5.0) if hi / lo < 300 else (1.0,)  # wider spans: powers of ten only (no overlap)
        for axis in (ax.xaxis, ax.yaxis):  # plain decimals at 1-2-5 steps instead of 2x10^-3, 3x10^-3 ...
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    else:
        lo, hi = 0.0, hi * 1.08 + 1e-4
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    size = 25 + 100 * counts / counts.max(initial=1.0)
    empty = log & (rate <= 0)
    ax.plot(mean_p[~empty], rate[~empty], color="tab:blue", linewidth=1, alpha=0.6)
    ax.scatter(mean_p[~empty], rate[~empty], s=size[~empty], color="tab:blue", zorder=3,
               label="bins" if binning == "equal_mass" else "bins (marker area ~ rows)")
    if empty.any():
        ax.scatter(mean_p[empty], np.full(int(empty.sum()), lo), s=size[empty], marker="v", facecolors="none",
                   edgecolors="tab:blue", clip_on=False, zorder=3, label="bin without conversions")
    ratio = overall_p / overall_y if overall_y > 0 else float("nan")
    ax.scatter([overall_p], [overall_y], marker="*", s=180, color="tab:red", zorder=4,
               label=f"all rows: predicted {overall_p:.4f}, observed {overall_y:.4f} (ratio {ratio:.2f})")
    kind = binning.replace("_", "-")
    rows = f", ~{int(np.median(counts)):,} rows each" if binning == "equal_mass" and len(counts) else ""
    ax.set(xlabel="mean predicted probability" + (" (log scale)" if log else ""),
           ylabel="observed conversion rate" + (" (log scale)" if log else ""),
           title=title or f"Reliability ({len(counts)} {kind} bins{rows})", xlim=(lo, hi), ylim=(lo, hi))
    ax.legend(loc="upper left", fontsize=8)
    return fig


def lift_gain_figure(curves: Curves, title: str = "Cumulative gain (test)") -> Figure:
    """Share of conversions captured vs share of leads contacted, best-scored first."""
    fig, ax = _figure()
    for name, (y, s) in curves.items():
        y = np.asarray(y, dtype=float)
        gain = top_k_sums(y, s) / max(y.sum(), 1)  # tied scores: their conversions spread evenly
        share = np.linspace(0, 1, len(gain))
        top = gain[max(1, int(round(0.1 * len(y))))]
        ax.plot(share, gain, label=f"{name} (top 10%: {top:.0%})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
    ax.axvline(0.1, color="grey", linewidth=0.5)
    ax.set(xlabel="share of leads contacted (best first)", ylabel="share of conversions captured", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _score_axis_end(score: np.ndarray, cutoff: float | None = None) -> int:
    """Right edge of a 0-100 score axis: just past the highest score (or cut-off), at least 5."""
    top = max(float(np.nanmax(score, initial=0.0)), float(cutoff or 0))
    return int(min(100, max(5, np.ceil(top * 1.05) + 1)))


def score_distribution_figure(score: np.ndarray, y: np.ndarray, cutoff: int | None = None,
                              max_bins: int = 40) -> Figure:
    """Histogram of the 0-100 score for converters and non-converters (densities), on the scores' range:
    0 up to just past the highest score, integer-aligned bins (at most ``max_bins``)."""
    score = np.asarray(score, dtype=float)
    y = np.asarray(y, dtype=float)
    fig, ax = _figure()
    end = _score_axis_end(score, cutoff)
    width = max(1, int(np.ceil(end / max_bins)))
    bins = np.arange(0, end + width, width)
    ax.hist(score[y == 0], bins=bins, alpha=0.6, density=True, label=f"did not convert (n={int((y == 0).sum()):,})")
    ax.hist(score[y == 1], bins=bins, alpha=0.6, density=True, label=f"converted (n={int((y == 1).sum()):,})")
    if cutoff is not None:
        ax.axvline(cutoff, color="black", linestyle="--", label=f"MQL cut-off {cutoff}")
    ax.set(xlabel=f"score (100 x P(convert within H); bins of {width})", ylabel="density",
           title="Score distribution (test)", xlim=(0, float(bins[-1])))
    ax.legend(fontsize=8)
    return fig


def threshold_figure(table: pd.DataFrame, recommended: Mapping[str, float] | None = None) -> Figure:
    """Leads per week (or share flagged) and capture/precision by cut-off, up to the highest cut-off
    that still flags a lead."""
    fig, ax = _figure(7, 4.5)
    per_week = table["leads_per_week"].notna().all()
    volume = table["leads_per_week"] if per_week else table["share_flagged"]
    ax.plot(table["cutoff"], volume, color="tab:blue", label="leads per week" if per_week else "share flagged")
    flagging = table.loc[table["leads_flagged"] > 0, "cutoff"]
    last = float(flagging.max()) if len(flagging) else 100.0
    end = _score_axis_end(np.array([last]), None if recommended is None else recommended["cutoff"])
    ax.set(xlabel="score cut-off (flag leads scoring at or above it)",
           ylabel="leads per week" if per_week else "share of leads flagged",
           title="MQL threshold: volume vs capture", xlim=(0, end))
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
    contributions: np.ndarray, features: np.ndarray, feature_names: list[str], max_display: int = 15,
    categorical: Sequence[bool] | None = None,
) -> Figure:
    """Beeswarm of exact TreeSHAP values (LightGBM ``pred_contrib``; bias column dropped if present).

    Colour = the feature's value rank within the sample (blue low, red high). Categorical features
    (``categorical``: one flag per feature) are grey, their codes have no order; missing values are
    light grey.
    """
    contributions = np.asarray(contributions, dtype=float)
    if contributions.shape[1] == len(feature_names) + 1:
        contributions = contributions[:, :-1]
    features = np.asarray(features, dtype=float)
    is_cat = np.zeros(len(feature_names), dtype=bool) if categorical is None else np.asarray(categorical, dtype=bool)
    if len(is_cat) != len(feature_names):
        raise ValueError(f"shap_summary_figure: {len(is_cat)} categorical flags for {len(feature_names)} features")
    order = np.argsort(np.abs(contributions).mean(axis=0))[::-1][:max_display]
    fig, ax = _figure(7, 0.35 * len(order) + 1.5)
    rng = np.random.default_rng(0)
    sc = None
    labels: set[str] = set()  # legend entries already drawn
    for rank, j in enumerate(order[::-1]):
        vals = contributions[:, j]
        fv = features[:, j]
        jitter = rng.normal(0, 0.08, len(vals))
        missing = np.isnan(fv)
        if missing.any():
            label = None if "missing" in labels else "missing value"
            labels.add("missing")
            ax.scatter(vals[missing], rank + jitter[missing], s=4, color=MISSING_GREY, alpha=0.6, label=label)
        if is_cat[j]:
            label = None if "categorical" in labels else "categorical feature (no value order)"
            labels.add("categorical")
            ax.scatter(vals[~missing], rank + jitter[~missing], s=4, color=CATEGORICAL_GREY, alpha=0.7, label=label)
            continue
        colour = pd.Series(fv[~missing]).rank(pct=True).to_numpy()
        sc = ax.scatter(vals[~missing], rank + jitter[~missing], s=4, c=colour, cmap="coolwarm",
                        vmin=0, vmax=1, alpha=0.7)
    ax.set_yticks(range(len(order)), [feature_names[j] for j in order[::-1]], fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="SHAP value (contribution to log-odds)", title="What drives the score (test sample)")
    if labels:
        ax.legend(loc="lower right", fontsize=7, markerscale=3)
    if sc is not None:
        bar = fig.colorbar(sc, ax=ax, pad=0.01)
        bar.set_label("feature value (rank within the sample)")
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
