"""Fit the time-to-close model and judge it on later snapshots next to its peers (one entry point).

``train_and_evaluate_time_to_close(training_set, config)``:

1. Time-ordered split (:func:`survival_split`): the test slice holds the latest ``test_fraction``
   of the as-of dates followed for at least ``config.follow_up_days``; every earlier snapshot is
   for fitting. Instead of a label-window gap, every fitting outcome is *censored at the first
   test as-of date* (:func:`censor_at`): fitting sees nothing that happened in the test period, and
   the snapshots right before it still count with their short follow-up. Early stopping holds out
   a random ``validation_fraction`` of the *leads* (all their snapshots): a lead's snapshots share
   its outcome, so a time-ordered validation slice would share outcomes with the training rows of
   the same leads and reward memorising them (on the synthetic CRM it stopped 3x later and lost
   0.02 C-index and most of the calibration).
2. The model (:class:`training.time_to_close.TimeToCloseModel`) and the peers
   (:mod:`training.survival_baselines`: Kaplan-Meier, penalised Cox PH, naive regression on
   converted leads) are fitted on the same rows and scored on the same test snapshots, whose
   outcomes are followed to the end of the data (right-censored there).
3. Metrics (:func:`score_survival`): Harrell's and Uno's C (truncated at tau, risk = minus the
   expected days open within tau), the integrated Brier score over [0, tau], the Brier score and
   the per-decile calibration (Kaplan-Meier-corrected) at each horizon.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.schema import LEAD_ID
from training import survival_plots
from training.config import AS_OF
from training.evaluation import time_ordered_split
from training.progress import Progress, no_progress
from training.sales_readiness import split_text, test_slice_label
from training.survival_baselines import CoxBaseline, KaplanMeierBaseline, NaiveDurationRegression
from training.survival_config import TimeToCloseConfig
from training.survival_metrics import (
    brier_scores,
    calibration_table,
    censoring_survival,
    concordance_sums,
    evaluation_days,
    evaluation_horizon,
    kaplan_meier,
    step_at,
    uno_c,
)
from training.time_to_close import (
    MEDIAN_DAYS,
    TimeToCloseModel,
    p_close_column,
    period_layout,
    restricted_mean_days,
    survival_at_days,
)

MODEL_NAME = "lightgbm hazard"
COX_NAME = "cox ph (penalised)"
KM_NAME = "kaplan-meier"
NAIVE_NAME = "naive regression (converted only)"
DAYS_OBSERVED = "days_observed"
EVENT_OBSERVED = "event"
DURATION = "duration_days"  # evaluation rows: days from as_of to the close or to the end of the data
EVENT = "event"


# ----- split and censoring ------------------------------------------------------------------------
@dataclass(frozen=True)
class SurvivalSplit:
    """Row positions of the three slices, the cut instant and how many rows had too little follow-up."""

    train: np.ndarray
    valid: np.ndarray  # snapshots of the held-out leads (same period as train)
    test: np.ndarray
    test_start: pd.Timestamp
    n_short_follow_up: int

    @property
    def fit(self) -> np.ndarray:
        """Every snapshot before the test slice (train + valid), in row order."""
        return np.sort(np.concatenate([self.train, self.valid]))

    def describe(self, as_of: pd.Series) -> dict[str, Any]:
        def span(idx: np.ndarray) -> str:
            return f"{as_of.iloc[idx].min():%Y-%m-%d}..{as_of.iloc[idx].max():%Y-%m-%d}" if len(idx) else "-"

        return {"n_train": len(self.train), "n_valid": len(self.valid), "n_test": len(self.test),
                "fit_as_of": span(self.fit), "test_as_of": span(self.test), "validation": "held-out leads",
                "censored_at": f"{self.test_start:%Y-%m-%d}", "n_short_follow_up_unused": self.n_short_follow_up}


def survival_split(
    as_of: pd.Series, lead_ids: pd.Series, data_end: pd.Timestamp, config: TimeToCloseConfig
) -> SurvivalSplit:
    """Time-ordered fit / test positions, validation by held-out leads (see the module docstring)."""
    as_of = pd.to_datetime(as_of.reset_index(drop=True))
    lead_ids = lead_ids.reset_index(drop=True)
    follow = pd.Timedelta(days=config.follow_up_days)
    followed = np.flatnonzero((as_of + follow <= pd.Timestamp(data_end)).to_numpy())
    if followed.size == 0:
        raise ValueError(
            f"time-to-close split: no snapshot is followed for {config.follow_up_days} days before the data end "
            f"{pd.Timestamp(data_end):%Y-%m-%d} (as_of spans {as_of.min():%Y-%m-%d}..{as_of.max():%Y-%m-%d})"
        )
    # a 1-day "horizon" only keeps the slices' as-of dates apart; outcomes are censored at the cut instead
    split = time_ordered_split(as_of.iloc[followed], 1, config.test_fraction, config.validation_fraction)
    test = followed[split.test]
    fit = np.flatnonzero((as_of < split.test_start).to_numpy())
    n_leads = lead_ids.iloc[fit].nunique()
    if n_leads < 2:
        raise ValueError(f"time-to-close split: {n_leads} lead(s) before {split.test_start:%Y-%m-%d}; "
                         "need at least two to hold some out for early stopping")
    train, valid = held_out_leads(lead_ids, fit, config.validation_fraction, config.seed)
    return SurvivalSplit(train, valid, test, split.test_start, int(len(as_of) - followed.size))


def held_out_leads(lead_ids: pd.Series, rows: np.ndarray, fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` (positions) split by lead: a random ``fraction`` of their leads, every snapshot of them, is held
    out (the second array); at least one lead."""
    lead_ids = lead_ids.reset_index(drop=True)
    leads = pd.unique(lead_ids.iloc[rows])
    n_held = max(1, int(round(len(leads) * fraction)))
    held = np.random.default_rng(seed).choice(len(leads), n_held, replace=False)
    in_valid = lead_ids.iloc[rows].isin(leads[held]).to_numpy()
    return rows[~in_valid], rows[in_valid]


def censor_at(as_of: pd.Series, durations: Any, events: Any, cut: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes as known at ``cut``: follow-up ends at ``cut``; a close after it becomes censored."""
    limit = (pd.Timestamp(cut) - pd.to_datetime(as_of)).dt.total_seconds().to_numpy() / 86_400.0
    d = np.asarray(durations, dtype=np.float64)
    e = np.asarray(events).astype(bool)
    if (limit < 0).any():
        raise ValueError(f"censor_at: {int((limit < 0).sum())} snapshots are after the cut {cut}")
    return np.minimum(d, limit), e & (d <= limit)


# ----- scoring -----------------------------------------------------------------------------------
@dataclass
class EvaluationSettings:
    """What every scorer is measured with (stored with the run, reused when promoting)."""

    tau: int
    days: list[float]
    horizons: list[int]
    bins: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationSettings:
        return cls(int(data["tau"]), [float(d) for d in data["days"]], [int(h) for h in data["horizons"]],
                   int(data["bins"]))

    @classmethod
    def for_rows(cls, time: np.ndarray, event: np.ndarray, config: TimeToCloseConfig) -> EvaluationSettings:
        tau = evaluation_horizon(time, event, config.evaluation_horizon_days or config.horizon_days,
                                 config.min_censoring_survival)
        if tau < min(config.horizons_days):
            raise ValueError(
                f"time_to_close: the evaluation horizon tau is {tau} days, below every horizons_days "
                f"{list(config.horizons_days)}: the test snapshots are followed too briefly (fewer than "
                f"min_censoring_survival = {config.min_censoring_survival:g} of them still observed after {tau + 1} "
                f"days); raise min_follow_up_days (now {config.follow_up_days}), lower min_censoring_survival "
                f"or report a shorter horizon")
        days = evaluation_days(tau, config.horizons_days)
        return cls(tau, days.tolist(), [h for h in config.horizons_days if h <= tau], config.calibration_bins)


@dataclass
class ScorerEvaluation:
    """One scorer on the evaluation rows: headline metrics, calibration per horizon, Brier over time."""

    metrics: dict[str, float]
    calibration: pd.DataFrame
    brier: np.ndarray


def score_survival(
    time: np.ndarray, event: np.ndarray, survival: np.ndarray, settings: EvaluationSettings,
    risk: np.ndarray | None = None, calibrate: bool = True,
) -> ScorerEvaluation:
    """Metrics of predicted ``survival`` (n, len(settings.days)) on right-censored rows.

    ``risk`` (higher = closes sooner) defaults to minus the expected days open within tau.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event).astype(bool)
    days = np.asarray(settings.days, dtype=np.float64)
    censoring = censoring_survival(t, e)
    if risk is None:
        within = days <= settings.tau  # the curves are not copied when every day is within tau
        risk = -restricted_mean_days(survival if within.all() else survival[:, within], days[within])
    harrell_num, harrell_den = concordance_sums(t, e, risk, settings.tau)
    brier = brier_scores(t, e, survival, days, censoring)
    within = days <= settings.tau
    grid = np.concatenate([[0.0], days[within]])
    ibs = float(np.trapezoid(np.concatenate([[0.0], brier[within]]), grid) / settings.tau)
    metrics = {
        "harrell_c": harrell_num / harrell_den if harrell_den > 0 else float("nan"),
        "uno_c": uno_c(t, e, risk, settings.tau, censoring),
        "ibs": ibs,
    }
    tables = []
    for h in settings.horizons:
        j = int(np.flatnonzero(days == h)[0])
        metrics[f"brier_{h}d"] = float(brier[j])
        p = 1.0 - survival[:, j]
        metrics[f"mean_p_close_{h}d"] = float(p.mean())
        if calibrate:
            table = calibration_table(t, e, p, h, settings.bins).assign(horizon_days=h)
            tables.append(table)
            gaps = table["gap"].abs()
            metrics[f"calibration_max_gap_{h}d"] = float(gaps.max()) if gaps.notna().any() else float("nan")
            metrics[f"calibration_mean_gap_{h}d"] = float(gaps.mean()) if gaps.notna().any() else float("nan")
    calibration = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return ScorerEvaluation(metrics, calibration, brier)


def observed_rates(time: np.ndarray, event: np.ndarray, horizons: list[int]) -> dict[str, float]:
    """Kaplan-Meier P(close within h) of all evaluation rows, per horizon."""
    km_t, km_s = kaplan_meier(time, event)
    return {f"observed_close_{h}d": 1.0 - float(step_at(km_t, km_s, h)) for h in horizons}


# ----- the run -----------------------------------------------------------------------------------
@dataclass
class TimeToCloseResult:
    """Everything one time-to-close run produced (the MLflow layer logs it, the CLI prints it)."""

    model: TimeToCloseModel
    metrics: dict[str, float]
    comparison: pd.DataFrame  # rows: scorers; columns: metrics
    calibration: pd.DataFrame  # scorer, horizon_days, bin, n, mean_predicted, observed, gap
    brier_curves: pd.DataFrame  # index: day; columns: scorers
    evaluation_rows: pd.DataFrame  # lead_id, as_of, features, duration_days, event
    predictions: pd.DataFrame  # lead_id, as_of, duration_days, event, the model's summary, peers' P(close)
    settings: EvaluationSettings
    split: dict[str, Any]
    figures: dict[str, Figure]
    model_card: str
    notes: list[str] = field(default_factory=list)
    # with ``config.refit``: ``model`` is the refit registered for deployment, this the model the figures are about
    backtest_model: TimeToCloseModel | None = None


def _metric_key(name: str) -> str:
    return "baseline_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _comparison_columns(horizons: list[int]) -> list[str]:
    cols = ["harrell_c", "uno_c", "ibs"]
    cols += [f"brier_{h}d" for h in horizons]
    cols += [f"calibration_max_gap_{h}d" for h in horizons]
    cols += [f"mean_p_close_{h}d" for h in horizons]
    return cols


def _md_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """``frame`` as a Markdown table; a missing value (NaN) is ``-``, as in the sales-readiness card."""
    cols = [frame.index.name or "", *frame.columns]
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for idx, row in frame.iterrows():
        cells = [("-" if np.isnan(v) else f"{v:.{digits}f}") if isinstance(v, float) else str(v)
                 for v in row.tolist()]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _in_short(split: dict[str, Any], comparison: pd.DataFrame, observed: dict[str, float], horizons: list[int],
              n_events: int, notes: list[str]) -> list[str]:
    """The card's opening section in words: the test rows, P(close within h) predicted vs observed, and the
    ranking against the peers (the logged metrics)."""
    lines = ["## In short", f"Evaluated on: {test_slice_label(split, 'snapshots')}; {n_events:,} closes.", ""]
    if MODEL_NAME in comparison.index:
        row = comparison.loc[MODEL_NAME]
        for h in horizons:
            lines.append(f"- Close within {h} days: predicted {row[f'mean_p_close_{h}d']:.1%} on average, observed "
                         f"{observed[f'observed_close_{h}d']:.1%} (Kaplan-Meier).")
        peers = ", ".join(f"{name} {r['uno_c']:.3f}" for name, r in comparison.drop(index=MODEL_NAME).iterrows()
                          if pd.notna(r.get("uno_c")))
        lines.append(f"- Which leads close sooner: Uno's C {row['uno_c']:.3f}" + (f"; {peers}" if peers else "")
                     + " (1 = perfect order, 0.5 = random).")
    if notes:
        lines.append("- Read the notes at the end of this card.")  # not counted: the workflow may add one later
    return [*lines, ""]


def _model_card(model: TimeToCloseModel, settings: EvaluationSettings, split: dict[str, Any],
                comparison: pd.DataFrame, observed: dict[str, float], notes: list[str], n_events: int = 0,
                backtest: TimeToCloseModel | None = None) -> str:
    cfg = model.config
    horizons = ", ".join(f"{h}" for h in cfg.horizons_days)
    lines = [
        "# Model card: time to close (discrete-time hazard)",
        "",
        "## What it predicts",
        f"Per open lead at a scoring date: the survival curve P(still open at day t) up to {cfg.horizon_days} days "
        f"({cfg.max_periods} periods of {cfg.period_days} days), P(close within {horizons} days) and the median "
        "days to close (\"beyond horizon\" when the curve stays above 1/2).",
        "",
        *_in_short(split, comparison, observed, settings.horizons, n_events, notes),
        "## Model",
        f"LightGBM binary hazard per period on (snapshot, period) rows; the period index is a feature next to the "
        f"{len(model.feature_columns_)} FeatureSpec columns ({len(model.categories_)} categorical). "
        + (f"The trees boost from a penalised linear discrete-time hazard ({len(model.linear_.coef)} design columns "
           f"+ a Weibull-like baseline and a departure per period"
           + (f", its level and log-time slope free per {model.linear_.band_column} band (edges "
              f"{', '.join(f'{e:g}' for e in model.linear_.band_edges)})" if model.linear_.band_column else "")
           + f", C = {model.linear_.c:g} chosen on the validation leads). "
           if model.linear_ is not None else "")
        + f"{model.best_iteration_} trees, num_leaves {model.params_['num_leaves']}, max_depth "
        f"{model.params_['max_depth']}, learning rate {model.params_['learning_rate']}, min_data_in_leaf "
        f"{model.params_['min_data_in_leaf']}. Training rows: {model.n_period_rows_:,} period rows from "
        f"{model.n_snapshots_:,} snapshots ({model.n_events_:,} closes; non-event rows kept at rate "
        f"{model.sampling_rate_:.3g} and re-weighted); censored periods weigh {cfg.censored_period_weight:g}.",
        *(["", f"Refit for deployment (`time_to_close.refit`): this model was fitted on every snapshot up to the data "
               f"end {split['data_end']}, outcomes followed to it, the test period included. The evaluation below is "
               f"the backtest model's ({backtest.best_iteration_} trees on {backtest.n_snapshots_:,} snapshots dated "
               f"before {split['censored_at']}, outcomes censored there): the same fit, graded on a period it never "
               "saw."] if backtest is not None else []),
        "",
        "## Evaluation",
        split_text(split),
        "",
        f"Training and validation outcomes are censored at the first test as-of date. Test snapshots are followed "
        f"to the end of the data. tau = {settings.tau} days (C-indices truncated there, integrated Brier score over "
        f"[0, tau]); risk for the C-indices = minus the expected days open within tau. IPCW with the censoring "
        f"distribution of the test rows. Calibration: {settings.bins} equal-mass bins of the predicted probability, "
        "observed = Kaplan-Meier P(close within h) of the bin's rows.",
        "",
        "Observed (Kaplan-Meier, all test rows): " + ", ".join(
            f"P(close within {k.removeprefix('observed_close_').removesuffix('d')} days) {v:.4f}"
            for k, v in observed.items()),
        "",
        _md_table(comparison),
        "",
        "The naive regression is fitted on converted snapshots only; its curve reads the predicted day as a sure "
        "close (S = 1 before it, 0 after), so its Brier scores show what taking a predicted close date literally "
        "costs. Its calibration gaps are `-`: its P(close within h) is 0 or 1 for every lead, so there are no "
        "probability bins to compare with the observed rate.",
    ]
    if notes:
        lines += ["", "## Notes", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _sample_rows(p: np.ndarray, n: int) -> np.ndarray:
    order = np.argsort(p, kind="mergesort")
    quantiles = np.linspace(0.5, 0.995, n)
    picks = np.unique(np.clip((quantiles * (len(p) - 1)).round().astype(int), 0, len(p) - 1))
    return order[picks]


def feature_rows(frame: pd.DataFrame, features: list[str], rows: np.ndarray) -> pd.DataFrame:
    """The ``features`` of the rows at positions ``rows``, indexed by those positions: one copy of those rows
    (``frame.reset_index(drop=True)[features].iloc[rows]`` copied the whole frame twice first)."""
    out = frame.iloc[rows, frame.columns.get_indexer(features)]
    out.index = pd.Index(rows)
    return out


def check_slice_closes(config: TimeToCloseConfig, as_of: pd.Series,
                       slices: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Every slice (positions, durations, events) must hold a close within the model horizon, as the hazard's
    period rows count it: else a ValueError naming the slice and counting the closes of every slice."""
    closes = {name: int((period_layout(d, e, config.period_days, config.max_periods,
                                       config.censored_period_weight)[1] >= 0).sum())
              for name, (_, d, e) in slices.items()}
    for name, (rows, _, _) in slices.items():
        if closes[name] or not len(rows):
            continue
        what = {"training": "to fit the hazard", "validation": "to choose the penalties and stop the boosting",
                "test": "to evaluate the model"}.get(name, "")
        leads = " of held-out leads" if name == "validation" else ""
        span = f"{as_of.iloc[rows].min():%Y-%m-%d}..{as_of.iloc[rows].max():%Y-%m-%d}"
        counts = ", ".join(f"{n:,} in {k}" for k, n in closes.items())
        raise ValueError(
            f"the {name} slice ({len(rows):,} snapshots{leads}, as of {span}) holds no close within the model "
            f"horizon ({config.horizon_days} days): too few closes {what} (closes within the horizon: {counts}). "
            "More history or more leads are needed; time_to_close.validation_fraction (now "
            f"{config.validation_fraction:g}) and test_fraction (now {config.test_fraction:g}) move the cuts")


def refit_for_deployment(frame: pd.DataFrame, features: list[str], durations: np.ndarray, events: np.ndarray,
                         config: TimeToCloseConfig, spec: Any, progress: Progress | None = None) -> TimeToCloseModel:
    """The model to register: the backtest's fit (held-out leads stop the boosting and choose the linear
    penalty) on every snapshot of ``frame``, outcomes as observed at the data end (``durations``, ``events``).

    It has seen the test period's outcomes, the snapshots after the test slice and the outcomes after the cut of
    the snapshots before it, so the run's figures stay the backtest model's, and the registry grades it with that
    model on every row dated up to the data end (:func:`training.survival_tracking.out_of_sample_survival`)."""
    train, valid = held_out_leads(frame[LEAD_ID], np.arange(len(frame)), config.validation_fraction, config.seed)
    try:
        check_slice_closes(config, frame[AS_OF], {"training": (train, durations[train], events[train]),
                                                  "validation": (valid, durations[valid], events[valid])})
    except ValueError as exc:
        raise ValueError(f"refit for deployment on every snapshot: {exc} (time_to_close.refit: false registers "
                         "the backtest model instead)") from exc
    return TimeToCloseModel(config).fit(
        feature_rows(frame, features, train), durations[train], events[train], feature_rows(frame, features, valid),
        durations[valid], events[valid], spec=spec, progress=progress)


def refit_summary(model: TimeToCloseModel, backtest: TimeToCloseModel, data_end: str) -> dict[str, Any]:
    """What the deployment refit fitted on (the run's split.json, the model card's split line)."""
    return {"snapshots": int(model.n_snapshots_), "closes": int(model.n_events_), "trees": int(model.best_iteration_),
            "outcomes_to": data_end, "backtest_snapshots": int(backtest.n_snapshots_),
            "backtest_trees": int(backtest.best_iteration_)}


def stopped_at_the_cap(model: TimeToCloseModel) -> str:
    """" (early stopping did not stop it ...)" when the boosting ran to ``booster.max_rounds``, else ""."""
    cap = model.config.booster.max_rounds
    return (f" (all {cap}: early stopping did not stop it, time_to_close.booster.max_rounds may be too low)"
            if model.best_iteration_ >= cap else "")


def refit_note(summary: dict[str, Any], cut: str, refit: TimeToCloseModel | None = None) -> str:
    """What the deployment refit did, and which model the run's figures are about."""
    capped = stopped_at_the_cap(refit) if refit is not None else ""
    return (f"registered model refit for deployment: {summary['trees']} trees{capped} on {summary['snapshots']:,} training "
            f"snapshots of every date ({summary['closes']:,} closes within the horizon), outcomes followed to the data "
            f"end {summary['outcomes_to']}, early stopping on held-out leads as in the backtest; the evaluation "
            f"figures are the backtest model's ({summary['backtest_trees']} trees on {summary['backtest_snapshots']:,} "
            f"snapshots, outcomes censored at {cut}), which graded the fit on a period it never saw "
            "(time_to_close.refit: false registers that model)")


def train_and_evaluate_time_to_close(
    training_set: Any, config: TimeToCloseConfig, progress: Progress | None = None
) -> TimeToCloseResult:
    """Snapshot data with ``days_observed`` / ``event`` (a :class:`features.build.TrainingSet`) ->
    fitted model, evaluation next to the peers, figures and model card."""
    say = progress or no_progress
    frame: pd.DataFrame = training_set.frame
    spec = getattr(training_set, "spec", None)
    missing = [c for c in (LEAD_ID, AS_OF, DAYS_OBSERVED, EVENT_OBSERVED) if c not in frame.columns]
    if missing:
        raise KeyError(f"training frame lacks column(s) {missing}: time to close needs CRM snapshots (mode: crm)")
    data_end = getattr(training_set, "data_end", None)
    if data_end is None:
        raise ValueError("training set has no data_end: time to close needs CRM snapshots (mode: crm)")
    features = list(spec.columns_) if spec is not None else [
        c for c in frame.columns if c not in (LEAD_ID, AS_OF, DAYS_OBSERVED, EVENT_OBSERVED, "converted_within_h",
                                              "censored", "days_to_convert")]
    # positions throughout: the frame is not copied (reset_index copied it whole, frame[features] again)
    split = survival_split(frame[AS_OF], frame[LEAD_ID], data_end, config)
    split_info = {**split.describe(frame[AS_OF]), "data_end": f"{pd.Timestamp(data_end):%Y-%m-%d}"}
    say(f"split: {split_text(split_info)}")
    notes: list[str] = []
    durations = frame[DAYS_OBSERVED].to_numpy(dtype=float)
    events = frame[EVENT_OBSERVED].to_numpy().astype(bool)
    fit_idx = np.concatenate([split.train, split.valid])
    d_fit, e_fit = censor_at(frame[AS_OF].iloc[fit_idx], durations[fit_idx], events[fit_idx], split.test_start)
    n_train = len(split.train)
    d_tr, e_tr, d_va, e_va = d_fit[:n_train], e_fit[:n_train], d_fit[n_train:], e_fit[n_train:]
    X_tr, X_va, X_te = (feature_rows(frame, features, rows) for rows in (split.train, split.valid, split.test))
    check_slice_closes(config, frame[AS_OF], {"training": (split.train, d_tr, e_tr), "validation": (split.valid,
                       d_va, e_va), "test": (split.test, durations[split.test], events[split.test])})
    say("fitting the LightGBM hazard")
    model = TimeToCloseModel(config).fit(X_tr, d_tr, e_tr, X_va, d_va, e_va, spec=spec, progress=say)

    t_te = durations[split.test]
    e_te = events[split.test]
    if not e_te.any():
        raise ValueError("time-to-close test slice: no conversion observed; cannot evaluate")
    settings = EvaluationSettings.for_rows(t_te, e_te, config)
    days = np.asarray(settings.days)
    say(f"evaluating on {len(t_te):,} test snapshots ({int(e_te.sum()):,} closes), tau {settings.tau} days")
    hazards = model.predict_hazard(X_te)
    curves: dict[str, np.ndarray] = {MODEL_NAME: survival_at_days(hazards, config.period_days, days)}
    risks: dict[str, np.ndarray | None] = {MODEL_NAME: None}
    say("peers: Kaplan-Meier, Cox PH, naive regression")
    km = KaplanMeierBaseline().fit(d_fit, e_fit)
    curves[KM_NAME] = km.predict_survival(len(X_te), days)
    risks[KM_NAME] = None
    try:
        cox = CoxBaseline(config.cox_penalizers, config.cox_max_levels, config.cox_max_rows, config.seed).fit(
            X_tr, d_tr, e_tr, X_va, d_va, e_va)
        curves[COX_NAME] = cox.predict_survival(X_te, days)
        risks[COX_NAME] = None
        scores = ", ".join(f"{p:g}: {s:.4f}" for p, s in sorted(cox.validation_scores_.items()))
        notes.append(f"Cox PH penalizer {cox.penalizer_:g}" + (f", chosen on the validation leads (average partial "
                     f"log-likelihood {scores})" if scores else ""))
        if cox.n_train_ < cox.n_available_:
            notes.append(f"Cox PH fitted on a random {cox.n_train_:,} of {cox.n_available_:,} training snapshots")
    except Exception as exc:  # noqa: BLE001 - lifelines raises several kinds; the run reports it and goes on
        notes.append(f"Cox PH baseline failed: {type(exc).__name__}: {exc}")
    try:
        naive = NaiveDurationRegression(seed=config.seed).fit(X_tr, d_tr, e_tr, X_va, d_va, e_va, spec=spec)
        curves[NAIVE_NAME] = naive.predict_survival(X_te, days)
        risks[NAIVE_NAME] = -naive.predict_days(X_te)
    except ValueError as exc:
        notes.append(f"naive regression baseline skipped: {exc}")

    evaluations = {name: score_survival(t_te, e_te, s, settings, risks[name], calibrate=name != NAIVE_NAME)
                   for name, s in curves.items()}
    columns = _comparison_columns(settings.horizons)
    comparison = pd.DataFrame({name: ev.metrics for name, ev in evaluations.items()}).T
    comparison = comparison[[c for c in columns if c in comparison.columns]].rename_axis("scorer")
    calibration = pd.concat([ev.calibration.assign(scorer=name) for name, ev in evaluations.items()
                             if not ev.calibration.empty], ignore_index=True)
    calibration = calibration[["scorer", "horizon_days", "bin", "n", "mean_predicted", "observed", "gap",
                               "closed_within"]]
    brier_curves = pd.DataFrame({name: ev.brier for name, ev in evaluations.items()},
                                index=pd.Index(days, name="day"))
    observed = observed_rates(t_te, e_te, settings.horizons)

    metrics = dict(evaluations[MODEL_NAME].metrics)
    for name, ev in evaluations.items():
        if name == MODEL_NAME:
            continue
        for key in ("harrell_c", "uno_c", "ibs", *[f"brier_{h}d" for h in settings.horizons]):
            if key in ev.metrics:
                metrics[f"{_metric_key(name)}_{key}"] = ev.metrics[key]
    metrics.update(observed)
    metrics.update({"tau_days": float(settings.tau), "best_iteration": float(model.best_iteration_),
                    "n_period_rows": float(model.n_period_rows_), "sampling_rate": float(model.sampling_rate_),
                    "n_test": float(len(t_te)), "n_test_events": float(e_te.sum()),
                    "fit_seconds": float(model.fit_seconds_), "n_features": float(len(features))})

    summary = model.summary_from_hazards(hazards)
    test_keys = frame[[LEAD_ID, AS_OF]].iloc[split.test].reset_index(drop=True)
    predictions = pd.concat([test_keys, pd.DataFrame({DURATION: t_te, EVENT: e_te.astype(int)}), summary], axis=1)
    for name, s in curves.items():
        if name != MODEL_NAME and settings.horizons:
            h = settings.horizons[-1]
            predictions[f"baseline:{name}:{p_close_column(h)}"] = 1.0 - s[:, int(np.flatnonzero(days == h)[0])]
    evaluation_rows = pd.concat([test_keys, X_te.reset_index(drop=True),
                                 pd.DataFrame({DURATION: t_te, EVENT: e_te.astype(int)})], axis=1)

    figures: dict[str, Figure] = {}
    if config.make_plots:
        say("figures")
        full_days = np.arange(0, config.horizon_days + 1, dtype=float)
        last = p_close_column(max(config.horizons_days))
        pick = _sample_rows(summary[last].to_numpy(), config.sample_curves)
        labels = [survival_plots.sample_curve_label(test_keys[LEAD_ID].iloc[i], test_keys[AS_OF].iloc[i],
                                                    max(config.horizons_days), float(summary[last].iloc[i]),
                                                    float(summary[MEDIAN_DAYS].iloc[i]), config.horizon_days)
                  for i in pick]
        data = test_slice_label(split_info, "snapshots")
        figures = {
            "survival_curves": survival_plots.survival_curves_figure(
                full_days, survival_at_days(hazards[pick], config.period_days, full_days), labels,
                km.predict_survival(1, full_days)[0], config.horizons_days,
                data=f"{len(pick)} leads of the {data}"),
            "calibration": survival_plots.calibration_figure(calibration[calibration["scorer"] != KM_NAME], data),
            "concordance": survival_plots.concordance_figure(comparison, data),
            "brier_over_time": survival_plots.brier_curve_figure(
                days, {k: v.brier for k, v in evaluations.items()}, data),
        }
    backtest = None
    if config.refit:
        # what the evaluation held goes before a fit on every snapshot: the slices, the peers, every scorer's curves
        # (and the last one, which the loop over them left in ``s``), the test features and hazards (at 200k leads
        # the refit's boosting peaked at 5.9 GB with them)
        del X_tr, X_va, X_te, curves, risks, hazards, summary, evaluations
        cox = naive = km = s = None
        say("refitting for deployment on every snapshot")
        backtest, model = model, refit_for_deployment(frame, features, durations, events, config, spec, say)
        split_info["refit"] = refit_summary(model, backtest, split_info["data_end"])
        metrics["refit_best_iteration"] = float(model.best_iteration_)
        notes.append(refit_note(split_info["refit"], split_info["censored_at"], model))
        say(notes[-1])
    card = _model_card(model, settings, split_info, comparison, observed, notes, int(e_te.sum()), backtest)
    return TimeToCloseResult(model, metrics, comparison, calibration, brier_curves, evaluation_rows, predictions,
                             settings, split_info, figures, card, notes, backtest)


__all__ = [
    "COX_NAME",
    "DURATION",
    "EVENT",
    "KM_NAME",
    "MODEL_NAME",
    "NAIVE_NAME",
    "EvaluationSettings",
    "ScorerEvaluation",
    "SurvivalSplit",
    "TimeToCloseResult",
    "censor_at",
    "feature_rows",
    "observed_rates",
    "score_survival",
    "survival_split",
    "train_and_evaluate_time_to_close",
]
