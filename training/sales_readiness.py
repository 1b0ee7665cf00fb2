"""One entry point per data mode: fit the sales-readiness model, evaluate it honestly next to its
baselines, raise the leakage alarm, pick the MQL threshold, draw the figures, write a model card.

- ``train_and_evaluate(training_set, config, ...)``: snapshot data (``as_of``); time-ordered
  train / valid / test with an H-day gap before the test slice (none between train and valid:
  see :func:`training.evaluation.time_ordered_split`).
- ``train_and_evaluate_flat(flat, config, ...)``: one row per lead, no timestamps; grouped
  stratified K-fold by ``lead_id``; the final model is refit on all rows with the folds' median
  best iteration and calibrated on the cross-validated out-of-fold margins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.schema import CREATED_AT, FIT, LEAD_ID, FlatData
from training import plots
from training.baselines import (
    LogisticBaseline,
    PointsRules,
    points_score,
    resolve_points_rules,
    score_column_baseline,
    unknown_behaviour_types,
    unmatched_fit_rules,
)
from training.calibration import cross_fitted_calibration, rate_shift_note
from training.config import AS_OF, TrainingConfig
from training.evaluation import (
    bootstrap_auc_ci,
    capture_at_capacity,
    grouped_folds,
    probability_metrics,
    ranking_metrics,
    segment_table,
    time_ordered_split,
    top_k_sums,
    weeks_represented,
)
from training.leakage import (
    LeakageReport,
    leakage_report,
    oof_single_feature_auc,
    single_feature_auc,
)
from training.model import SalesReadinessModel, probability_to_score, rows_of, search_booster, take_rows
from training.progress import Progress, no_progress
from training.thresholds import (
    capacity_of,
    no_cut_off_text,
    recommend_threshold,
    table_to_markdown,
    threshold_table,
)

MODEL_NAME = "lightgbm (calibrated)"
LOGISTIC_NAME = "logistic regression"
# Columns of a TrainingSet frame that are never features.
NON_FEATURE_COLUMNS = ("lead_id", "as_of", "converted_within_h", "censored", "days_observed", "event",
                       "days_to_convert", "label")
COMPARISON_COLUMNS = ["roc_auc", "roc_auc_lo", "roc_auc_hi", "pr_auc", "log_loss", "brier", "ece",
                      "top_decile_lift", "top_decile_capture", "capture_at_capacity", "coverage"]


@dataclass
class TrainingResult:
    """Everything one training run produced (the MLflow layer logs it, the CLI prints it)."""

    model: SalesReadinessModel
    metrics: dict[str, float]
    comparison: pd.DataFrame
    segments: pd.DataFrame
    leakage: LeakageReport
    thresholds: pd.DataFrame
    recommended_threshold: dict[str, Any] | None
    figures: dict[str, Figure]
    model_card: str
    predictions: pd.DataFrame  # evaluation rows: lead_id, (as_of), label, probability, score, baselines
    split: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    points_rules: PointsRules | None = None  # the hand-tuned rules the run compared with
    no_cut_off: str = ""  # why no MQL cut-off is recommended (the capacity, what the highest cut-off flags)
    # with ``training.refit``: ``model`` is the refit registered for deployment, this the model the figures are about
    backtest_model: SalesReadinessModel | None = None


def feature_columns_of(frame: pd.DataFrame, spec: Any = None) -> list[str]:
    """Feature columns: the spec's order when it has one, else every non-meta column."""
    order = getattr(spec, "columns_", None)
    if order:
        missing = [c for c in order if c not in frame.columns]
        if missing:
            raise KeyError(f"training frame lacks FeatureSpec column(s) {missing}")
        return list(order)
    return [c for c in frame.columns if c not in NON_FEATURE_COLUMNS]


def dated_flat_rows(frame: pd.DataFrame) -> bool:
    """Flat rows that all carry a timestamp (``created_at``): split by time, not K-fold."""
    return CREATED_AT in frame.columns and bool(frame[CREATED_AT].notna().all())


def check_segment_columns(frame: pd.DataFrame, config: TrainingConfig, table: str) -> None:
    """``training.segment_columns`` must name columns of the frame: checked before any fitting."""
    missing = [c for c in config.segment_columns if c not in frame.columns]
    if missing:
        from features.contract import did_you_mean

        columns = [c for c in frame.columns if c not in NON_FEATURE_COLUMNS]
        hints = "".join(f"; for {c!r}, {hint.removeprefix('; ')}" for c in missing
                        if (hint := did_you_mean(c, columns)))
        raise KeyError(f"training.segment_columns: {missing} not in the {table}{hints} (its columns: {columns[:30]})")


def _horizon(training_set: Any, config: TrainingConfig) -> int:
    """The label horizon H: the training set's (its labels were built with it); ``training.horizon_days``
    only where the training set does not say, and refused when it says otherwise."""
    spec = getattr(training_set, "spec", None)
    built = next((int(v) for v in (getattr(training_set, "horizon_days", None), getattr(spec, "horizon_days", None),
                                   getattr(getattr(spec, "config", None), "horizon_days", None)) if v), None)
    if built is not None and config.horizon_days is not None and int(config.horizon_days) != built:
        raise ValueError(f"training.horizon_days is {config.horizon_days} but the training set's labels were built "
                         f"with features.horizon_days {built}: set features.horizon_days to {config.horizon_days} "
                         "(the labels follow it) and drop training.horizon_days")
    if built is not None:
        return built
    if config.horizon_days:
        return int(config.horizon_days)
    raise ValueError("horizon_days unknown: set training.horizon_days or give a TrainingSet that carries it")


def _capacity_rows(config: TrainingConfig, n_rows: int, weeks: float | None, notes: list[str]) -> tuple[int, str]:
    """Evaluation rows sales can work, and the capacity in words; a ``capacity_per_week`` that cannot
    apply (the evaluation rows span no measurable weeks) is replaced by ``capacity_share``, with a note."""
    if config.capacity_per_week is not None and weeks:
        return int(round(config.capacity_per_week * weeks)), f"{config.capacity_per_week:g} leads/week"
    if config.capacity_per_week is not None:
        notes.append(f"training.capacity_per_week {config.capacity_per_week:g} not applied: the evaluation rows "
                     "span no measurable weeks (one as_of date, or no dates); the MQL cut-off and capture at "
                     f"capacity use training.capacity_share {config.capacity_share:.0%} of leads instead")
    return int(round(config.capacity_share * n_rows)), f"top {config.capacity_share:.0%} of leads"


def calibration_summary(y: np.ndarray, p: np.ndarray, fraction: float = 0.1) -> dict[str, float]:
    """Calibration in the large and at the top: mean predicted / observed rate over all rows, and the
    mean predicted and observed rates of the top ``fraction`` by ``p`` (ordered as top-decile lift).

    ECE averages per-bin gaps weighted by bin size, so with rare conversions it stays tiny even when
    the model under-predicts by a quarter; these figures show that gap directly.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    nan = float("nan")
    if not len(y):
        return {"predicted_observed_ratio": nan, "top_decile_predicted": nan, "top_decile_observed": nan}
    observed, predicted = float(y.mean()), float(p.mean())
    n_top = max(1, int(round(len(y) * fraction)))
    return {
        "predicted_observed_ratio": predicted / observed if observed > 0 else nan,
        "top_decile_predicted": float(top_k_sums(p, p)[n_top] / n_top),
        "top_decile_observed": float(top_k_sums(y, p)[n_top] / n_top),  # ties at the cut-off shared
    }


def _comparison_row(y: np.ndarray, score: np.ndarray, capacity_rows: int, config: TrainingConfig,
                    probability: bool, coverage: float = 1.0) -> dict[str, float]:
    if probability:
        row = probability_metrics(y, score, config.ece_bins, config.ece_binning)
        row.update(calibration_summary(y, score))
    else:
        row = ranking_metrics(y, score)
    lo, hi = bootstrap_auc_ci(y, score, config.bootstrap_samples, config.seed)
    row.update(roc_auc_lo=lo, roc_auc_hi=hi, capture_at_capacity=capture_at_capacity(y, score, capacity_rows),
               coverage=coverage)
    return row


def _points_baseline(
    eval_frame: pd.DataFrame,
    y: np.ndarray,
    points_rules: PointsRules,
    events: pd.DataFrame | None,
    capacity_rows: int,
    config: TrainingConfig,
    notes: list[str],
) -> tuple[str, dict[str, float], np.ndarray] | None:
    """The hand-tuned points scorer on the evaluation rows (None, with a note, when it cannot score)."""
    rules, dropped = points_rules.applicable_to(eval_frame.columns, events is not None)
    if unknown := unknown_behaviour_types(rules, events):
        notes.append(f"points rules {rules.name!r}: behaviour event type(s) {unknown} occur in no event (a typo?)")
    if dropped:
        notes.append(f"points rules {rules.name!r}: skipped {'; '.join(dropped)}")
    if unmatched := unmatched_fit_rules(rules, eval_frame):
        notes.append(f"points rules {rules.name!r}: fit rule(s) that match no evaluation row, so score nothing: "
                     + "; ".join(unmatched))
    if rules.is_empty:
        notes.append(f"points baseline skipped: no rule of {rules.name!r} applies to this data; name rules "
                     "written for it in training.points_rules (or leadscore train --points-rules)")
        return None
    try:
        pts = points_score(eval_frame, rules, events)
    except (KeyError, ValueError) as exc:
        notes.append(f"points baseline not scored: {exc}")
        return None
    if len(pts) and np.ptp(pts) == 0:
        notes.append(f"points rules {rules.name!r} give every evaluation row the same score ({pts[0]:g})")
    notes.append(f"points baseline: rules {rules.name!r} ({len(rules.fit)} fit, {len(rules.columns)} column and "
                 f"{len(rules.behaviour)} behaviour rules, MQL at {rules.mql_threshold:g} points)")
    row = _comparison_row(y, pts, capacity_rows, config, probability=False)
    mql = pts >= rules.mql_threshold
    row["mql_share"] = float(mql.mean())
    row["mql_precision"] = float(y[mql].mean()) if mql.any() else float("nan")
    row["mql_capture"] = float(y[mql].sum() / max(y.sum(), 1))
    return f"points: {rules.name}", row, pts


def _baselines(
    eval_frame: pd.DataFrame,
    y: np.ndarray,
    logistic_scores: np.ndarray | None,
    points_rules: PointsRules,
    events: pd.DataFrame | None,
    score_columns: list[str],
    capacity_rows: int,
    config: TrainingConfig,
    notes: list[str],
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Points scorer, existing score columns and logistic regression on the same evaluation rows."""
    rows: dict[str, dict[str, float]] = {}
    scores: dict[str, np.ndarray] = {}
    points = _points_baseline(eval_frame, y, points_rules, events, capacity_rows, config, notes)
    if points is not None:
        name, rows[name], scores[name] = points
    for col in score_columns:
        if col not in eval_frame.columns:
            notes.append(f"score column {col!r} not in the evaluation frame; baseline skipped")
            continue
        values, coverage = score_column_baseline(eval_frame[col])
        name = f"score: {col}"
        scores[name] = values
        rows[name] = _comparison_row(y, values, capacity_rows, config, probability=False, coverage=coverage)
        covered = eval_frame[col].notna().to_numpy()
        if covered.any() and 0 < y[covered].sum() < covered.sum():
            rows[name]["roc_auc_covered_only"] = ranking_metrics(y[covered], values[covered])["roc_auc"]
    if logistic_scores is not None:
        scores[LOGISTIC_NAME] = logistic_scores
        rows[LOGISTIC_NAME] = _comparison_row(y, logistic_scores, capacity_rows, config, probability=True)
    return rows, scores


def points_rules_for(points_rules: PointsRules | None, config: TrainingConfig) -> PointsRules:
    """The points rules of a run: those given (the CLI reads them at its edge), else the file
    ``config.points_rules`` names, else the packaged default. The one place a library call without rules
    (the notebook, benchmarks, the forecast backtest) gets them."""
    return points_rules if points_rules is not None else resolve_points_rules(config.points_rules)


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    """A search summary to print: its figures rounded, without the list of trials."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items() if k != "trials"}


def _search_metrics(summary: dict[str, Any] | None) -> dict[str, float]:
    """The search's figures and best parameters as run metrics (``search_*``); empty without a search."""
    if summary is None:
        return {}
    return {f"search_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)}


def _comparison_frame(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(rows, orient="index")
    extra = [c for c in frame.columns if c not in COMPARISON_COLUMNS and c not in ("n", "n_positive", "base_rate")]
    cols = [c for c in COMPARISON_COLUMNS if c in frame.columns] + extra
    return frame[cols].rename_axis("scorer")


FEW_CONVERSIONS = 100  # the defaults are made for ~100 conversions or more (README: ~1,000 leads / 100 conversions)


def check_slice_classes(slices: dict[str, np.ndarray], y: np.ndarray, dates: pd.Series, unit: str) -> None:
    """Every fitting slice (``training``, ``validation``) must hold both classes: else a ValueError naming the
    slice, its rows and dates, and the conversions of every slice (``test`` included)."""
    counts = ", ".join(f"{int(y[rows].sum()):,} in {name}" for name, rows in slices.items())
    for name, rows in slices.items():
        if name == "test" or not len(rows) or 0 < y[rows].sum() < len(rows):
            continue
        what = "no conversion" if y[rows].sum() == 0 else "only conversions"
        span = f"{dates.iloc[rows].min():%Y-%m-%d}..{dates.iloc[rows].max():%Y-%m-%d}"
        raise ValueError(
            f"the {name} slice ({len(rows):,} {unit}, as of {span}) holds {what}: too few conversions to train and "
            f"calibrate (converting {unit}: {counts}). More history or more leads are needed (the defaults are made "
            f"for ~{FEW_CONVERSIONS} conversions or more); training.test_fraction and validation_fraction move the cuts")


def few_conversions_note(counts: dict[str, int], unit: str) -> str | None:
    """A note when the rows a model learns from hold fewer than ``FEW_CONVERSIONS`` conversions."""
    fitting = sum(v for k, v in counts.items() if k != "test")
    if fitting >= FEW_CONVERSIONS:
        return None
    return (f"few conversions to learn from: converting {unit} {', '.join(f'{v:,} in {k}' for k, v in counts.items())}"
            f" (the defaults are made for ~{FEW_CONVERSIONS} or more): the AUC intervals show how little the figures "
            "say, and promotion needs at least 20 converting leads in the evaluation rows")


def no_split_warning(model: SalesReadinessModel, y_train: np.ndarray) -> str | None:
    """A warning when the booster made no split: every lead then gets one probability."""
    if model.feature_importance("split").sum() > 0:
        return None
    return (f"the booster made no split: its {len(y_train):,} training rows hold {int(np.sum(y_train)):,} "
            f"conversion(s) and every leaf needs min_data_in_leaf {model.params_['min_data_in_leaf']:,} rows, so every "
            "lead gets the same probability (no ranking, no reasons); more conversions are needed, or a smaller "
            "training.booster.min_data_in_leaf")


def _calibration_rule(method: str) -> str:
    """Why the calibrator is the kind it is: the ``auto`` rule, or the setting that named it."""
    return ("auto: isotonic from 1,000 rows and 100 conversions, else Platt" if method == "auto"
            else "training.calibration")


def fit_note(model: SalesReadinessModel, y_valid: np.ndarray, max_rounds: int, patience: int,
             unit: str = "snapshots") -> str:
    """What a time-ordered fit did: the trees early stopping kept and the calibration on the validation slice."""
    stopped = (f"early stopping: no better validation score in {patience} more rounds"
               if model.best_iteration_ < max_rounds else
               "early stopping did not stop it: training.booster.max_rounds may be too low")
    return (f"LightGBM: {model.best_iteration_} of at most {max_rounds} trees ({stopped}); "
            f"{model.calibrator_.kind} calibration on the {len(y_valid):,} validation {unit} "
            f"({int(np.sum(y_valid)):,} converting; {_calibration_rule(model.calibration)})")


def refit_for_deployment(frame: pd.DataFrame, labelled: np.ndarray, split: Any, y: np.ndarray, features: list[str],
                         backtest: SalesReadinessModel, spec: Any) -> SalesReadinessModel:
    """The model to register: the backtest model's booster settings and tree count refit on every labelled row
    before the test slice (training + validation slices), calibrated on the test slice (the latest labelled rows).

    Its booster never sees a test row, so the test rows still grade its ranking; its calibrator was fitted on
    them, labelled by outcomes up to the data end, so the run's figures stay the backtest model's (``predictions``),
    and the registry grades it with the backtest model on every row dated up to the data end
    (:func:`training.registry.out_of_sample_probabilities`)."""
    pool = np.sort(np.concatenate([split.train, split.valid]))
    X_pool = take_rows(frame, labelled[pool], features)
    model = SalesReadinessModel(backtest.booster_config, backtest.calibration, backtest.horizon_days,
                                backtest.seed).fit(X_pool, y[pool], num_boost_round=backtest.best_iteration_, spec=spec)
    del X_pool
    X_test = take_rows(frame, labelled[split.test], features)
    return model.calibrate(model.predict_raw(X_test), y[split.test])


def refit_summary(model: SalesReadinessModel, y_test: np.ndarray) -> dict[str, Any]:
    """What the deployment refit fitted on (the run's split.json, the model card's split line)."""
    return {"rows": int(model.n_train_), "trees": int(model.best_iteration_), "calibration": model.calibrator_.kind,
            "calibration_rows": len(y_test), "calibration_conversions": int(np.sum(y_test))}


def refit_note(model: SalesReadinessModel, y_test: np.ndarray, unit: str = "snapshots") -> str:
    """What the deployment refit did, and which model the run's figures are about."""
    return (f"registered model refit for deployment: {model.best_iteration_} trees (the backtest's) on the "
            f"{model.n_train_:,} training and validation {unit}, {model.calibrator_.kind} calibration on the "
            f"{len(y_test):,} test {unit} ({int(np.sum(y_test)):,} converting; the latest labelled rows); the "
            "evaluation figures are the backtest model's (fitted on the training slice, calibrated on the validation "
            "slice), which graded the procedure on rows it never saw (training.refit: false registers that model)")


def flat_fit_note(model: SalesReadinessModel, folds: int, best_iterations: list[int], n_rounds: int,
                  y: np.ndarray) -> str:
    """What a K-fold fit did: each fold's early-stopped trees, the final model's rounds and its calibration."""
    return (f"LightGBM: {folds}-fold cross-validation (best iterations per fold: "
            f"{', '.join(str(i) for i in best_iterations)}; early stopping on a fifth of each fold's training rows), "
            f"final model {n_rounds} rounds on all {len(y):,} rows; {model.calibrator_.kind} calibration cross-fitted "
            f"on the out-of-fold margins ({len(y):,} rows, {int(np.sum(y)):,} converting; "
            f"{_calibration_rule(model.calibration)})")


def _warn(warning: str | None, notes: list[str], say: Progress) -> None:
    if warning:
        notes.append(warning)
        say(f"warning: {warning}")


def _note(note: str | None, notes: list[str], say: Progress) -> None:
    if note:
        notes.append(note)
        say(note)


def _calibration_warning(model: SalesReadinessModel, notes: list[str], say: Progress) -> None:
    """The calibrator's warning (a Platt slope held at 0: no usable signal) into the notes and the progress."""
    if warning := getattr(model.calibrator_, "warning_", None):
        notes.append(warning)
        say(f"warning: {warning}")


def _with_model_mql(comparison: pd.DataFrame, recommended: dict[str, Any] | None) -> pd.DataFrame:
    """The model's cells of the MQL columns (``mql_share`` / ``mql_precision`` / ``mql_capture``, which the
    points baseline fills at its own MQL threshold) at the recommended cut-off: the figures logged as
    ``mql_*`` and given in the card's MQL section. Left empty when no cut-off fits the capacity."""
    if recommended is not None and MODEL_NAME in comparison.index:
        for column, key in (("mql_share", "share_flagged"), ("mql_precision", "precision"),
                            ("mql_capture", "capture")):
            if column in comparison.columns:
                comparison.loc[MODEL_NAME, column] = float(recommended[key])
    return comparison


def _flat_metrics(model_row: dict[str, float], comparison: pd.DataFrame, leakage: LeakageReport,
                  recommended: dict[str, Any] | None, extra: dict[str, float]) -> dict[str, float]:
    metrics = {k: float(v) for k, v in model_row.items() if isinstance(v, int | float)}
    for name, row in comparison.drop(index=MODEL_NAME, errors="ignore").iterrows():
        key = "baseline_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        for metric in ("roc_auc", "pr_auc", "log_loss", "ece", "top_decile_capture", "coverage"):
            if metric in row and pd.notna(row[metric]):
                metrics[f"{key}_{metric}"] = float(row[metric])
    metrics["leakage_flagged"] = float(leakage.flagged)
    if recommended is not None:
        metrics["mql_cutoff"] = float(recommended["cutoff"])
        metrics["mql_capture"] = float(recommended["capture"])
        metrics["mql_precision"] = float(recommended["precision"])
    metrics.update(extra)
    return metrics


def test_slice_label(split: dict[str, Any], unit: str, dated: str = "as of") -> str:
    """The test rows a figure shows, for its title: slice, count and dates."""
    first, _, last = str(split.get("test_as_of", "")).partition("..")
    dates = f" {dated} {first} to {last}" if first and last and first != last else f" {dated} {first}" if first else ""
    return f"test slice, {int(split['n_test']):,} {unit}{dates}"


def _figures(y: np.ndarray, p: np.ndarray, score: np.ndarray, baseline_scores: dict[str, np.ndarray],
             comparison: pd.DataFrame, thresholds: pd.DataFrame, recommended: dict[str, Any] | None,
             model: SalesReadinessModel, shap_frame: pd.DataFrame, config: TrainingConfig,
             data: str, shap_data: str) -> dict[str, Figure]:
    """The run's figures; ``data`` names their rows (title), ``shap_data`` the SHAP sample's."""
    curves = {MODEL_NAME: (y, p), **{k: (y, v) for k, v in baseline_scores.items()}}
    contrib = model.predict_contributions(shap_frame)
    labels = getattr(model.spec_, "labels_", None) or {}
    names = [labels.get(c, c) for c in model.feature_columns_]
    return {
        "roc": plots.roc_figure(curves, data),
        "pr": plots.pr_figure(curves, data),
        "reliability": plots.reliability_figure(y, p, config.ece_bins, config.ece_binning, data=data),
        "gain": plots.lift_gain_figure(curves, data),
        "score_distribution": plots.score_distribution_figure(
            score, y, None if recommended is None else int(recommended["cutoff"]), horizon=model.horizon_days,
            data=data, no_cutoff="no MQL cut-off fits the sales capacity (see the threshold figure)"),
        "thresholds": plots.threshold_figure(
            thresholds, recommended, data, capacity=capacity_of(thresholds, config.capacity_per_week,
                                                                config.capacity_share)),
        "shap_summary": plots.shap_summary_figure(
            contrib, model.encode(shap_frame), names,
            categorical=[c in model.categories_ for c in model.feature_columns_], data=shap_data),
        "baselines": plots.baseline_comparison_figure(comparison, data=data),
    }


# split keys shown as "<slice> <n> rows (as of <dates> | <how>)": (label, count key, date or description keys)
_SLICES = (("train", "n_train", ("train_as_of", "fit_as_of")), ("validation", "n_valid", ("valid_as_of", "validation")),
           ("test", "n_test", ("test_as_of",)))
_SPLIT_LABELS = {
    "horizon_days": "horizon (days)", "n_censored_excluded": "censored snapshots excluded",
    "n_gap_excluded": "rows in the horizon gaps excluded", "test_weeks": "test weeks", "n_rows": "rows",
    "best_iterations": "best iterations per fold", "final_rounds": "final model rounds",
    "n_short_follow_up_unused": "short follow-up snapshots unused", "censored_at": "censored at",
    "data_end": "data end", "fold_searches": "per-fold searches",
    "calibration_base_rate": "conversion rate of the validation slice (the calibration rows)",
    "refit": "registered model refit for deployment",
}


def _split_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):,.4g}"
    if isinstance(value, dict):  # a search's list of trials is its own artifact (evaluation/search_trials.csv)
        return "{" + ", ".join(f"{k} {_split_value(v)}" for k, v in value.items() if k != "trials") + "}"
    if isinstance(value, list | tuple):
        return ", ".join(_split_value(v) for v in value)
    return str(value).replace("..", " to ")


def split_text(split: dict[str, Any]) -> str:
    """The evaluation split as one readable line: rows and dates per slice, then the other facts."""
    parts, used = [], set()
    for label, n_key, date_keys in _SLICES:
        if n_key not in split:
            continue
        used.add(n_key)
        text = f"{label} {_split_value(split[n_key])} rows"
        about = [k for k in date_keys if split.get(k)]
        if about:
            used.add(about[0])
            value = str(split[about[0]])
            text += f" (as of {_split_value(value)})" if ".." in value else f" ({value})"
        parts.append(text)
    for key, value in split.items():
        if key in used:
            continue
        if key == "mode":
            parts.insert(0, str(value))
        else:
            parts.append(f"{_SPLIT_LABELS.get(key, key.replace('_', ' '))}: {_split_value(value)}")
    return "; ".join(parts)


# the model card shows these in its calibration table, not in the comparison table
CALIBRATION_COLUMNS = ("mean_predicted", "predicted_observed_ratio", "top_decile_predicted", "top_decile_observed")


def _calibration_md(comparison: pd.DataFrame, observed: float) -> str:
    """Mean predicted vs observed rate, overall and in the top 10%, for the probability scorers."""
    cols = [*CALIBRATION_COLUMNS, "ece"]
    if not set(cols) <= set(comparison.columns):
        return "(no calibration figures)"
    rows = comparison[cols].dropna(subset=["mean_predicted"])
    lines = ["| scorer | observed rate | mean predicted | predicted / observed | top 10%: observed | "
             "top 10%: predicted | ECE |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.iterrows():
        lines.append(f"| {name} | {observed:.4f} | {r['mean_predicted']:.4f} | {r['predicted_observed_ratio']:.2f} | "
                     f"{r['top_decile_observed']:.4f} | {r['top_decile_predicted']:.4f} | {r['ece']:.4f} |")
    return "\n".join(lines)


def _calibration_sentence(row: pd.Series, observed: float, calibration_rate: float = float("nan"),
                          refit: bool = False) -> str:
    """How far the model's average prediction is from the observed rate, in words; when the rate moved after the
    calibration rows (``calibration_rate``), that is said too, and what it means for served scores (``refit``: the
    registered model was calibrated on these rows)."""
    ratio = float(row.get("predicted_observed_ratio", float("nan")))
    if not np.isfinite(ratio):
        return "Calibration in the large: undefined (no conversions among the evaluation rows)."
    verdict = ("matches the observed rate" if abs(ratio - 1) < 0.05 else
               f"{'under' if ratio < 1 else 'over'}-predicts by {abs(ratio - 1):.0%}")
    shift = rate_shift_note(observed, calibration_rate) if abs(ratio - 1) >= 0.05 else ""
    served = ("The registered model was calibrated on these rows (`training.refit`), so served scores follow "
              "this rate." if refit else "Served scores move when a model is trained on later snapshots "
              "(`training.refit: true` calibrates the registered model on these rows).")
    shift = (f" The gap is a shift of the rate, not of the ranking: {shift}. The revenue forecast recalibrates on "
             f"recent snapshots (`forecast: recalibration:`). {served}") if shift else ""
    return (f"Calibration in the large: mean predicted {row['mean_predicted']:.4f} vs observed rate {observed:.4f} "
            f"(predicted / observed {ratio:.2f}: {verdict}); top 10% by score: predicted "
            f"{row['top_decile_predicted']:.4f} vs observed {row['top_decile_observed']:.4f}. ECE weighs each "
            f"bin's gap by its size, so with rare conversions it stays small even when these differ.{shift}")


def _md_table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    cols = [frame.index.name or "", *frame.columns]
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for idx, row in frame.iterrows():
        cells = [("-" if np.isnan(v) else float_format.format(v)) if isinstance(v, float) else str(v)
                 for v in row.tolist()]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _no_cut_off(table: pd.DataFrame, recommended: dict[str, Any] | None, config: TrainingConfig) -> str:
    """Why no MQL cut-off is recommended (empty when one is): the capacity and what the highest cut-off flags."""
    if recommended:
        return ""
    return no_cut_off_text(table, *capacity_of(table, config.capacity_per_week, config.capacity_share))


def _threshold_sentence(recommended: dict[str, Any] | None, no_cut_off: str = "") -> str:
    """The recommended MQL cut-off, its capacity in words, precision and capture."""
    if not recommended:
        return (no_cut_off[:1].upper() + no_cut_off[1:] + ".") if no_cut_off else "No cut-off fits the capacity."
    capacity = (f"{recommended['capacity']:g} leads/week" if recommended["capacity_unit"] == "leads_per_week"
                else f"{recommended['capacity']:.0%} of leads")
    return (f"Recommended cut-off {recommended['cutoff']} for a capacity of {capacity}: precision "
            f"{recommended['precision']:.3f}, captures {recommended['capture']:.1%} of conversions.")


def _in_short(comparison: pd.DataFrame, recommended: dict[str, Any] | None, leakage: LeakageReport, data: str,
              n_positive: int, notes: list[str]) -> list[str]:
    """The card's opening section: the figures a revenue team acts on, in words (the logged metrics)."""
    if MODEL_NAME not in comparison.index:
        return []
    row = comparison.loc[MODEL_NAME]
    others = comparison.drop(index=MODEL_NAME)
    peers = ", ".join(f"{name} {r['top_decile_capture']:.0%}" for name, r in others.iterrows()
                      if pd.notna(r.get("top_decile_capture")))
    lines = ["## In short", f"Evaluated on: {data}; {n_positive:,} conversions.", "",
             f"- Calling the 10% of leads the model scores highest reaches {row['top_decile_capture']:.0%} of the "
             f"conversions" + (f"; the same 10% by the other scorers: {peers}" if peers else "") + " (random order: 10%)."]
    if recommended:
        volume = (f"{recommended['leads_per_week']:.1f} leads per week ({recommended['share_flagged']:.1%} of leads)"
                  if pd.notna(recommended.get("leads_per_week")) else f"{recommended['share_flagged']:.1%} of leads")
        lines.append(f"- Recommended MQL cut-off: score {recommended['cutoff']} or more flags {volume}; "
                     f"{recommended['precision']:.0%} of them convert, {recommended['capture']:.0%} of all conversions.")
    auc = f"- Ranking quality: ROC AUC {row['roc_auc']:.3f}"
    if pd.notna(row.get("roc_auc_lo")) and pd.notna(row.get("roc_auc_hi")):
        auc += f" (95% interval {row['roc_auc_lo']:.3f} to {row['roc_auc_hi']:.3f})"
    best = others["roc_auc"].dropna() if "roc_auc" in others.columns else pd.Series(dtype=float)
    if len(best):
        auc += f"; best other scorer {best.idxmax()} {best.max():.3f}"
    lines.append(auc + " (1 = perfect order, 0.5 = random).")
    if leakage.to_text():
        lines.append(f"- {leakage.to_text().splitlines()[0]}.")
    if notes:
        lines.append("- Read the notes at the end of this card.")  # not counted: the workflow may add one later
    return [*lines, ""]


def _model_card(title: str, horizon: int | None, split: dict[str, Any], model: SalesReadinessModel,
                comparison: pd.DataFrame, segments: pd.DataFrame, leakage: LeakageReport,
                thresholds: pd.DataFrame, recommended: dict[str, Any] | None, notes: list[str],
                config: TrainingConfig, observed_rate: float = float("nan"), data: str = "evaluation rows",
                n_positive: int = 0) -> str:
    cal = {"isotonic": "centered isotonic (piecewise linear between the isotonic blocks' mean margins)",
           "platt": "Platt"}.get(model.calibrator_.kind, model.calibrator_.kind)
    target = (f"P(lead converts within {horizon} days of the scoring instant)" if horizon else
              "P(lead converts) as labelled in the flat export")
    lines = [
        f"# Model card: {title}",
        "",
        "## What it predicts",
        f"{target}; score shown to people = round(100 x probability).",
        "",
        *_in_short(comparison, recommended, leakage, data, n_positive, notes),
        "## Model",
        f"LightGBM binary classifier, native categoricals, {model.best_iteration_} trees, "
        f"num_leaves {model.params_['num_leaves']}, max_depth {model.params_['max_depth']}, learning rate "
        f"{model.params_['learning_rate']:.3g}, min_data_in_leaf {model.params_['min_data_in_leaf']}, "
        f"scale_pos_weight {model.params_['scale_pos_weight']:.2f}; {cal} calibration on held-out data; "
        f"{len(model.feature_columns_)} features ({len(model.categories_)} categorical).",
        *(["", f"Refit for deployment (`training.refit`): this model was fitted on the training and validation "
               f"slices ({model.n_train_:,} rows) and calibrated on the test slice "
               f"({split['refit']['calibration_rows']:,} rows, the latest labelled ones). The evaluation below is "
               "the backtest model's: fitted on the training slice and calibrated on the validation slice, so "
               "the test rows grade the procedure on data it never saw."] if "refit" in split else []),
        "",
        "## Evaluation",
        split_text(split),
        "",
        f"ECE uses {config.ece_bins} {config.ece_binning.replace('_', '-')} bins. AUC intervals: "
        f"{config.bootstrap_samples}-sample bootstrap, 95%.",
        "",
        _md_table(comparison.drop(columns=[c for c in ("n", *CALIBRATION_COLUMNS) if c in comparison.columns])),
        "",
        *(["mql_share / mql_precision / mql_capture: the points scorer's at its rules' MQL threshold, the "
           "model's at the recommended cut-off (MQL threshold below).", ""]
          if "mql_share" in comparison.columns else []),
        "### Calibration",
        _calibration_sentence(comparison.loc[MODEL_NAME], observed_rate, split.get("calibration_base_rate", np.nan),
                              "refit" in split)
        if MODEL_NAME in comparison.index else "",
        "",
        _calibration_md(comparison, observed_rate),
        "",
        "## MQL threshold",
        _threshold_sentence(recommended, _no_cut_off(thresholds, recommended, config)),
        "",
        table_to_markdown(thresholds, every=10, around=None if recommended is None else int(recommended["cutoff"])),
        "",
        "## Segments",
        _md_table(segments.set_index("segment_column")) if len(segments) else "(no segment columns configured)",
        "",
        "## Leakage alarm",
        "```",
        leakage.to_text(),
        "```",
    ]
    if notes:
        lines += ["", "## Notes", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def attribute_columns(spec: Any, features: list[str]) -> list[str]:
    """The features read from the leads table (the fit family), where a field written after contact can
    hide; every feature when there is no spec to say."""
    if spec is None or not hasattr(spec, "columns_of"):
        return list(features)
    return [c for c in spec.columns_of(FIT) if c in features]


def train_and_evaluate(
    training_set: Any,
    config: TrainingConfig,
    *,
    points_rules: PointsRules | None = None,
    events: pd.DataFrame | None = None,
    progress: Progress | None = None,
    flat_rows: bool = False,
) -> TrainingResult:
    """Snapshot mode. ``training_set`` has ``.frame`` (lead_id, as_of, label, features) and ``.spec``.

    ``events`` (canonical events table) lets the points baseline recompute decayed behaviour points
    per snapshot; the leads' attributes are read from the feature frame. ``points_rules`` None:
    ``config.points_rules``, else the packaged default rules. ``flat_rows``: one row per lead with
    ``as_of`` its timestamp and a label without horizon ("converted"): no gap between the slices.
    """
    say = progress or no_progress
    points_rules = points_rules_for(points_rules, config)
    frame: pd.DataFrame = training_set.frame
    spec = getattr(training_set, "spec", None)
    for col in (LEAD_ID, AS_OF, config.label):
        if col not in frame.columns:
            raise KeyError(f"training frame lacks column {col!r}")
    horizon = None if flat_rows else _horizon(training_set, config)
    check_segment_columns(frame, config, "training frame")
    features = feature_columns_of(frame, spec)
    notes: list[str] = []
    # The labelled rows are addressed by their positions in the frame, and each slice is copied out of
    # it where it is used and let go after (a frame of the labelled rows, its features and the three
    # slices were copies of the features held through the whole run)
    labelled = np.flatnonzero(frame[config.label].notna().to_numpy())
    as_of = frame[AS_OF].take(labelled).reset_index(drop=True)
    n_censored = len(frame) - len(labelled)
    if n_censored:
        notes.append(f"{n_censored} censored snapshots (label window not yet closed) excluded from fit and test")
    split = time_ordered_split(as_of, horizon or 0, config.test_fraction, config.validation_fraction)
    split_info = {**split.describe(as_of), "horizon_days": horizon, "n_censored_excluded": n_censored,
                  "n_gap_excluded": len(labelled) - len(split.train) - len(split.valid) - len(split.test)}
    y = frame[config.label].to_numpy(dtype=float)[labelled]
    say(f"split: {split_text(split_info)}")
    unit = "rows" if flat_rows else "snapshots"
    slices = {"training": split.train, "validation": split.valid, "test": split.test}
    check_slice_classes(slices, y, as_of, unit)
    if few := few_conversions_note({k: int(y[v].sum()) for k, v in slices.items()}, unit):
        notes.append(few)
    train_rows, valid_rows, test_rows = labelled[split.train], labelled[split.valid], labelled[split.test]
    # the logistic regression baseline first: its design matrix (the peak of a large run) is then held
    # beside the frame alone, before any slice is copied out of it (it was fitted with the test rows taken)
    say("fitting the logistic regression baseline")
    fitted_on = np.concatenate([split.train, split.valid])
    logistic = LogisticBaseline(max_rows=config.logistic_max_rows, seed=config.seed).fit(
        frame, y[fitted_on], rows=labelled[fitted_on], columns=features)
    X_tr, X_va = take_rows(frame, train_rows, features), take_rows(frame, valid_rows, features)
    y_tr, y_va, y_te = y[split.train], y[split.valid], y[split.test]
    booster_cfg = config.booster
    search_summary: dict[str, Any] | None = None
    if config.search.n_trials > 0:
        say(f"hyperparameter search on the validation slice: {config.search.n_trials} trials / "
            f"{config.search.timeout_seconds:g}s")
        booster_cfg, search_summary = search_booster(X_tr, y_tr, X_va, y_va, config.booster, config.search,
                                                     config.seed, spec, progress=say)
        notes.append(f"Optuna search (train slice fitted, validation slice scored; test slice unseen): "
                     f"{_rounded(search_summary)}")
        split_info["search"] = search_summary
    say("fitting LightGBM")
    model = SalesReadinessModel(booster_cfg, config.calibration, horizon, config.seed).fit(
        X_tr, y_tr, X_va, y_va, spec=spec)
    del X_va
    _note(fit_note(model, y_va, booster_cfg.max_rounds, booster_cfg.early_stopping_rounds, unit),
          notes, say)
    _warn(no_split_warning(model, y_tr), notes, say)
    _calibration_warning(model, notes, say)
    # every column of the test rows (the baselines and segments read lead attributes and score columns);
    # the model, the single-feature AUCs and the logistic regression read their feature columns by name
    test_frame = rows_of(frame, test_rows)
    single = single_feature_auc(X_tr, y_tr, test_frame, y_te, columns=features)  # the last use of the training slice
    del X_tr
    p = model.predict_proba(test_frame)
    weeks = weeks_represented(as_of.iloc[split.test])
    capacity_rows, capacity_label = _capacity_rows(config, len(y_te), weeks, notes)
    model_row = _comparison_row(y_te, p, capacity_rows, config, probability=True)
    say("baselines")
    _note(logistic.sample_note, notes, say)
    baseline_rows, baseline_scores = _baselines(
        test_frame, y_te, logistic.predict_proba(test_frame), points_rules, events,
        [c for c in config.score_columns], capacity_rows, config, notes)
    comparison = _comparison_frame({MODEL_NAME: model_row, **baseline_rows})
    say("segments, leakage, thresholds")
    segments = segment_table(test_frame, y_te, p, config.segment_columns, config.bootstrap_samples,
                             config.min_segment_size, config.seed)
    # a flat export's columns are all lead attributes, written whenever (no pipeline-made recency feature)
    leakage = leakage_report(single, model.feature_importance("gain"), model_row["roc_auc"],
                             {k: v["roc_auc"] for k, v in baseline_rows.items()}, config.leakage,
                             covered_columns=None if flat_rows else attribute_columns(spec, features))
    score = probability_to_score(p)
    table = threshold_table(score, y_te, weeks, config.threshold_step)
    recommended = recommend_threshold(table, config.capacity_per_week, config.capacity_share)
    comparison = _with_model_mql(comparison, recommended)
    split_info.update(test_weeks=round(weeks, 2) if weeks else None, capacity=capacity_label)
    predictions = pd.DataFrame({LEAD_ID: test_frame[LEAD_ID], AS_OF: test_frame[AS_OF], "label": y_te,
                                "probability": p, "score": score,
                                **{f"baseline:{k}": v for k, v in baseline_scores.items()}})
    figures = {}
    data = test_slice_label(split_info, unit, "created" if flat_rows else "as of")
    if config.make_plots:
        say("figures")
        sample = test_frame.sample(min(config.shap_sample, len(test_frame)), random_state=config.seed)[features]
        figures = _figures(y_te, p, score, baseline_scores, comparison, table, recommended, model, sample, config,
                           data, f"sample of {len(sample):,} from the {data}")
    metrics = _flat_metrics(model_row, comparison, leakage, recommended,
                            {"best_iteration": float(model.best_iteration_), "n_features": float(len(features)),
                             "calibration_base_rate": float(y_va.mean()), **_search_metrics(search_summary)})
    split_info["calibration_base_rate"] = float(y_va.mean())
    backtest = None
    if config.refit:
        say("refitting for deployment on the training and validation slices")
        del test_frame
        backtest, model = model, refit_for_deployment(frame, labelled, split, y, features, model, spec)
        split_info["refit"] = refit_summary(model, y_te)
        metrics["refit_calibration_base_rate"] = float(y_te.mean())  # what `evaluate` says of rows it scores
        _note(refit_note(model, y_te, unit), notes, say)
    title = "sales readiness (flat rows, time-ordered)" if flat_rows else "sales readiness (snapshots)"
    card = _model_card(title, horizon, split_info, model, comparison, segments, leakage,
                       table, recommended, notes, config, model_row["base_rate"], data, int(y_te.sum()))
    return TrainingResult(model, metrics, comparison, segments, leakage, table, recommended, figures, card,
                          predictions, split_info, notes, points_rules, _no_cut_off(table, recommended, config),
                          backtest)


def _train_and_evaluate_flat_by_time(
    flat: FlatData, config: TrainingConfig, points_rules: PointsRules | None, spec: Any, progress: Progress | None,
) -> TrainingResult:
    """Flat rows with a timestamp: the snapshot mode's time-ordered split on it (train on the earliest
    leads, early-stop and calibrate on the next, test on the latest; no lead in two slices)."""
    from features.build import TrainingSet, build_flat_training_set

    flat_set = build_flat_training_set(flat, spec)
    frame = flat_set.frame.rename(columns={CREATED_AT: AS_OF})
    instants = frame[AS_OF].dropna().unique()
    if len(instants) < 3:  # training, validation and test each need a later instant than the slice before
        shown = ", ".join(f"{pd.Timestamp(t):%Y-%m-%d %H:%M}".removesuffix(" 00:00") for t in sorted(instants))
        raise ValueError(f"flat data: timestamp_column holds {len(instants)} distinct instant(s) ({shown}) in "
                         f"{len(frame):,} rows; a time-ordered split (training, validation, test) needs the leads "
                         "spread over at least 3; leave timestamp_column unset to cross-validate (K-fold) instead")
    scores = list(dict.fromkeys([*config.score_columns, *flat.score_columns]))
    result = train_and_evaluate(TrainingSet(frame, flat_set.spec), config.model_copy(update={"score_columns": scores}),
                                points_rules=points_rules, events=None, progress=progress, flat_rows=True)
    result.split["mode"] = f"time-ordered by {CREATED_AT} (flat rows with a timestamp)"
    result.predictions = result.predictions.rename(columns={AS_OF: CREATED_AT})  # keyed by lead_id, as flat rows
    return result


def train_and_evaluate_flat(
    flat: FlatData,
    config: TrainingConfig,
    *,
    points_rules: PointsRules | None = None,
    spec: Any = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Flat mode: grouped stratified CV by lead_id, out-of-fold evaluation, final refit on all rows.

    Early stopping inside each fold uses a grouped 20% slice of that fold's training rows, never
    the held-out fold. Calibrated out-of-fold probabilities are cross-fitted (fold k calibrated on
    the other folds' margins). The final model uses the folds' median best iteration and a
    calibrator fitted on all out-of-fold margins. ``points_rules`` None: ``config.points_rules``,
    else the packaged default rules (skipped, with a note, when none of them fits the columns).
    """
    if dated_flat_rows(flat.frame):
        return _train_and_evaluate_flat_by_time(flat, config, points_rules, spec, progress)
    say = progress or no_progress
    points_rules = points_rules_for(points_rules, config)
    frame = flat.frame.reset_index(drop=True)
    features = list(spec.columns_) if spec is not None and getattr(spec, "columns_", None) else flat.features
    missing = [c for c in [LEAD_ID, flat.label, *features] if c not in frame.columns]
    if missing:
        raise KeyError(f"flat frame lacks column(s) {missing}")
    check_segment_columns(frame, config, "flat frame")
    y = frame[flat.label].to_numpy(dtype=float)
    positives, need = int(y.sum()), max(2 * config.cv_folds, 10)
    if min(positives, len(y) - positives) < need:
        raise ValueError(f"flat data: {positives:,} of its {len(y):,} rows convert and {len(y) - positives:,} do not; "
                         f"cross-validation with training.cv_folds {config.cv_folds} needs at least {need} of each "
                         "(every fold, and the early-stopping slice inside its training rows, must hold both classes)")
    X = frame[features]
    groups = frame[LEAD_ID].to_numpy()
    folds = grouped_folds(y, groups, config.cv_folds, config.seed)
    notes: list[str] = []
    if few := few_conversions_note({"all folds": positives}, "rows"):
        notes.append(few)
    oof_margin = np.empty(len(y))
    oof_logistic = np.empty(len(y))
    best_iterations = []
    searching = config.search.n_trials > 0
    # the seconds budget is shared by the per-fold searches and the final one
    search = config.search.model_copy(
        update={"timeout_seconds": config.search.timeout_seconds / (config.cv_folds + 1)})
    fold_searches: list[dict[str, Any]] = []
    for k in range(config.cv_folds):
        say(f"fold {k + 1}/{config.cv_folds}")
        held = folds == k
        train_idx = np.flatnonzero(~held)
        inner = grouped_folds(y[train_idx], groups[train_idx], 5, config.seed + k + 1)
        fit_idx, stop_idx = train_idx[inner != 0], train_idx[inner == 0]
        booster = config.booster
        if searching:  # nested: tuned inside this fold's training rows, the held-out fold unseen
            say(f"fold {k + 1}: hyperparameter search ({search.n_trials} trials / {search.timeout_seconds:.0f}s)")
            booster, summary = search_booster(X.iloc[fit_idx], y[fit_idx], X.iloc[stop_idx], y[stop_idx],
                                              config.booster, search, config.seed + k, spec, progress=say)
            fold_searches.append(summary)
        fold_model = SalesReadinessModel(booster, config.calibration, None, config.seed).fit(
            X.iloc[fit_idx], y[fit_idx], X.iloc[stop_idx], y[stop_idx], spec=spec)
        best_iterations.append(fold_model.best_iteration_)
        oof_margin[held] = fold_model.predict_raw(X.iloc[held])
        logistic = LogisticBaseline(max_rows=config.logistic_max_rows, seed=config.seed + k).fit(
            X.iloc[train_idx], y[train_idx])
        oof_logistic[held] = logistic.predict_proba(X.iloc[held])
        if k == 0 and logistic.sample_note:
            _note(f"fold 1 of {config.cv_folds} (each fold alike): {logistic.sample_note}", notes, say)
    held_at_zero: list[int] = []
    p = cross_fitted_calibration(config.calibration, oof_margin, y, folds, held_at_zero)
    if held_at_zero:  # those folds' leads all get one rate: the out-of-fold figures include them
        warning = (f"Platt calibration of the out-of-fold probabilities: the slope fitted for fold(s) "
                   f"{[int(k) + 1 for k in held_at_zero]} of {config.cv_folds} is not positive (the other folds' "
                   "margins rank their rows no better than chance); held at 0, so each of those folds' leads gets "
                   "one rate, and the out-of-fold metrics below include them")
        notes.append(warning)
        say(f"warning: {warning}")
    final_booster = config.booster
    n_rounds = int(np.median(best_iterations))
    search_summary: dict[str, Any] | None = None
    if searching:
        say("final model: hyperparameter search on a grouped 80/20 split of all rows")
        inner = grouped_folds(y, groups, 5, config.seed)
        fit_idx, stop_idx = np.flatnonzero(inner != 0), np.flatnonzero(inner == 0)
        final_booster, search_summary = search_booster(X.iloc[fit_idx], y[fit_idx], X.iloc[stop_idx], y[stop_idx],
                                                       config.booster, search, config.seed, spec, progress=say)
        n_rounds = int(search_summary["best_iteration"])
        notes.append(f"Optuna search nested in each fold's training rows (the held-out fold unseen), then on "
                     f"all rows for the final model: {_rounded(search_summary)}")
    say(f"final model: {n_rounds} rounds on all {len(y)} rows")
    model = SalesReadinessModel(final_booster, config.calibration, None, config.seed).fit(
        X, y, num_boost_round=n_rounds, spec=spec)
    model.calibrate(oof_margin, y)
    _note(flat_fit_note(model, config.cv_folds, best_iterations, n_rounds, y), notes, say)
    _warn(no_split_warning(model, y), notes, say)
    _calibration_warning(model, notes, say)
    weeks = None
    if CREATED_AT in frame.columns and frame[CREATED_AT].notna().any():
        created = pd.to_datetime(frame[CREATED_AT])
        weeks = max((created.max() - created.min()) / pd.Timedelta(days=7), 1.0)
    capacity_rows, capacity_label = _capacity_rows(config, len(y), weeks, notes)
    model_row = _comparison_row(y, p, capacity_rows, config, probability=True)
    score_columns = list(dict.fromkeys([*config.score_columns, *flat.score_columns]))
    baseline_rows, baseline_scores = _baselines(frame, y, oof_logistic, points_rules, None, score_columns,
                                                capacity_rows, config, notes)
    comparison = _comparison_frame({MODEL_NAME: model_row, **baseline_rows})
    say("segments, leakage, thresholds")
    segments = segment_table(frame, y, p, config.segment_columns, config.bootstrap_samples,
                             config.min_segment_size, config.seed)
    single = oof_single_feature_auc(frame, y, folds, columns=features)
    leakage = leakage_report(single, model.feature_importance("gain"), model_row["roc_auc"],
                             {k: v["roc_auc"] for k, v in baseline_rows.items()}, config.leakage)
    score = probability_to_score(p)
    table = threshold_table(score, y, weeks, config.threshold_step)
    recommended = recommend_threshold(table, config.capacity_per_week, config.capacity_share)
    comparison = _with_model_mql(comparison, recommended)
    split_info = {"mode": f"{config.cv_folds}-fold StratifiedGroupKFold by lead_id (out-of-fold)",
                  "n_rows": len(y), "best_iterations": best_iterations, "final_rounds": n_rounds,
                  "capacity": capacity_label}
    if searching:
        split_info.update(search=search_summary, fold_searches=fold_searches)
    predictions = pd.DataFrame({LEAD_ID: frame[LEAD_ID], "fold": folds, "label": y, "probability": p,
                                "score": score, **{f"baseline:{k}": v for k, v in baseline_scores.items()}})
    figures = {}
    data = f"out-of-fold, {len(y):,} rows ({config.cv_folds} folds)"
    if config.make_plots:
        say("figures")
        sample = X.sample(min(config.shap_sample, len(X)), random_state=config.seed)
        figures = _figures(y, p, score, baseline_scores, comparison, table, recommended, model, sample, config,
                           data,
                           f"sample of {len(sample):,} of the {len(y):,} rows (final model, fitted on them)")
    metrics = _flat_metrics(model_row, comparison, leakage, recommended,
                            {"best_iteration": float(n_rounds), "n_features": float(len(features)),
                             **_search_metrics(search_summary)})
    card = _model_card("sales readiness (flat export)", None, split_info, model, comparison, segments, leakage,
                       table, recommended, notes, config, model_row["base_rate"], data, int(y.sum()))
    return TrainingResult(model, metrics, comparison, segments, leakage, table, recommended, figures, card,
                          predictions, split_info, notes, points_rules, _no_cut_off(table, recommended, config))
