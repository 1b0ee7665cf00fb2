"""Calibrators that map a LightGBM margin (log-odds) to P(convert within H days).

Both are fitted on held-out data (the validation slice, later in time than the training slice, or
cross-validated out-of-fold margins in flat mode) and serialise to plain JSON dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import isotonic_regression
from sklearn.linear_model import LogisticRegression

_EPS = 1e-6


def _check_xy(margin: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    margin = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=float)
    if margin.shape != y.shape or margin.ndim != 1:
        raise ValueError(f"calibration: margin {margin.shape} and label {y.shape} must be equal 1-d arrays")
    if not np.isfinite(margin).all():
        raise ValueError(f"calibration: {int((~np.isfinite(margin)).sum())} non-finite margins")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"calibration: label must be 0/1; bad rows {np.flatnonzero(bad)[:10].tolist()}")
    if y.min() == y.max():
        raise ValueError("calibration: the calibration slice holds a single class; cannot calibrate")
    return margin, y


class PlattCalibrator:
    """p = sigmoid(a * margin + b), fitted by (lightly regularised) logistic regression, with a >= 0.

    The map must not decrease: a higher booster margin never means a lower probability (the isotonic
    calibrator is increasing by construction), so the lead ranking is the booster's and the reasons'
    signs stay those of the log-odds contributions (``serving.core``). On held-out margins that rank
    the leads worse than chance (a worthless or anti-correlated model; with few rows, noise alone can
    do it) the unconstrained fit has a < 0: the slope is then held at 0, the maximum-likelihood fit
    under a >= 0, i.e. every lead gets the slice's conversion rate, and ``warning_`` says so.
    """

    kind = "platt"

    def fit(self, margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        margin, y = _check_xy(margin, y)
        lr = LogisticRegression(C=1e4).fit(margin.reshape(-1, 1), y)
        self.slope_ = float(lr.coef_[0, 0])
        self.intercept_ = float(lr.intercept_[0])
        self.warning_: str | None = None
        if not self.slope_ > 0:
            rate = float(y.mean())
            self.warning_ = (
                f"Platt calibration: the fitted slope {self.slope_:.3g} is not positive (the model's margins rank "
                f"the {len(y):,} calibration rows no better than chance); slope held at 0, so every lead gets the "
                f"calibration rows' conversion rate {rate:.4f} and no reason has an impact: the model carries no "
                "usable signal")
            self.slope_, self.intercept_ = 0.0, float(np.log(rate / (1.0 - rate)))
        return self

    def transform(self, margin: np.ndarray) -> np.ndarray:
        z = self.slope_ * np.asarray(margin, dtype=float) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "slope": self.slope_, "intercept": self.intercept_}


# Beyond its first and last knots the calibrator is flat (a margin outside the fitted range gets the end block's
# probability). A strictly increasing term of at most this much is added, so leads tie only where their margins do
# there too; no probability moves by more than it.
TIE_BREAK = 1e-7


class IsotonicCalibrator:
    """Centered isotonic regression (Oron & Flournoy, 2017): the pool-adjacent-violators fit, with each block of
    equal fitted probability shrunk to one knot at its mean margin, and straight lines between the knots.

    The plain isotonic fit is a step function: it gave thousands of leads one probability (71 distinct values for
    55,632 test rows at 20k leads), and a lead whose margin shared a step with the model's average margin got the
    average's probability, so the explanation (``serving.core``, which spreads ``p - cal(bias)`` over the
    features) gave it impacts near 0 whatever its features did (53 of the first 1,000 X Education leads). The
    centered fit is strictly increasing between its first and last knots, with the same block probabilities at
    the block centres; :data:`TIE_BREAK` orders the leads beyond the end knots by margin."""

    kind = "isotonic"

    def fit(self, margin: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        margin, y = _check_xy(margin, y)
        values, where, counts = np.unique(margin, return_inverse=True, return_counts=True)
        weight = counts.astype(float)
        fitted = isotonic_regression(np.bincount(where, weights=y) / weight, sample_weight=weight,
                                     y_min=_EPS, y_max=1 - _EPS)
        starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])  # blocks: runs of one fitted probability
        self.x_ = np.add.reduceat(values * weight, starts) / np.add.reduceat(weight, starts)
        self.y_ = np.asarray(fitted[starts], dtype=float)
        return self

    def transform(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=float)
        # arctan, not a sigmoid: its slope stays large enough at margins of -10 to order near-equal ones
        return np.interp(margin, self.x_, self.y_) + TIE_BREAK * (0.5 + np.arctan(margin) / np.pi)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": self.x_.tolist(), "y": self.y_.tolist()}


Calibrator = PlattCalibrator | IsotonicCalibrator


def choose_calibration(method: str, y: np.ndarray) -> str:
    """Resolve ``auto``: isotonic needs enough data (>= 1000 rows and >= 100 positives), else Platt."""
    if method != "auto":
        return method
    y = np.asarray(y)
    return "isotonic" if len(y) >= 1000 and y.sum() >= 100 else "platt"


def fit_calibrator(method: str, margin: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit the calibrator named by ``method`` (``auto`` / ``isotonic`` / ``platt``)."""
    kind = choose_calibration(method, y)
    if kind == "isotonic":
        return IsotonicCalibrator().fit(margin, y)
    if kind == "platt":
        return PlattCalibrator().fit(margin, y)
    raise ValueError(f"calibration: unknown method {method!r}; use auto, isotonic or platt")


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator saved with ``to_dict``."""
    kind = data.get("kind")
    if kind == "platt":
        cal = PlattCalibrator()
        cal.slope_, cal.intercept_ = float(data["slope"]), float(data["intercept"])
        if not cal.slope_ >= 0:  # saved before the fit held it at 0: it would reverse the booster's ranking
            raise ValueError(f"calibrator: Platt slope {cal.slope_:.3g} is negative (a higher margin would mean a "
                             "lower probability, and every reason's sign would flip); retrain the model")
        cal.warning_ = None
        return cal
    if kind == "isotonic":
        iso = IsotonicCalibrator()
        iso.x_, iso.y_ = np.asarray(data["x"], dtype=float), np.asarray(data["y"], dtype=float)
        return iso
    raise ValueError(f"calibrator: unknown kind {kind!r} in saved model")


def cross_fitted_calibration(
    method: str, margin: np.ndarray, y: np.ndarray, fold: np.ndarray, held_at_zero: list[Any] | None = None
) -> np.ndarray:
    """Honest calibrated out-of-fold probabilities: fold k is calibrated on the other folds' margins.
    ``held_at_zero`` (a list) receives the folds whose Platt slope was held at 0 (``PlattCalibrator``)."""
    margin, y = _check_xy(margin, y)
    fold = np.asarray(fold)
    out = np.empty_like(margin)
    for k in np.unique(fold):
        held = fold == k
        calibrator = fit_calibrator(method, margin[~held], y[~held])
        if held_at_zero is not None and getattr(calibrator, "warning_", None):
            held_at_zero.append(k)
        out[held] = calibrator.transform(margin[held])
    return out


RATE_SHIFT = 0.10  # a change of the conversion rate after the calibration rows that the printouts explain


def rate_shift_note(observed: float, calibration_rate: float, rows: str = "validation slice") -> str:
    """Why the calibration in the large is off when the conversion rate moved after the rows the calibrator was
    fitted on (a calibrated model's mean on those rows is their rate): '' when it moved less than
    :data:`RATE_SHIFT` or is unknown."""
    if not (np.isfinite(observed) and np.isfinite(calibration_rate)) or min(observed, calibration_rate) <= 0:
        return ""
    change = observed / calibration_rate - 1
    if abs(change) < RATE_SHIFT:
        return ""
    return (f"the calibration rows ({rows}) converted at {calibration_rate:.4f}, these at {observed:.4f} "
            f"({change:+.0%}): the conversion rate moved after the rows the probabilities were fitted on")


def reliability_curve(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, binning: str = "equal_mass"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, observed rate and count per bin (empty bins dropped).

    ``equal_mass``: bins hold (about) the same number of rows (quantiles of p); rows with the same
    probability share a bin (the one where the first of them falls), so a tied block (equal margins, a
    Platt slope held at 0) is never split by row order: such a bin is larger and the bins after it fewer.
    The isotonic calibrator ties no leads of different margins (:class:`IsotonicCalibrator`);
    ``equal_width``: bins split [0, 1] into equal intervals.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if binning == "equal_mass":
        first = np.searchsorted(np.sort(p), p, side="left")  # rows scored below each row
        bin_of = first * n_bins // max(len(p), 1)
    elif binning == "equal_width":
        bin_of = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    else:
        raise ValueError(f"reliability: unknown binning {binning!r}")
    counts = np.bincount(bin_of, minlength=n_bins).astype(float)
    sum_p = np.bincount(bin_of, weights=p, minlength=n_bins)
    sum_y = np.bincount(bin_of, weights=y, minlength=n_bins)
    keep = counts > 0
    return sum_p[keep] / counts[keep], sum_y[keep] / counts[keep], counts[keep]


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, binning: str = "equal_mass"
) -> float:
    """ECE = sum over bins of (bin share) * |mean predicted - observed rate|."""
    mean_p, rate, counts = reliability_curve(y, p, n_bins, binning)
    if counts.sum() == 0:
        return float("nan")
    return float(np.sum(counts * np.abs(mean_p - rate)) / counts.sum())
