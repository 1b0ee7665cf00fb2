"""Revenue forecast of the open pipeline: when leads close (two models) x what a deal is worth.

For every lead open at ``as_of``:

- **When**: the time-to-close model's hazards give ``F_ttc(t) = 1 - S(t)``. With ``combine="both"``
  (default) the sales-readiness model's calibrated ``p = P(close within H)`` fixes the mass inside
  its horizon and the hazard model gives the shape: every hazard is multiplied by one factor ``c``
  per lead, ``F(t) = 1 - S_ttc(t)**c`` with ``c = log(1 - p) / log(1 - F_ttc(H))``, so ``F(H) = p``
  and the close rate has no jump at H (:func:`training.close_curves.combine_close_curves`).
  ``combine="time-to-close"`` uses ``F_ttc`` alone. Past the hazard model's horizon the last
  period's hazard is held constant.
- **Recalibration** (``config.recalibration``, on by default): the readiness model's calibrator was
  fitted on older snapshots than the backtest's test dates, on younger leads than an aged open
  pipeline, and over-predicts old leads. At the forecast date D the leads open at a few dates in
  ``[D - H - window, D - H]`` (their H-day outcome is known at D; CRM cut at D, point-in-time
  features) are scored with the same model and a Platt scaling ``sigmoid(a logit(p) + b)`` of their
  outcome (one weight per snapshot row) maps the pipeline's ``p`` before it meets the hazard curve.
  Skipped, with a note, when the snapshots hold too few positives or no positive slope. Served
  scores and the models are unchanged: only the forecast uses the mapped probabilities.
- **Which month**: the forecast months are calendar months; the first runs from ``as_of`` to the
  end of its month (to the end of the next one when less than a day of its own is left), so
  ``P(close in month m) = F(end_m) - F(start_m)``.
- **When the data ends**: the forecast date may not pass the end of the data (``data_end``: the
  latest timestamp of the leads, events and outcomes, or ``features.data_end``): a lead that closed
  since would still look open.
- **What it is worth**: :class:`DealValueModel`, fitted on the amounts of deals closed before
  ``as_of``: LightGBM on log amount from the fit attributes with Duan's smearing (mean and second
  moment), or the historical mean and second moment when there are few deals. Deals closed at an
  amount of 0 scale both moments by the share of priced deals above 0; deals without an amount are
  left out; the forecast's notes count both (:func:`unpriced_deals`).
- **Interval**: leads close independently; per month the revenue is a sum of ``V_i B_i`` with
  ``B_i ~ Bernoulli(q_im)``; ``analytic`` uses the exact mean and variance with a normal
  approximation (clipped at 0), ``simulation`` draws close months and deal values (log-normal
  with the spread of the model's held-out residuals and the lead's expected value as its mean, so
  the draws average the expected revenue).

The backtest (:func:`backtest_forecast`) cuts the CRM at a past date (:func:`features.snapshots.crm_known_at`),
trains both models on what was known then, forecasts the pipeline open at that date and compares
with the revenue those leads actually closed in each month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from scipy.special import expit
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression

from features.schema import AMOUNT, CONVERTED_AT, CREATED_AT, LEAD_ID, CRMData, naive_utc
from features.spec import FeatureSpec, feature_setting_differences
from training.close_curves import combine_close_curves, cumulative_close
from training.forecast_config import ForecastConfig, RecalibrationConfig
from training.progress import Progress

MONTH = "month"
START = "start"
END = "end"
EXPECTED_DEALS = "expected_deals"
EXPECTED_REVENUE = "expected_revenue"
LOW = "low"
HIGH = "high"
ACTUAL_DEALS = "actual_deals"
ACTUAL_REVENUE = "actual_revenue"
INSIDE = "inside_interval"
OBSERVED = "fully_observed"


# ----- months and close probabilities -----------------------------------------------------------
def crm_data_end(crm: CRMData, data_end: Any = None) -> pd.Timestamp:
    """``data_end`` if given, else the latest timestamp of the CRM's leads, events and outcomes."""
    from features.snapshots import resolve_data_end
    from features.spec import FeatureConfig

    if data_end is not None:
        return naive_utc(data_end)
    return resolve_data_end(crm, FeatureConfig())


def forecast_months(as_of: Any, months: int) -> pd.DataFrame:
    """``month`` (YYYY-MM), ``start``, ``end`` and their day offsets from ``as_of`` (floats). A forecast
    date with less than a day left in its month starts with the next month (its rest included)."""
    at = naive_utc(as_of)
    day = pd.Timedelta(days=1)
    first_of_next = (at.normalize().replace(day=1) + pd.offsets.MonthBegin(1))
    if first_of_next - at < day:
        first_of_next = first_of_next + pd.offsets.MonthBegin(1)
    ends = pd.date_range(first_of_next, periods=months, freq="MS")
    starts = pd.DatetimeIndex([at, *ends[:-1]])
    return pd.DataFrame({
        MONTH: [f"{e - day:%Y-%m}" for e in ends],
        START: starts,
        END: ends,
        "start_day": (starts - at) / day,
        "end_day": (ends - at) / day,
    })


def month_probabilities(cumulative_at_edges: np.ndarray) -> np.ndarray:
    """P(close in month m) from F at the month edges (n, months + 1): (n, months)."""
    edges = np.maximum.accumulate(np.asarray(cumulative_at_edges, dtype=np.float64), axis=1)
    return np.diff(edges, axis=1)


# ----- recalibration of the sales-readiness probabilities ----------------------------------------
P_EPS = 1e-6


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6]."""
    q = np.clip(np.asarray(p, dtype=np.float64), P_EPS, 1.0 - P_EPS)
    return np.log(q) - np.log1p(-q)


@dataclass(frozen=True)
class Recalibration:
    """Platt map ``p -> sigmoid(slope * logit(p) + intercept)`` fitted at the forecast date, or the
    reason it was skipped (``fitted`` False: :meth:`apply` is the identity)."""

    dates: tuple[pd.Timestamp, ...]
    rows: int
    positives: int
    mean_p: float
    fitted: bool
    slope: float = 1.0
    intercept: float = 0.0
    reason: str = ""

    def apply(self, p: Any) -> np.ndarray:
        """The recalibrated probabilities (unchanged when nothing was fitted)."""
        p = np.asarray(p, dtype=np.float64)
        return expit(self.slope * logit(p) + self.intercept) if self.fitted else p

    def describe(self) -> dict[str, Any]:
        return {"fitted": self.fitted, "dates": [f"{d:%Y-%m-%d}" for d in self.dates], "rows": self.rows,
                "positives": self.positives, "mean_p": self.mean_p, "slope": self.slope,
                "intercept": self.intercept, "reason": self.reason}

    def to_text(self) -> str:
        span = f"{self.dates[0]:%Y-%m-%d}..{self.dates[-1]:%Y-%m-%d}" if self.dates else "no dates"
        seen = (f"{len(self.dates)} snapshot dates {span}: {self.rows:,} rows, {self.positives:,} positives"
                + (f" (observed rate {self.positives / self.rows:.3f}, model mean {self.mean_p:.3f})" if self.rows else ""))
        if not self.fitted:
            return f"sales-readiness recalibration skipped: {self.reason}; {seen}"
        return (f"sales-readiness probabilities recalibrated (Platt: slope {self.slope:.3f}, intercept "
                f"{self.intercept:+.3f}) on {seen}")


def fit_recalibration(p: Any, y: Any, dates: Any = (), min_positives: int = 20) -> Recalibration:
    """Platt scaling of the observed 0/1 outcome ``y`` on ``logit(p)`` (unpenalised logistic
    regression, one weight per row). Skipped when positives or negatives number fewer than
    ``min_positives``, or when the fitted slope is not positive (the map must keep the ranking)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"recalibration: probabilities {p.shape} and labels {y.shape} must be equal 1-d arrays")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("recalibration: labels must be 0/1 (no censored snapshot)")
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("recalibration: probabilities must lie in [0, 1]")
    positives = int(y.sum())
    negatives = y.size - positives
    base = {"dates": tuple(pd.Timestamp(d) for d in dates), "rows": int(y.size), "positives": positives,
            "mean_p": float(p.mean()) if p.size else float("nan")}
    if min(positives, negatives) < min_positives:
        which = "positives" if positives < min_positives else "negatives"
        return Recalibration(**base, fitted=False,
                             reason=f"{min(positives, negatives)} {which} < {min_positives} needed")
    lr = LogisticRegression(C=np.inf).fit(logit(p).reshape(-1, 1), y)  # unpenalised
    slope, intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not slope > 0:
        return Recalibration(**base, fitted=False, slope=1.0, intercept=0.0,
                             reason=f"fitted slope {slope:.3f} is not positive (no ranking on the snapshots)")
    return Recalibration(**base, fitted=True, slope=slope, intercept=intercept)


def recalibration_dates(as_of: Any, horizon_days: float, window_days: float, step_days: float) -> pd.DatetimeIndex:
    """``D - H - k * step_days`` for ``k * step_days <= window_days``, oldest first."""
    last = pd.Timestamp(as_of) - pd.Timedelta(days=horizon_days)
    k = np.arange(int(math.floor(window_days / step_days + 1e-9)) + 1)
    return pd.DatetimeIndex([last - pd.Timedelta(days=float(d)) for d in k[::-1] * step_days])


def recalibration_snapshots(
    crm: CRMData, spec: FeatureSpec, as_of: Any, horizon_days: float, dates: pd.DatetimeIndex
) -> tuple[pd.DataFrame, np.ndarray]:
    """(features in spec order, 0/1 outcome within ``horizon_days``) of the leads open at ``dates``, from the
    CRM as known at ``as_of`` (every date must be at most ``as_of - horizon_days``); rows by as_of, then lead id.

    The features are the frame over the feature matrix (no copy), and the CRM cut at ``as_of`` holds only the
    event columns the snapshots read: at 200k leads (10.5M events, 557k rows at 4 dates) a copy of every event
    column (0.4 GB) and one of the features (0.3 GB) were held beside the CRM while the rows were scored."""
    from features.build import lead_feature_matrix, snapshot_rows
    from features.schema import EVENT_TYPE, OCCURRED_AT
    from features.snapshots import LABEL, LeadHistory, crm_known_at, labels

    at = pd.Timestamp(as_of)
    if len(dates) and dates.max() + pd.Timedelta(days=horizon_days) > at:
        raise ValueError(f"recalibration: snapshot date {dates.max():%Y-%m-%d} + {horizon_days:g} days is after "
                         f"the forecast date {at:%Y-%m-%d}: its outcome is not known yet")
    known = crm_known_at(crm, at, event_columns=[LEAD_ID, OCCURRED_AT, EVENT_TYPE])
    history = LeadHistory(known)
    lead, as_of_ns = snapshot_rows(known, history, dates)
    # the readiness model's horizon (a training frame's own label uses the feature config's)
    y = labels(history, lead, as_of_ns, horizon_days, at)[LABEL]
    matrix = lead_feature_matrix(known, spec, lead, as_of_ns, layout="F")
    return spec.to_frame(matrix, share=True), y


RECALIBRATION_BLOCK_ROWS = 100_000  # snapshot rows scored at a time (the model's copies of its columns stay small)


def recalibrate_readiness(
    crm: CRMData,
    readiness_model: Any,
    spec: FeatureSpec,
    as_of: Any,
    horizon_days: float,
    config: RecalibrationConfig,
) -> Recalibration:
    """Fit the Platt map of ``readiness_model``'s probabilities at ``as_of`` (see module doc); the snapshots are
    scored a block of rows at a time."""
    dates = recalibration_dates(as_of, horizon_days, config.window_days, config.step_days)
    feats, y = recalibration_snapshots(crm, spec, as_of, horizon_days, dates)
    p = np.empty(len(feats))
    for first in range(0, len(feats), RECALIBRATION_BLOCK_ROWS):
        p[first:first + RECALIBRATION_BLOCK_ROWS] = readiness_model.predict_proba(
            feats.iloc[first:first + RECALIBRATION_BLOCK_ROWS])
    return fit_recalibration(p, y, dates, config.min_positives)


# ----- deal value ---------------------------------------------------------------------------------
class DealValueModel:
    """Expected deal value (and its second moment) per lead from its fit attributes.

    ``fit(leads, amounts, spec)`` returns self. With at least ``min_deals`` amounts: LightGBM on
    ``log(amount)`` from the spec's fit columns, early-stopped on a 20% holdout whose residuals give
    Duan's smearing factors ``mean(exp(r))`` and ``mean(exp(2 r))``; otherwise (or when the booster finds no
    split) the historical mean.
    ``zero_deals`` deals closed at an amount of 0 (``amounts`` holds the positive ones) scale the
    moments by ``positive_share_``, the share of priced deals above 0.
    """

    def __init__(self, min_deals: int = 200, seed: int = 0) -> None:
        self.min_deals = min_deals
        self.seed = seed

    def fit(self, leads: pd.DataFrame, amounts: Any, spec: FeatureSpec, zero_deals: int = 0,
            missing_deals: int = 0) -> DealValueModel:
        from features.build import fit_matrix

        a = np.asarray(amounts, dtype=np.float64)
        if a.size != len(leads):
            raise ValueError(f"outcomes.amount: {a.size} amounts for {len(leads)} leads")
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            ids = leads[LEAD_ID].to_numpy()[bad][:10].tolist() if LEAD_ID in leads else np.flatnonzero(bad)[:10]
            raise ValueError(f"outcomes.amount: {int(bad.sum())} deal(s) without a positive amount, e.g. leads {ids}")
        if a.size == 0:  # say what the closed deals had instead (``missing_deals``: closed without an amount)
            had = [f"{n:,} {what}" for n, what in ((missing_deals, "without an amount"), (zero_deals, "at an amount of 0"))
                   if n]
            raise ValueError("outcomes.amount: no closed deal with an amount above 0 before the forecast date"
                             + (f" ({', '.join(had)})" if had else ""))
        with np.errstate(over="ignore"):
            squares = a**2
            second_moment = float(np.mean(squares))
        if not math.isfinite(second_moment):  # the interval's variance would be inf - inf: NaN
            top = np.argsort(a)[::-1][:max(1, min(3, int((~np.isfinite(squares)).sum())))]
            ids = leads[LEAD_ID].to_numpy()[top].tolist() if LEAD_ID in leads else top.tolist()
            raise ValueError(f"outcomes.amount: amounts too large to forecast with (their squares overflow), e.g. "
                             f"leads {ids} with {[f'{v:.3g}' for v in a[top]]}; check the column's unit")
        self.spec_ = spec
        self.n_deals_ = int(a.size)
        self.zero_deals_ = int(zero_deals)
        self.positive_share_ = a.size / (a.size + self.zero_deals_)
        self.mean_ = float(a.mean())
        self.second_moment_ = second_moment
        self.log_sigma_ = float(np.std(np.log(a)))
        self.kind_ = "mean"
        n_fit_columns = len(spec.fit_columns)
        if a.size < self.min_deals or n_fit_columns == 0:
            return self
        X = fit_matrix(leads, spec)
        y = np.log(a)
        rng = np.random.default_rng(self.seed)
        holdout = rng.random(a.size) < 0.2
        if not holdout.any() or holdout.all():  # a handful of deals (min_deals_for_model low): hold out one
            holdout = np.arange(a.size) == rng.integers(a.size)
        params = {"objective": "regression", "num_leaves": 15, "max_depth": 4, "learning_rate": 0.05,
                  "min_data_in_leaf": max(20, a.size // 100), "lambda_l2": 1.0, "cat_smooth": 50,
                  "num_threads": 1, "seed": self.seed, "deterministic": True, "verbosity": -1}
        categorical = list(range(len(spec.categorical_columns)))
        train = lgb.Dataset(X[~holdout], y[~holdout], categorical_feature=categorical, params=params)
        valid = lgb.Dataset(X[holdout], y[holdout], reference=train)
        booster = lgb.train(params, train, num_boost_round=500, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(30, verbose=False)])
        trees = booster.dump_model(num_iteration=booster.best_iteration)["tree_info"]
        if all(tree["num_leaves"] <= 1 for tree in trees):
            # no split (few deals for min_data_in_leaf): a constant model whose smearing would come from a
            # handful of held-out deals; the historical mean estimates the same thing without that noise
            return self
        residual = y[holdout] - booster.predict(X[holdout], num_iteration=booster.best_iteration)
        self.booster_ = booster
        self.smear_ = float(np.mean(np.exp(residual)))
        self.smear_second_ = float(np.mean(np.exp(2 * residual)))
        self.log_sigma_ = float(np.std(residual))
        self.kind_ = "lightgbm"
        return self

    def predict_moments(self, leads: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected value, expected squared value, log-scale centre) per lead row; a log-normal value
        with that centre and ``log_sigma_`` has the expected value as its mean."""
        from features.build import fit_matrix

        if not hasattr(self, "kind_"):
            raise RuntimeError("DealValueModel is not fitted")
        n = len(leads)
        share = getattr(self, "positive_share_", 1.0)  # deals closed at 0 lower both moments
        if self.kind_ == "mean":
            mean, second = np.full(n, self.mean_ * share), np.full(n, self.second_moment_ * share)
        else:
            log_pred = self.booster_.predict(fit_matrix(leads, self.spec_), num_iteration=self.booster_.best_iteration)
            with np.errstate(over="ignore"):
                mean = np.exp(log_pred) * self.smear_ * share
                second = np.exp(2 * log_pred) * self.smear_second_ * share
        if not np.isfinite(second).all():
            raise ValueError("outcomes.amount: the deal-value model's second moment overflows for some leads (amounts "
                             "too large or too spread out); check the column's unit")
        # the simulation's log-normal centre: its mean exp(centre + sigma^2 / 2) is the expected value
        return mean, second, np.log(mean) - self.log_sigma_**2 / 2

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind_, "deals": self.n_deals_, "mean_amount": self.mean_,
                "log_sigma": self.log_sigma_, "zero_deals": getattr(self, "zero_deals_", 0),
                "positive_share": getattr(self, "positive_share_", 1.0)}


def closed_deals_before(crm: CRMData, as_of: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """Leads (rows of ``crm.leads``) and amounts of the deals closed at or before ``as_of``."""
    if AMOUNT not in crm.outcomes.columns:
        raise ValueError("outcomes: no 'amount' column; map one in the data config to forecast revenue")
    at = pd.Timestamp(as_of)
    out = crm.outcomes
    closed = out[out[CONVERTED_AT].notna() & (out[CONVERTED_AT] <= at) & out[AMOUNT].notna()]
    closed = closed[closed[AMOUNT] > 0]
    rows = crm.leads.reset_index(drop=True).merge(closed[[LEAD_ID, AMOUNT]], on=LEAD_ID, how="inner")
    return rows, rows[AMOUNT].to_numpy(dtype=np.float64)


def unpriced_deals(crm: CRMData, as_of: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lead ids of the deals closed at or before ``as_of`` without an amount, and at an amount of 0 (the ones
    :func:`closed_deals_before` leaves out)."""
    if AMOUNT not in crm.outcomes.columns:
        return np.empty(0), np.empty(0)
    out = crm.outcomes
    closed = out[out[CONVERTED_AT].notna() & (out[CONVERTED_AT] <= pd.Timestamp(as_of))]
    closed = closed[closed[LEAD_ID].isin(crm.leads[LEAD_ID])]
    return closed.loc[closed[AMOUNT].isna(), LEAD_ID].to_numpy(), closed.loc[closed[AMOUNT] == 0, LEAD_ID].to_numpy()


def unpriced_note(missing: np.ndarray, zero: np.ndarray, share: float) -> str | None:
    """The forecast's note on the deals left out of the deal values (None when there are none)."""
    parts = []
    if missing.size:
        parts.append(f"{missing.size:,} closed deal(s) without an amount (e.g. leads {missing[:5].tolist()}) are "
                     "left out of the deal values")
    if zero.size:
        parts.append(f"{zero.size:,} closed deal(s) at an amount of 0 (e.g. leads {zero[:5].tolist()}): the expected value "
                     f"of a deal is scaled by the share of priced deals above 0, {share:.3f}")
    return "; ".join(parts) if parts else None


# ----- aggregation ----------------------------------------------------------------------------------
def revenue_interval_analytic(
    q: np.ndarray, mean: np.ndarray, second: np.ndarray, interval: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per month: expected deals, expected revenue, low, high (normal approximation, clipped at 0)."""
    expected = mean @ q
    variance = second @ q - (mean**2) @ (q**2)
    z = norm.ppf(0.5 + interval / 2)
    sd = np.sqrt(np.maximum(variance, 0.0))
    return q.sum(axis=0), expected, np.maximum(expected - z * sd, 0.0), expected + z * sd


def revenue_interval_simulated(
    q: np.ndarray, log_centre: np.ndarray, log_sigma: float, interval: float, draws: int, seed: int,
    chunk_cells: int = 500_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Per month low/high from ``draws`` simulated futures: each lead closes in month m with
    probability ``q_im`` (or not in the window), with a log-normal deal value. Draws are made in chunks
    of about ``chunk_cells`` (draw, lead) cells, month by month: memory stays that of a chunk (about 40
    bytes a cell), whatever the number of months."""
    rng = np.random.default_rng(seed)
    n, months = q.shape
    cum = np.cumsum(q, axis=1)
    totals = np.zeros((draws, months))
    per_chunk = max(1, chunk_cells // max(n, 1))
    for first in range(0, draws, per_chunk):
        k = min(per_chunk, draws - first)
        u = rng.random((k, n))
        month = np.zeros((k, n), dtype=np.int64)  # months = not closed in the window
        for m in range(months):
            month += u > cum[:, m]
        value = np.exp(log_centre[None, :] + log_sigma * rng.standard_normal((k, n)))
        month += (months + 1) * np.arange(k)[:, None]  # one bin per (draw, month)
        sums = np.bincount(month.ravel(), weights=value.ravel(), minlength=k * (months + 1))
        totals[first:first + k] = sums.reshape(k, months + 1)[:, :months]
    lo, hi = np.quantile(totals, [0.5 - interval / 2, 0.5 + interval / 2], axis=0)
    return lo, hi


@dataclass
class PipelineForecast:
    """Revenue per month (``months``) and the per-lead detail (``leads``) of one forecast."""

    as_of: pd.Timestamp
    months: pd.DataFrame
    leads: pd.DataFrame
    deal_value: dict[str, Any]
    config: ForecastConfig
    notes: list[str] = field(default_factory=list)
    recalibration: Recalibration | None = None

    def to_text(self) -> str:
        table = self.months[[MONTH, EXPECTED_DEALS, EXPECTED_REVENUE, LOW, HIGH]].copy()
        return (f"Revenue forecast of {len(self.leads):,} open leads as of {self.as_of:%Y-%m-%d} "
                f"({self.config.interval:.0%} interval, {self.config.method}; revenue in "
                f"{revenue_unit(self.config.currency)}):\n"
                + table.to_string(index=False, float_format=lambda v: f"{v:,.0f}"))


def forecast_pipeline(
    open_leads: pd.DataFrame,
    features: pd.DataFrame,
    hazards: np.ndarray,
    period_days: float,
    p_readiness: np.ndarray | None,
    readiness_horizon_days: float | None,
    deal_value: DealValueModel,
    as_of: Any,
    config: ForecastConfig | None = None,
    recalibration: Recalibration | None = None,
) -> PipelineForecast:
    """Forecast from already predicted inputs, one row per open lead in the same order:
    ``open_leads`` (lead rows with the fit attributes), ``hazards`` (n, periods) of the time-to-close
    model and, with ``combine="both"``, the calibrated ``p_readiness`` and its horizon in days, mapped
    by ``recalibration`` when one is given (and fitted)."""
    cfg = config or ForecastConfig()
    n = len(open_leads)
    if not (len(features) == n == hazards.shape[0]):
        raise ValueError(f"forecast inputs disagree: {n} leads, {len(features)} feature rows, "
                         f"{hazards.shape[0]} hazard rows")
    months = forecast_months(as_of, cfg.months)
    edges = np.concatenate([months["start_day"].to_numpy()[:1], months["end_day"].to_numpy()])
    notes: list[str] = []
    horizon = hazards.shape[1] * period_days
    if edges[-1] > horizon:
        notes.append(f"the last {edges[-1] - horizon:.0f} day(s) lie past the time-to-close horizon "
                     f"({horizon:.0f} days): the last period's hazard is held constant there")
    f_edges = cumulative_close(hazards, period_days, edges)
    if cfg.combine == "both":
        if p_readiness is None or readiness_horizon_days is None:
            raise ValueError("combine='both' needs the sales-readiness probabilities and their horizon")
        if recalibration is not None:
            p_readiness = recalibration.apply(p_readiness)
            notes.append(recalibration.to_text())
        f_h = cumulative_close(hazards, period_days, [readiness_horizon_days])[:, 0]
        f_edges = combine_close_curves(f_edges, f_h, p_readiness, edges, readiness_horizon_days)
    q = month_probabilities(f_edges)
    mean, second, log_centre = deal_value.predict_moments(open_leads)
    deals, expected, low, high = revenue_interval_analytic(q, mean, second, cfg.interval)
    if cfg.method == "simulation":
        low, high = revenue_interval_simulated(q, log_centre, deal_value.log_sigma_, cfg.interval, cfg.draws,
                                               cfg.seed)
    out_months = months.assign(**{EXPECTED_DEALS: deals, EXPECTED_REVENUE: expected, LOW: low, HIGH: high})
    per_lead = pd.DataFrame({
        LEAD_ID: open_leads[LEAD_ID].to_numpy(),
        "p_close_in_window": q.sum(axis=1),
        "expected_value": mean,
        EXPECTED_REVENUE: q.sum(axis=1) * mean,
    })
    for m, label in enumerate(months[MONTH]):
        per_lead[f"p_close_{label}"] = q[:, m]
    return PipelineForecast(pd.Timestamp(as_of), out_months, per_lead, deal_value.describe(), cfg, notes,
                            recalibration if cfg.combine == "both" else None)


def forecast_spec(readiness_model: Any, time_to_close_model: Any) -> FeatureSpec:
    """The FeatureSpec the open leads are scored with: the sales-readiness model's (as the endpoint scores
    them), else the hazard model's. Models whose feature settings differ, or that need a column the spec
    does not build, are refused: the other model would get features computed unlike its training ones."""
    specs = {"sales-readiness": getattr(readiness_model, "spec_", None),
             "time-to-close": getattr(time_to_close_model, "spec_", None)}
    spec = specs["sales-readiness"] or specs["time-to-close"]
    if spec is None:
        raise ValueError("forecast: neither model carries its FeatureSpec; pass spec=")
    retrain = "train both models with the same project configuration (features: section)"
    if specs["sales-readiness"] is not None and specs["time-to-close"] is not None:
        differ = feature_setting_differences(specs["sales-readiness"].config, specs["time-to-close"].config)
        if differ:
            raise ValueError("forecast: the sales-readiness and time-to-close models were trained with different "
                             f"feature settings ({'; '.join(differ)}): {retrain}")
    for what, model in (("sales-readiness", readiness_model), ("time-to-close", time_to_close_model)):
        missing = [c for c in getattr(model, "feature_columns_", []) if c not in spec.columns_]
        if missing:
            raise ValueError(f"forecast: the {what} model needs feature column(s) {missing[:10]} that the "
                             f"feature specification it is scored with does not build: {retrain}")
    return spec


def forecast_open_pipeline(
    crm: CRMData,
    readiness_model: Any,
    time_to_close_model: Any,
    as_of: Any,
    config: ForecastConfig | None = None,
    spec: FeatureSpec | None = None,
    progress: Progress | None = None,
    data_end: Any = None,
) -> PipelineForecast:
    """Forecast the leads open in ``crm`` at ``as_of`` with fitted models: a sales-readiness model
    (``predict_proba`` + ``horizon_days``) and a :class:`training.time_to_close.TimeToCloseModel`;
    the deal-value model is fitted on the deals closed at or before ``as_of``; with
    ``config.recalibration.enabled`` the readiness probabilities are recalibrated at ``as_of``.
    ``as_of`` may not pass the end of the data (``data_end``, default: the CRM's latest timestamp). The
    leads are scored with ``spec``, by default :func:`forecast_spec` of the two models."""
    from features.build import build_scoring_frame

    cfg = config or ForecastConfig()
    spec = spec or forecast_spec(readiness_model, time_to_close_model)
    at = naive_utc(as_of)
    end = crm_data_end(crm, data_end)
    if at > end:
        raise ValueError(f"forecast date {at:%Y-%m-%d %H:%M} is after the end of the data ({end:%Y-%m-%d %H:%M}, "
                         "the latest timestamp of leads, events and outcomes, or features.data_end): leads that "
                         "closed since would count as open. Forecast at or before the data end, or load newer data")
    frame = build_scoring_frame(crm, spec, at)
    if frame.empty:
        raise ValueError(f"forecast: no lead is open at {at:%Y-%m-%d %H:%M} (created before it and not converted)")
    feats = frame[spec.columns_]
    leads = crm.leads.drop_duplicates(LEAD_ID).set_index(LEAD_ID).loc[frame[LEAD_ID]].reset_index()
    deal_rows, amounts = closed_deals_before(crm, at)
    if progress is not None:
        progress(f"{len(frame):,} open lead{'s' * (len(frame) != 1)}; deal values from {amounts.size:,} closed "
                 f"deal{'s' * (amounts.size != 1)}")
    missing, zero = unpriced_deals(crm, at)
    deal_value = DealValueModel(cfg.min_deals_for_model, cfg.seed).fit(deal_rows, amounts, spec, len(zero),
                                                                       len(missing))
    say = progress or (lambda _: None)
    say("time-to-close hazards of the open leads")
    hazards = time_to_close_model.predict_hazard(feats)
    horizon = float(getattr(readiness_model, "horizon_days", None) or spec.config.horizon_days)
    p, recalibration = None, None
    if cfg.combine == "both":
        say("sales-readiness probabilities of the open leads")
        p = readiness_model.predict_proba(feats)
        if cfg.recalibration.enabled:
            say("recalibrating the sales-readiness probabilities on earlier snapshots")
            recalibration = recalibrate_readiness(crm, readiness_model, spec, at, horizon, cfg.recalibration)
    say("revenue per month")
    result = forecast_pipeline(leads, feats, hazards, time_to_close_model.config.period_days, p, horizon,
                               deal_value, at, cfg, recalibration)
    note = unpriced_note(missing, zero, deal_value.positive_share_)
    if note is not None:
        result.notes.append(note)
    return result


def actual_revenue(crm: CRMData, lead_ids: np.ndarray, months: pd.DataFrame, data_end: Any = None) -> pd.DataFrame:
    """Deals and revenue the given leads actually closed per forecast month (their first conversion
    after the first month's start); ``fully_observed`` is False for months ending after the day of
    ``data_end`` (default: the latest conversion): a data end during a day covers that day."""
    start = months[START].iloc[0]
    out = crm.outcomes
    after = out[out[LEAD_ID].isin(lead_ids) & out[CONVERTED_AT].notna() & (out[CONVERTED_AT] > start)]
    first = after.sort_values(CONVERTED_AT).drop_duplicates(LEAD_ID)
    amount = first[AMOUNT].fillna(0.0) if AMOUNT in first else pd.Series(0.0, index=first.index)
    end = (naive_utc(data_end) if data_end is not None else out[CONVERTED_AT].max()).ceil("D")
    deals, revenue = [], []
    for s, e in zip(months[START], months[END], strict=True):
        inside = (first[CONVERTED_AT] >= s) & (first[CONVERTED_AT] < e)
        deals.append(int(inside.sum()))
        revenue.append(float(amount[inside].sum()))
    return pd.DataFrame({MONTH: months[MONTH].to_numpy(), ACTUAL_DEALS: deals, ACTUAL_REVENUE: revenue,
                         OBSERVED: (months[END] <= end).to_numpy()})


# ----- backtest -----------------------------------------------------------------------------------------
def backtest_table(months: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    """Forecast months next to the actual deals and revenue; ``inside_interval`` is missing (NA) for the
    months not fully observed (ending after the data end)."""
    table = months.merge(actual, on=MONTH)
    inside = (table[ACTUAL_REVENUE] >= table[LOW]) & (table[ACTUAL_REVENUE] <= table[HIGH])
    table[INSIDE] = inside.astype("boolean").where(table[OBSERVED], pd.NA)
    return table


@dataclass
class ForecastBacktest:
    """A forecast made at a past date next to what those leads actually closed."""

    forecast: PipelineForecast
    table: pd.DataFrame  # forecast months + actual deals/revenue + inside flag
    figure: Figure | None
    readiness_metrics: dict[str, float]
    time_to_close_metrics: dict[str, float]

    @property
    def coverage(self) -> float:
        seen = self.table[self.table[OBSERVED]]
        return float(seen[INSIDE].mean()) if len(seen) else float("nan")

    def to_text(self) -> str:
        cols = [MONTH, EXPECTED_REVENUE, LOW, HIGH, ACTUAL_REVENUE, INSIDE, EXPECTED_DEALS, ACTUAL_DEALS]
        seen = self.table[self.table[OBSERVED]]
        total_f, total_a = seen[EXPECTED_REVENUE].sum(), seen[ACTUAL_REVENUE].sum()
        currency = self.forecast.config.currency
        head = (f"Forecast backtest as of {self.forecast.as_of:%Y-%m-%d} ({len(self.forecast.leads):,} open leads, "
                f"{self.forecast.config.interval:.0%} interval; revenue in {revenue_unit(self.forecast.config.currency)}):\n"
                + self.table[cols].to_string(index=False, float_format=lambda v: f"{v:,.0f}", na_rep="n/a"))
        if seen.empty:
            return head + "\nno forecast month ends before the data end: nothing to compare yet"
        unseen = len(self.table) - len(seen)
        return (head + f"\nactual inside the interval in {int(seen[INSIDE].sum())} of {len(seen)} observed months"
                + (f" ({unseen} month(s) past the data end not compared)" if unseen else "")
                + f"; total forecast {money(total_f, currency)} vs actual {money(total_a, currency)}"
                + (f" (forecast {_above_below(total_f / total_a - 1)} the actual)" if total_a > 0 else ""))


def revenue_unit(currency: str | None) -> str:
    """What the revenue figures are counted in: ``forecast.currency``, else "unit of outcomes.amount"."""
    return currency or "unit of outcomes.amount"


def money(value: float, currency: str | None) -> str:
    """An amount of revenue in whole units, followed by the currency when one is set ("436,098 EUR")."""
    return f"{value:,.0f}" + (f" {currency}" if currency else "")


def interval_label(config: ForecastConfig) -> str:
    """What the interval is, e.g. "90% interval (analytic)"."""
    return f"{config.interval * 100:g}% interval ({config.method})"


def _above_below(share: float) -> str:
    """``0.12`` -> "12.0% above", ``-0.05`` -> "5.0% below"."""
    return f"{abs(share):.1%} {'above' if share >= 0 else 'below'}"


def forecast_figure(table: pd.DataFrame, title: str, interval: str = "forecast interval",
                    currency: str | None = None) -> Figure:
    """Expected revenue per month with its interval (``interval``: its legend, e.g. "90% interval
    (analytic)"), and the actual revenue when known (a backtest's table): the months whose actual lies
    outside the interval are circled in red and the title's second line sums the comparison up as the
    CLI prints it. Revenue is drawn from 0, in ``currency`` (the axis names it; None: the unit of
    outcomes.amount); the legend sits under the axes."""
    fig = Figure(figsize=(8, 5.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.fill_between(x, table[LOW], table[HIGH], alpha=0.25, color="tab:blue", label=interval)
    ax.plot(x, table[EXPECTED_REVENUE], "o-", color="tab:blue", label="expected revenue")
    if ACTUAL_REVENUE in table:
        seen = table[OBSERVED].to_numpy(dtype=bool) if OBSERVED in table else np.ones(len(table), bool)
        actual = table[ACTUAL_REVENUE].to_numpy(dtype=float)
        ax.plot(x[seen], actual[seen], "s--", color="tab:orange", label="actual revenue")
        low, high = table[LOW].to_numpy(dtype=float), table[HIGH].to_numpy(dtype=float)
        outside = seen & ((actual < low) | (actual > high))
        if outside.any():
            ax.plot(x[outside], actual[outside], "o", markersize=14, markerfacecolor="none", markeredgecolor="tab:red",
                    markeredgewidth=1.8, linestyle="none", label=f"actual outside the {interval}")
        if seen.any():
            forecast_total, actual_total = table[EXPECTED_REVENUE].to_numpy(dtype=float)[seen].sum(), actual[seen].sum()
            unseen = int((~seen).sum())
            title += (f"\nactual inside the interval in {int(seen.sum() - outside.sum())} of {int(seen.sum())} months; "
                      f"total forecast {money(forecast_total, currency)} vs actual {money(actual_total, currency)}"
                      + (f"\n{unseen} month(s) past the data end not compared" if unseen else ""))
    ax.set_xticks(x, table[MONTH], rotation=30)
    ax.set_xlabel("calendar month")
    ax.set_ylabel(f"revenue per month ({revenue_unit(currency)})")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles = [h for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=8, frameon=False)
    return fig


def backtest_date(crm: CRMData, project: Any, choice: str = "default") -> pd.Timestamp | None:
    """The forecast date of a backtest, from ``choice``: ``"default"`` is the first day of the month that lies
    the forecast's months (``project.forecast.months``) before the first month the data does not cover whole
    (its end: ``features.data_end``, else its latest timestamp), so every forecast month is a whole calendar
    month that can be compared; ``"none"`` or empty: None (no backtest); else a date (UTC)."""
    text = choice.strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "default":
        # a data end within its month's last day covers that month (the synthetic CRM ends 23:59:18 on the 30th)
        uncovered = (crm_data_end(crm, project.features.data_end) + pd.Timedelta(days=1)).normalize().replace(day=1)
        return uncovered - pd.DateOffset(months=project.forecast.months)
    try:
        return naive_utc(text)
    except ValueError as exc:
        raise ValueError(f"backtest date {text!r}: not a date (write YYYY-MM-DD), 'default' or 'none'") from exc


def backtest_forecast(
    crm: CRMData,
    as_of: Any,
    project: Any,
    config: ForecastConfig | None = None,
    progress: Progress | None = None,
) -> ForecastBacktest:
    """Cut ``crm`` at ``as_of``, train both models on what was known then (the project's feature,
    training and time-to-close settings), forecast the open pipeline and compare with the actual."""
    from features.build import build_training_set
    from features.snapshots import crm_known_at
    from training.sales_readiness import train_and_evaluate
    from training.survival_evaluation import train_and_evaluate_time_to_close

    say = progress or (lambda _: None)
    cfg = config or ForecastConfig()
    at = naive_utc(as_of)
    end = crm_data_end(crm, project.features.data_end)
    if at >= end:
        raise ValueError(f"backtest date {at:%Y-%m-%d %H:%M} is not before the end of the data ({end:%Y-%m-%d %H:%M}): "
                         "no revenue after it to compare the forecast with; pick a date months before the data end")
    known = crm_known_at(crm, at)
    if known.leads.empty:
        first = crm.leads[CREATED_AT].min() if len(crm.leads) else None
        raise ValueError(f"backtest date {at:%Y-%m-%d %H:%M}: no lead was created before it"
                         + (f" (the first lead is created {first:%Y-%m-%d %H:%M})" if first is not None else "")
                         + "; pick a date with months of history before it")
    say(f"building the training set from the CRM as known at {at:%Y-%m-%d}")
    features_cfg = project.features.model_copy(update={"data_end": at.to_pydatetime(), "end": at.to_pydatetime()})
    training_set = build_training_set(known, features_cfg, set_aside=project.training.score_columns)
    # a backtest registers nothing: strict leakage (refuse to register) has nothing to refuse here
    training_cfg = project.training.model_copy(update={
        "make_plots": False, "leakage": project.training.leakage.model_copy(update={"strict": False})})
    say("training the sales-readiness model")
    readiness = train_and_evaluate(training_set, training_cfg, events=known.events)
    ttc_cfg = project.time_to_close.model_copy(update={"make_plots": False})
    say("training the time-to-close model")
    ttc = train_and_evaluate_time_to_close(training_set, ttc_cfg)
    say("forecasting the open pipeline")
    result = forecast_open_pipeline(known, readiness.model, ttc.model, at, cfg, spec=training_set.spec, data_end=at)
    frame = result.leads
    table = backtest_table(result.months, actual_revenue(crm, frame[LEAD_ID].to_numpy(), result.months, end))
    figure = forecast_figure(table, f"Forecast made {at:%Y-%m-%d} vs revenue actually closed",
                             interval_label(cfg), cfg.currency)
    return ForecastBacktest(result, table, figure, dict(readiness.metrics), dict(ttc.metrics))
