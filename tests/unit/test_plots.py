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


def _legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
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
