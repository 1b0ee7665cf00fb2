"""Evaluation that cannot flatter: time-ordered splits with a label-window gap, grouped CV for
flat data, and the metrics every model and baseline is judged by.

ECE uses equal-mass bins by default (each bin holds ~n/bins rows, so sparse high-score bins
do not dominate; tied probabilities share a bin); ``equal_width`` is available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from training.calibration import expected_calibration_error


@dataclass(frozen=True)
class TimeSplit:
    """Row positions of the three time-ordered slices and the cut instants."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_start: pd.Timestamp
    test_start: pd.Timestamp

    def describe(self, as_of: pd.Series) -> dict[str, object]:
        def span(idx: np.ndarray) -> str:
            return f"{as_of.iloc[idx].min():%Y-%m-%d}..{as_of.iloc[idx].max():%Y-%m-%d}" if len(idx) else "-"

        return {
            "n_train": len(self.train), "n_valid": len(self.valid), "n_test": len(self.test),
            "train_as_of": span(self.train), "valid_as_of": span(self.valid), "test_as_of": span(self.test),
        }


def _cut_at_fraction(dates: np.ndarray, fraction: float) -> pd.Timestamp:
    """The first as_of date of the latest ``fraction`` of distinct labelled dates (at least one)."""
    distinct = np.sort(np.unique(dates))
    k = max(1, int(round(len(distinct) * fraction)))
    return pd.Timestamp(distinct[len(distinct) - k])


def time_ordered_split(
    as_of: pd.Series, horizon_days: int, test_fraction: float = 0.2, validation_fraction: float = 0.2
) -> TimeSplit:
    """Train / valid / test by as_of, with a gap of H days before the test slice.

    The test slice holds the latest ``test_fraction`` of distinct as_of dates; rows before it are
    kept for fitting only when ``as_of + H <= first test as_of`` (their label window closes before
    the test period starts, so no test-period outcome is in training or validation). The
    validation slice (early stopping + calibration) is the latest ``validation_fraction`` of the
    remaining as_of dates; training takes every earlier snapshot. No gap is cut between training
    and validation: a training label window may reach into the validation period, which can only
    make early stopping slightly optimistic, never the test figures (a gap there cost a third of
    the training rows on a 5k-lead CRM and 0.013 test AUC).
    """
    as_of = pd.to_datetime(as_of.reset_index(drop=True))
    if as_of.empty:
        raise ValueError(f"time split: no labelled snapshot (every {horizon_days}-day label window is still open at "
                         "the data end): the history must span more than the horizon")
    if as_of.isna().any():
        raise ValueError(f"as_of has missing values in rows {np.flatnonzero(as_of.isna())[:10].tolist()}")
    h = pd.Timedelta(days=horizon_days)
    values = as_of.to_numpy()
    test_start = _cut_at_fraction(values, test_fraction)
    test = np.flatnonzero(values >= test_start.to_datetime64())
    # strictly before the test slice too: with H = 0 (flat rows) a row dated on its first day is test only
    pool = np.flatnonzero((values + h.to_timedelta64() <= test_start.to_datetime64())
                          & (values < test_start.to_datetime64()))
    if len(pool) == 0:
        raise ValueError(
            f"time split: no snapshot has as_of + {horizon_days}d <= test start {test_start:%Y-%m-%d}; "
            f"as_of spans {as_of.min():%Y-%m-%d}..{as_of.max():%Y-%m-%d}, too short for horizon {horizon_days}d"
        )
    valid_start = _cut_at_fraction(values[pool], validation_fraction)
    valid = pool[values[pool] >= valid_start.to_datetime64()]
    train = pool[values[pool] < valid_start.to_datetime64()]
    if len(train) == 0:
        raise ValueError(
            f"time split: nothing left to train on before validation start {valid_start:%Y-%m-%d}; "
            f"as_of spans {as_of.min():%Y-%m-%d}..{as_of.max():%Y-%m-%d}"
        )
    return TimeSplit(train, valid, test, valid_start, test_start)


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold number per row from StratifiedGroupKFold (a lead never sits in two folds)."""
    folds = np.full(len(y), -1, dtype=int)
    if len(pd.unique(groups)) == len(groups):  # one row per lead: same guarantee, far faster
        splits = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(y)), y, groups)
    for k, (_, held) in enumerate(splits):
        folds[held] = k
    return folds


def weeks_represented(as_of: pd.Series) -> float | None:
    """How many weeks of lead flow a set of snapshots stands for.

    Estimate: (number of distinct as_of dates) x (median gap between consecutive distinct dates)
    / 7 days, i.e. the span plus one cadence step. A single as_of date or no dates: None.
    """
    dates = np.sort(pd.to_datetime(pd.Series(as_of)).dropna().unique())
    if len(dates) < 2:
        return None
    cadence_days = float(np.median(np.diff(dates)) / np.timedelta64(1, "D"))
    return len(dates) * cadence_days / 7.0


def _safe(fn, *args) -> float:  # noqa: ANN001
    try:
        return float(fn(*args))
    except ValueError:
        return float("nan")


def top_k_sums(values: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over the k best-scored rows, for k = 0..n, with tied scores taken in random
    order (expected value): a block of equal scores cut by the k-th row adds its mean value per row
    taken. No figure then depends on the order of the rows (hand-tuned points tie by the hundred)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="mergesort")
    ranked, taken = np.asarray(score, dtype=float)[order], np.concatenate([[0.0], np.cumsum(values[order])])
    if len(ranked) == 0:
        return taken
    new = np.concatenate([[True], ranked[1:] != ranked[:-1]])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(ranked))
    block = np.cumsum(new) - 1
    start, end, k = starts[block], ends[block], np.arange(1, len(ranked) + 1)
    out = taken.copy()
    out[1:] = taken[start] + (k - start) * (taken[end] - taken[start]) / (end - start)
    return out


def top_fraction_lift_capture(y: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """Lift (precision / base rate) and capture (share of positives) in the top ``fraction`` by score
    (ties at the cut-off shared as in :func:`top_k_sums`)."""
    y = np.asarray(y, dtype=float)
    pos = y.sum()
    if pos == 0:
        return float("nan"), float("nan")
    n_top = max(1, int(round(len(y) * fraction)))
    captured = top_k_sums(y, score)[n_top]
    return float(captured / n_top / y.mean()), float(captured / pos)


def capture_at_capacity(y: np.ndarray, score: np.ndarray, n_leads: int) -> float:
    """Share of conversions among the ``n_leads`` best-scored rows (ties at the cut-off shared as in
    :func:`top_k_sums`)."""
    y = np.asarray(y, dtype=float)
    if y.sum() == 0 or n_leads <= 0:
        return float("nan")
    return float(top_k_sums(y, score)[min(int(n_leads), len(y))] / y.sum())


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics valid for any score (points, existing scores): AUC, PR AUC, top-decile lift/capture."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    lift, capture = top_fraction_lift_capture(y, score, 0.1)
    return {
        "roc_auc": _safe(roc_auc_score, y, score),
        "pr_auc": _safe(average_precision_score, y, score),
        "top_decile_lift": lift,
        "top_decile_capture": capture,
        "n": float(len(y)),
        "n_positive": float(y.sum()),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
    }


def probability_metrics(
    y: np.ndarray, p: np.ndarray, ece_bins: int = 10, ece_binning: str = "equal_mass"
) -> dict[str, float]:
    """Ranking metrics plus those that need a probability: log loss, Brier, ECE, mean predicted."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    out = ranking_metrics(y, p)
    out.update(
        {
            "log_loss": _safe(log_loss, y, p),
            "brier": _safe(brier_score_loss, y, p),
            "ece": expected_calibration_error(y, p, ece_bins, ece_binning),
            "mean_predicted": float(p.mean()) if len(p) else float("nan"),
        }
    )
    return out


def bootstrap_auc_ci(
    y: np.ndarray, score: np.ndarray, n_boot: int, seed: int, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval of ROC AUC (resamples with one class only are skipped).

    Each resample's AUC is counted from per-score tallies (ties count one half, as in
    ``roc_auc_score``) without sorting again: O(rows) per resample instead of a sort. A missing or
    infinite label or score gives no interval, as ``roc_auc_score`` gives no AUC (``ranking_metrics``)."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if n_boot <= 0 or not len(y) or not (np.isfinite(y).all() and np.isfinite(score).all()) or y.min() == y.max():
        return float("nan"), float("nan")
    positive = (y > 0.5).astype(float)
    _, group = np.unique(score, return_inverse=True)  # equal scores share a group, groups in score order
    group = group.ravel()
    n_groups = int(group.max()) + 1
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, len(y), size=len(y)), minlength=len(y)).astype(float)
        pos = np.bincount(group, weights=drawn * positive, minlength=n_groups)
        neg = np.bincount(group, weights=drawn * (1.0 - positive), minlength=n_groups)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos > 0 and n_neg > 0:
            below = np.cumsum(neg) - neg  # negatives scored strictly below each group
            aucs.append(float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg)))
    if not aucs:
        return float("nan"), float("nan")
    lo, hi = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def segment_table(
    frame: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    segment_columns: list[str],
    n_boot: int = 200,
    min_size: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-segment size, conversions, base rate, mean predicted and AUC (with bootstrap 95% CI).

    Segments smaller than ``min_size`` rows or holding one class are listed with NaN AUCs (never
    dropped); missing segment values form the segment ``(missing)``.
    """
    missing = [c for c in segment_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"segment column(s) {missing} not in the evaluation frame")
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    rows = []
    for col in segment_columns:
        values = frame[col].astype(object).where(frame[col].notna(), "(missing)").to_numpy()
        for value in pd.unique(values):
            mask = values == value
            ys, ps = y[mask], p[mask]
            small = mask.sum() < min_size or ys.min() == ys.max()
            lo, hi = (float("nan"), float("nan")) if small else bootstrap_auc_ci(ys, ps, n_boot, seed)
            rows.append(
                {
                    "segment_column": col,
                    "segment": str(value),
                    "n": int(mask.sum()),
                    "n_positive": int(ys.sum()),
                    "base_rate": float(ys.mean()),
                    "mean_predicted": float(ps.mean()),
                    "roc_auc": float("nan") if small else float(roc_auc_score(ys, ps)),
                    "roc_auc_lo": lo,
                    "roc_auc_hi": hi,
                }
            )
    return pd.DataFrame(
        rows,
        columns=["segment_column", "segment", "n", "n_positive", "base_rate", "mean_predicted",
                 "roc_auc", "roc_auc_lo", "roc_auc_hi"],
    )
