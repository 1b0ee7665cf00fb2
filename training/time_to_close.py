"""Time to close: a discrete-time hazard model with LightGBM, censoring-aware.

Each snapshot (lead, as_of) with its right-censored outcome (``days_observed``, ``event``) is
expanded into one row per period (``period_days`` wide, up to ``max_periods``) in which the lead
was still open and observed; the row's label says whether it closed in that period, and the
period index is one more feature next to the snapshot's features (the same ``FeatureSpec`` as the
sales-readiness model). The booster learns the hazard ``h_k(x) = P(close in period k | open at
its start, x)``; the survival curve is ``S(k w) = prod_{j<k} (1 - h_j(x))``, with a constant
hazard inside a period for the days in between (``S(t) = S(k w) (1 - h_k)^((t - k w) / w)``).
By default the booster starts from a penalised linear discrete-time hazard
(:mod:`training.survival_linear`, ``init_score``) and its trees add what that misses:
``logit h_k(x) = linear_k(x) + trees(x, k)``. After early stopping the linear part is refitted
on the training and validation leads together (same design and penalty); then per-period logit offsets fitted on the
validation leads against that refitted model (:func:`period_offsets`) are added to the linear part's period coefficients
(``linear_.period``), so the hazard is still ``expit(booster raw + linear margins)``.

Expansion rules (``d`` = days observed, ``w`` = period width, ``K`` = periods):

- a conversion at ``d`` falls in period ``k = ceil(d / w) - 1`` (periods are ``(k w, (k+1) w]``):
  rows ``0..k`` with label 1 on the last; a conversion past the horizon gives ``K`` rows of 0;
- a censored snapshot contributes its ``floor(d / w)`` complete periods (label 0) and, when it is
  censored inside a period, that period with weight ``censored_period_weight`` (0.5: actuarial);
- memory: rows are index arrays (snapshot position, period, label, weight); feature values are
  never copied per period. LightGBM reads them in batches through a :class:`lightgbm.Sequence`
  from one float32 copy of the snapshot features, and bins them (about one byte per feature per
  row). Non-event rows are subsampled uniformly (above ``max_period_rows`` rows in all, or above
  ``nonevent_rows_per_event`` per event row) and re-weighted by the inverse sampling rate; every
  event row is kept. Closes are rare per period (well under 1% in a typical funnel), so the
  information sits in the event rows and a few dozen non-event rows per event lose little of it.

Inputs are matched to the training columns by name and categoricals re-coded with the training
vocabulary (unseen values become missing), as for the sales-readiness model. Saved as plain files
(``booster.txt`` + ``model.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from features.spec import LEAD_AGE, FeatureSpec
from training.close_curves import days_to_reach
from training.config import BoosterConfig
from training.model import (
    BOOSTER_FILE,
    META_FILE,
    encode_features,
    infer_categories,
    lightgbm_feature_names,
    read_saved_meta,
    scaled_min_data_in_leaf,
    spec_columns,
)
from training.period_margins import PeriodTrees
from training.survival_config import TimeToCloseConfig
from training.survival_linear import Bands, LinearHazard, fit_linear_hazard, refit_linear_hazard

KIND = "time_to_close"
PERIOD_COLUMN = "period_index"
FORMAT_VERSION = 1
# what ``load`` reads from model.json (``linear``, ``period_offsets`` and ``spec`` may be absent)
_META_KEYS = ("config", "feature_columns", "categories", "best_iteration", "params", "n_snapshots", "n_period_rows",
              "n_period_rows_full", "sampling_rate", "n_events")
MEDIAN_DAYS = "median_days"
BEYOND_HORIZON = "median_beyond_horizon"
EXPANSION_CHUNK = 200_000  # snapshots expanded at a time (bounds the temporary index arrays)
PREDICT_CHUNK = 100_000  # rows predicted at a time
CURVE_ROWS = 16_384  # survival curves integrated at a time (restricted_mean_days)

Progress = Callable[[str], None]


def p_close_column(days: int) -> str:
    """Name of the P(close within ``days``) output column."""
    return f"p_close_{days}d"


# ----- expansion ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeriodRows:
    """Expanded (snapshot, period) rows as index arrays; no feature value is copied."""

    row: np.ndarray  # int64: position of the snapshot in the base feature matrix
    period: np.ndarray  # int16: period index 0..K-1
    label: np.ndarray  # float32: 1 = closed in this period
    weight: np.ndarray  # float32
    sampling_rate: float  # share of the non-event rows kept (1.0: no subsampling)
    n_full: int  # period rows before subsampling

    def __len__(self) -> int:
        return int(self.row.size)

    @property
    def nbytes(self) -> int:
        return int(self.row.nbytes + self.period.nbytes + self.label.nbytes + self.weight.nbytes)


def _check_outcomes(durations: Any, events: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(durations, dtype=np.float64)
    e = np.asarray(events)
    if d.shape != e.shape or d.ndim != 1:
        raise ValueError(f"{what}: durations and events must be 1-D and of equal length ({d.shape} vs {e.shape})")
    bad = ~np.isfinite(d) | (d < 0)
    if bad.any():
        raise ValueError(f"{what}: durations must be finite and >= 0; bad rows {np.flatnonzero(bad)[:10].tolist()}")
    e_float = e.astype(np.float64)
    bad = ~np.isin(e_float, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{what}: events must be 0/1; bad rows {np.flatnonzero(bad)[:10].tolist()}")
    return d, e_float.astype(bool)


def period_layout(
    durations: np.ndarray, events: np.ndarray, period_days: float, max_periods: int, censored_period_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot: number of period rows, period of the conversion (-1: none within the horizon),
    whether the last row is a partly observed (censored) period, and that period's index."""
    d, e = durations, events
    k_event = np.maximum(np.ceil(d / period_days).astype(np.int64) - 1, 0)
    closes = e & (k_event < max_periods)
    full = np.floor(d / period_days).astype(np.int64)
    partial = ~e & (full < max_periods) & (d > full * period_days) & (censored_period_weight > 0)
    n_rows = np.where(e, np.minimum(k_event + 1, max_periods), np.minimum(full, max_periods) + partial)
    return n_rows.astype(np.int64), np.where(closes, k_event, -1), partial, full


def expand_periods(
    durations: Any,
    events: Any,
    period_days: float,
    max_periods: int,
    censored_period_weight: float = 0.5,
    max_rows: int | None = None,
    seed: int = 0,
    max_nonevents_per_event: float | None = None,
) -> PeriodRows:
    """Expand right-censored snapshots into period rows (see the module docstring).

    Non-event rows are kept with probability ``q`` and weighted ``1 / q``, where ``q`` is the
    largest rate that keeps at most ``max_rows`` rows in all (but at least as many non-event rows
    as event rows) and at most ``max_nonevents_per_event`` non-event rows per event row; event rows
    are always kept. Works in chunks of snapshots, so the temporary arrays stay small.
    """
    d, e = _check_outcomes(durations, events, "expand_periods")
    n_rows, k_close, partial, full = period_layout(d, e, period_days, max_periods, censored_period_weight)
    total = int(n_rows.sum())
    n_event = int((k_close >= 0).sum())
    n_non = total - n_event
    rate = 1.0
    if max_rows is not None and total > max_rows and n_non > 0:
        rate = min(rate, max(max_rows - n_event, n_event, 1) / n_non)
    if max_nonevents_per_event is not None and n_non > 0:
        rate = min(rate, max(max_nonevents_per_event * n_event, 1.0) / n_non)
    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, ...]] = []
    for first in range(0, d.size, EXPANSION_CHUNK):
        idx = np.arange(first, min(first + EXPANSION_CHUNK, d.size), dtype=np.int64)
        counts = n_rows[idx]
        row = np.repeat(idx, counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        period = np.arange(row.size, dtype=np.int64) - starts
        label = period == k_close[row]
        weight = np.ones(row.size, dtype=np.float32)
        weight[partial[row] & (period == full[row])] = censored_period_weight
        if rate < 1.0:
            keep = label | (rng.random(row.size) < rate)
            row, period, label, weight = row[keep], period[keep], label[keep], weight[keep]
            weight[~label] /= rate
        parts.append((row, period.astype(np.int16), label.astype(np.float32), weight))
    if not parts:
        empty = np.empty(0)
        return PeriodRows(empty.astype(np.int64), empty.astype(np.int16), empty.astype(np.float32),
                          empty.astype(np.float32), rate, 0)
    row, period, label, weight = (np.concatenate(p) for p in zip(*parts, strict=True))
    return PeriodRows(row, period, label, weight, rate, total)


def concat_period_rows(first: PeriodRows, second: PeriodRows, offset: int) -> PeriodRows:
    """The rows of two slices stacked: ``second``'s snapshot positions shifted by ``offset`` (the
    size of the first slice). Sampling rates may differ: the weights already carry them."""
    return PeriodRows(np.concatenate([first.row, second.row + offset]), np.concatenate([first.period, second.period]),
                      np.concatenate([first.label, second.label]), np.concatenate([first.weight, second.weight]),
                      min(first.sampling_rate, second.sampling_rate), first.n_full + second.n_full)


class PeriodSequence(lgb.Sequence):
    """LightGBM reads the expanded rows in batches: snapshot features gathered by index + the period."""

    def __init__(self, base: np.ndarray, rows: PeriodRows, batch_size: int = 65_536) -> None:
        self.base = base
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int | slice | list[int]) -> np.ndarray:
        if isinstance(idx, int | np.integer):  # LightGBM's bin sampling wants float64 rows
            return np.append(self.base[self.rows.row[idx]].astype(np.float64), float(self.rows.period[idx]))
        if not isinstance(idx, slice | list | np.ndarray):
            raise TypeError(f"PeriodSequence index must be int, slice or list, got {type(idx).__name__}")
        snapshot = self.rows.row[idx]
        out = np.empty((snapshot.size, self.base.shape[1] + 1), dtype=np.float32)
        out[:, :-1] = self.base[snapshot]
        out[:, -1] = self.rows.period[idx]
        return out


# ----- survival curves from hazards (pure) -------------------------------------------------------
def survival_at_period_ends(hazards: np.ndarray) -> np.ndarray:
    """S at 0, w, 2w, ..., K w: an (n, K + 1) matrix starting with ones."""
    hazards = np.asarray(hazards, dtype=np.float64)
    out = np.ones((hazards.shape[0], hazards.shape[1] + 1))
    np.cumprod(1.0 - hazards, axis=1, out=out[:, 1:])
    return out


def survival_at_days(hazards: np.ndarray, period_days: float, days: Sequence[float] | np.ndarray) -> np.ndarray:
    """S(t) at arbitrary days (n, len(days)), constant hazard within a period; t in [0, K w]."""
    hazards = np.asarray(hazards, dtype=np.float64)
    days = np.asarray(days, dtype=np.float64)
    horizon = hazards.shape[1] * period_days
    if days.size and (days.min() < 0 or days.max() > horizon + 1e-9):
        raise ValueError(f"days must lie in [0, {horizon:g}] (the model horizon); got {days.min():g}..{days.max():g}")
    ends = survival_at_period_ends(hazards)
    position = np.clip(days / period_days, 0, hazards.shape[1])
    k = np.minimum(np.floor(position).astype(np.int64), hazards.shape[1])
    frac = position - k
    h = hazards[:, np.minimum(k, hazards.shape[1] - 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(frac > 0, np.power(1.0 - h, frac), 1.0)
    return ends[:, k] * inside


def median_days(hazards: np.ndarray, period_days: float) -> np.ndarray:
    """First t with S(t) <= 1/2 (constant hazard within a period); NaN when beyond the horizon."""
    hazards = np.asarray(hazards, dtype=np.float64)
    return days_to_reach(hazards, period_days, np.full(hazards.shape[0], 0.5))


# ----- recalibration (pure) ----------------------------------------------------------------------
def period_offsets(hazards: np.ndarray, rows: PeriodRows, periods: int, strength: float,
                   iterations: int = 100) -> np.ndarray:
    """Per-period logit offsets ``g + u_k`` that recalibrate predicted ``hazards`` of the period ``rows``.

    Minimises the weighted log loss of ``expit(logit(hazard) + g + u_period)`` plus
    ``strength / 2 * sum_k u_k**2``: the common shift ``g`` is free, each period's departure ``u_k``
    is shrunk, so a period with a handful of closes moves little. Alternating Newton steps on ``g``
    and on the ``u_k`` (at most 1 in logit each: a far-off rate would overshoot). Pure.
    """
    p0 = np.clip(np.asarray(hazards, dtype=np.float64), 1e-12, 1 - 1e-12)
    margin = np.log(p0) - np.log1p(-p0)
    period = rows.period.astype(np.int64)
    y = rows.label.astype(np.float64)
    w = rows.weight.astype(np.float64)
    shift, u = 0.0, np.zeros(periods)
    for _ in range(iterations):
        p = expit(margin + shift + u[period])
        r, v = w * (p - y), w * p * (1 - p)
        step_g = float(np.clip(r.sum() / max(v.sum(), 1e-12), -1.0, 1.0))
        shift -= step_g
        p = expit(margin + shift + u[period])
        grad = np.bincount(period, w * (p - y), periods) + strength * u
        hess = np.bincount(period, w * p * (1 - p), periods) + strength
        step_u = np.clip(grad / np.maximum(hess, 1e-12), -1.0, 1.0)
        u -= step_u
        if max(abs(step_g), float(np.abs(step_u).max())) < 1e-9:
            break
    return shift + u


# ----- the estimator -----------------------------------------------------------------------------
def hazard_params(booster: BoosterConfig, n_rows: int, event_rate: float, seed: int) -> dict[str, Any]:
    """LightGBM parameters of the per-period hazard (binary log loss on weighted period rows)."""
    min_leaf = booster.min_data_in_leaf or scaled_min_data_in_leaf(n_rows, max(event_rate, 1e-4))
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "num_leaves": booster.num_leaves,
        "max_depth": booster.max_depth,
        "learning_rate": booster.learning_rate,
        "min_data_in_leaf": min_leaf,
        "min_data_per_group": booster.min_data_per_group or int(np.clip(n_rows // 50, 50, 500)),
        "cat_smooth": booster.cat_smooth,
        "cat_l2": booster.cat_l2,
        "max_cat_threshold": booster.max_cat_threshold,
        "max_cat_to_onehot": booster.max_cat_to_onehot,
        "feature_fraction": booster.feature_fraction,
        "bagging_fraction": booster.bagging_fraction,
        "bagging_freq": booster.bagging_freq if booster.bagging_fraction < 1 else 0,
        "lambda_l2": booster.lambda_l2,
        "num_threads": booster.num_threads or (1 if n_rows < 100_000 else 0),
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


class TimeToCloseModel:
    """Discrete-time hazard model of the time from a snapshot to the lead's next conversion.

    ``fit(X, durations, events, X_valid, durations_valid, events_valid, spec=...)`` returns self;
    ``predict_survival(X, days)``, ``predict_close_probability(X, days)``, ``predict_median_days(X)``
    and ``predict_summary(X)`` (one row per lead: P(close within each horizon), median days, beyond
    horizon flag) give the per-lead curves. Learned state ends in ``_``.
    """

    def __init__(self, config: TimeToCloseConfig | None = None) -> None:
        self.config = config or TimeToCloseConfig()

    # ------------------------------------------------------------------ fitting
    def _prepare(self, X: pd.DataFrame, spec: Any) -> None:
        order = spec_columns(spec)
        self.feature_columns_ = [c for c in order if c in X.columns] if order else list(X.columns)
        extra = [c for c in X.columns if c not in self.feature_columns_]
        if extra:
            raise ValueError(f"training frame has columns not in the FeatureSpec: {extra}")
        if PERIOD_COLUMN in self.feature_columns_:
            raise ValueError(f"feature column {PERIOD_COLUMN!r} clashes with the period index of the hazard model")
        self.categories_ = infer_categories(X[self.feature_columns_], spec)
        self.spec_ = spec

    def _in_order(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X``'s feature columns in training order: ``X`` itself when already so (no copy)."""
        return X if list(X.columns) == self.feature_columns_ else X[self.feature_columns_]

    def fit(
        self,
        X: pd.DataFrame,
        durations: Any,
        events: Any,
        X_valid: pd.DataFrame | None = None,
        durations_valid: Any = None,
        events_valid: Any = None,
        *,
        num_boost_round: int | None = None,
        spec: Any = None,
        progress: Progress | None = None,
    ) -> TimeToCloseModel:
        """Fit the hazard on the snapshots ``X`` (feature columns only) and their censored outcomes;
        early-stop on the later ``X_valid`` (else ``num_boost_round`` is required)."""
        started = time.perf_counter()
        say = progress or (lambda _: None)
        cfg = self.config
        d, e = _check_outcomes(durations, events, "training slice")
        if len(X) != d.size:
            raise ValueError(f"training slice: {len(X)} feature rows but {d.size} outcomes")
        self._prepare(X, spec)
        base = self.encode(X)
        rows = expand_periods(d, e, cfg.period_days, cfg.max_periods, cfg.censored_period_weight,
                              cfg.max_period_rows, cfg.seed, cfg.nonevent_rows_per_event)
        n_events = int(rows.label.sum())
        if n_events == 0:
            raise ValueError(
                f"training slice: no conversion within the model horizon ({cfg.horizon_days} days) among "
                f"{d.size} snapshots; cannot fit a hazard"
            )
        say(f"hazard rows: {len(rows):,} period rows from {d.size:,} snapshots ({n_events:,} closes; "
            f"non-event rows kept at rate {rows.sampling_rate:.3g}; index arrays {rows.nbytes / 2**20:.1f} MiB)")
        event_rate = float(np.average(rows.label, weights=rows.weight))
        self.params_ = hazard_params(cfg.booster, len(rows), event_rate, cfg.seed)
        valid_rows = None
        if X_valid is not None:
            dv, ev = _check_outcomes(durations_valid, events_valid, "validation slice")
            if len(X_valid) != dv.size:
                raise ValueError(f"validation slice: {len(X_valid)} feature rows but {dv.size} outcomes")
            valid_rows = expand_periods(dv, ev, cfg.period_days, cfg.max_periods, cfg.censored_period_weight,
                                        cfg.max_period_rows, cfg.seed + 1, cfg.nonevent_rows_per_event)
            if valid_rows.label.sum() == 0:
                raise ValueError("validation slice: no conversion within the model horizon; cannot early-stop")
        self.linear_: LinearHazard | None = None
        init_train = init_valid = None
        if cfg.linear_base:
            if cfg.linear_age_bands and LEAD_AGE not in self.feature_columns_:
                raise ValueError(f"time_to_close.linear_age_bands {list(cfg.linear_age_bands)} splits the period "
                                 f"shape by the {LEAD_AGE!r} feature, which is not among the feature columns; "
                                 "set linear_age_bands: [] or keep that feature")
            say("fitting the linear base hazard")
            self.linear_ = fit_linear_hazard(
                self._in_order(X), rows, cfg.max_periods, None if X_valid is None else self._in_order(X_valid),
                valid_rows,
                c_grid=cfg.linear_c_grid, c_default=cfg.linear_c_default, tolerance=cfg.linear_tolerance,
                max_rows=cfg.linear_max_rows, max_levels=cfg.cox_max_levels, seed=cfg.seed,
                bands=Bands(LEAD_AGE, tuple(cfg.linear_age_bands)) if cfg.linear_age_bands else Bands())
            init_train = self.linear_.row_margins(X, rows)
            if X_valid is not None:
                init_valid = self.linear_.row_margins(X_valid, valid_rows)
        say("boosting the hazard trees")
        names = lightgbm_feature_names([*self.feature_columns_, PERIOD_COLUMN])
        cat_idx = [j for j, c in enumerate(self.feature_columns_) if c in self.categories_]
        train_set = lgb.Dataset([PeriodSequence(base, rows)], label=rows.label, weight=rows.weight,
                                init_score=init_train, feature_name=names, categorical_feature=cat_idx,
                                params=self.params_, free_raw_data=True)
        if X_valid is not None:
            valid_base = self.encode(X_valid)
            valid_set = lgb.Dataset([PeriodSequence(valid_base, valid_rows)], label=valid_rows.label,
                                    weight=valid_rows.weight, init_score=init_valid, reference=train_set)
            self.booster_ = lgb.train(
                self.params_, train_set, num_boost_round=num_boost_round or cfg.booster.max_rounds,
                valid_sets=[valid_set], valid_names=["valid"],
                callbacks=[lgb.early_stopping(cfg.booster.early_stopping_rounds, verbose=False),
                           lgb.log_evaluation(0)],
            )
            self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        else:
            if num_boost_round is None:
                raise ValueError("fit without a validation slice needs num_boost_round")
            self.booster_ = lgb.train(self.params_, train_set, num_boost_round=num_boost_round)
            self.best_iteration_ = int(num_boost_round)
        if X_valid is not None and self.linear_ is not None and cfg.linear_refit:
            say("refitting the linear base on the training and validation leads")
            joined = concat_period_rows(rows, valid_rows, len(X))  # the two slices are never stacked whole
            self.linear_ = refit_linear_hazard(self.linear_, self._in_order(X), joined, cfg.max_periods,
                                               max_rows=cfg.linear_max_rows, seed=cfg.seed,
                                               X_more=self._in_order(X_valid))
            if cfg.recalibration_strength is not None:  # the offsets go on the refitted base, which moved the level
                init_valid = self.linear_.row_margins(X_valid, valid_rows)
        self.period_offsets_ = np.zeros(cfg.max_periods)
        if X_valid is not None and self.linear_ is not None and cfg.recalibration_strength is not None:
            say("recalibrating the per-period hazard on the validation leads")
            # a block of period rows at a time: all of them with their features were up to max_period_rows
            # x features x 4 bytes
            sequence = PeriodSequence(valid_base, valid_rows)
            raw = np.concatenate([
                self.booster_.predict(sequence[first : first + PREDICT_CHUNK], raw_score=True,
                                      num_iteration=self.best_iteration_)
                for first in range(0, len(valid_rows), PREDICT_CHUNK)])
            hazards = expit(raw + init_valid)
            self.period_offsets_ = period_offsets(hazards, valid_rows, cfg.max_periods, cfg.recalibration_strength)
        if self.linear_ is not None:
            self.linear_.period = self.linear_.period + self.period_offsets_
        self.n_snapshots_ = int(d.size)
        self.n_period_rows_ = len(rows)
        self.n_period_rows_full_ = rows.n_full
        self.sampling_rate_ = rows.sampling_rate
        self.n_events_ = n_events
        self.fit_seconds_ = time.perf_counter() - started
        return self

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("TimeToCloseModel is not fitted")

    @property
    def horizon_days(self) -> int:
        return self.config.horizon_days

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Snapshot features as the booster sees them (training order and vocabularies), float32."""
        if not hasattr(self, "feature_columns_"):
            raise RuntimeError("TimeToCloseModel is not fitted")
        return encode_features(frame, self.feature_columns_, self.categories_).astype(np.float32)

    def period_trees(self) -> PeriodTrees | None:
        """The booster's trees as arrays (:mod:`training.period_margins`), built once per fitted booster; None
        when they cannot represent it (``predict_hazard`` then runs ``Booster.predict`` per period)."""
        self._check_fitted()
        built = getattr(self, "_trees_of", None)
        if built is None or built[0] is not self.booster_ or built[1] != self.best_iteration_:
            self._trees = PeriodTrees.from_booster(self.booster_, self.best_iteration_, self.config.max_periods)
            self._trees_of = (self.booster_, self.best_iteration_)
        return self._trees

    def predict_hazard(self, X: pd.DataFrame) -> np.ndarray:
        """Per-period hazards, an (n, max_periods) matrix: each snapshot's trees walked once for every
        period (:class:`training.period_margins.PeriodTrees`; the margins ``Booster.predict`` gives, bit
        for bit), plus the linear base."""
        self._check_fitted()
        base = self.encode(X)
        n, p = base.shape
        periods = self.config.max_periods
        linear = getattr(self, "linear_", None)
        trees = self.period_trees()
        out = np.empty((n, periods))
        for first in range(0, n, PREDICT_CHUNK):
            last = min(first + PREDICT_CHUNK, n)
            if trees is not None:
                out[first:last] = trees.margins(base[first:last])
            else:
                block = np.empty((last - first, p + 1), dtype=np.float32)
                block[:, :p] = base[first:last]
                for k in range(periods):
                    block[:, p] = k
                    out[first:last, k] = self.booster_.predict(block, raw_score=True,
                                                               num_iteration=self.best_iteration_)
            if linear is not None:
                out[first:last] += linear.margins(X.iloc[first:last])
        return expit(out)

    def predict_survival(self, X: pd.DataFrame, days: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """S(t | x) at ``days`` (default: the period ends w, 2w, ..., K w): (n, len(days))."""
        cfg = self.config
        if days is None:
            days = np.arange(1, cfg.max_periods + 1) * cfg.period_days
        return survival_at_days(self.predict_hazard(X), cfg.period_days, days)

    def predict_close_probability(self, X: pd.DataFrame, days: float) -> np.ndarray:
        """P(close within ``days``) per row."""
        return 1.0 - self.predict_survival(X, [days])[:, 0]

    def predict_median_days(self, X: pd.DataFrame) -> np.ndarray:
        """Median days to close per row (NaN: beyond the model horizon)."""
        return median_days(self.predict_hazard(X), self.config.period_days)

    def summary_from_hazards(self, hazards: np.ndarray, index: pd.Index | None = None) -> pd.DataFrame:
        """The per-lead summary of already predicted hazards (see :meth:`predict_summary`)."""
        cfg = self.config
        horizons = list(cfg.horizons_days)
        closes = 1.0 - survival_at_days(hazards, cfg.period_days, horizons)
        med = median_days(hazards, cfg.period_days)
        out = {p_close_column(h): closes[:, j] for j, h in enumerate(horizons)}
        out[MEDIAN_DAYS] = med
        out[BEYOND_HORIZON] = np.isnan(med)
        return pd.DataFrame(out, index=index)

    def predict_summary(self, X: pd.DataFrame) -> pd.DataFrame:
        """One row per lead: ``p_close_<h>d`` per horizon, ``median_days`` (NaN when beyond the horizon)
        and ``median_beyond_horizon``; index of ``X``."""
        return self.summary_from_hazards(self.predict_hazard(X), X.index)

    def feature_importance(self, kind: str = "gain") -> pd.Series:
        """Importance per feature (the period index included)."""
        self._check_fitted()
        values = self.booster_.feature_importance(importance_type=kind, iteration=self.best_iteration_)
        return pd.Series(values, index=[*self.feature_columns_, PERIOD_COLUMN], dtype=float)

    # ------------------------------------------------------------------ storage
    def save(self, directory: str | Path) -> Path:
        """Write ``booster.txt`` + ``model.json`` into ``directory`` (created) and return it."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(directory / BOOSTER_FILE), num_iteration=self.best_iteration_)
        spec = self.spec_.to_dict() if self.spec_ is not None and hasattr(self.spec_, "to_dict") else None
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "config": self.config.model_dump(mode="json"),
            "feature_columns": self.feature_columns_,
            "categories": self.categories_,
            "best_iteration": self.best_iteration_,
            "params": self.params_,
            "n_snapshots": self.n_snapshots_,
            "n_period_rows": self.n_period_rows_,
            "n_period_rows_full": self.n_period_rows_full_,
            "sampling_rate": self.sampling_rate_,
            "n_events": self.n_events_,
            "linear": None if self.linear_ is None else self.linear_.to_dict(),
            "period_offsets": self.period_offsets_.tolist(),
            "spec": spec,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TimeToCloseModel:
        """Read a model written by :meth:`save`."""
        directory = Path(directory)
        meta = read_saved_meta(directory, KIND, FORMAT_VERSION, _META_KEYS)
        model = cls(TimeToCloseConfig.model_validate(meta["config"]))
        model.booster_ = lgb.Booster(model_file=str(directory / BOOSTER_FILE))
        model.feature_columns_ = list(meta["feature_columns"])
        model.categories_ = {k: list(v) for k, v in meta["categories"].items()}
        model.best_iteration_ = int(meta["best_iteration"])
        model.params_ = meta["params"]
        model.n_snapshots_ = meta["n_snapshots"]
        model.n_period_rows_ = meta["n_period_rows"]
        model.n_period_rows_full_ = meta["n_period_rows_full"]
        model.sampling_rate_ = meta["sampling_rate"]
        model.n_events_ = meta["n_events"]
        model.linear_ = None if meta.get("linear") is None else LinearHazard.from_dict(meta["linear"])
        model.period_offsets_ = np.asarray(meta.get("period_offsets", [0.0] * model.config.max_periods), dtype=float)
        model.spec_ = None if meta.get("spec") is None else FeatureSpec.from_dict(meta["spec"])
        return model


def restricted_mean_days(survival: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Area under S(t) from 0 to ``days[-1]`` (trapezoid; S(0) = 1): expected days open within the window.
    A block of :data:`CURVE_ROWS` rows at a time (each row's area is its own sum)."""
    days = np.asarray(days, dtype=np.float64)
    grid = np.concatenate([[0.0], days])
    out = np.empty(survival.shape[0])
    for first in range(0, survival.shape[0], CURVE_ROWS):
        block = survival[first : first + CURVE_ROWS]
        out[first : first + len(block)] = np.trapezoid(np.hstack([np.ones((len(block), 1)), block]), grid, axis=1)
    return out


__all__ = [
    "BEYOND_HORIZON",
    "KIND",
    "MEDIAN_DAYS",
    "PERIOD_COLUMN",
    "PeriodRows",
    "PeriodSequence",
    "TimeToCloseModel",
    "concat_period_rows",
    "expand_periods",
    "hazard_params",
    "median_days",
    "p_close_column",
    "period_layout",
    "period_offsets",
    "restricted_mean_days",
    "survival_at_days",
    "survival_at_period_ends",
]
