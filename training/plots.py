"""Evaluation figures. Each function returns a ``matplotlib.figure.Figure`` built without pyplot
(no global state, no GUI backend: saving uses Agg); callers save them with ``fig.savefig(path)``.

``data`` names the rows a figure shows (slice, row count, dates, e.g. "test slice, 13,959 snapshots as of
2026-01-01 to 2026-04-01" or "out-of-fold, 9,237 rows (5 folds)"): the title's second line. Legends that
would sit on the curves go below the plot.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from training.calibration import reliability_curve
from training.evaluation import top_k_sums
from training.thresholds import capacity_level, no_cut_off_text

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]  # name -> (y, score)
CATEGORICAL_GREY = "dimgrey"
MISSING_GREY = "lightgrey"
METRIC_NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC (average precision)",
                "top_decile_capture": "top-10% capture (share of conversions)"}


def _figure(width: float = 6.0, height: float = 4.5) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _title(ax: object, what: str, data: str) -> None:
    """What the figure shows, and on which rows (second line)."""
    ax.set_title(f"{what}\n{data}" if data else what, fontsize=10)


def _legend_below(ax: object, handles: list | None = None, ncol: int = 2, fontsize: float = 8,
                  markerscale: float = 1.0) -> None:
    """The legend at the foot of the figure, under the axes (constrained layout makes room), where it
    covers no data."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    ax.figure.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=ncol,
                     fontsize=fontsize, markerscale=markerscale, frameon=False)


def model_line(k: int) -> dict[str, float]:
    """Line width and drawing order of the ``k``-th scorer of a figure, the model first: the model's line
    is the thick one, drawn under its peers' thin ones, so a peer that scores as the model does runs
    inside it and both stay visible (drawn after the model at the same width, Cox hid it)."""
    return {"linewidth": 3.0, "zorder": 2.0} if k == 0 else {"linewidth": 1.2, "zorder": 2.5}


def roc_figure(curves: Curves, data: str = "test slice") -> Figure:
    """ROC curves of the model (the first of ``curves``, drawn thick, its
    peers thin over it) and baselines on the
    same rows."""
    fig, ax = _figure()
    for k, (name, (y, s)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})", **model_line(k))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)")
    _title(ax, "ROC curve", data)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def pr_figure(curves: Curves, data: str = "test slice") -> Figure:
    """Precision-recall curves (legend: average precision, the logged ``pr_auc``; the model, the first of
    ``curves``, drawn thick, its peers thin over it); the dotted line is the base rate.

    Each curve is the step function average precision sums: a cut-off's precision held down to the next
    cut-off's recall, so the area under the drawn curve is the legend's PR AUC. Below the highest cut-off's
    recall it keeps that cut-off's precision: sklearn's end point (recall 0, precision 1) is no cut-off's,
    and drawn it made a line up to a precision of 1 that the scores never reach."""
    fig, ax = _figure(6.0, 5.2)
    base = None
    for k, (name, (y, s)) in enumerate(curves.items()):
        prec, rec, _ = precision_recall_curve(y, s)
        prec = np.append(prec[:-1], prec[-2]) if len(prec) > 1 else prec
        ax.plot(rec, prec, drawstyle="steps-post", label=f"{name} (PR AUC {average_precision_score(y, s):.3f})",
                **model_line(k))
        base = float(np.mean(y))
    if base is not None:
        ax.axhline(base, color="grey", linestyle=":", linewidth=1, label=f"base rate {base:.3f}")
    ax.set(xlabel="recall (share of conversions)", ylabel="precision", ylim=(0, 1.02))
    _title(ax, "Precision-recall", data)
    _legend_below(ax, ncol=1)
    return fig


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of a rate of ``k`` conversions in ``n`` rows (sound at 0 conversions)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def reliability_figure(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, binning: str = "equal_mass", title: str | None = None,
    log_span: float = 10.0, data: str = "test slice",
) -> Figure:
    """Observed conversion rate vs mean predicted probability per bin, zoomed on the bins.

    Marker area grows with the rows in a bin (no count labels); the title gives the rows per bin (their
    range when tied predictions make equal-mass bins unequal; the legend then says what marker area
    shows); the whiskers are each bin's 95% Wilson interval of the observed rate, and the title counts the
    conversions. The star is calibration in the large: the mean prediction vs the observed rate over all rows; both axes hold every whisker (but a log axis's
    bottom cuts the whiskers of bins without conversions, whose intervals start at 0).
    Axes turn logarithmic when the bins' predictions span ``log_span`` times or more (rare conversions
    crowd a linear plot's origin); a bin without conversions then sits on the bottom edge as a hollow
    triangle.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    mean_p, rate, counts = reliability_curve(y, p, n_bins, binning)
    overall_p, overall_y = float(p.mean()), float(y.mean())
    fig, ax = _figure(6.0, 5.4)
    positive = mean_p[mean_p > 0]
    log = positive.size > 1 and positive.max() / positive.min() >= log_span
    low, high = wilson_interval(np.round(rate * counts), counts)
    shown = np.concatenate([mean_p, rate, [overall_p, overall_y]])
    hi, whisker_top = float(shown.max(initial=0.0)), float(high.max(initial=0.0))
    if log:  # the whiskers in view, not cut off: tops, and the bottoms of bins with conversions
        lo = min(float(shown[shown > 0].min()) / 1.6, float(low[rate > 0].min(initial=np.inf)) / 1.2)
        hi = max(hi * 1.3, whisker_top * 1.05)
        ax.set(xscale="log", yscale="log")
        subs = (1.0, 2.0, 5.0) if hi / lo < 300 else (1.0,)  # wider spans: powers of ten only (no overlap)
        for axis in (ax.xaxis, ax.yaxis):  # plain decimals at 1-2-5 steps instead of 2x10^-3, 3x10^-3 ...
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    else:
        lo, hi = 0.0, max(hi * 1.08 + 1e-4, whisker_top * 1.02)
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    size = 25 + 100 * counts / counts.max(initial=1.0)
    empty = log & (rate <= 0)
    ax.plot(mean_p[~empty], rate[~empty], color="tab:blue", linewidth=1, alpha=0.6)
    # tied predictions share a bin: equal-mass bins can then differ in size (Olist: 4,127 to 21,186 rows)
    even = binning == "equal_mass" and len(counts) > 0 and counts.max() <= 1.5 * counts.min()
    ax.scatter(mean_p[~empty], rate[~empty], s=size[~empty], color="tab:blue", zorder=3,
               label="bins" if even else "bins (marker area ~ rows)")
    at = np.where(empty, lo, rate)
    ax.errorbar(mean_p, at, yerr=[at - np.maximum(low, lo), np.maximum(high - at, 0)], fmt="none",
                ecolor="tab:blue", elinewidth=1, capsize=2, alpha=0.8, zorder=2,
                label="95% interval of the observed rate (Wilson)")
    if empty.any():
        ax.scatter(mean_p[empty], np.full(int(empty.sum()), lo), s=size[empty], marker="v", facecolors="none",
                   edgecolors="tab:blue", clip_on=False, zorder=3, label="bin without conversions")
    ratio = overall_p / overall_y if overall_y > 0 else float("nan")
    ax.scatter([overall_p], [overall_y], marker="*", s=180, color="tab:red", zorder=4,
               label=f"all rows: predicted {overall_p:.4f}, observed {overall_y:.4f} (ratio {ratio:.2f})")
    kind = binning.replace("_", "-")
    rows = (f", ~{int(np.median(counts)):,} rows each" if even
            else f" of {int(counts.min()):,} to {int(counts.max()):,} rows" if binning == "equal_mass" and len(counts)
            else "")
    ax.set(xlabel="mean predicted probability" + (" (log scale)" if log else ""),
           ylabel="observed conversion rate" + (" (log scale)" if log else ""), xlim=(lo, hi), ylim=(lo, hi))
    _title(ax, title or f"Reliability: {len(counts)} {kind} bins{rows}, {int(y.sum()):,} conversions", data)
    _legend_below(ax, ncol=1)  # a model that under-predicts puts its bins in the upper left corner
    return fig


def lift_gain_figure(curves: Curves, data: str = "test slice") -> Figure:
    """Share of conversions captured vs share of leads contacted, best-scored first (the model: the first
    of ``curves``, drawn thick, its peers thin over it)."""
    fig, ax = _figure()
    for k, (name, (y, s)) in enumerate(curves.items()):
        y = np.asarray(y, dtype=float)
        gain = top_k_sums(y, s) / max(y.sum(), 1)  # tied scores: their conversions spread evenly
        share = np.linspace(0, 1, len(gain))
        top = gain[max(1, int(round(0.1 * len(y))))]
        ax.plot(share, gain, label=f"{name} (top 10%: {top:.0%})", **model_line(k))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
    ax.axvline(0.1, color="grey", linewidth=0.5)
    ax.set(xlabel="share of leads contacted (best first)", ylabel="share of conversions captured")
    _title(ax, "Cumulative gain", data)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _score_axis_end(score: np.ndarray, cutoff: float | None = None) -> int:
    """Right edge of a 0-100 score axis: just past the highest score (or cut-off), at least 5."""
    top = max(float(np.nanmax(score, initial=0.0)), float(cutoff or 0))
    return int(min(100, max(5, np.ceil(top * 1.05) + 1)))


def score_distribution_figure(score: np.ndarray, y: np.ndarray, cutoff: int | None = None,
                              max_bins: int = 40, horizon: int | None = None, data: str = "test slice",
                              no_cutoff: str | None = None) -> Figure:
    """Histogram of the 0-100 score for converters and non-converters (densities: each group's share per
    score point, so the two compare whatever their sizes), on the scores' range:
    0 up to just past the highest score, integer-aligned bins (at most ``max_bins``). ``horizon``: the
    label's days (None: a flat export's label, without one). ``no_cutoff``: without a ``cutoff``, why
    none is drawn (e.g. no cut-off fits the sales capacity), said in the title, where it covers no bar."""
    score = np.asarray(score, dtype=float)
    y = np.asarray(y, dtype=float)
    fig, ax = _figure()
    end = _score_axis_end(score, cutoff)
    width = max(1, int(np.ceil(end / max_bins)))
    bins = np.unique(np.minimum(np.arange(0, end + width, width), 100))  # the last bin stops at the top score, 100
    ax.hist(score[y == 0], bins=bins, alpha=0.6, density=True, label=f"did not convert (n={int((y == 0).sum()):,})")
    ax.hist(score[y == 1], bins=bins, alpha=0.6, density=True, label=f"converted (n={int((y == 1).sum()):,})")
    if cutoff is not None:
        ax.axvline(cutoff, color="black", linestyle="--", label=f"MQL cut-off {cutoff}")
    target = f"P(convert within {horizon} days)" if horizon else "P(convert)"
    ax.set(xlabel=f"score (100 x {target}; bins of {width})", ylabel="share of each group per score point",
           xlim=(0, float(bins[-1])))
    _title(ax, "Score distribution", "\n".join(part for part in (data, no_cutoff if cutoff is None else None) if part))
    _legend_below(ax, ncol=3)
    return fig


def threshold_figure(table: pd.DataFrame, recommended: Mapping[str, float] | None = None,
                     data: str = "test slice", capacity: tuple[float, str] | None = None) -> Figure:
    """Leads per week (or share flagged) and capture/precision by cut-off, up to the highest cut-off
    that still flags a lead. Both y axes start at 0 (one baseline); a share flagged shares the right
    axis's 0-1 range. The recommended cut-off's label (its volume and capture) sits inside the plot, on the
    roomier side; the capacity that chose it is a level of the volume axis. Without a recommended cut-off,
    ``capacity`` (value and unit, :func:`training.thresholds.capacity_of`) is drawn all the same, and the
    title says that no cut-off fits it and what the highest cut-off flags."""
    fig, ax = _figure(7, 5.0)
    per_week = table["leads_per_week"].notna().all()
    volume = table["leads_per_week"] if per_week else table["share_flagged"]
    # scores are whole points: between cut-offs c and c + 1 a cut-off flags what c + 1 flags, so with every
    # whole cut-off in the table the curves are steps, not slopes suggesting values no cut-off gives
    steps = "steps-pre" if len(table) > 1 and bool(np.all(np.diff(table["cutoff"].to_numpy()) == 1)) else "default"
    ax.plot(table["cutoff"], volume, color="tab:blue", label="leads per week" if per_week else "share flagged",
            drawstyle=steps)
    flagging = table.loc[table["leads_flagged"] > 0, "cutoff"]
    last = float(flagging.max()) if len(flagging) else 100.0
    end = _score_axis_end(np.array([last]), None if recommended is None else recommended["cutoff"])
    ax.set(xlabel="score cut-off (flag leads scoring at or above it)",
           ylabel="leads per week" if per_week else "share of leads flagged", xlim=(0, end),
           ylim=(0, float(volume.max()) * 1.05 or 1.0) if per_week else (0, 1.02))
    _title(ax, "MQL threshold: volume vs capture", data)
    ax2 = ax.twinx()
    ax2.plot(table["cutoff"], table["capture"], color="tab:green", label="capture (recall)", drawstyle=steps)
    ax2.plot(table["cutoff"], table["precision"], color="tab:orange", label="precision", drawstyle=steps)
    ax2.set(ylabel="capture / precision", ylim=(0, 1.02))
    if recommended is None and capacity is not None:
        recommended_or_capacity = {"capacity": capacity[0], "capacity_unit": capacity[1]}
    else:
        recommended_or_capacity = recommended
    capacity_line = _capacity_line(ax, table, recommended_or_capacity, per_week)
    if recommended is None and capacity is not None:
        # in the title: a box in the plot hid the precision curve, which reaches 1 where the note sat
        sentence = no_cut_off_text(table, *capacity)
        _title(ax, "MQL threshold: volume vs capture", "\n".join(
            part for part in (data, sentence.replace(": ", ":\n", 1)) if part))
    if recommended is not None:
        ax.axvline(recommended["cutoff"], color="black", linestyle="--")
        right_half = recommended["cutoff"] > end / 2
        volume_text = (f"{recommended['leads_per_week']:,.0f} leads per week" if per_week
                       else f"{recommended['share_flagged']:.1%} of leads flagged")
        ax.annotate(f"cut-off {int(recommended['cutoff'])}: {volume_text}, capture {recommended['capture']:.0%}",
                    (recommended["cutoff"], 0.97), xycoords=("data", "axes fraction"),
                    xytext=(-5 if right_half else 5, 0), textcoords="offset points", fontsize=8,
                    ha="right" if right_half else "left", va="top")
    _legend_below(ax, ax.get_lines()[:1] + ([capacity_line] if capacity_line is not None else []) + ax2.get_lines(),
                  ncol=2)
    return fig


def _capacity_line(ax: object, table: pd.DataFrame, recommended: Mapping[str, float] | None,
                   per_week: bool) -> object | None:
    """The sales capacity that chose the cut-off, as a level of the volume axis (a share of the leads on a
    leads-per-week axis: that share of all the leads per week); None without one."""
    if recommended is None or "capacity" not in recommended or not np.isfinite(recommended["capacity"]):
        return None
    level, words = capacity_level(table, float(recommended["capacity"]), str(recommended.get("capacity_unit")))
    label = f"capacity: {words}"
    if per_week and level * 1.05 > ax.get_ylim()[1]:  # a capacity above every volume stays in view
        ax.set_ylim(0, level * 1.05)
    return ax.axhline(level, color="dimgrey", linestyle="-.", linewidth=1, label=label)


def shap_summary_figure(
    contributions: np.ndarray, features: np.ndarray, feature_names: list[str], max_display: int = 15,
    categorical: Sequence[bool] | None = None, data: str = "sample of the test slice",
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
    fig, ax = _figure(8.5, 0.35 * len(order) + 2.0)
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
    ax.set(xlabel="SHAP value (contribution to log-odds)")
    # centred on the figure, not on the plot that long feature names push right (it ran off the edge)
    fig.suptitle(f"What drives the score\n{data}" if data else "What drives the score", fontsize=10)
    if labels:
        _legend_below(ax, ncol=2, fontsize=7, markerscale=3)
    if sc is not None:
        bar = fig.colorbar(sc, ax=ax, pad=0.01)
        bar.set_label("feature value (rank within the sample)")
    return fig


def baseline_comparison_figure(comparison: pd.DataFrame, metrics: tuple[str, ...] = ("roc_auc", "pr_auc",
                                                                                     "top_decile_capture"),
                               data: str = "test slice") -> Figure:
    """Grouped bars: model vs baselines on the same rows, labelled with the logged figures (3 decimals,
    as in the model card); ROC AUC with its bootstrap interval (``roc_auc_lo`` / ``roc_auc_hi``) when
    the comparison holds one. Scorer names wrap instead of running into each other."""
    metrics = tuple(m for m in metrics if m in comparison.columns)
    fig, ax = _figure(8, 5.0)
    names = [textwrap.fill(str(n), 18) for n in comparison.index]
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(names))
    for k, metric in enumerate(metrics):
        values = comparison[metric].to_numpy(dtype=float)
        centres = x + k * width - 0.4 + width / 2
        ax.bar(centres, np.nan_to_num(values), width, label=METRIC_NAMES.get(metric, metric))
        tops = np.nan_to_num(values)
        if metric == "roc_auc" and {"roc_auc_lo", "roc_auc_hi"} <= set(comparison.columns):
            lo, hi = (comparison[c].to_numpy(dtype=float) for c in ("roc_auc_lo", "roc_auc_hi"))
            known = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(values)
            if known.any():
                ax.errorbar(centres[known], values[known], yerr=[values[known] - lo[known], hi[known] - values[known]],
                            fmt="none", ecolor="black", elinewidth=1, capsize=3, label="ROC AUC 95% interval (bootstrap)")
                tops = np.where(known, np.maximum(tops, hi), tops)  # the label above the interval, not struck by it
        for centre, top, v in zip(centres, tops, values, strict=True):
            ax.annotate(f"{v:.3f}" if np.isfinite(v) else "n/a", (centre, top), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="ROC AUC of a random order (0.5)")
    ax.set_xticks(x, names, fontsize=8)
    ax.set(ylabel="metric value (higher is better)", ylim=(0, 1.08))
    _title(ax, "Model vs baselines, same rows", data)
    _legend_below(ax, ncol=2)
    return fig
