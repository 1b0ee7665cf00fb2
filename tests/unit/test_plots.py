"""Evaluation figures read programmatically: axis ranges, scales, colours and labels (no pixels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from training import plots, survival_plots
from training.calibration import reliability_curve
from training.thresholds import threshold_table


def _rare(n: int = 8000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rare conversions (about 1%) that the scores under-predict by a quarter."""
    rng = np.random.default_rng(seed)
    p = np.clip(rng.lognormal(np.log(0.006), 0.9, n), 1e-4, 0.5)
    y = (rng.random(n) < np.minimum(1.33 * p, 1)).astype(float)
    return y, p


def _legend(ax):
    """The axes' legend, or the one its figure draws under the axes."""
    legend = ax.get_legend()
    return legend if legend is not None or not ax.figure.legends else ax.figure.legends[0]


def _legend_labels(ax) -> list[str]:
    legend = _legend(ax)
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_reliability_zooms_on_rare_bins_without_count_labels_and_shows_calibration_in_the_large() -> None:
    y, p = _rare()
    mean_p, rate, _ = reliability_curve(y, p, 10, "equal_mass")
    ax = plots.reliability_figure(y, p).axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # bins span > 10x: the origin is not crowded
    lo, hi = ax.get_xlim()
    top = max(mean_p.max(), rate.max())
    assert 0 < lo <= mean_p.min() and top <= hi <= 1.5 * top
    assert ax.get_ylim() == pytest.approx((lo, hi))
    assert len(ax.texts) == 0  # no per-bin count labels piled up near the origin
    ratio = p.mean() / y.mean()
    assert any(f"predicted {p.mean():.4f}, observed {y.mean():.4f} (ratio {ratio:.2f})" in t
               for t in _legend_labels(ax))
    assert ratio < 0.9  # the data really under-predict: the figure has something to show


def test_reliability_keeps_linear_axes_from_zero_when_bins_span_little() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.2, 0.9, 3000)
    y = (rng.random(3000) < p).astype(float)
    mean_p, rate, _ = reliability_curve(y, p, 10, "equal_mass")
    ax = plots.reliability_figure(y, p).axes[0]
    assert ax.get_xscale() == "linear"
    lo, hi = ax.get_xlim()
    assert lo == 0 and max(mean_p.max(), rate.max()) <= hi <= 1.1 * max(mean_p.max(), rate.max()) + 1e-3


def test_score_distribution_axis_ends_just_past_the_highest_score() -> None:
    rng = np.random.default_rng(3)
    score = rng.integers(0, 27, 2000).astype(float)
    y = (rng.random(2000) < score / 60).astype(float)
    ax = plots.score_distribution_figure(score, y, cutoff=3).axes[0]
    left, right = ax.get_xlim()
    assert left == 0 and score.max() < right <= 32
    edges = sorted({patch.get_x() for patch in ax.patches})
    assert edges[0] == 0 and len(edges) >= 20  # bins fit the range: not 2-wide bins of a 0-100 axis
    assert all(patch.get_x() + patch.get_width() <= right + 1e-9 for patch in ax.patches)
    # a cut-off above every score stays in view
    assert ax.get_xlim()[1] < plots.score_distribution_figure(score, y, cutoff=40).axes[0].get_xlim()[1]
    assert plots.score_distribution_figure(score, y, cutoff=40).axes[0].get_xlim()[1] > 40


def test_threshold_figure_axis_stops_at_the_last_cutoff_that_flags_a_lead() -> None:
    rng = np.random.default_rng(4)
    score = rng.integers(0, 27, 1500).astype(float)
    y = (rng.random(1500) < score / 50).astype(float)
    table = threshold_table(score, y, weeks=10.0)
    ax = plots.threshold_figure(table).axes[0]
    left, right = ax.get_xlim()
    assert left == 0 and score.max() <= right <= 32


def _scatter_by_row(ax) -> dict[int, list]:
    """PathCollections of a beeswarm keyed by the row (y tick position) they sit on."""
    rows: dict[int, list] = {}
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets())
        if len(offsets):
            rows.setdefault(int(round(float(np.median(offsets[:, 1])))), []).append(coll)
    return rows


def test_shap_summary_draws_categorical_features_grey_and_numeric_ones_by_value() -> None:
    rng = np.random.default_rng(5)
    n = 300
    features = np.column_stack([rng.integers(0, 5, n), rng.normal(size=n), rng.normal(size=n)]).astype(float)
    features[:20, 1] = np.nan
    contrib = np.column_stack([features[:, 0] - 2, 0.5 * np.nan_to_num(features[:, 1]), 0.1 * features[:, 2],
                               np.zeros(n)])
    names = ["industry", "employees", "visits"]
    fig = plots.shap_summary_figure(contrib, features, names, categorical=[True, False, False])
    ax = fig.axes[0]
    ticks = {t.get_text(): int(round(pos)) for t, pos in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}
    rows = _scatter_by_row(ax)
    for coll in rows[ticks["industry"]]:
        assert coll.get_array() is None  # not colour-mapped by category code
        assert tuple(coll.get_facecolors()[0][:3]) == pytest.approx(to_rgba(plots.CATEGORICAL_GREY)[:3])
    for name in ("employees", "visits"):
        assert any(coll.get_array() is not None for coll in rows[ticks[name]])
    assert "categorical feature (no value order)" in _legend_labels(ax)
    assert "missing value" in _legend_labels(ax)
    with pytest.raises(ValueError, match="2 categorical flags for 3 features"):
        plots.shap_summary_figure(contrib, features, names, categorical=[True, False])


def test_off_scale_flags_only_a_peer_far_above_the_rest() -> None:
    mask = survival_plots.off_scale(np.array([0.0122, 0.0123, 0.0129, 0.60, np.nan]))
    assert mask.tolist() == [False, False, False, True, False]
    assert not survival_plots.off_scale(np.array([0.2, 0.3, 0.7])).any()
    assert survival_plots.off_scale(np.array([0.01, 0.2, 0.3])).tolist() == [False, True, True]


COMPARISON = pd.DataFrame({"harrell_c": [0.75, 0.5, 0.74, 0.64], "uno_c": [0.71, 0.5, 0.69, 0.61],
                           "ibs": [0.0122, 0.0129, 0.0123, 0.60]},
                          index=["lightgbm hazard", "kaplan-meier", "cox ph", "naive regression"])


def test_integrated_brier_bars_zoom_on_the_close_scorers_and_label_the_off_scale_one() -> None:
    fig = survival_plots.concordance_figure(COMPARISON)
    right = fig.axes[1]
    bottom, top = right.get_ylim()
    assert bottom == 0 and 0.0129 < top < 0.05
    heights = [bar.get_height() for bar in right.patches]
    assert heights[:3] == pytest.approx([0.0122, 0.0129, 0.0123]) and heights[3] <= top
    labels = [t.get_text() for t in right.texts]
    assert "0.6000 (off scale)" in labels and "0.0122" in labels


def test_brier_curves_put_the_off_scale_peer_on_its_own_panel() -> None:
    days = np.arange(5.0, 181.0, 5.0)
    ramp = days / days.max()
    curves = {"lightgbm hazard": 0.02 * ramp, "kaplan-meier": 0.022 * ramp, "cox ph": 0.021 * ramp,
              "naive regression": 0.97 * ramp}
    fig = survival_plots.brier_curve_figure(days, curves)
    zoomed, side = fig.axes
    assert [ln.get_label() for ln in zoomed.get_lines()] == ["lightgbm hazard", "kaplan-meier", "cox ph"]
    assert 0.022 < zoomed.get_ylim()[1] < 0.05
    assert [ln.get_label() for ln in side.get_lines()] == ["naive regression"]
    assert side.get_ylim()[1] >= 0.97
    near = {k: v for k, v in curves.items() if k != "naive regression"}
    assert len(survival_plots.brier_curve_figure(days, near).axes) == 1


def test_survival_curves_zoom_on_the_range_the_curves_use() -> None:
    days = np.arange(0.0, 181.0)
    curves = np.vstack([1 - rate * days for rate in (1e-4, 2e-4)])
    reference = 1 - 1.5e-4 * days
    ax = survival_plots.survival_curves_figure(days, curves, ["a", "b"], reference, (30, 60, 90)).axes[0]
    bottom, top = ax.get_ylim()
    low = curves.min()
    assert 0.9 < bottom < low and 1.0 <= top < 1.01
    assert f"{bottom:.3g}" in ax.get_ylabel()  # a zoomed axis says where it starts


def test_gain_curve_spreads_tied_scores_as_the_top_decile_capture_does() -> None:
    from training.evaluation import top_fraction_lift_capture

    y = np.array([1.0] * 3 + [0.0] * 17 + [1.0] * 2 + [0.0] * 78)
    score = np.array([9.0] * 20 + [1.0] * 80)
    capture = top_fraction_lift_capture(y, score, 0.1)[1]
    for order in (np.argsort(-y, kind="stable"), np.argsort(y, kind="stable")):
        labels = _legend_labels(plots.lift_gain_figure({"points": (y[order], score[order])}).axes[0])
        assert f"points (top 10%: {capture:.0%})" in labels


def test_forecast_figure_says_what_its_axes_interval_and_months_are() -> None:
    """The revenue forecast plot an analyst hands on: the legend names the interval's level and method, the
    axes say what they show (revenue per calendar month, in the deal amount's unit) and revenue starts at 0
    (the axis started near the lowest interval bound, which made a small month look like none)."""
    from training.forecast import forecast_figure, forecast_months

    months = forecast_months("2026-03-01", 3).assign(
        expected_deals=[3.0, 2.0, 1.0], expected_revenue=[300_000.0, 250_000.0, 240_000.0],
        low=[200_000.0, 150_000.0, 140_000.0], high=[400_000.0, 350_000.0, 340_000.0])
    ax = forecast_figure(months, "Revenue forecast as of 2026-03-01", interval="90% interval (analytic)").axes[0]
    assert _legend_labels(ax) == ["90% interval (analytic)", "expected revenue"]
    assert ax.get_ylabel() == "revenue per month (unit of outcomes.amount)"
    assert ax.get_xlabel() == "calendar month"
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 400_000
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2026-03", "2026-04", "2026-05"]


def _extents(fig) -> None:
    """Lay the figure out (constrained layout, text sizes) so window extents are final; no pixels drawn."""
    fig.draw_without_rendering()


def _points_inside(ax, box, xy: np.ndarray) -> int:
    """How many data points ``xy`` (n x 2, data coordinates of ``ax``) fall inside the display box."""
    shown = ax.transData.transform(np.asarray(xy, dtype=float))
    return int(np.sum((shown[:, 0] > box.x0) & (shown[:, 0] < box.x1) & (shown[:, 1] > box.y0) & (shown[:, 1] < box.y1)))


def _separable(n: int = 3000, rate: float = 0.4, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Frequent conversions and a strong score: precision stays near 1 over most of the recall range
    (the top right corner of a PR plot, where its legend sat)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(float)
    return y, y * 2.5 + rng.normal(size=n)


def test_pr_legend_covers_no_curve() -> None:
    y, s = _separable()
    curves = {"lightgbm (calibrated)": (y, s), "points: some_rules": (y, s + np.random.default_rng(1).normal(size=len(y))),
              "score: Asymmetrique Activity Score": (y, np.where(np.arange(len(y)) % 2 == 0, s, np.nan))}
    curves = {k: (yy, np.nan_to_num(ss, nan=-9)) for k, (yy, ss) in curves.items()}
    fig = plots.pr_figure(curves)
    _extents(fig)
    ax = fig.axes[0]
    box = _legend(ax).get_window_extent()
    for line in ax.get_lines():
        assert _points_inside(ax, box, line.get_xydata()) == 0, line.get_label()
    from sklearn.metrics import average_precision_score

    for name, (y, s) in curves.items():  # the logged pr_auc, in the legend
        assert f"{name} (PR AUC {average_precision_score(y, s):.3f})" in _legend_labels(ax)


def _share_table() -> tuple[pd.DataFrame, dict]:
    """A flat export's threshold table (no weeks: shares) whose recommended cut-off sits near 100."""
    from training.thresholds import recommend_threshold

    rng = np.random.default_rng(8)
    score = np.clip(rng.normal(45, 30, 4000).round(), 0, 100)
    y = (rng.random(4000) < score / 100).astype(float)
    table = threshold_table(score, y, weeks=None)
    recommended = recommend_threshold(table, capacity_share=0.1)
    assert recommended is not None and recommended["cutoff"] > 80
    return table, recommended


def test_threshold_annotation_stays_inside_the_plot_clear_of_the_legend_and_the_axes_share_zero() -> None:
    table, recommended = _share_table()
    fig = plots.threshold_figure(table, recommended)
    _extents(fig)
    ax, ax2 = fig.axes[0], fig.axes[1]
    frame = ax.get_window_extent()
    (note,) = [t for t in ax.texts if t.get_text().startswith(f"cut-off {recommended['cutoff']}")]
    box = note.get_window_extent()
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    legend = _legend(ax).get_window_extent()
    assert not legend.overlaps(box)
    for axis in (ax, ax2):
        for line in axis.get_lines():
            assert _points_inside(axis, legend, line.get_xydata()[np.isfinite(line.get_xydata()).all(axis=1)]) == 0
    assert ax.get_ylim()[0] == 0 and ax2.get_ylim()[0] == 0  # both zeros on the same baseline


def test_shap_legend_covers_no_point() -> None:
    rng = np.random.default_rng(9)
    n = 400
    features = np.column_stack([rng.integers(0, 4, n), rng.normal(size=n), rng.normal(size=n)]).astype(float)
    features[:40, 2] = np.nan
    contrib = np.column_stack([0.3 * features[:, 0], 0.4 * features[:, 1], 0.2 * np.nan_to_num(features[:, 2])])
    fig = plots.shap_summary_figure(contrib, features, ["industry", "employees", "visits"],
                                    categorical=[True, False, False])
    _extents(fig)
    ax = fig.axes[0]
    box = _legend(ax).get_window_extent()
    for coll in ax.collections:
        assert _points_inside(ax, box, coll.get_offsets()) == 0


COMPARISON_SR = pd.DataFrame(
    {"roc_auc": [0.8731, 0.8162, 0.5301, 0.5304, 0.8658], "roc_auc_lo": [0.866, 0.806, 0.517, 0.519, 0.858],
     "roc_auc_hi": [0.879, 0.825, 0.541, 0.542, 0.872], "pr_auc": [0.822, 0.769, 0.420, 0.445, 0.813],
     "top_decile_capture": [0.245, 0.238, 0.087, 0.150, 0.244]},
    index=["lightgbm (calibrated)", "points: xeducation_points", "score: Asymmetrique Activity Score",
           "score: Asymmetrique Profile Score", "logistic regression"])


def test_baseline_bars_show_the_logged_figures_readable_names_and_the_auc_interval() -> None:
    fig = plots.baseline_comparison_figure(COMPARISON_SR)
    _extents(fig)
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert len(ticks) == len(COMPARISON_SR)
    boxes = [t.get_window_extent() for t in ticks]
    for left, right in zip(boxes, boxes[1:], strict=False):
        assert left.x1 <= right.x0, "scorer names overlap"
    labels = [t.get_text() for t in ax.texts]
    for metric in ("roc_auc", "pr_auc", "top_decile_capture"):  # the card's and the logged figures (3 decimals)
        for value in COMPARISON_SR[metric]:
            assert f"{value:.3f}" in labels
    legend = _legend_labels(ax)
    assert not any("_" in text for text in legend), legend  # not column names
    assert any("95%" in text for text in legend)
    whiskers = [c for c in ax.containers if c.__class__.__name__ == "ErrorbarContainer"]
    assert whiskers
    segments = np.concatenate([np.asarray(s) for s in whiskers[0].lines[2][0].get_segments()])
    assert set(np.round(segments[:, 1], 3)) == set(np.round([*COMPARISON_SR["roc_auc_lo"], *COMPARISON_SR["roc_auc_hi"]], 3))


def test_score_axis_names_the_horizon_or_none() -> None:
    rng = np.random.default_rng(10)
    score = rng.integers(0, 60, 500).astype(float)
    y = (rng.random(500) < score / 80).astype(float)
    assert "within 90 days" in plots.score_distribution_figure(score, y, horizon=90).axes[0].get_xlabel()
    flat = plots.score_distribution_figure(score, y, horizon=None).axes[0].get_xlabel()
    assert "P(convert)" in flat and " H" not in flat


def test_shap_title_fits_in_the_figure_beside_long_feature_names() -> None:
    """The title was centred over the plot, which long feature names push right: its second line (the
    sample and its slice) ran off the figure's right edge."""
    rng = np.random.default_rng(11)
    features = rng.normal(size=(300, 3))
    names = ["days since the latest burst of activity began (after 14+ quiet days)", "employees", "visits"]
    data = "sample of 2,000 from the test slice, 13,959 snapshots as of 2026-01-01 to 2026-04-01"
    fig = plots.shap_summary_figure(features * 0.3, features, names, data=data)
    fig.draw_without_rendering()
    texts = [t for t in [*(ax.title for ax in fig.axes), fig._suptitle] if t is not None and data in t.get_text()]
    assert texts
    for text in texts:
        box = text.get_window_extent()
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, text.get_text()


def test_baseline_auc_labels_sit_above_their_interval() -> None:
    """Wide intervals (192 conversions on the demo's test slice): the whisker ran through the AUC label."""
    comparison = pd.DataFrame({"roc_auc": [0.792, 0.725, 0.771], "roc_auc_lo": [0.759, 0.686, 0.732],
                               "roc_auc_hi": [0.827, 0.761, 0.809], "pr_auc": [0.110, 0.043, 0.091]},
                              index=["lightgbm (calibrated)", "points: default_b2b_points", "logistic regression"])
    fig = plots.baseline_comparison_figure(comparison)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    for value, hi in zip(comparison["roc_auc"], comparison["roc_auc_hi"], strict=True):
        (label,) = [t for t in ax.texts if t.get_text() == f"{value:.3f}"]
        top = ax.transData.transform((0, hi))[1]
        assert label.get_window_extent().y0 >= top, label.get_text()


def test_reliability_bins_carry_a_95_percent_interval_and_the_title_counts_the_conversions() -> None:
    """With rare conversions a bin holds a handful of them: the zig-zag between bins is mostly noise,
    which the plot said nothing about (no counts of conversions, no interval)."""
    from scipy.stats import binomtest

    y, p = _rare(3000, seed=4)
    mean_p, rate, counts = reliability_curve(y, p, 10, "equal_mass")
    fig = plots.reliability_figure(y, p)
    ax = fig.axes[0]
    assert f"{int(y.sum()):,} conversions" in ax.get_title()
    (bars,) = [c for c in ax.containers if c.__class__.__name__ == "ErrorbarContainer"]
    segments = sorted((np.asarray(s) for s in bars.lines[2][0].get_segments()), key=lambda s: s[0][0])
    lo = ax.get_ylim()[0]
    expected = []
    for m, r, n in zip(mean_p, rate, counts, strict=True):
        ci = binomtest(int(round(r * n)), int(n)).proportion_ci(0.95, method="wilson")
        expected.append(((m, max(ci.low, lo)), (m, ci.high)))
    for segment, (bottom, top) in zip(segments, sorted(expected), strict=True):
        assert list(segment[0]) == pytest.approx(list(bottom)) and list(segment[1]) == pytest.approx(list(top))
    assert any("95%" in text for text in _legend_labels(ax))


def _visible_tick_boxes(axis) -> list:
    lo, hi = sorted(axis.get_view_interval())
    return sorted((t.get_window_extent() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs(), strict=True)
                   if t.get_text() and lo <= v <= hi), key=lambda b: b.x0)


def test_time_to_close_calibration_panels_tick_labels_do_not_collide() -> None:
    """Log axes over ~2.5 decades in a 4-inch panel: '0.0005' ran into '0.001' on the demo's 90-day panel."""
    rng = np.random.default_rng(12)
    rows = []
    for h, scale in ((30, 0.4), (60, 0.7), (90, 1.0)):
        predicted = np.geomspace(0.0019, 0.05, 10) * scale
        observed = predicted * rng.lognormal(0, 0.5, 10)
        observed[0] = 0.00072 * scale
        rows += [{"scorer": s, "horizon_days": h, "bin": k + 1, "n": 1396, "mean_predicted": p * f, "observed": o,
                  "closed_within": int(round(o * 1396))}
                 for s, f in (("model", 1.0), ("cox", 1.1)) for k, (p, o) in enumerate(zip(predicted, observed, strict=True))]
    fig = survival_plots.calibration_figure(pd.DataFrame(rows))
    fig.draw_without_rendering()
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        boxes = _visible_tick_boxes(ax.xaxis)
        assert len(boxes) >= 2
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert left.x1 <= right.x0, ax.get_title()


def test_c_index_bars_start_at_zero() -> None:
    """The C-index axis started at 0.4 without saying so: Kaplan-Meier's 0.5 bar looked a sixth of the
    model's 0.79."""
    left = survival_plots.concordance_figure(COMPARISON).axes[0]
    assert left.get_ylim()[0] == 0 and left.get_ylim()[1] >= 1.0


def test_survival_curve_legend_covers_no_curve() -> None:
    """Olist: the likeliest lead's curve fell through the lower left corner, under the legend."""
    days = np.arange(0.0, 183.0)
    rates = (2e-5, 5e-5, 1e-4, 3e-4, 1e-3)
    curves = np.vstack([np.exp(-r * days) for r in rates] + [0.84 + 0.16 * np.exp(-days / 25)])
    labels = [f"lead {'%032x' % (k * 7919)}: P(90d) 0.0{k}, median beyond 182 d" for k in range(len(curves))]
    fig = survival_plots.survival_curves_figure(days, curves, labels, np.exp(-2e-4 * days), (30, 60, 90))
    fig.draw_without_rendering()
    ax = fig.axes[0]
    box = _legend(ax).get_window_extent()
    for line in ax.get_lines():
        if line.get_label() in labels:
            assert _points_inside(ax, box, line.get_xydata()) == 0, line.get_label()
    # the "30 d" / "60 d" / "90 d" marks sat at the top, where every curve starts (struck through)
    marks = [t for t in ax.texts if t.get_text().endswith(" d")]
    assert len(marks) == 3
    for mark in marks:
        for line in ax.get_lines():
            assert _points_inside(ax, mark.get_window_extent(), line.get_xydata()) == 0, (mark.get_text(), line.get_label())


def test_brier_legends_cover_no_curve() -> None:
    """Olist: the off-scale peer's curve runs at ~0.97 along the top of its panel, under the legend."""
    days = np.arange(4.0, 183.0, 4.0)
    ramp = np.minimum(days / 25, 1)
    curves = {"lightgbm hazard": 0.028 * days / days.max(), "kaplan-meier": 0.0285 * days / days.max(),
              "naive regression": 0.98 * ramp}
    fig = survival_plots.brier_curve_figure(days, curves)
    fig.draw_without_rendering()
    for ax in fig.axes:
        box = _legend(ax).get_window_extent()
        for line in ax.get_lines():
            assert _points_inside(ax, box, line.get_xydata()) == 0, line.get_label()


def test_reliability_legend_covers_no_bin_when_the_model_under_predicts() -> None:
    """Under-prediction puts the bins above the diagonal, in the upper left corner where the legend sat: on
    a 1,000-lead synthetic CRM (predicted/observed 0.46) it hid the top bin, with scores under-predicting
    by half it hid bins and whiskers."""
    rng = np.random.default_rng(7)
    p = np.clip(rng.lognormal(np.log(0.006), 0.9, 8000), 1e-4, 0.5)
    y = (rng.random(8000) < np.minimum(2.0 * p, 1)).astype(float)
    mean_p, rate, _ = reliability_curve(y, p, 10, "equal_mass")
    fig = plots.reliability_figure(y, p)
    _extents(fig)
    ax = fig.axes[0]
    box = _legend(ax).get_window_extent()
    assert _points_inside(ax, box, np.column_stack([mean_p, rate])) == 0
    assert _points_inside(ax, box, np.array([[p.mean(), y.mean()]])) == 0
    for whisker in ax.collections:
        segments = [np.asarray(s) for s in getattr(whisker, "get_segments", list)()]
        for s in segments:
            assert _points_inside(ax, box, s) == 0


def _under_predicting_calibration() -> pd.DataFrame:
    """A time-to-close calibration table whose bins sit above the diagonal (observed ~2x predicted)."""
    rng = np.random.default_rng(13)
    rows = []
    for h in (30, 60, 90):
        predicted = np.geomspace(0.001, 0.03, 10) * h / 90
        for s, f in (("lightgbm hazard", 1.0), ("cox ph (penalised)", 1.1)):
            observed = 2.0 * predicted * f * rng.lognormal(0, 0.3, 10)
            rows += [{"scorer": s, "horizon_days": h, "bin": k + 1, "n": 288, "mean_predicted": p * f, "observed": o,
                      "closed_within": int(round(o * 288))} for k, (p, o) in enumerate(zip(predicted, observed, strict=True))]
    return pd.DataFrame(rows)


def test_time_to_close_calibration_legend_covers_no_bin() -> None:
    """Each panel had its own legend in the upper left corner, over the bins and whiskers of a model that
    under-predicts (the 1,000-lead synthetic CRM's 60- and 90-day panels): one legend under the panels."""
    calibration = _under_predicting_calibration()
    fig = survival_plots.calibration_figure(calibration)
    _extents(fig)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    box = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        for line in ax.get_lines():
            assert _points_inside(ax, box, line.get_xydata()) == 0, line.get_label()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("lightgbm hazard") == 1 and labels.count("cox ph (penalised)") == 1


def test_the_model_is_the_thick_line_under_its_peers_thin_ones() -> None:
    """The demo's Brier-over-time plot: Cox's curve, drawn after the model's, hid it entirely (their
    scores differ in the fourth decimal). The model's curve is the thick one, under its peers' thin ones:
    a peer on it runs inside it and both show (the model drawn thick on top hid Cox instead)."""
    days = np.arange(4.0, 183.0, 4.0)
    curves = {"lightgbm hazard": 0.0215 * days / days.max(), "kaplan-meier": 0.0227 * days / days.max(),
              "cox ph (penalised)": 0.0216 * days / days.max()}
    y, p = _rare(3000, seed=5)
    scorers = {"lightgbm (calibrated)": (y, p), "points: rules": (y, p + 0.001), "logistic regression": (y, p * 1.1)}
    figures = {"brier": survival_plots.brier_curve_figure(days, curves),
               "roc": plots.roc_figure(scorers), "pr": plots.pr_figure(scorers), "gain": plots.lift_gain_figure(scorers)}
    for what, fig in figures.items():
        lines = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]
        model = [ln for ln in lines if ln.get_label().startswith(("lightgbm", "lightgbm hazard"))]
        assert len(model) == 1, what
        peers = [ln for ln in lines if ln is not model[0] and ln.get_label().startswith((*curves, *scorers))]
        assert len(peers) == 2, what
        assert all(model[0].get_zorder() < ln.get_zorder() for ln in peers), what
        assert all(model[0].get_linewidth() > ln.get_linewidth() for ln in peers), what


def test_backtest_figure_marks_the_months_outside_the_interval_and_sums_up_in_its_title() -> None:
    """The demo's backtest (forecast made 2025-12-01): March's actual 262,706 lay 13k above the interval's
    250k top, a square on the band's edge that looked inside; the title said nothing of the comparison the
    CLI prints (inside in 5 of 6 months, total forecast vs actual), and the legend sat inside the axes."""
    from training.forecast import backtest_table, forecast_figure, forecast_months

    months = forecast_months("2025-12-01", 3).assign(
        expected_deals=[13.8, 9.6, 7.3], expected_revenue=[257_408.0, 178_690.0, 136_431.0],
        low=[101_918.0, 48_921.0, 22_935.0], high=[412_899.0, 308_459.0, 249_927.0])
    actual = pd.DataFrame({"month": months["month"], "actual_deals": [17, 11, 13],
                           "actual_revenue": [312_718.0, 209_211.0, 262_706.0], "fully_observed": [True, True, True]})
    table = backtest_table(months, actual)
    fig = forecast_figure(table, "Forecast made 2025-12-01 vs revenue actually closed", "90% interval (analytic)")
    _extents(fig)
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1  # under the axes, over no month
    (outside,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("actual outside")]
    assert list(outside.get_xdata()) == [2] and list(outside.get_ydata()) == [262_706.0]
    assert "actual outside the 90% interval (analytic)" in _legend_labels(ax)
    title = ax.get_title()
    assert "actual inside the interval in 2 of 3 months" in title
    assert "total forecast 572,529 vs actual 784,635" in title
    # a month past the data end: not compared, and the title still fits in the figure (it ran off both edges
    # on a 1,000-lead synthetic CRM's backtest)
    table.loc[2, ["fully_observed", "inside_interval"]] = [False, pd.NA]
    fig = forecast_figure(table, "Forecast made 2025-12-01 vs revenue actually closed", "90% interval (analytic)")
    _extents(fig)
    ax = fig.axes[0]
    assert "actual inside the interval in 2 of 2 months" in ax.get_title()
    assert "1 month(s) past the data end not compared" in ax.get_title()
    assert not [ln for ln in ax.get_lines() if ln.get_label().startswith("actual outside")]
    box = ax.title.get_window_extent()
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1


def test_score_distribution_stays_on_the_0_to_100_scale_and_says_what_its_heights_are() -> None:
    """X Education (scores up to 100, bins of 3): the axis ran to 102, past the top of the 0-100 score, and
    the y axis said only "density" (of what, per what)."""
    rng = np.random.default_rng(14)
    score = np.clip(rng.normal(60, 30, 3000).round(), 0, 100)
    y = (rng.random(3000) < score / 100).astype(float)
    ax = plots.score_distribution_figure(score, y, cutoff=91).axes[0]
    assert ax.get_xlim() == (0, 100)
    assert all(patch.get_x() + patch.get_width() <= 100 + 1e-9 for patch in ax.patches)
    assert "share of" in ax.get_ylabel() and "per score point" in ax.get_ylabel()


def test_threshold_figure_states_the_volume_at_the_cut_off_and_draws_the_capacity() -> None:
    """The demo's MQL plot named the cut-off and its capture (3: 42%) but neither the volume it hands
    sales (52 leads per week, off the bottom of an axis that starts at 788) nor the capacity that chose
    it (10% of leads): the reason for the cut-off was not on the figure."""
    from training.thresholds import recommend_threshold

    rng = np.random.default_rng(15)
    score = np.clip(rng.lognormal(0.3, 1.0, 14000).round(), 0, 100)
    y = (rng.random(14000) < np.minimum(0.01 * (1 + score), 1)).astype(float)
    table = threshold_table(score, y, weeks=17.7)
    recommended = recommend_threshold(table, capacity_share=0.1)
    fig = plots.threshold_figure(table, recommended)
    ax = fig.axes[0]
    (note,) = [t for t in ax.texts if t.get_text().startswith(f"cut-off {int(recommended['cutoff'])}")]
    assert f"{recommended['leads_per_week']:,.0f} leads per week" in note.get_text()
    assert f"capture {recommended['capture']:.0%}" in note.get_text()
    capacity = 0.1 * table["leads_per_week"].iloc[0]  # 10% of the leads, in leads per week
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("capacity")]
    assert list(line.get_ydata()) == pytest.approx([capacity, capacity])
    assert "10% of leads" in line.get_label()
    assert line.get_label() in _legend_labels(ax)


def test_sample_curve_label_names_the_snapshot_and_a_readable_probability() -> None:
    """The demo's labels read 'lead 815: P(90d) 0.13' while lead 815 has four test snapshots (P 0.032,
    0.190, 0.126, 0.044): which one the curve is went unsaid; and five of the six leads read 0.01 or 0.02
    where their curves visibly differ (0.009 to 0.024)."""
    label = survival_plots.sample_curve_label(815, pd.Timestamp("2026-03-01"), 90, 0.126273, float("nan"), 182)
    assert label == "lead 815 as of 2026-03-01: P(close within 90 d) 12.6%, median beyond 182 d"
    assert survival_plots.sample_curve_label("a1", pd.Timestamp("2026-01-01"), 90, 0.009088, 41.4, 182) == (
        "lead a1 as of 2026-01-01: P(close within 90 d) 0.9%, median 41 d")
    assert "P(close within 90 d) <0.1%" in survival_plots.sample_curve_label(1, pd.Timestamp("2026-01-01"), 90, 0.0004,
                                                                               float("nan"), 182)


@pytest.mark.parametrize(("per_week", "share", "words"), [(0.01, None, "0.01 leads per week"),
                                                           (None, 0.00001, "0.001% of leads")])
def test_threshold_figure_says_no_cut_off_fits_the_capacity_and_draws_it(per_week, share, words) -> None:
    """A capacity below what even the highest cut-off flags: the figure drew neither the capacity nor a
    cut-off and did not say why; it must draw the capacity and say that no cut-off fits it."""
    from training.thresholds import capacity_of, recommend_threshold

    rng = np.random.default_rng(15)
    score = np.clip(rng.lognormal(0.3, 1.0, 3000).round(), 0, 100)
    y = (rng.random(3000) < np.minimum(0.01 * (1 + score), 1)).astype(float)
    table = threshold_table(score, y, weeks=17.7)
    assert recommend_threshold(table, per_week, share) is None
    fig = plots.threshold_figure(table, None, capacity=capacity_of(table, per_week, share))
    _extents(fig)
    ax = fig.axes[0]
    note = ax.get_title()  # the title, where it covers no curve (a box in the plot hid the precision curve)
    assert f"no cut-off fits the capacity of {words}" in note
    last = table[table["leads_flagged"] > 0].iloc[-1]
    assert f"even cut-off {int(last['cutoff'])}, the highest that flags a lead" in note
    box = ax.title.get_window_extent()
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    assert not [t for axes in fig.axes for t in axes.texts]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("capacity")]
    level = per_week if per_week is not None else share * table["leads_per_week"].iloc[0]
    assert list(line.get_ydata()) == pytest.approx([level, level])
    assert line.get_label() in _legend_labels(ax)


def test_forecast_figure_names_the_currency_on_its_revenue_axis_and_in_the_comparison() -> None:
    """The revenue axis read "unit of outcomes.amount" whatever the deals were priced in: with the project's
    ``forecast.currency`` the axis, and a backtest's totals in the title, name it."""
    from training.forecast import backtest_table, forecast_figure, forecast_months

    months = forecast_months("2025-12-01", 2).assign(
        expected_deals=[13.8, 9.6], expected_revenue=[257_408.0, 178_690.0],
        low=[101_918.0, 48_921.0], high=[412_899.0, 308_459.0])
    ax = forecast_figure(months, "Revenue forecast as of 2025-12-01", "90% interval (analytic)", currency="EUR").axes[0]
    assert ax.get_ylabel() == "revenue per month (EUR)"
    actual = pd.DataFrame({"month": months["month"], "actual_deals": [17, 11],
                           "actual_revenue": [312_718.0, 209_211.0], "fully_observed": [True, True]})
    ax = forecast_figure(backtest_table(months, actual), "Forecast made 2025-12-01 vs revenue actually closed",
                         "90% interval (analytic)", currency="EUR").axes[0]
    assert ax.get_ylabel() == "revenue per month (EUR)"
    assert "total forecast 436,098 EUR vs actual 521,929 EUR" in ax.get_title()


def _whisker_tops(ax) -> np.ndarray:
    """The upper ends of every errorbar whisker drawn on ``ax`` (data coordinates)."""
    tops = [np.asarray(segment)[:, 1].max() for container in ax.containers
            if container.__class__.__name__ == "ErrorbarContainer"
            for collection in container.lines[2] for segment in collection.get_segments()]
    return np.asarray(tops, dtype=float)


@pytest.mark.parametrize("seed", [0, 4])
def test_reliability_whiskers_end_inside_the_plot(seed: int) -> None:
    """The 1,000-lead synthetic CRM: its top bin (rate 0.052 of ~290 rows) had its whisker cut off at the top
    of an axis that stopped just above the bins; the whole interval must be in view."""
    y, p = _rare(1500, seed=seed)
    for log_span in (10.0, 1e9):  # log and linear axes
        ax = plots.reliability_figure(y, p, log_span=log_span).axes[0]
        tops = _whisker_tops(ax)
        assert len(tops) == 10
        assert tops.max() <= ax.get_ylim()[1] and ax.get_ylim() == pytest.approx(ax.get_xlim())


def test_time_to_close_calibration_whiskers_end_inside_their_panel() -> None:
    """The 1,000-lead synthetic CRM's 30-day panel: the top bins' whiskers ran off the top of the panel."""
    rng = np.random.default_rng(5)
    rows = []
    for h, scale in ((30, 0.3), (90, 1.0)):
        predicted = np.geomspace(0.002, 0.03, 8) * scale
        closes = rng.binomial(288, np.minimum(predicted * 1.6, 1))
        rows += [{"scorer": s, "horizon_days": h, "bin": k + 1, "n": 288, "mean_predicted": q * f, "observed": c / 288,
                  "closed_within": int(c)}
                 for s, f in (("model", 1.0), ("cox", 0.9)) for k, (q, c) in enumerate(zip(predicted, closes, strict=True))]
    fig = survival_plots.calibration_figure(pd.DataFrame(rows))
    for ax in fig.axes:
        tops = _whisker_tops(ax)
        assert len(tops) == 16
        assert tops.max() <= ax.get_ylim()[1], ax.get_title()


def test_pr_curve_draws_only_reachable_precisions_and_encloses_the_logged_pr_auc() -> None:
    """The 1,000-lead synthetic CRM: the model's 14 top-scored test snapshots tie (precision 0.36 at recall
    0.11), yet its curve ran from precision 1.0 at recall 0 (the end point sklearn appends, which no cut-off
    reaches) straight down to that point: a precision the model never had, drawn as its best; the area
    under the drawn line was not the PR AUC its legend gives."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.05).astype(float)
    s = np.where(np.arange(600) < 40, 0.9, rng.random(600) * 0.8)  # the top 40 tie
    y[:40] = (np.arange(40) % 3 == 0)  # 14 of the 40 convert
    curves = {"model": (y, s), "peer": (y, rng.random(600))}
    ax = plots.pr_figure(curves).axes[0]
    for line, (name, (yy, ss)) in zip(ax.get_lines(), curves.items(), strict=False):
        assert line.get_label().startswith(name)
        recall, precision = line.get_xdata(), line.get_ydata()
        reached, _, _ = precision_recall_curve(yy, ss)
        assert precision.max() == pytest.approx(reached[:-1].max())  # no 1.0 that no cut-off gives
        assert line.get_drawstyle() == "steps-post" and (np.diff(recall) <= 0).all()
        area = float(np.sum(-np.diff(recall) * precision[:-1]))  # precision held from each point to the next
        assert area == pytest.approx(average_precision_score(yy, ss))


def test_score_distribution_says_when_no_cut_off_fits_the_capacity() -> None:
    """With a capacity no cut-off fits (the 1,000-lead synthetic CRM at capacity_per_week 0.01), the score
    distribution drew no MQL line and said nothing: it looked like a run without an MQL threshold."""
    rng = np.random.default_rng(3)
    score = rng.integers(0, 6, 500).astype(float)
    y = (rng.random(500) < score / 20).astype(float)
    fig = plots.score_distribution_figure(score, y, None, no_cutoff="no MQL cut-off fits the sales capacity")
    _extents(fig)
    ax = fig.axes[0]
    assert not [ln for ln in ax.get_lines() if "cut-off" in ln.get_label()]
    assert ax.get_title().endswith("\nno MQL cut-off fits the sales capacity") and not ax.texts  # over no bar
    box = ax.title.get_window_extent()
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    with_cutoff = plots.score_distribution_figure(score, y, 3, no_cutoff="unused").axes[0]
    assert "unused" not in with_cutoff.get_title()  # a cut-off: its line says it


def _whisker_bottoms(ax) -> np.ndarray:
    """The lower ends of every errorbar whisker drawn on ``ax`` (data coordinates)."""
    return np.asarray([np.asarray(segment)[:, 1].min() for container in ax.containers
                       if container.__class__.__name__ == "ErrorbarContainer"
                       for collection in container.lines[2] for segment in collection.get_segments()], dtype=float)


def test_reliability_whiskers_of_bins_with_conversions_start_inside_the_plot() -> None:
    """The demo's lowest bin (1 conversion in 1,396 rows, Wilson interval from 0.00013) had its whisker cut at
    the bottom edge (0.00045), where only a bin without conversions belongs: its interval looked open-ended."""
    y, p = _rare(8000, seed=1)
    mean_p, rate, counts = reliability_curve(y, p, 10, "equal_mass")
    low, _ = plots.wilson_interval(np.round(rate * counts), counts)
    ax = plots.reliability_figure(y, p).axes[0]
    assert ax.get_yscale() == "log"
    bottoms = np.sort(_whisker_bottoms(ax))
    assert bottoms == pytest.approx(np.sort(np.where(rate > 0, low, ax.get_ylim()[0])))
    assert ax.get_ylim()[0] < low[rate > 0].min()


def test_time_to_close_calibration_whiskers_of_bins_with_closes_start_inside_their_panel() -> None:
    """The demo's 30-day panel: whiskers of bins with one close ran into the bottom edge."""
    rng = np.random.default_rng(5)
    predicted = np.geomspace(0.001, 0.03, 8)
    closes = np.maximum(rng.binomial(1396, predicted), 1)
    closes[0] = 1
    calibration = pd.DataFrame({"scorer": "model", "horizon_days": 30, "bin": range(1, 9), "n": 1396,
                                "mean_predicted": predicted, "observed": closes / 1396, "closed_within": closes})
    ax = survival_plots.calibration_figure(calibration).axes[0]
    low, _ = plots.wilson_interval(closes, np.full(8, 1396))
    assert ax.get_yscale() == "log"
    assert np.sort(_whisker_bottoms(ax)) == pytest.approx(np.sort(low))
    assert ax.get_ylim()[0] < low.min()


def test_reliability_title_gives_the_range_of_bin_sizes_when_ties_make_them_unequal() -> None:
    """Olist: the model gives most test snapshots the same probability, so its 3 equal-mass bins hold 5,438,
    21,186 and 4,127 rows; the title read "~5,438 rows each" (the median) and the legend did not say that
    marker area shows the rows."""
    rng = np.random.default_rng(6)
    p = np.concatenate([np.full(700, 0.0066), rng.uniform(0.005, 0.0065, 200), rng.uniform(0.0067, 0.008, 100)])
    y = (rng.random(1000) < 0.02).astype(float)
    _, _, counts = reliability_curve(y, p, 10, "equal_mass")
    assert counts.max() > 2 * counts.min()  # the tie really makes one bin large
    ax = plots.reliability_figure(y, p).axes[0]
    assert f"{int(counts.min()):,} to {int(counts.max()):,} rows" in ax.get_title()
    assert "rows each" not in ax.get_title()
    assert "bins (marker area ~ rows)" in _legend_labels(ax)
    even = plots.reliability_figure(*_rare(3000, seed=4)).axes[0]
    assert "rows each" in even.get_title() and "bins" in _legend_labels(even)


def test_c_index_legend_covers_no_bar_or_label_when_the_scorers_rank_well() -> None:
    """C-indices of 0.88 to 0.92: the legend, in the panel's upper right corner, sat on the last scorer's
    bars and their value labels (at 0.84 its label already touched it)."""
    comparison = pd.DataFrame({"harrell_c": [0.92, 0.5, 0.91, 0.90], "uno_c": [0.90, 0.5, 0.89, 0.88],
                               "ibs": [0.0122, 0.0129, 0.0123, 0.60]},
                              index=["lightgbm hazard", "kaplan-meier", "cox ph (penalised)", "naive regression"])
    fig = survival_plots.concordance_figure(comparison)
    _extents(fig)
    left = fig.axes[0]
    legends = [legend for legend in (left.get_legend(), *fig.legends) if legend is not None]
    assert len(legends) == 1
    assert [t.get_text() for t in legends[0].get_texts()] == ["Harrell's C", "Uno's C"]
    box = legends[0].get_window_extent()
    for artist in [*left.patches, *left.texts]:
        assert not box.overlaps(artist.get_window_extent()), artist
    # the integrated Brier bars are not in the colour of a C-index the legend names
    keyed = {to_rgba(handle.get_facecolor()) for handle in legends[0].legend_handles}
    assert not keyed & {to_rgba(bar.get_facecolor()) for bar in fig.axes[1].patches}


def test_threshold_curves_are_steps_between_whole_cut_offs() -> None:
    """Scores are whole points: the curves joined cut-offs 1 and 2 by a slope, showing volumes and captures
    between them that no cut-off gives (on a 0-5 axis, most of the drawing). With every whole cut-off in the
    table they are steps (a cut-off in (c, c + 1] flags what c + 1 flags); every 5th cut-off stays a line."""
    rng = np.random.default_rng(4)
    score = rng.integers(0, 6, 2000).astype(float)
    y = (rng.random(2000) < score / 20).astype(float)
    every = threshold_table(score, y, weeks=10.0)
    lines = [ln for axes in plots.threshold_figure(every).axes for ln in axes.get_lines()
             if ln.get_label() in ("leads per week", "capture (recall)", "precision")]
    assert len(lines) == 3 and {ln.get_drawstyle() for ln in lines} == {"steps-pre"}
    sparse = threshold_table(score, y, weeks=10.0, step=5)
    lines = [ln for axes in plots.threshold_figure(sparse).axes for ln in axes.get_lines()
             if ln.get_label() in ("leads per week", "capture (recall)", "precision")]
    assert len(lines) == 3 and {ln.get_drawstyle() for ln in lines} == {"default"}
