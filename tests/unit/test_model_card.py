"""The sales-readiness model card and training messages: calibration figures, split text, threshold rows."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from tests.training_frames import FrameSet, snapshot_frame, true_log_odds
from training import plots
from training.baselines import PointsRules
from training.config import BoosterConfig, TrainingConfig
from training.sales_readiness import MODEL_NAME, calibration_summary, split_text, train_and_evaluate
from training.thresholds import table_to_markdown, threshold_table


def test_calibration_summary_reports_the_gap_ece_hides() -> None:
    # 1,000 rows at 1% predicted; 14 conversions among the 100 best-scored rows, 1 among the rest
    p = np.r_[np.full(100, 0.05), np.full(900, 0.0055)]
    y = np.zeros(1000)
    y[:14] = 1
    y[500] = 1
    out = calibration_summary(y, p)
    assert out["predicted_observed_ratio"] == pytest.approx(p.mean() / 0.015)
    assert out["predicted_observed_ratio"] < 0.7  # a third too low, which the ratio says plainly
    assert out["top_decile_predicted"] == pytest.approx(0.05)
    assert out["top_decile_observed"] == pytest.approx(0.14)
    assert np.isnan(calibration_summary(np.zeros(10), np.full(10, 0.1))["predicted_observed_ratio"])


SNAPSHOT_SPLIT = {"n_train": 6959, "n_valid": 4071, "n_test": 8343, "train_as_of": "2024-08-01..2025-07-01",
                  "valid_as_of": "2025-08-01..2025-10-01", "test_as_of": "2026-01-01..2026-04-01",
                  "horizon_days": 90, "n_censored_excluded": 5063, "n_gap_excluded": 3380}


def test_split_text_reads_as_sentences_not_a_dict() -> None:
    text = split_text(SNAPSHOT_SPLIT)
    assert text.startswith("train 6,959 rows (as of 2024-08-01 to 2025-07-01); validation 4,071 rows "
                           "(as of 2025-08-01 to 2025-10-01); test 8,343 rows (as of 2026-01-01 to 2026-04-01)")
    assert "censored snapshots excluded: 5,063" in text and "rows in the horizon gaps excluded: 3,380" in text
    assert not re.search(r"[{}']|n_train", text)
    survival = split_text({"n_train": 11458, "n_valid": 2952, "n_test": 8343, "fit_as_of": "2024-08-01..2025-12-01",
                           "test_as_of": "2026-01-01..2026-04-01", "validation": "held-out leads"})
    assert survival == ("train 11,458 rows (as of 2024-08-01 to 2025-12-01); validation 2,952 rows (held-out leads); "
                        "test 8,343 rows (as of 2026-01-01 to 2026-04-01)")
    flat = split_text({"mode": "5-fold StratifiedGroupKFold by lead_id (out-of-fold)", "n_rows": 1200,
                       "best_iterations": [40, 52], "final_rounds": 46, "search": {"best_auc": 0.81234}})
    assert flat == ("5-fold StratifiedGroupKFold by lead_id (out-of-fold); rows: 1,200; best iterations per fold: "
                    "40, 52; final model rounds: 46; search: {best_auc 0.8123}")


def test_threshold_markdown_keeps_the_recommended_cutoff_and_its_neighbours() -> None:
    rng = np.random.default_rng(0)
    score = rng.integers(0, 45, 3000).astype(float)
    y = (rng.random(3000) < score / 90).astype(float)
    table = threshold_table(score, y, weeks=12.0)
    cutoffs = [int(re.sub(r"\D", "", line.split("|")[1])) for line in
               table_to_markdown(table, every=10, around=3).splitlines()[2:]]
    assert cutoffs == [0, 1, 2, 3, 4, 5, 6, 10, 20, 30, 40]
    assert "| **3** (recommended) |" in table_to_markdown(table, every=10, around=3)
    assert [int(c) for c in re.findall(r"^\| \**(\d+)", table_to_markdown(table, every=10), re.M)] == [0, 10, 20, 30,
                                                                                                    40]


@pytest.fixture(scope="module")
def trained():
    frame = snapshot_frame(600, 30, seed=5)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    rules = PointsRules(name="tiny", mql_threshold=30, fit=[{"column": "seniority", "in": ["VP"], "points": 15}])
    config = TrainingConfig(booster=BoosterConfig(max_rounds=40, early_stopping_rounds=10, learning_rate=0.1),
                            bootstrap_samples=5, shap_sample=150, capacity_share=0.1)
    messages: list[str] = []
    return train_and_evaluate(FrameSet(frame), config, points_rules=rules, progress=messages.append), messages


def test_card_states_calibration_in_the_large_and_at_the_top(trained) -> None:
    result, _ = trained
    rows = result.predictions
    y, p = rows["label"].to_numpy(), rows["probability"].to_numpy()
    top = p >= np.sort(p)[::-1][int(round(0.1 * len(p))) - 1]
    assert result.metrics["predicted_observed_ratio"] == pytest.approx(np.clip(p, 1e-7, 1).mean() / y.mean())
    assert result.metrics["top_decile_observed"] == pytest.approx(y[top].mean())
    card = result.model_card
    assert (f"mean predicted {result.metrics['mean_predicted']:.4f} vs observed rate {y.mean():.4f} "
            f"(predicted / observed {result.metrics['predicted_observed_ratio']:.2f}") in card
    assert (f"top 10% by score: predicted {result.metrics['top_decile_predicted']:.4f} vs observed "
            f"{y[top].mean():.4f}") in card
    row = result.comparison.loc[MODEL_NAME]
    assert f"| {MODEL_NAME} | {y.mean():.4f} | {row['mean_predicted']:.4f} |" in card


def test_card_has_one_line_target_readable_split_and_the_recommended_cutoff(trained) -> None:
    result, messages = trained
    card = result.model_card
    lines = card.splitlines()
    target = lines[lines.index("## What it predicts") + 1]
    assert target == "P(lead converts within 14 days of the scoring instant); score shown to people = " \
                     "round(100 x probability)."
    assert not any(line.startswith(";") for line in lines)
    cutoff = result.recommended_threshold["cutoff"]
    assert f"| **{cutoff}** (recommended) |" in card
    assert split_text(result.split) in card and "n_train" not in card
    said = [m for m in messages if m.startswith("split: ")]
    assert said and said[0].startswith("split: train ") and "{" not in said[0]


def test_shap_figure_of_a_run_greys_its_categorical_features(trained) -> None:
    result, _ = trained
    ax = result.figures["shap_summary"].axes[0]
    categorical = set(result.model.categories_)
    labels = getattr(result.model.spec_, "labels_", None) or {}
    tick_of = {t.get_text(): int(round(pos)) for t, pos in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}
    shown = [c for c in categorical if labels.get(c, c) in tick_of]
    assert shown, "no categorical feature among the displayed ones"
    grey = to_rgba(plots.CATEGORICAL_GREY)[:3]
    for col in shown:
        row = tick_of[labels.get(col, col)]
        on_row = [c for c in ax.collections if len(c.get_offsets())
                  and int(round(float(np.median(np.asarray(c.get_offsets())[:, 1])))) == row]
        assert on_row and all(c.get_array() is None for c in on_row)
        assert any(tuple(c.get_facecolors()[0][:3]) == pytest.approx(grey) for c in on_row)


def test_a_training_horizon_other_than_the_labels_is_refused_before_any_fit() -> None:
    frame = snapshot_frame(200, 12, seed=2)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    messages: list[str] = []
    with pytest.raises(ValueError, match=r"training\.horizon_days is 30 but the training set's labels were built "
                                         r"with features\.horizon_days 14"):
        train_and_evaluate(FrameSet(frame), TrainingConfig(horizon_days=30), progress=messages.append)
    assert not any("fitting" in m for m in messages)


def test_card_comparison_fills_the_models_mql_columns_from_its_logged_mql_figures(trained) -> None:
    """The points scorer's MQL columns sit beside the model's, which are the recommended cut-off's
    figures (logged as mql_precision / mql_capture, given in the MQL section), not "-"."""
    result, _ = trained
    cut = result.recommended_threshold
    row = result.comparison.loc[MODEL_NAME]
    assert row["mql_precision"] == result.metrics["mql_precision"] == cut["precision"]
    assert row["mql_capture"] == result.metrics["mql_capture"] == cut["capture"]
    assert row["mql_share"] == cut["share_flagged"] > 0
    lines = result.model_card.splitlines()
    header = next(line for line in lines if line.startswith("| scorer | roc_auc"))
    cells = dict(zip(header.split("|")[1:-1], next(line for line in lines if line.startswith(
        f"| {MODEL_NAME} | ")).split("|")[1:-1], strict=True))
    shown = {k.strip(): v.strip() for k, v in cells.items() if k.strip().startswith("mql_")}
    assert shown == {"mql_share": f"{cut['share_flagged']:.3f}", "mql_precision": f"{cut['precision']:.3f}",
                     "mql_capture": f"{cut['capture']:.3f}"}, header
    assert f"precision {cut['precision']:.3f}, captures {cut['capture']:.1%}" in result.model_card


def test_a_reversed_calibration_slice_is_a_warning_and_a_note_not_reversed_probabilities() -> None:
    """The relation reverses after the training weeks (the validation slice converts the leads the booster
    scores lowest): Platt's fitted slope is negative; it is held at 0 and the run warns, in its progress
    and in the card's notes."""
    frame = snapshot_frame(400, 30, seed=5)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    later = frame["as_of"] >= frame["as_of"].quantile(0.5)
    reversed_p = 1 / (1 + np.exp(true_log_odds(frame[later]) + 4.2))
    frame.loc[later, "converted_within_h"] = (np.random.default_rng(1).random(len(reversed_p)) < reversed_p).astype(float)
    config = TrainingConfig(booster=BoosterConfig(max_rounds=40, early_stopping_rounds=10, learning_rate=0.1),
                            bootstrap_samples=5, shap_sample=150, capacity_share=0.1, make_plots=False,
                            calibration="platt")
    messages: list[str] = []
    result = train_and_evaluate(FrameSet(frame), config, points_rules=PointsRules(name="none", mql_threshold=30),
                                progress=messages.append)
    assert result.model.calibrator_.slope_ == 0
    assert np.ptp(result.predictions["probability"]) == 0  # one rate for every lead, never a reversed ranking
    warning = next(n for n in result.notes if n.startswith("Platt calibration: the fitted slope -"))
    assert "is not positive" in warning and "slope held at 0" in warning
    assert f"warning: {warning}" in messages and f"- {warning}" in result.model_card


def test_a_capacity_per_week_that_cannot_apply_is_replaced_with_a_note() -> None:
    """One test as_of date spans no weeks: the run uses capacity_share and says why, instead of
    silently reporting a cut-off for another capacity than the configured one."""
    frame = snapshot_frame(300, 12, seed=3)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    config = TrainingConfig(booster=BoosterConfig(max_rounds=20, early_stopping_rounds=5), bootstrap_samples=0,
                            make_plots=False, test_fraction=0.05, capacity_per_week=40, capacity_share=0.2)
    result = train_and_evaluate(FrameSet(frame), config,
                                points_rules=PointsRules(fit=[{"column": "seniority", "in": ["VP"], "points": 15}]))
    assert result.split["test_as_of"].split("..")[0] == result.split["test_as_of"].split("..")[1]
    assert result.recommended_threshold is None or result.recommended_threshold["capacity_unit"] == "share_flagged"
    assert any("training.capacity_per_week 40 not applied" in n and "capacity_share 20%" in n for n in result.notes)
    assert "capacity_per_week 40 not applied" in result.model_card


def _titles(fig) -> str:
    texts = [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        texts.append(fig._suptitle.get_text())
    return " | ".join(t for t in texts if t)


def test_every_figure_of_a_snapshot_run_names_its_test_slice(trained) -> None:
    result, _ = trained
    first, last = result.split["test_as_of"].split("..")
    assert result.figures
    for name, fig in result.figures.items():
        title = _titles(fig)
        assert "test" in title and f"{result.split['n_test']:,}" in title, (name, title)
        assert first in title and last in title, (name, title)


def test_every_figure_of_a_k_fold_flat_run_says_out_of_fold_not_test() -> None:
    from features.schema import FlatData
    from training.sales_readiness import train_and_evaluate_flat

    rng = np.random.default_rng(4)
    n = 900
    y = (rng.random(n) < 0.3).astype(float)
    frame = pd.DataFrame({"lead_id": np.arange(n), "label": y, "a": rng.normal(size=n) + y, "b": rng.normal(size=n),
                          "c": rng.choice(["x", "y", "z"], n)})
    config = TrainingConfig(booster=BoosterConfig(max_rounds=30, early_stopping_rounds=5), bootstrap_samples=0,
                            cv_folds=3, shap_sample=200)
    result = train_and_evaluate_flat(FlatData(frame, [], ["a", "b", "c"], {"a": "fit", "b": "fit", "c": "fit"}),
                                     config, points_rules=PointsRules(name="none", mql_threshold=30))
    assert result.figures
    for name, fig in result.figures.items():
        title = _titles(fig)
        assert f"{n:,}" in title and "test" not in title, (name, title)
        # SHAP values are the final model's, on rows it was fitted on: said so, not "out-of-fold"
        assert ("fitted on them" if name == "shap_summary" else "out-of-fold") in title, (name, title)



def test_card_opens_with_a_summary_in_plain_words_whose_figures_are_the_logged_ones(trained) -> None:
    """A revenue team reads the top of the card: the figures they act on (share of conversions in the top
    10% by score vs the points rules, the recommended cut-off) were only in wide tables of column names."""
    result, _ = trained
    lines = result.model_card.splitlines()
    assert "## In short" in lines and lines.index("## In short") < lines.index("## Evaluation")
    summary = "\n".join(lines[lines.index("## In short"):lines.index("## Evaluation")])
    m = result.metrics
    first, last = result.split["test_as_of"].split("..")
    assert f"{result.split['n_test']:,}" in summary and first in summary and last in summary
    assert f"{m['top_decile_capture']:.0%} of the conversions" in summary
    points = next(k for k in m if k.startswith("baseline_points_") and k.endswith("_top_decile_capture"))
    assert f"{m[points]:.0%}" in summary
    assert f"ROC AUC {m['roc_auc']:.3f} (95% interval {m['roc_auc_lo']:.3f} to {m['roc_auc_hi']:.3f})" in summary
    cut = result.recommended_threshold
    assert f"score {cut['cutoff']} or more" in summary and f"{cut['precision']:.0%} of them convert" in summary
    assert f"{cut['capture']:.0%} of all conversions" in summary


def test_a_capacity_no_cut_off_fits_is_named_in_the_card_and_the_printout() -> None:
    """The card said "No cut-off fits the capacity." and the printout "none fits the sales capacity", naming
    neither the capacity nor what the highest cut-off flags: a user could not tell which setting to change."""
    from leadscore.cli_models import threshold_line
    from training.thresholds import capacity_of

    frame = snapshot_frame(300, 12, seed=3)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    config = TrainingConfig(booster=BoosterConfig(max_rounds=20, early_stopping_rounds=5), bootstrap_samples=0,
                            make_plots=False, capacity_share=0.00001)
    result = train_and_evaluate(FrameSet(frame), config,
                                points_rules=PointsRules(fit=[{"column": "seniority", "in": ["VP"], "points": 15}]))
    assert result.recommended_threshold is None
    capacity, unit = capacity_of(result.thresholds, config.capacity_per_week, config.capacity_share)
    assert unit == "share_flagged"
    last = result.thresholds[result.thresholds["leads_flagged"] > 0].iloc[-1]
    assert result.no_cut_off.startswith("no cut-off fits the capacity of 0.001% of leads")
    assert f"even cut-off {int(last['cutoff'])}, the highest that flags a lead, flags" in result.no_cut_off
    section = result.model_card.split("## MQL threshold", 1)[1]
    assert section.lstrip().startswith("No cut-off fits the capacity of 0.001% of leads")
    line = threshold_line(result.recommended_threshold, result.no_cut_off)
    assert line.startswith("MQL cut-off: no cut-off fits the capacity of 0.001% of leads") and "even cut-off" in line


def test_a_rate_that_rises_after_the_calibration_rows_is_named_in_the_card() -> None:
    """The demo's test slice converts at 0.0138 where its validation slice, the calibrator's rows, converted at a
    lower rate: the model under-predicts by 24% with an ECE of 0.004, and nothing said why. The run now logs the
    validation slice's rate, and the card names the shift."""
    frame = snapshot_frame(600, 30, seed=5)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    late = frame["as_of"] >= frame["as_of"].quantile(0.8)
    extra = np.random.default_rng(2).random(len(frame)) < 0.15
    frame.loc[late & extra, "converted_within_h"] = 1.0  # the latest snapshots convert far more often
    config = TrainingConfig(booster=BoosterConfig(max_rounds=40, early_stopping_rounds=10, learning_rate=0.1),
                            bootstrap_samples=0, make_plots=False, capacity_share=0.1)
    result = train_and_evaluate(FrameSet(frame), config, points_rules=PointsRules(name="none", mql_threshold=30))
    first, last = (pd.Timestamp(d) for d in result.split["valid_as_of"].split(".."))
    valid = frame[(frame["as_of"] >= first) & (frame["as_of"] <= last)]
    assert len(valid) == result.split["n_valid"]
    rate = valid["converted_within_h"].mean()
    assert result.metrics["calibration_base_rate"] == pytest.approx(rate)
    observed = result.predictions["label"].mean()
    assert observed > 1.3 * rate and result.metrics["predicted_observed_ratio"] < 0.95
    assert (f"The gap is a shift of the rate, not of the ranking: the calibration rows (validation slice) converted "
            f"at {rate:.4f}, these at {observed:.4f} ({observed / rate - 1:+.0%})") in result.model_card
    assert f"conversion rate of the validation slice (the calibration rows): {rate:,.4g}" in result.model_card


def test_a_misspelt_segment_column_is_refused_with_the_column_it_may_mean() -> None:
    """`training.segment_columns: [industri]` listed the frame's columns without naming the one meant."""
    from training.sales_readiness import check_segment_columns

    frame = snapshot_frame(100, 12, seed=1)
    config = TrainingConfig(segment_columns=["industri", "lead_source", "colour"])
    with pytest.raises(KeyError) as caught:
        check_segment_columns(frame, config, "training set")
    message = str(caught.value)
    assert "training.segment_columns: ['industri', 'colour'] not in the training set" in message
    assert "for 'industri', did you mean 'industry'?" in message and "for 'colour'" not in message


def test_the_card_names_the_calibration_in_words(trained) -> None:
    """The card said "isotonic calibration", which reads as a step function; it is centered isotonic regression."""
    result, _ = trained
    words = {"platt": "Platt calibration on held-out data",
             "isotonic": "centered isotonic (piecewise linear between the isotonic blocks' mean margins) calibration"}
    assert words[result.model.calibrator_.kind] in result.model_card
    frame = snapshot_frame(1500, 30, seed=2)
    frame = frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)
    config = TrainingConfig(booster=BoosterConfig(max_rounds=30, early_stopping_rounds=10, learning_rate=0.1),
                            bootstrap_samples=0, make_plots=False, calibration="isotonic")
    isotonic = train_and_evaluate(FrameSet(frame), config, points_rules=PointsRules(name="none", mql_threshold=30))
    assert words["isotonic"] in isotonic.model_card
