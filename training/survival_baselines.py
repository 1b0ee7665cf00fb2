"""Peers of the time-to-close model, scored on the same rows every run.

- :class:`KaplanMeierBaseline`: one survival curve for everyone (no features): what "the average
  lead closes like this" predicts; its concordance is 0.5 by construction.
- :class:`CoxBaseline`: a penalised Cox proportional-hazards model (lifelines) on the same
  FeatureSpec columns, its penalizer chosen on the validation leads as the model's penalty is,
  made linear-model friendly by :class:`CoxDesign` (median imputation with missing flags, log1p
  of non-negative numerics, standardisation, one-hot of the most frequent levels of each
  categorical, constant columns dropped).
- :class:`NaiveDurationRegression`: what is often done instead: regress days-to-close on the
  leads that converted, ignoring every lead still open. Its curve says "closes for sure on the
  predicted day" (S(t) = 1 before it, 0 after), which is what reading a predicted close date as a
  forecast means.

Each exposes ``predict_survival(X, days) -> (n, len(days))``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.schema import to_numbers
from training.model import encode_features, infer_categories, is_categorical, spec_columns
from training.survival_metrics import kaplan_meier, step_at

MIN_LEVEL_ROWS = 20


class KaplanMeierBaseline:
    """The population survival curve (no features)."""

    def fit(self, durations: Any, events: Any) -> KaplanMeierBaseline:
        self.times_, self.survival_ = kaplan_meier(durations, events)
        return self

    def predict_survival(self, X: pd.DataFrame | int, days: Sequence[float] | np.ndarray) -> np.ndarray:
        """The same curve for every row of ``X`` (or for ``X`` rows when an int)."""
        n = X if isinstance(X, int) else len(X)
        curve = step_at(self.times_, self.survival_, np.asarray(days, dtype=np.float64))
        return np.tile(curve, (n, 1))


class CoxDesign:
    """Feature frame -> standardised numeric design matrix for a linear model (the Cox peer, and the
    linear base the hazard booster starts from)."""

    def __init__(self, max_levels: int = 12, min_level_rows: int = MIN_LEVEL_ROWS) -> None:
        self.max_levels = max_levels
        self.min_level_rows = min_level_rows

    def fit(self, X: pd.DataFrame) -> CoxDesign:
        self.numeric_: dict[str, dict[str, Any]] = {}
        self.levels_: dict[str, list[str]] = {}
        for col in X.columns:
            s = X[col]
            if is_categorical(s):
                counts = s.astype(object).dropna().astype(str).value_counts()
                counts = counts[counts >= self.min_level_rows]
                # the most frequent level is the reference (no column)
                self.levels_[col] = counts.index[1 : self.max_levels + 1].tolist()
                continue
            values = to_numbers(s, errors="coerce").astype(float)
            present = values.dropna()
            if present.empty:
                continue
            log = bool(present.min() >= 0)
            transformed = np.log1p(present) if log else present
            self.numeric_[col] = {
                "median": float(present.median()), "log": log, "missing_flag": bool(values.isna().any()),
                "mean": float(transformed.mean()), "std": float(transformed.std(ddof=0)),
            }
        # one design column at a time: the design of every row is never held (~0.8 GB at 766k snapshots)
        kept: dict[str, tuple[float, float]] = {}
        for name, values in self._raw_columns(X):
            column = pd.Series(values)
            std = column.std(ddof=0)
            if std > 1e-12:
                kept[name] = (column.mean(), std)
        self.columns_ = list(kept)
        self.mean_ = pd.Series([m for m, _ in kept.values()], index=self.columns_, dtype=float)
        self.scale_ = pd.Series([s for _, s in kept.values()], index=self.columns_, dtype=float)
        return self

    def _raw_columns(self, X: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
        """The design's columns (name, float values), made one column (one categorical's levels) at a time."""
        for col, info in self.numeric_.items():
            values = to_numbers(X[col], errors="coerce").astype(float).to_numpy()
            missing = np.isnan(values)
            filled = np.where(missing, info["median"], values)
            yield f"{col}", np.log1p(np.maximum(filled, 0)) if info["log"] else filled
            if info["missing_flag"]:
                yield f"{col}__missing", missing.astype(float)
        for col, levels in self.levels_.items():
            text = X[col].astype(object).where(X[col].notna(), None).map(lambda v: v if v is None else str(v))
            for level in levels:
                yield f"{col}={level}", (text == level).to_numpy(dtype=float)

    def _raw(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(dict(self._raw_columns(X)), index=X.index)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        design = self._raw(X)[self.columns_]
        return (design - self.mean_) / self.scale_

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fitted state (saved inside the time-to-close model)."""
        return {"max_levels": self.max_levels, "min_level_rows": self.min_level_rows, "numeric": self.numeric_,
                "levels": self.levels_, "columns": self.columns_, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoxDesign:
        design = cls(int(data["max_levels"]), int(data["min_level_rows"]))
        design.numeric_ = {k: dict(v) for k, v in data["numeric"].items()}
        design.levels_ = {k: list(v) for k, v in data["levels"].items()}
        design.columns_ = list(data["columns"])
        design.mean_ = pd.Series(data["mean"], index=design.columns_, dtype=float)
        design.scale_ = pd.Series(data["scale"], index=design.columns_, dtype=float)
        return design


def stacked_rows(first: pd.DataFrame, second: pd.DataFrame | None, positions: np.ndarray) -> pd.DataFrame:
    """Rows at sorted ``positions`` of ``first`` stacked on ``second`` (fresh index), copying only those rows:
    ``pd.concat([first, second], ignore_index=True).iloc[positions]`` without the copy of both frames."""
    if second is None:
        out = first.iloc[positions]
        out.index = pd.RangeIndex(len(out))  # reset_index(drop=True) would copy the rows again
        return out
    n = len(first)
    return pd.concat([first.iloc[positions[positions < n]], second.iloc[positions[positions >= n] - n]],
                     ignore_index=True)


class CoxBaseline:
    """Penalised Cox PH (lifelines ``CoxPHFitter``) on :class:`CoxDesign` features.

    A fair peer is tuned as the model is: given validation leads, each penalizer of ``penalizers``
    (strongest first, each fit starting from the previous solution) is fitted on the training rows
    and scored by its average partial log-likelihood on the validation rows; the best is then
    refitted on training + validation rows, as the model's linear part is. Without validation rows
    the middle of the grid is used. At most ``max_rows`` rows are used per fit (a random sample).
    A fixed penalizer of 0.1 on a 30,000-row sample, the earlier peer, ranked 0.767 / 0.734
    (Harrell / Uno) on the 20,000-lead synthetic CRM (seed 3) where 0.01 on all 96k rows ranked
    0.793 / 0.771 and 0.001 ranked 0.794 / 0.776 (with half Newton steps: see ``_fit_one``).
    """

    def __init__(self, penalizers: float | Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1), max_levels: int = 12,
                 max_rows: int = 200_000, seed: int = 0) -> None:
        grid = [float(penalizers)] if isinstance(penalizers, int | float) else [float(p) for p in penalizers]
        if not grid or min(grid) < 0:
            raise ValueError(f"Cox baseline: penalizers must be non-negative and not empty, got {penalizers}")
        self.penalizers = sorted(set(grid), reverse=True)
        self.max_levels = max_levels
        self.max_rows = max_rows
        self.seed = seed

    def _rows(self, durations: Any, events: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = np.asarray(durations, dtype=float)
        e = np.asarray(events).astype(bool)
        keep = np.flatnonzero(d > 0)  # a snapshot observed for no time carries no information
        if keep.size > self.max_rows:
            keep = np.sort(np.random.default_rng(self.seed).choice(keep, self.max_rows, replace=False))
        if not e[keep].any():
            raise ValueError(f"Cox baseline: no conversion among the {what} rows")
        return keep, d, e

    @staticmethod
    def _frame(design: CoxDesign, X: pd.DataFrame, keep: np.ndarray, d: np.ndarray, e: np.ndarray) -> pd.DataFrame:
        frame = design.transform(X.iloc[keep]).reset_index(drop=True)
        frame.columns = [f"x{i}" for i in range(frame.shape[1])]  # lifelines formulas dislike '=' and spaces
        frame["duration"] = d[keep]
        frame["event"] = e[keep].astype(int)
        return frame

    @staticmethod
    def _fit_one(frame: pd.DataFrame, penalizer: float, start: np.ndarray | None = None) -> Any:
        """One lifelines fit with half Newton steps; ``ValueError`` when Newton-Raphson did not converge.

        lifelines' default step (0.95) diverged on the 20,000-lead synthetic CRM at penalizers of 0.003
        and below (training C 0.68 and 0.34, with only a warning); half steps converged (0.83)."""
        from lifelines import CoxPHFitter

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # low-variance chatter is ignored; a failed convergence is not
            model = CoxPHFitter(penalizer=penalizer).fit(frame, "duration", "event", initial_point=start,
                                                         fit_options={"step_size": 0.5})
        if any("failed to converge" in str(w.message) for w in caught):
            raise ValueError(f"Cox baseline: Newton-Raphson did not converge at penalizer {penalizer:g}")
        return model

    def fit(self, X: pd.DataFrame, durations: Any, events: Any, X_valid: pd.DataFrame | None = None,
            durations_valid: Any = None, events_valid: Any = None) -> CoxBaseline:
        """Fit on ``X``; with ``X_valid`` choose the penalizer on it, then refit on both (class doc).

        A fit whose Newton-Raphson does not converge scores ``-inf``; when the refit of the chosen
        penalizer does not converge, the next best is refitted."""
        self.validation_scores_: dict[float, float] = {}
        ranked = [self.penalizers[len(self.penalizers) // 2]]
        if X_valid is not None and len(self.penalizers) > 1:  # choose the penalizer on the validation rows
            keep, d, e = self._rows(durations, events, "training")
            keep_v, dv, ev = self._rows(durations_valid, events_valid, "validation")
            design = CoxDesign(self.max_levels).fit(X.iloc[keep])
            train, valid = self._frame(design, X, keep, d, e), self._frame(design, X_valid, keep_v, dv, ev)
            start = None
            for penalizer in self.penalizers:  # strongest first, each from the previous solution
                try:
                    model = self._fit_one(train, penalizer, start)
                except ValueError:
                    self.validation_scores_[penalizer] = -np.inf
                    continue
                start = model.params_.to_numpy()
                score = float(model.score(valid, scoring_method="log_likelihood"))
                self.validation_scores_[penalizer] = score if np.isfinite(score) else -np.inf
            ranked = sorted((p for p, v in self.validation_scores_.items() if np.isfinite(v)),
                            key=self.validation_scores_.get, reverse=True)
            if not ranked:
                raise ValueError(f"Cox baseline: no penalizer of {self.penalizers} converged on the training rows")
        if X_valid is not None:  # the final fit sees the validation rows too, whatever the grid
            durations = np.concatenate([np.asarray(durations, dtype=float), np.asarray(durations_valid, dtype=float)])
            events = np.concatenate([np.asarray(events).astype(bool), np.asarray(events_valid).astype(bool)])
        keep, d, e = self._rows(durations, events, "training")
        sample = stacked_rows(X, X_valid, keep)  # only the sampled rows are copied out of the slices
        self.design_ = CoxDesign(self.max_levels).fit(sample)
        frame = self._frame(self.design_, sample, np.arange(keep.size), d[keep], e[keep])
        for i, penalizer in enumerate(ranked):
            try:
                self.model_ = self._fit_one(frame, penalizer)
            except ValueError:
                if i == len(ranked) - 1:
                    raise
                continue
            self.penalizer_ = penalizer
            break
        self.n_train_ = int(keep.size)
        self.n_available_ = int(np.count_nonzero(d > 0))
        return self

    def predict_survival(self, X: pd.DataFrame, days: Sequence[float] | np.ndarray) -> np.ndarray:
        design = self.design_.transform(X).reset_index(drop=True)
        design.columns = [f"x{i}" for i in range(design.shape[1])]
        days = np.asarray(days, dtype=np.float64)
        out = np.empty((len(design), days.size))
        for first in range(0, len(design), 50_000):
            block = design.iloc[first : first + 50_000]
            out[first : first + len(block)] = self.model_.predict_survival_function(block, times=days).to_numpy().T
        return out


class NaiveDurationRegression:
    """LightGBM regression of log(1 + days to close), fitted on converted snapshots only."""

    def __init__(self, rounds: int = 300, learning_rate: float = 0.05, seed: int = 0) -> None:
        self.rounds = rounds
        self.learning_rate = learning_rate
        self.seed = seed

    def fit(
        self,
        X: pd.DataFrame,
        durations: Any,
        events: Any,
        X_valid: pd.DataFrame | None = None,
        durations_valid: Any = None,
        events_valid: Any = None,
        spec: Any = None,
    ) -> NaiveDurationRegression:
        order = spec_columns(spec)
        self.feature_columns_ = [c for c in order if c in X.columns] if order else list(X.columns)
        self.categories_ = infer_categories(X[self.feature_columns_], spec)
        converted = np.asarray(events).astype(bool)
        if converted.sum() < 10:
            raise ValueError(f"naive regression: only {int(converted.sum())} converted training rows")
        y = np.log1p(np.asarray(durations, dtype=float)[converted])
        params = {"objective": "regression", "metric": "l2", "num_leaves": 15, "max_depth": 4,
                  "learning_rate": self.learning_rate, "min_data_in_leaf": 20, "lambda_l2": 5.0,
                  "num_threads": 1, "seed": self.seed, "deterministic": True, "verbosity": -1}
        cat_idx = [j for j, c in enumerate(self.feature_columns_) if c in self.categories_]
        train = lgb.Dataset(self._encode(X[converted]), label=y, categorical_feature=cat_idx, params=params)
        valid_ok = X_valid is not None and np.asarray(events_valid).astype(bool).sum() >= 10
        if valid_ok:
            cv = np.asarray(events_valid).astype(bool)
            valid = lgb.Dataset(self._encode(X_valid[cv]), label=np.log1p(np.asarray(durations_valid, float)[cv]),
                                reference=train)
            self.booster_ = lgb.train(params, train, self.rounds, valid_sets=[valid],
                                      callbacks=[lgb.early_stopping(30, verbose=False)])
            self.best_iteration_ = int(self.booster_.best_iteration or self.rounds)
        else:
            self.booster_ = lgb.train(params, train, 100)
            self.best_iteration_ = 100
        self.n_train_ = int(converted.sum())
        return self

    def _encode(self, X: pd.DataFrame) -> np.ndarray:
        return encode_features(X, self.feature_columns_, self.categories_)

    def predict_days(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted days to close (for every row, as if it will close)."""
        return np.expm1(self.booster_.predict(self._encode(X), num_iteration=self.best_iteration_))

    def predict_survival(self, X: pd.DataFrame, days: Sequence[float] | np.ndarray) -> np.ndarray:
        predicted = self.predict_days(X)
        return (predicted[:, None] > np.asarray(days, dtype=np.float64)[None, :]).astype(np.float64)
