"""Calibration, metrics, splits, thresholds and leakage on tiny synthetic arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_dict,
    cross_fitted_calibration,
    expected_calibration_error,
)
from training.config import LeakageThresholds
from training.evaluation import (
    bootstrap_auc_ci,
    capture_at_capacity,
    grouped_folds,
    segment_table,
    time_ordered_split,
    top_fraction_lift_capture,
    weeks_represented,
)
from training.leakage import LeakageError, leakage_report, single_feature_auc
from training.thresholds import recommend_threshold, threshold_table


def _miscalibrated(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 1.5, n)
    true_p = 1 / (1 + np.exp(-(0.5 * margin - 1.0)))  # the margin is twice too confident and shifted
    return margin, (rng.random(n) < true_p).astype(float), true_p


@pytest.mark.parametrize("cls", [PlattCalibrator, IsotonicCalibrator])
def test_calibrators_fix_a_miscalibrated_margin_and_round_trip(cls: type) -> None:
    margin, y, true_p = _miscalibrated()
    raw = 1 / (1 + np.exp(-margin))
    cal = cls().fit(margin[:2000], y[:2000])
    p = cal.transform(margin[2000:])
    assert expected_calibration_error(y[2000:], p) < 0.5 * expected_calibration_error(y[2000:], raw[2000:])
    assert np.abs(p - true_p[2000:]).mean() < 0.05
    again = calibrator_from_dict(cal.to_dict())
    np.testing.assert_allclose(again.transform(margin[2000:]), p)


def test_isotonic_calibration_keeps_the_boosters_ranking_and_its_block_probabilities() -> None:
    """A step-function isotonic fit gave thousands of leads one probability (71 distinct values for 55,632 test
    rows at 20k leads; AUC 0.7994 where the margins rank at 0.8000). The centered fit is strictly increasing in
    the margin, keeps each pool-adjacent-violators block's probability at the block's mean margin, and moves
    nothing beyond its end knots by more than the tie break."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_auc_score

    from training.calibration import TIE_BREAK

    margin, y, _ = _miscalibrated(n=20_000, seed=3)
    fit_m, fit_y = margin[:10_000], y[:10_000]
    cal = IsotonicCalibrator().fit(fit_m, fit_y)
    steps = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6).fit(fit_m, fit_y)
    blocks = steps.predict(fit_m)
    for value in np.unique(blocks):  # each block: its probability at its mean margin
        centre = fit_m[blocks == value].mean()
        assert cal.transform(np.array([centre]))[0] == pytest.approx(value, abs=2 * TIE_BREAK)
    assert len(cal.x_) == len(np.unique(blocks)) and (np.diff(cal.y_) > 0).all() and (np.diff(cal.x_) > 0).all()
    test = np.concatenate([margin[10_000:], [-40.0, -12.0, -11.999999, 12.0, 40.0]])  # beyond the knots too
    p = cal.transform(test)
    assert len(np.unique(p)) == len(np.unique(test))
    order = np.argsort(test)
    assert (np.diff(p[order]) > 0).all()  # strictly increasing in the margin
    beyond = (test < cal.x_[0]) | (test > cal.x_[-1])
    assert beyond.sum() > 5 and (np.abs(p[beyond] - np.interp(test[beyond], cal.x_, cal.y_)) < TIE_BREAK).all()
    assert p.min() > 0 and p.max() < 1
    assert roc_auc_score(y[10_000:], p[:10_000]) == roc_auc_score(y[10_000:], margin[10_000:])
    assert roc_auc_score(y[10_000:], steps.predict(margin[10_000:])) < roc_auc_score(y[10_000:], margin[10_000:])


def test_a_lead_that_shares_an_isotonic_block_with_the_average_keeps_its_reasons() -> None:
    """With a step-function fit a lead whose margin fell in the step holding the average margin (the SHAP bias)
    got the average's probability, so its impacts, the log-odds contributions times the secant slope, were all
    near 0 although its features pulled both ways (53 of the first 1,000 X Education leads)."""
    from sklearn.isotonic import IsotonicRegression

    from serving.core import probability_impacts

    margin, y, _ = _miscalibrated(n=20_000, seed=3)
    cal = IsotonicCalibrator().fit(margin, y)
    bias = float(margin.mean())
    steps = IsotonicRegression(out_of_bounds="clip").fit(margin, y)
    same = margin[(steps.predict(margin) == steps.predict([bias])[0]) & (np.abs(margin - bias) > 0.05)]
    assert len(same) > 10  # leads in the average's step, not at the average itself
    lead = same[:10]
    contributions = np.column_stack([lead - bias + 1.0, np.full(len(lead), -1.0)])  # two features pulling apart
    impacts = probability_impacts(contributions, cal.transform(lead), cal.transform(np.full(len(lead), bias)))
    np.testing.assert_allclose(impacts.sum(axis=1), cal.transform(lead) - cal.transform(np.full(len(lead), bias)))
    local = cal.y_.max() - cal.y_.min()  # slopes are judged against the calibrator's whole rise per margin unit
    slope = impacts[:, 1] / contributions[:, 1]
    assert (slope > 0.01 * local / (cal.x_[-1] - cal.x_[0])).all()


def test_platt_never_fits_a_decreasing_map_and_a_saved_one_is_refused() -> None:
    """A worthless or anti-correlated model's held-out margins give logistic regression a negative slope
    (noise alone does, with few rows): the slope is held at 0 (the best fit with slope >= 0: the slice's
    rate for every lead), with a warning; a positive slope is kept as fitted, without one."""
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(float)
    for margin in (-1.5 * y + rng.normal(size=400), rng.normal(size=400)):  # anti-correlated, worthless
        from sklearn.linear_model import LogisticRegression

        assert LogisticRegression(C=1e4).fit(margin.reshape(-1, 1), y).coef_[0, 0] < 0  # what Platt fitted before
        cal = PlattCalibrator().fit(margin, y)
        assert cal.slope_ == 0 and "is not positive" in cal.warning_ and f"{y.mean():.4f}" in cal.warning_
        np.testing.assert_allclose(cal.transform(margin), y.mean(), rtol=1e-12)
        assert calibrator_from_dict(cal.to_dict()).slope_ == 0
    good = PlattCalibrator().fit(1.5 * y + rng.normal(size=400), y)
    assert good.slope_ > 0 and good.warning_ is None
    with pytest.raises(ValueError, match=r"Platt slope -0\.8 is negative .* retrain the model"):
        calibrator_from_dict({"kind": "platt", "slope": -0.8, "intercept": -2.0})


def test_a_fold_whose_platt_slope_is_held_at_zero_is_reported() -> None:
    """K-fold flat mode calibrates each fold on the other folds' margins: with weak signal one fold's slope can
    be held at 0 while the final calibrator's is positive, so that fold's leads all got one rate in the
    out-of-fold figures without a word (the final calibrator's warning is the only one the run gave)."""
    from features.schema import FlatData
    from training.baselines import PointsRules
    from training.calibration import fit_calibrator
    from training.config import BoosterConfig, TrainingConfig
    from training.sales_readiness import train_and_evaluate_flat

    rng = np.random.default_rng(0)
    y = (rng.random(150) < 0.2).astype(float)
    margin = rng.normal(size=150) + 0.15 * y
    folds = np.arange(150) % 5
    held: list[int] = []
    p = cross_fitted_calibration("platt", margin, y, folds, held)
    assert fit_calibrator("platt", margin, y).slope_ > 0 and held == [1]
    assert np.ptp(p[folds == 1]) == 0 and np.ptp(p[folds == 0]) > 0

    rng = np.random.default_rng(2)  # noise only: the flat run says which folds were held, in notes and progress
    frame = pd.DataFrame({"lead_id": np.arange(300), "label": (rng.random(300) < 0.2).astype(float),
                          "a": rng.normal(size=300), "b": rng.normal(size=300)})
    config = TrainingConfig(booster=BoosterConfig(max_rounds=20, early_stopping_rounds=5), bootstrap_samples=0,
                            make_plots=False, cv_folds=3, calibration="platt")
    messages: list[str] = []
    result = train_and_evaluate_flat(FlatData(frame, [], ["a", "b"], {"a": "fit", "b": "fit"}), config,
                                     points_rules=PointsRules(name="none", mql_threshold=30),
                                     progress=messages.append)
    note = next(n for n in result.notes if n.startswith("Platt calibration of the out-of-fold probabilities"))
    assert "of 3 is not positive" in note and f"warning: {note}" in messages and note in result.model_card


def test_cross_fitted_calibration_never_uses_the_fold_itself() -> None:
    margin, y, _ = _miscalibrated(1000)
    folds = np.arange(1000) % 4
    p = cross_fitted_calibration("platt", margin, y, folds)
    for k in range(4):  # every fold, each calibrated on the three others only
        held = folds == k
        expected = PlattCalibrator().fit(margin[~held], y[~held]).transform(margin[held])
        np.testing.assert_allclose(p[held], expected, err_msg=f"fold {k}")


def test_calibrator_rejects_single_class_and_bad_labels() -> None:
    with pytest.raises(ValueError, match="single class"):
        PlattCalibrator().fit(np.arange(5.0), np.zeros(5))
    with pytest.raises(ValueError, match="0/1"):
        PlattCalibrator().fit(np.arange(3.0), np.array([0, 1, 2]))


def test_ece_is_zero_for_perfect_bins_and_detects_shift() -> None:
    y = np.array([0, 0, 0, 1] * 25, dtype=float)
    assert expected_calibration_error(y, np.full(100, 0.25), 4, "equal_width") == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(100, 0.45), 4, "equal_mass") == pytest.approx(0.2)


def test_equal_mass_bins_keep_tied_probabilities_together() -> None:
    """Isotonic calibration gives whole blocks of leads one probability; splitting such a block over
    bins by row order made ECE depend on the order of the rows (0.0075 vs 0.0108 on a demo run)."""
    from training.calibration import reliability_curve

    p = np.array([0.01] * 60 + [0.05] * 20 + [0.2] * 20)
    y = np.array([1.0] * 3 + [0.0] * 57 + [1.0] * 1 + [0.0] * 19 + [1.0] * 4 + [0.0] * 16)
    eces = {expected_calibration_error(y[o], p[o], 10, "equal_mass")
            for o in (np.arange(100), np.argsort(-y, kind="stable"), np.argsort(y, kind="stable"))}
    assert len(eces) == 1
    assert eces.pop() == pytest.approx(0.6 * 0.04 + 0.2 * 0.0 + 0.2 * 0.0)
    mean_p, rate, counts = reliability_curve(y[::-1], p[::-1], 10, "equal_mass")
    assert mean_p.tolist() == pytest.approx([0.01, 0.05, 0.2])  # one point per tied block
    assert rate.tolist() == pytest.approx([0.05, 0.05, 0.2]) and counts.tolist() == [60, 20, 20]


def test_time_split_keeps_label_windows_out_of_the_test_slice() -> None:
    as_of = pd.Series(pd.date_range("2024-01-01", periods=40, freq="7D").repeat(5))
    split = time_ordered_split(as_of, horizon_days=21, test_fraction=0.25, validation_fraction=0.25)
    values = as_of.to_numpy()
    h = np.timedelta64(21, "D")
    fitting = np.concatenate([split.train, split.valid])
    assert values[fitting].max() + h <= values[split.test].min()
    assert values[split.train].max() < values[split.valid].min()
    assert values[split.test].min() == split.test_start.to_datetime64()
    assert len(np.intersect1d(fitting, split.test)) == 0
    # rows whose label window reaches the test period belong to no slice (nothing half-labelled leaks in)
    in_gap = (values + h > split.test_start.to_datetime64()) & (values < split.test_start.to_datetime64())
    assert in_gap.any()
    assert not np.isin(np.flatnonzero(in_gap), np.concatenate([fitting, split.test])).any()
    # every snapshot before the gap is used for fitting
    assert len(split.train) + len(split.valid) + len(split.test) + in_gap.sum() == len(as_of)


def test_time_split_explains_a_too_short_history() -> None:
    as_of = pd.Series(pd.date_range("2024-01-01", periods=4, freq="7D"))
    with pytest.raises(ValueError, match="too short for horizon"):
        time_ordered_split(as_of, horizon_days=90)
    with pytest.raises(ValueError, match="no labelled snapshot"):  # e.g. a backtest date weeks after the start
        time_ordered_split(pd.Series([], dtype="datetime64[ns]"), horizon_days=90)


def test_time_split_without_a_horizon_puts_each_row_in_one_slice() -> None:
    """Flat rows (H = 0): rows dated on the test slice's first day are test rows only."""
    as_of = pd.Series(np.repeat(pd.date_range("2024-01-01", periods=30, freq="D"), 10))
    split = time_ordered_split(as_of, horizon_days=0)
    parts = [set(split.train), set(split.valid), set(split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, parts)) == len(as_of)  # no gap to leave out either
    assert as_of[list(parts[1])].max() < as_of[list(parts[2])].min()


def test_grouped_folds_never_split_a_lead() -> None:
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 60, 400)
    y = (rng.random(400) < 0.3).astype(int)
    folds = grouped_folds(y, groups, 4, seed=0)
    per_group = pd.Series(folds).groupby(groups).nunique()
    assert (per_group == 1).all()
    assert set(folds) == {0, 1, 2, 3}


def test_lift_capture_and_capacity() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=float)
    score = np.arange(10, 0, -1, dtype=float)  # row 0 scores highest
    lift, capture = top_fraction_lift_capture(y, score, 0.2)
    assert capture == pytest.approx(2 / 3)
    assert lift == pytest.approx(1.0 / 0.3)
    assert capture_at_capacity(y, score, 1) == pytest.approx(1 / 3)


def test_top_decile_and_capacity_share_ties_at_the_cut_off_whatever_the_row_order() -> None:
    """Hand-tuned points tie by the hundred: the rows a tie block gives to the top decile are its
    average rows, not whichever come first in the frame (sorted converted-first, a points scorer's
    capture was twice its fair value)."""
    from training.sales_readiness import calibration_summary

    y = np.array([1.0] * 3 + [0.0] * 17 + [1.0] * 2 + [0.0] * 78)  # 100 rows, 5 conversions
    score = np.array([9.0] * 20 + [1.0] * 80)  # one block of 20 tied rows spans the top-10 cut-off
    expected_capture = 10 * (3 / 20) / 5  # half the block: 1.5 of its 3 conversions
    for order in (np.arange(100), np.argsort(-y, kind="stable"), np.argsort(y, kind="stable")):
        lift, capture = top_fraction_lift_capture(y[order], score[order], 0.1)
        assert capture == pytest.approx(expected_capture)
        assert lift == pytest.approx((1.5 / 10) / 0.05)
        assert capture_at_capacity(y[order], score[order], 30) == pytest.approx((3 + 10 * 2 / 80) / 5)
        summary = calibration_summary(y[order], score[order] / 10)
        assert summary["top_decile_observed"] == pytest.approx(0.15)
        assert summary["top_decile_predicted"] == pytest.approx(0.9)
    assert capture_at_capacity(y, score, 1000) == pytest.approx(1.0)  # capacity above every row: all of them


def test_weeks_represented_uses_cadence() -> None:
    weekly = pd.Series(pd.date_range("2024-01-01", periods=6, freq="7D"))
    assert weeks_represented(weekly) == pytest.approx(6.0)
    assert weeks_represented(pd.Series(pd.date_range("2024-01-01", periods=8, freq="D"))) == pytest.approx(8 / 7)
    assert weeks_represented(weekly.iloc[:1]) is None


def test_threshold_table_and_capacity_recommendation() -> None:
    rng = np.random.default_rng(2)
    score = rng.integers(0, 101, 1000)
    y = (rng.random(1000) < score / 100).astype(float)
    table = threshold_table(score, y, weeks=10.0)
    row = table.set_index("cutoff").loc[60]
    assert row["leads_flagged"] == (score >= 60).sum()
    assert row["precision"] == pytest.approx(y[score >= 60].mean())
    assert row["capture"] == pytest.approx(y[score >= 60].sum() / y.sum())
    rec = recommend_threshold(table, capacity_per_week=25.0)
    assert rec is not None
    assert rec["leads_per_week"] <= 25.0
    below = table[table["cutoff"] == rec["cutoff"] - 1]
    assert below["leads_per_week"].iloc[0] > 25.0  # one step lower would overflow sales
    assert recommend_threshold(table, capacity_per_week=0.01) is None


def test_segment_table_lists_every_segment_with_ci() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"source": rng.choice(["a", "b", "tiny"], 900, p=[0.5, 0.49, 0.01])})
    p = rng.random(900)
    y = (rng.random(900) < p).astype(float)
    seg = segment_table(frame, y, p, ["source"], n_boot=50, min_size=30)
    assert set(seg["segment"]) == {"a", "b", "tiny"}
    a = seg.set_index("segment").loc["a"]
    mask = frame["source"].to_numpy() == "a"
    assert a["roc_auc"] == pytest.approx(roc_auc_score(y[mask], p[mask]))
    assert a["roc_auc_lo"] <= a["roc_auc"] <= a["roc_auc_hi"]
    assert np.isnan(seg.set_index("segment").loc["tiny", "roc_auc"])
    with pytest.raises(KeyError, match="nope"):
        segment_table(frame, y, p, ["nope"])


def _leaky_frame(n: int = 800, seed: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    notes = np.where(y == 1, "will enrol", "not interested").astype(object)
    notes[rng.random(n) < 0.5] = None  # sales wrote notes for half the leads only
    frame = pd.DataFrame({
        "honest": rng.normal(0, 1, n) + 0.5 * y,
        "sales_note": pd.Series(notes, dtype=object),
        "noise": rng.choice(["x", "y"], n),
    })
    return frame, y


def test_leakage_alarm_names_the_leaky_feature_and_strict_mode_refuses() -> None:
    frame, y = _leaky_frame()
    single = single_feature_auc(frame.iloc[:400], y[:400], frame.iloc[400:], y[400:])
    assert single.loc["sales_note", "covered_auc"] > 0.99
    importance = pd.Series({"honest": 1.0, "sales_note": 8.0, "noise": 0.1})
    report = leakage_report(single, importance, 0.9, {"points": 0.6}, LeakageThresholds())
    assert report.flagged_features == ["sales_note"]
    assert "sales_note" in report.to_text()
    assert report.to_dict()["flagged"] is True
    with pytest.raises(LeakageError, match="sales_note"):
        leakage_report(single, importance, 0.9, {"points": 0.6}, LeakageThresholds(strict=True))


def test_the_filled_in_rule_applies_to_the_columns_it_is_given() -> None:
    """Engagement recency ("days since last demo request") is missing until a lead first acts: its
    filled-in AUC is signal, not a field written after contact; the pipeline passes its fit columns."""
    frame, y = _leaky_frame()
    single = single_feature_auc(frame.iloc[:400], y[:400], frame.iloc[400:], y[400:])
    importance = pd.Series({"honest": 1.0, "sales_note": 0.5, "noise": 0.1})
    assert single.loc["sales_note", "single_auc"] < LeakageThresholds().single_feature_auc
    thresholds = LeakageThresholds()
    assert leakage_report(single, importance, 0.8, {"points": 0.6}, thresholds).flagged_features == ["sales_note"]
    assert leakage_report(single, importance, 0.8, {"points": 0.6}, thresholds,
                          covered_columns=["sales_note"]).flagged_features == ["sales_note"]
    assert not leakage_report(single, importance, 0.8, {"points": 0.6}, thresholds,
                              covered_columns=["honest", "noise"]).flagged


@pytest.mark.parametrize("dated", [False, True])
def test_a_flat_export_keeps_the_filled_in_rule_on_every_column(dated: bool) -> None:
    """Every column of a flat export is a lead attribute (none is a pipeline-made "days since ..."), so the
    filled-in rule keeps covering them whatever their family: flat rows with a created_at (time-ordered
    through the snapshot code) passed over an engagement-family field logged by sales after contact."""
    from features.schema import FlatData
    from training.baselines import PointsRules
    from training.config import BoosterConfig, TrainingConfig
    from training.sales_readiness import train_and_evaluate_flat

    rng = np.random.default_rng(0)
    n = 1200
    y = (rng.random(n) < 0.3).astype(float)
    calls = np.where(y == 1, rng.integers(3, 6, n), rng.integers(0, 3, n)).astype(float)
    calls[rng.random(n) < 0.6] = np.nan  # sales logged calls for 40% of the leads only
    frame = pd.DataFrame({"lead_id": np.arange(n), "label": y, "honest": rng.normal(size=n) + 0.5 * y,
                          "sales_calls": calls})
    if dated:
        frame["created_at"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * 6, unit="h")
    flat = FlatData(frame, [], ["honest", "sales_calls"], {"honest": "fit", "sales_calls": "engagement"})
    config = TrainingConfig(booster=BoosterConfig(max_rounds=30, early_stopping_rounds=5), bootstrap_samples=0,
                            make_plots=False, cv_folds=3)
    result = train_and_evaluate_flat(flat, config, points_rules=PointsRules(name="none", mql_threshold=30))
    assert result.split["mode"].startswith("time-ordered" if dated else "3-fold")
    assert result.leakage.flagged_features == ["sales_calls"], result.leakage.features


def test_leakage_alarm_is_quiet_on_honest_features_and_flags_a_too_good_model() -> None:
    frame, y = _leaky_frame()
    honest = frame[["honest", "noise"]]
    single = single_feature_auc(honest.iloc[:400], y[:400], honest.iloc[400:], y[400:])
    importance = pd.Series({"honest": 1.0, "noise": 0.2})
    quiet = leakage_report(single, importance, 0.64, {"points": 0.6}, LeakageThresholds())
    assert not quiet.flagged
    loud = leakage_report(single, importance, 0.95, {"points": 0.6}, LeakageThresholds())
    assert loud.model_flag is not None and loud.flagged_features == []


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_auc_interval_equals_resampled_roc_auc_score(ties: bool) -> None:
    """The tallied AUC of each resample is sklearn's, ties included (the same draws, the same interval)."""
    rng = np.random.default_rng(4)
    y = (rng.random(700) < 0.1).astype(float)
    score = rng.random(700) + 0.3 * y
    if ties:
        score = np.round(score * 8) / 8  # a handful of distinct scores: most pairs tie
    n_boot, seed = 60, 9
    draws = np.random.default_rng(seed)
    expected = []
    for _ in range(n_boot):
        i = draws.integers(0, len(y), size=len(y))
        if 0 < y[i].sum() < len(i):
            expected.append(roc_auc_score(y[i], score[i]))
    lo, hi = bootstrap_auc_ci(y, score, n_boot, seed)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(expected, [0.025, 0.975])), abs=1e-12)
    assert lo < roc_auc_score(y, score) < hi
    assert np.isnan(bootstrap_auc_ci(np.zeros(5), np.arange(5.0), n_boot, seed)).all()  # one class: no interval


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bootstrap_auc_interval_of_a_score_without_an_auc_is_missing_too(bad: float) -> None:
    """roc_auc_score refuses a missing or infinite score (ranking_metrics reads its AUC as NaN); the tallied
    resamples ranked such rows above every score and gave an interval around no AUC at all."""
    from training.evaluation import ranking_metrics

    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(float)
    score = rng.random(300) + 0.3 * y
    score[:5] = bad
    assert np.isnan(ranking_metrics(y, score)["roc_auc"])
    assert np.isnan(bootstrap_auc_ci(y, score, 50, 0)).all()
    labels = y.copy()
    labels[0] = bad
    assert np.isnan(bootstrap_auc_ci(labels, rng.random(300), 50, 0)).all()
