"""Figures of a time-to-close run (matplotlib ``Figure`` objects built without pyplot, saved by callers)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from training.plots import model_line, wilson_interval


def _figure(width: float = 6.5, height: float = 4.5, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _legend_below(fig: Figure, handles: list, ncol: int = 1, fontsize: float = 7) -> None:
    """One legend at the foot of the figure, under the axes (constrained layout makes room): it covers no
    curve, whichever corner the curves pass through."""
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=ncol, fontsize=fontsize,
               frameon=False)


def _heading(what: str, data: str) -> str:
    """A figure title and, on its second line, the rows it shows."""
    return f"{what}\n{data}" if data else what


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


def sample_curve_label(lead_id: object, as_of: pd.Timestamp, horizon: int, p_close: float, median_days: float,
                       horizon_days: int) -> str:
    """A sample curve's legend: the lead and the snapshot drawn (a lead has one per as-of date in the test
    slice), P(close within ``horizon`` days) in percent and the median days (or beyond the model's horizon)."""
    p = "<0.1%" if p_close < 0.001 else f"{p_close:.1%}"
    median = f"median beyond {horizon_days} d" if np.isnan(median_days) else f"median {round(median_days)} d"
    return f"lead {lead_id} as of {pd.Timestamp(as_of):%Y-%m-%d}: P(close within {horizon} d) {p}, {median}"


def survival_curves_figure(
    days: np.ndarray,
    curves: np.ndarray,
    labels: list[str],
    reference: np.ndarray | None = None,
    horizons: tuple[int, ...] = (),
    title: str = "Predicted survival (still open) for sample leads",
    data: str = "",
) -> Figure:
    """One curve per sample lead (P(still open at day t)); the dashed line is the Kaplan-Meier curve.

    The y axis is zoomed on the curves (most leads stay open, so they sit just below 1); its lower
    end is stated in the axis label. The legend sits under the plot.
    """
    fig, (ax,) = _figure(6.5, 4.5 + 0.17 * (len(labels) + (reference is not None)))
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
        # at the foot of the line: the curves all start at the top (1.0), where the marks were struck through
        ax.annotate(f"{h} d", (h, 0.0), xycoords=("data", "axes fraction"), xytext=(2, 3),
                    textcoords="offset points", fontsize=7, color="grey")
    if bottom < 0.5:
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=0.8)
    ylabel = "P(still open)" if bottom == 0 else f"P(still open) (axis from {bottom:.3g})"
    ax.set(xlabel="days after the scoring date", ylabel=ylabel, ylim=(bottom, 1.0 + pad / 2),
           xlim=(0, float(days.max())))
    ax.set_title(_heading(title, data), fontsize=10)
    _legend_below(fig, [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")])
    return fig


def _log_axes(ax: object, lo: float, hi: float) -> None:
    """Both axes logarithmic over [lo, hi], ticks as plain decimals: at 1-2-5 steps over less than 1.5
    decades, else powers of ten only (a 4-inch panel has no room for '0.0005' beside '0.001')."""
    ax.set(xscale="log", yscale="log")
    subs = (1.0, 2.0, 5.0) if hi / lo < 30 else (1.0,)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def calibration_figure(calibration: pd.DataFrame, data: str = "test slice",
                       title: str = "P(close within h days): predicted vs observed", log_span: float = 10.0) -> Figure:
    """Per horizon: mean predicted vs Kaplan-Meier-corrected observed rate per bin, per scorer.

    ``calibration`` holds columns scorer, horizon_days, mean_predicted, observed, n (and closed_within:
    the bin's closes, counted in the panel's title). Whiskers: a 95% Wilson interval of the observed rate
    read as a proportion of the bin's rows (approximate: it ignores censoring before h), which the axes hold
    (a log axis's bottom cuts those of bins without a close, whose intervals start at 0). Axes turn
    logarithmic when the bins' predictions span ``log_span`` times or more (most bins crowd the origin of
    a linear plot); a bin without a close then sits on the bottom edge as a hollow triangle.
    """
    horizons = sorted(calibration["horizon_days"].unique())
    fig, axes = _figure(4.3 * max(len(horizons), 1), 5.2, max(len(horizons), 1))
    handles: dict[str, object] = {}  # legend label -> its first artist
    for ax, h in zip(axes, horizons, strict=False):
        part = calibration[calibration["horizon_days"] == h]
        predicted = part["mean_predicted"].to_numpy(dtype=float)
        positive = predicted[predicted > 0]
        log = positive.size > 1 and positive.max() / positive.min() >= log_span
        shown = part[["mean_predicted", "observed"]].to_numpy(dtype=float).ravel()
        observed, rows = part["observed"].to_numpy(dtype=float), part["n"].to_numpy(dtype=float)
        whisker_bottoms, whisker_tops = wilson_interval(observed * rows, rows)
        top, whisker_top = float(np.nanmax(shown, initial=0.0)), float(np.nanmax(whisker_tops, initial=0.0))
        if log:  # the whiskers in view, not cut off: tops, and the bottoms of bins with closes
            lo = min(float(shown[shown > 0].min()) / 1.6, float(whisker_bottoms[observed > 0].min(initial=np.inf)) / 1.2)
            hi = max(top * 1.3, whisker_top * 1.05)
            _log_axes(ax, lo, hi)
        else:
            lo, hi = 0.0, max(top * 1.05 + 1e-3, whisker_top * 1.02)
        handles.setdefault("perfect calibration", ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1,
                                                          label="perfect calibration")[0])
        for k, (scorer, rows) in enumerate(part.groupby("scorer", sort=False)):
            colour = f"C{k}"
            x, obs, n = (rows[c].to_numpy(dtype=float) for c in ("mean_predicted", "observed", "n"))
            empty = log & (obs <= 0)
            ax.plot(x[~empty], obs[~empty], marker="o", markersize=3.5, color=colour, label=str(scorer), **model_line(k))
            if empty.any():
                ax.scatter(x[empty], np.full(int(empty.sum()), lo), marker="v", facecolors="none", edgecolors=colour,
                           clip_on=False, zorder=3, label=f"{scorer}: bin without a close")
                handles.setdefault(f"{scorer}: bin without a close", ax.collections[-1])
            low, high = wilson_interval(obs * n, n)
            at = np.where(empty, lo, obs)
            ax.errorbar(x, at, yerr=[at - np.maximum(low, lo), np.maximum(high - at, 0)], fmt="none", ecolor=colour,
                        elinewidth=0.8, capsize=2, alpha=0.6)
        first = part[part["scorer"] == part["scorer"].iloc[0]]
        closes = f", {int(first['closed_within'].sum()):,} closes" if "closed_within" in part.columns else ""
        scale = " (log scale)" if log else ""
        ax.set(xlabel="mean predicted" + scale, ylabel="observed (Kaplan-Meier)" + scale, xlim=(lo, hi), ylim=(lo, hi))
        ax.set_title(f"{h} days\n{len(first)} bins of ~{int(first['n'].median()):,} snapshots{closes}", fontsize=9)
        handles.update({ln.get_label(): ln for ln in ax.get_lines()
                        if not ln.get_label().startswith("_") and ln.get_label() not in handles})
    # one legend under the panels (the scorers are the same in each): in a corner it hid the bins of a model
    # that under-predicts
    order = sorted(handles, key=lambda label: (label != "perfect calibration", ":" in label))
    _legend_below(fig, [handles[label] for label in order], ncol=3, fontsize=8)
    fig.suptitle(_heading(title, data) + "\nwhiskers: 95% interval of the observed rate (Wilson, censoring ignored)",
                 fontsize=10)
    return fig


def concordance_figure(comparison: pd.DataFrame, data: str = "test snapshots",
                       title: str = "Time-to-close model vs peers") -> Figure:
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
    left.set(ylabel="concordance (higher is better; 0.5 = random order)", ylim=(0, 1.05), title="C-index")
    # under the panels: in a corner of the panel it sat on the bars of scorers that rank well (C near 0.9)
    _legend_below(fig, list(left.containers), ncol=2, fontsize=8)
    right_title = "Integrated Brier score (IPCW)"
    if "ibs" in comparison.columns:
        values = comparison["ibs"].astype(float).to_numpy()
        far = off_scale(values)
        near = values[~far & np.isfinite(values)]
        top = float(near.max(initial=0.0)) * 1.3 or 1.0
        heights = np.where(far, top * 0.92, np.nan_to_num(values))
        # not the orange of Uno's C in the legend under both panels
        bars = right.bar(x, heights, color=["lightgrey" if f else "tab:purple" for f in far])
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
    fig.suptitle(_heading(title, data), fontsize=11)
    return fig


def brier_curve_figure(days: np.ndarray, curves: Mapping[str, np.ndarray], data: str = "test snapshots",
                       title: str = "IPCW Brier score over time") -> Figure:
    """Brier score at each evaluation day, per scorer (the model: the first of ``curves``, drawn thick, its
    peers thin over it).

    Scorers far worse than the others (:func:`off_scale` on each curve's maximum) go to a panel of
    their own on the right, where a grey band shows the left panel's range; the left panel is zoomed
    on the rest. Each scorer keeps its colour in both panels.
    """
    names = list(curves)
    colours = {name: f"C{k}" for k, name in enumerate(names)}
    peaks = np.array([np.nanmax(np.asarray(curves[n], dtype=float), initial=np.nan) for n in names])
    far = off_scale(peaks)
    fig, axes = _figure(11.0 if far.any() else 6.5, 5.0, 2 if far.any() else 1)
    ax = axes[0]
    for k, (name, f) in enumerate(zip(names, far, strict=True)):
        if not f:
            ax.plot(days, curves[name], label=name, color=colours[name], **model_line(k))
    ax.set(xlabel="days after the scoring date", ylabel="Brier score (lower is better)")
    if not far.any():
        ax.set_title(_heading(title, data), fontsize=10)
        _legend_below(fig, ax.get_lines(), ncol=min(len(names), 3), fontsize=8)
        return fig
    near_top = float(np.nanmax(peaks[~far], initial=0.0))
    ax.set(ylim=(0, near_top * 1.15 or 1.0), title="model and close peers (zoomed)")
    side = axes[1]
    band = side.axhspan(0, near_top * 1.15, color="grey", alpha=0.2, label="range of the left panel")
    for k, (name, f) in enumerate(zip(names, far, strict=True)):
        if f:
            side.plot(days, curves[name], label=name, color=colours[name], **model_line(k))
    side.set(xlabel="days after the scoring date", ylabel="Brier score (lower is better)", ylim=(0, None),
             title="off-scale peer (own axis)")
    _legend_below(fig, [*ax.get_lines(), *side.get_lines(), band], ncol=min(len(names) + 1, 3), fontsize=8)
    fig.suptitle(_heading(title, data), fontsize=11)
    return fig
